"""World engines by name: ``make_world("sandbox", height=128, width=128)``.

Each engine registers a factory (usually its class) in :data:`WORLDS`; adding an engine is one
line there.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from world.base import WorldEngine, WorldError
from world.sandbox import SandboxWorld

WORLDS: dict[str, Callable[..., WorldEngine]] = {
    "sandbox": SandboxWorld,
    "mvdt": lambda **kw: import_module("world.mvdt.engine").MVDTWorld(**kw),  # torch: lazy
}


def available_worlds() -> list[str]:
    """Names accepted by :func:`make_world`, sorted."""
    return sorted(WORLDS)


def make_world(name: str, **kwargs) -> WorldEngine:
    """Build the world engine registered as ``name`` with keyword arguments ``kwargs``.

    Raises
    ------
    WorldError
        If no engine has that name.
    """
    try:
        factory = WORLDS[str(name).strip().lower()]
    except KeyError:
        raise WorldError(
            f"Unknown world {name!r}; choose one of {', '.join(available_worlds())}."
        ) from None
    return factory(**kwargs)
