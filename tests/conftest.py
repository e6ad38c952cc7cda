"""Shared test set-up: offscreen Qt, dummy SDL, the shared reference data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def physionet_dir() -> Path:
    """The real motor-imagery recording shipped in ../shared (skips when it is absent)."""
    path = SHARED / "data" / "eeg" / "physionet_mi_S001"
    if not path.is_dir():
        pytest.skip(f"reference data not found at {path}")
    return path
