"""The interface of an online task, which the session runtime drives (``gui.runtime.session``).

An online task plays the participant's side of a run and scores it: at every control tick the
runtime asks :meth:`OnlineTask.intent` what the participant means now (the simulated
participant then imagines the class mapped to that action, or, without a decoder, the action
steers directly); after every world step it calls :meth:`OnlineTask.observe` with the chunk,
and logs the ``task_event`` dicts it returns; it calls :meth:`OnlineTask.on_command` for every
command the decoder or keyboard issued; the run ends when :attr:`OnlineTask.done` is true or
the runtime's time limit passes. At the end :meth:`OnlineTask.summary` goes to ``task.json``
and :meth:`OnlineTask.rows` to ``task.tsv``.

All times are seconds on the LSL clock (``pylsl.local_clock()``). Event dicts must not use the
keys ``t``, ``kind`` or ``task``: the runtime adds those itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from control.actions import IDLE, Action
from control.mapping import DEFAULT_MI_MAPPING, ActionMapping
from world.base import Chunk, WorldEngine


class TaskError(ValueError):
    """An online task that cannot run as configured; the message says what to change."""


class OnlineTask:
    """Base class of online tasks (the runtime only relies on the duck-typed methods).

    Attributes
    ----------
    name : str
        Short name, also the ``--task`` value and ``task.json``'s ``"task"``.
    time_limit_s : float
        Seconds after :meth:`start` at which the task gives up (it is then :attr:`done`).
    """

    name: str = "task"
    time_limit_s: float = float("inf")

    def start(self, engine: WorldEngine | None, t: float) -> None:
        """Begin at LSL time ``t``; ``engine`` is the world, already reset."""
        raise NotImplementedError

    def intent(self, t: float) -> Action:
        """The action the participant means at ``t`` (:data:`control.actions.IDLE`: rest)."""
        return IDLE

    def observe(self, t: float, chunk: Chunk, taken: Action,
                command: Action | None) -> list[dict]:
        """After a world step at ``t`` under action ``taken``; returns task events to log."""
        return []

    def on_command(self, t: float, command: Action, cls: str | None) -> None:
        """A command the policy or keyboard issued at ``t`` (``cls``: decoded class or None)."""

    @property
    def done(self) -> bool:
        """True once the task is over (finished or out of time)."""
        return False

    def summary(self) -> dict:
        """JSON-able figures of the run so far."""
        return {}

    def rows(self) -> list[dict]:
        """One dict per trial (cue or landmark), the columns of ``task.tsv``."""
        return []


def as_mapping(mapping: ActionMapping | Mapping[str, str | Action] | None) -> ActionMapping:
    """An :class:`ActionMapping` from a mapping, a ``{class: action}`` dict or None (the
    default motor-imagery mapping)."""
    if mapping is None:
        mapping = DEFAULT_MI_MAPPING
    return mapping if isinstance(mapping, ActionMapping) else ActionMapping.from_dict(mapping)
