"""World engines by name: ``make_world("sandbox", height=128, width=128)``.

Each engine registers a factory (usually its class) in :data:`WORLDS`; adding an engine is one
line there.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from pathlib import Path

from world.base import WorldEngine, WorldError
from world.sandbox import SandboxWorld

WORLDS: dict[str, Callable[..., WorldEngine]] = {
    "sandbox": SandboxWorld,
    "mvdt": lambda **kw: import_module("world.mvdt.engine").MVDTWorld(**kw),  # torch: lazy
    "wan": lambda **kw: import_module("world.wan.engine").WanWorld(**kw),  # Wan/Yume weights
}


# Engines whose weights come from a checkpoint folder (``make_world(..., checkpoint=DIR)``).
CHECKPOINT_WORLDS = frozenset({"mvdt", "wan"})


def available_worlds() -> list[str]:
    """Names accepted by :func:`make_world`, sorted."""
    return sorted(WORLDS)


def make_world(name: str, *, checkpoint: str | Path | None = None, **kwargs) -> WorldEngine:
    """Build the world engine registered as ``name`` with keyword arguments ``kwargs``.

    Parameters
    ----------
    name : str
        A name of :func:`available_worlds` (case-insensitive), or ``remote://HOST:PORT[/ENGINE]``
        for a world that runs in a world service (:class:`world.remote.RemoteWorld`).
    checkpoint : path-like, optional
        For engines in :data:`CHECKPOINT_WORLDS` (``mvdt``): the checkpoint folder to load
        instead of the shipped one, e.g. a lab's own model from ``yume world export``.
    **kwargs
        Passed to the engine (``height``, ``width``, ``seed``...).

    Raises
    ------
    WorldError
        If no engine has that name, or a checkpoint is given to an engine without one or does
        not name a folder.
    """
    key = str(name).strip().lower()
    if key.startswith("remote://"):  # remote://HOST:PORT[/ENGINE]: a world service's world
        from world.remote import RemoteWorld

        if checkpoint is not None:
            raise WorldError("A remote world loads its checkpoint on the service; start "
                             "`yume world serve --checkpoint DIR` there instead.")
        address, _, engine = str(name).strip()[len("remote://"):].partition("/")
        return RemoteWorld(f"remote://{address}", engine=engine or "sandbox", **kwargs)
    try:
        factory = WORLDS[key]
    except KeyError:
        raise WorldError(
            f"Unknown world {name!r}; choose one of {', '.join(available_worlds())}."
        ) from None
    if checkpoint is not None:
        if key not in CHECKPOINT_WORLDS:
            raise WorldError(
                f"The {key} world loads no checkpoint; leave the checkpoint out or choose "
                f"{' or '.join(sorted(CHECKPOINT_WORLDS))}.")
        path = Path(checkpoint)
        if path.is_file():
            raise WorldError(
                f"{path} is a file; pass the checkpoint folder that holds it (with "
                "model.safetensors and config.json, like world/checkpoints/mvdt-warp).")
        if not path.is_dir():
            raise WorldError(
                f"No checkpoint folder at {path}; check the path (a folder with "
                "model.safetensors and config.json, like world/checkpoints/mvdt-warp).")
        kwargs["checkpoint"] = path
    return factory(**kwargs)
