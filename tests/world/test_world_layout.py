"""The package layout: ``world/sandbox/`` and ``world/training/``, the old module paths kept."""

from __future__ import annotations

import importlib

import pytest

MOVED = {
    "world.sandbox_scene": "world.sandbox.scene",
    "world.sandbox_render": "world.sandbox.render",
    "world.data": "world.training.data",
    "world.train": "world.training.train",
    "world.distill": "world.training.distill",
    "world.idm": "world.training.idm",
    "world.evaluate": "world.training.evaluate",
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_is_the_moved_module(old):
    # One module object, so private helpers (world.idm._one_cycle) and patches agree too.
    assert importlib.import_module(old) is importlib.import_module(MOVED[old])


def test_sandbox_package_exports_the_engine():
    import world.sandbox as sandbox
    from world.registry import WORLDS
    from world.sandbox.engine import SandboxWorld

    assert sandbox.SandboxWorld is SandboxWorld is WORLDS["sandbox"]
    assert sandbox.SandboxScene is importlib.import_module("world.sandbox_scene").SandboxScene
    chunk = SandboxWorld(height=16, width=16).reset(seed=3)
    assert chunk.frames.shape[-3:] == (16, 16, 3)
