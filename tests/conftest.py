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


@pytest.fixture
def qapp():
    """The process's QApplication (offscreen).

    Python's cyclic garbage collector runs in whichever thread happens to allocate; in a test
    that builds windows, that is often an acquisition thread, and a Qt object of an earlier
    window deleted there corrupts Qt (segfaults seen in a later window's PlotWidget). So while a
    Qt test runs, collection is off, and it runs on the main thread once the test is over.
    """
    import gc

    from PyQt6 import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    gc.disable()
    try:
        yield app
    finally:
        gc.enable()
        gc.collect()


@pytest.fixture
def pump(qapp):
    """``pump(seconds, until=None)``: run the Qt event loop for up to ``seconds``; with
    ``until``, stop as soon as it returns True and return whether it did."""
    import time

    from PyQt6 import QtCore

    def run(seconds: float, until=None) -> bool:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            qapp.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 10)
            if until is not None and until():
                return True
            time.sleep(0.003)
        return False

    return run


@pytest.fixture
def grab(qapp):
    """``grab(widget)``: a screenshot of a widget as an RGB uint8 array (H, W, 3)."""
    import numpy as np
    from PyQt6 import QtGui

    def shot(widget) -> np.ndarray:
        img = widget.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB888)
        ptr = img.constBits()
        ptr.setsize(img.sizeInBytes())
        arr = np.frombuffer(ptr, np.uint8).reshape(img.height(), img.bytesPerLine())
        return arr[:, : img.width() * 3].reshape(img.height(), img.width(), 3).copy()

    return shot
