"""Online tasks the session runtime drives (``yume run --task``): what the participant means at
each moment, and how well the run went.

* :class:`~gui.tasks.cued.CuedTask` (``"cued"``): rest blocks and cues of each movement class,
  scored per cue (hits, wrong, misses, time to command, false activations per minute of rest,
  ITR at the real selection rate).
* :class:`~gui.tasks.navigation.NavigationTask` (``"navigation"``): reach a course of landmarks
  in the sandbox city (completion, time, path length against the shortest, wrong commands,
  collisions).

The interface is :class:`~gui.tasks.base.OnlineTask`.
"""

from __future__ import annotations

from gui.tasks.base import OnlineTask, TaskError
from gui.tasks.cued import CuedTask
from gui.tasks.navigation import NavigationTask, RoutePlanner

TASKS: dict[str, type[OnlineTask]] = {"cued": CuedTask, "navigation": NavigationTask}


def make_task(name: str, **options) -> OnlineTask:
    """The task called ``name`` (``"cued"`` or ``"navigation"``), built with ``options``.

    Raises
    ------
    TaskError
        For an unknown task name.
    """
    try:
        cls = TASKS[name]
    except KeyError:
        raise TaskError(f"Unknown task {name!r}; use one of {', '.join(TASKS)}.") from None
    return cls(**options)


__all__ = ["TASKS", "CuedTask", "NavigationTask", "OnlineTask", "RoutePlanner", "TaskError",
           "make_task"]
