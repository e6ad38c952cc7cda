"""Combine control sources with a fixed priority, and a panic stop that always works.

Every source (keyboard, gamepad, muscle switch, EEG decoder...) submits what it wants, stamped
with a time; :meth:`HybridController.resolve` picks, once per world step, the action of the
highest-priority source that is *engaged* (asks for movement, with fresh input). The default
priority is::

    panic stop > keyboard > gamepad > switch > decoder

so a carer's key press always overrides the decoder, and letting go hands control back.

* **Panic stop** latches: the world stays still, whatever any source says, until
  :meth:`HybridController.release` is called deliberately (a button or key, not a source).
* **Pause** (e.g. a jaw clench mapped to ``"stop"``) is softer: it toggles the decoder (and the
  other automatic sources) off and on, so a person without hands can stop and resume.
* Held inputs (keys down, a direct-mode decoder) last until replaced or until their source's
  timeout; steps (discrete commands) are used by one :meth:`resolve` only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from control.actions import IDLE, Action

logger = logging.getLogger(__name__)

DEFAULT_PRIORITY: tuple[str, ...] = ("keyboard", "gamepad", "switch", "decoder")
# Seconds after which a held input counts as gone (None: held until replaced; keyboards report
# key changes only, so their held state must not time out).
DEFAULT_TIMEOUTS: dict[str, float | None] = {
    "keyboard": None, "gamepad": 0.5, "switch": 1.0, "decoder": 1.0,
}
# Sources a pause switches off: the automatic ones, never the manual override.
PAUSABLE: tuple[str, ...] = ("switch", "decoder")


class HybridError(ValueError):
    """A hybrid-control configuration or input that cannot be used."""


@dataclass(frozen=True)
class SourceCommand:
    """What one source asks for."""

    source: str
    action: Action
    timestamp: float
    held: bool = True


@dataclass(frozen=True)
class HybridOutput:
    """The resolved action for one world step.

    Attributes
    ----------
    action : Action
        What the world does now.
    source : str
        Which source decided (``"panic"``, ``"pause"``, ``"none"`` or a source name).
    reason : str
        Why the world is still when a rule stopped it ("" otherwise).
    """

    timestamp: float
    action: Action
    source: str
    reason: str = ""


class HybridController:
    """Arbitrates between control sources (see the module docstring).

    Parameters
    ----------
    priority : sequence of str
        Source names, highest priority first (panic stop is always above all).
    timeouts : dict
        Per-source seconds after which a held input is ignored (None = never).
    """

    def __init__(self, priority: Sequence[str] = DEFAULT_PRIORITY,
                 timeouts: Mapping[str, float | None] | None = None) -> None:
        self.priority = tuple(priority)
        if len(set(self.priority)) != len(self.priority) or not self.priority:
            raise HybridError(f"The priority list {self.priority} must name each source once.")
        if "panic" in self.priority:
            raise HybridError("'panic' is not a source: the panic stop is always above all.")
        self.timeouts = {s: DEFAULT_TIMEOUTS.get(s, 1.0) for s in self.priority}
        self.timeouts.update(timeouts or {})
        self._latest: dict[str, SourceCommand] = {}
        self.panicked = False
        self.panic_reason = ""
        self.paused = False
        self.last: HybridOutput | None = None

    # ----------------------------------------------------------------- inputs
    def submit(self, source: str, action: Action, timestamp: float, held: bool = True) -> None:
        """Record what ``source`` asks for now (``held=False`` for a one-step command)."""
        if source not in self.priority:
            raise HybridError(
                f"Unknown control source {source!r}; use one of {', '.join(self.priority)}.")
        if not isinstance(action, Action):
            raise HybridError(f"{source} submitted {action!r}, which is not an Action.")
        if self.panicked:
            return  # nothing queued during a panic stop moves the world after the release
        prev = self._latest.get(source)
        if not held and action.is_idle and prev is not None and not prev.held:
            return  # an idle "step" must not erase a pending step of the same source
        self._latest[source] = SourceCommand(source, action, float(timestamp), held)

    def clear(self, source: str) -> None:
        """Forget a source's input (e.g. its device was unplugged)."""
        self._latest.pop(source, None)

    def panic(self, reason: str = "panic stop") -> None:
        """Stop the world now and keep it still until :meth:`release`."""
        if not self.panicked:
            logger.warning("Panic stop: %s", reason)
        self.panicked = True
        self.panic_reason = reason
        self._latest.clear()

    def release(self) -> None:
        """Lift the panic stop (pending inputs were discarded when it latched)."""
        if self.panicked:
            logger.info("Panic stop released")
        self.panicked = False
        self.panic_reason = ""

    def toggle_pause(self) -> bool:
        """Pause or resume the automatic sources; returns the new paused flag."""
        self.paused = not self.paused
        for s in PAUSABLE:
            self._latest.pop(s, None)
        logger.info("Automatic control %s", "paused" if self.paused else "resumed")
        return self.paused

    def submit_policy(self, output, source: str = "decoder") -> None:
        """Feed a :class:`control.policy.PolicyOutput`: a fired step once, a held action held.

        In direct mode the held action is re-submitted with every window (and stops when the
        policy releases it); in discrete and menu modes each command is one step.
        """
        if output.action.is_idle:
            # As a "step": it releases a held action but never erases a step not yet used.
            self.submit(source, IDLE, output.timestamp, held=False)
        elif output.command is not None:
            self.submit(source, output.action, output.timestamp, held=False)  # one step
        else:
            self.submit(source, output.action, output.timestamp, held=True)  # direct: holding

    def command(self, command: str, timestamp: float, reason: str = "") -> bool:
        """Apply a command from a button or a switch.

        ``"panic"`` latches the stop, ``"release"`` lifts it, ``"pause"`` / ``"stop"`` toggle
        the automatic sources. Returns True when the command is not one of these (e.g.
        ``"select"``) and should go on to a menu.
        """
        if command == "panic":
            self.panic(reason or "panic command")
        elif command == "release":
            self.release()
        elif command in ("pause", "stop"):
            if not self.panicked:
                self.toggle_pause()
        else:
            return True
        return False

    # ---------------------------------------------------------------- resolve
    def _fresh(self, cmd: SourceCommand, now: float) -> bool:
        limit = self.timeouts.get(cmd.source)
        return limit is None or now - cmd.timestamp <= limit

    def resolve(self, now: float) -> HybridOutput:
        """The action for the world step at time ``now``; never raises."""
        if self.panicked:
            out = HybridOutput(now, IDLE, "panic", self.panic_reason)
        else:
            out = None
            for source in self.priority:
                if self.paused and source in PAUSABLE:
                    continue
                cmd = self._latest.get(source)
                if cmd is None:
                    continue
                if not cmd.held:
                    del self._latest[source]  # a step is used once, fresh or not
                if cmd.action.is_idle or not self._fresh(cmd, now):
                    continue
                out = HybridOutput(now, cmd.action, source)
                # Overridden steps are dropped, not replayed once the override ends.
                for lower in self.priority[self.priority.index(source) + 1:]:
                    pending = self._latest.get(lower)
                    if pending is not None and not pending.held:
                        del self._latest[lower]
                break
            if out is None:
                reason = "automatic control paused; send 'stop' again to resume" \
                    if self.paused else ""
                out = HybridOutput(now, IDLE, "pause" if self.paused else "none", reason)
        self.last = out
        return out
