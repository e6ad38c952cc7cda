"""From class probabilities to camera actions: a small, deterministic, timestamp-driven policy.

The policy never reads a clock: every call carries the timestamp of the decoded window (LSL
clock), so the same probabilities always give the same actions and tests need no sleeping.

States (:class:`PolicyState`)::

    idle --(movement class confident)--> accumulating --(confident for dwell_s)--> fired
    accumulating --(confidence lost, or rest wins)--> idle
    fired --(step sent; or held action released)--> refractory --(refractory_s)--> idle

* ``idle`` is the explicit reject state: the world does not move.
* Smoothing: an exponential moving average of the probabilities (``"ema"``) or leaky Bayesian
  evidence accumulation over windows (``"accumulate"``: the log-probabilities are summed with a
  leak, and the confidence is their softmax), or none.
* Modes: ``"direct"`` holds the class's action while the class stays confident; ``"discrete"``
  sends one step per detection; ``"menu"`` passes detections to a :mod:`control.menu` menu which
  turns a few classes into any of the 81 actions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol

import numpy as np

from control.actions import IDLE, Action
from control.mapping import ActionMapping

logger = logging.getLogger(__name__)

Mode = Literal["direct", "discrete", "menu"]
Smoothing = Literal["ema", "accumulate", "none"]


class PolicyState(StrEnum):
    """Where the policy stands; shown in the control panel and logged."""

    IDLE = "idle"
    ACCUMULATING = "accumulating"
    FIRED = "fired"
    REFRACTORY = "refractory"


class PolicyError(ValueError):
    """A policy configuration or input that cannot be used; the message says what to do."""


class Menu(Protocol):
    """What the policy needs from a menu (see :mod:`control.menu`)."""

    def check_classes(self, classes: tuple[str, ...]) -> None: ...

    def handle(self, name: str, timestamp: float) -> Action | None: ...

    def tick(self, timestamp: float) -> None: ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class PolicyConfig:
    """Parameters of :class:`ControlPolicy` (data, so it can be saved with a session).

    Parameters
    ----------
    mode : {"direct", "discrete", "menu"}
        ``direct``: the action is held while its class stays confident; ``discrete``: one step
        per detection; ``menu``: detections drive a menu.
    smoothing : {"ema", "accumulate", "none"}
        How window probabilities are combined over time.
    tau_s : float
        Time constant (s) of the moving average, or of the leak of the evidence accumulator.
    threshold : float
        Smoothed probability a movement class must reach to start a command (0-1).
    release : float | None
        Direct mode: the held action stops when the confidence falls below this (hysteresis);
        default ``threshold - 0.1``.
    dwell_s : float
        How long the class must stay above threshold before the command fires.
    refractory_s : float
        Pause after a command (or after a held action is released) during which nothing fires.
    stale_s : float
        If no probabilities arrive for this long (see :meth:`ControlPolicy.check`), the policy
        goes idle and reports that the stream is lost.
    evidence_clip : float
        Accumulation only: bound on log-evidence differences, so the policy can change its mind.
    """

    mode: Mode = "discrete"
    smoothing: Smoothing = "ema"
    tau_s: float = 0.5
    threshold: float = 0.7
    release: float | None = None
    dwell_s: float = 0.5
    refractory_s: float = 1.0
    stale_s: float = 1.0
    evidence_clip: float = 8.0

    def __post_init__(self) -> None:
        if self.mode not in ("direct", "discrete", "menu"):
            raise PolicyError(f"Unknown policy mode {self.mode!r}; use 'direct', 'discrete' or "
                              "'menu'.")
        if self.smoothing not in ("ema", "accumulate", "none"):
            raise PolicyError(f"Unknown smoothing {self.smoothing!r}; use 'ema', 'accumulate' "
                              "or 'none'.")
        if not 0.0 < self.threshold <= 1.0:
            raise PolicyError(f"threshold must lie in (0, 1], got {self.threshold}.")
        if self.release is not None and not 0.0 <= self.release <= self.threshold:
            raise PolicyError(f"release must lie in [0, threshold], got {self.release}.")
        for name in ("tau_s", "dwell_s", "refractory_s", "stale_s", "evidence_clip"):
            if not getattr(self, name) >= 0:
                raise PolicyError(f"{name} must be zero or positive, got {getattr(self, name)}.")

    @property
    def release_level(self) -> float:
        return self.release if self.release is not None else max(self.threshold - 0.1, 0.0)


@dataclass(frozen=True)
class PolicyOutput:
    """What one policy update decided.

    Attributes
    ----------
    timestamp : float
        Timestamp of the probabilities (LSL clock).
    state : PolicyState
        State after this update.
    action : Action
        What the world should do now (idle unless a command is held or a step fires now).
    command : Action | None
        The command that fired in this update (None if none did).
    candidate : str | None
        The class being accumulated or held.
    confidence : numpy.ndarray
        Smoothed probability of each class.
    reason : str
        Why the policy is idle when it was forced to be (lost stream, bad input), else "".
    """

    timestamp: float
    state: PolicyState
    action: Action
    command: Action | None
    candidate: str | None
    confidence: np.ndarray = field(repr=False)
    reason: str = ""


class ControlPolicy:
    """Turns a stream of class probabilities into camera actions (see the module docstring).

    Parameters
    ----------
    classes : sequence of str
        Decoder classes, in the order of the probability vectors.
    mapping : ActionMapping | dict | None
        Class -> action (direct and discrete modes); every class must be mapped.
    config : PolicyConfig
        Smoothing, threshold, dwell, refractory period and mode.
    menu : Menu | None
        Menu mode: the menu that turns class detections into actions.
    step_s : float
        Nominal time between probability vectors, used for the very first update.
    window_s : float | None
        Length of the decoded windows. In menu mode the refractory period lasts at least this
        long, so that the next pick is decided on windows that do not overlap the last one
        (one gaze or one imagery period = one pick). :class:`control.online.OnlineControl`
        fills it in from its decoder when left None.
    """

    def __init__(self, classes, mapping: ActionMapping | dict | None = None,
                 config: PolicyConfig | None = None, menu: Menu | None = None,
                 step_s: float = 0.1, window_s: float | None = None) -> None:
        self.classes = tuple(str(c) for c in classes)
        if len(self.classes) < 2:
            raise PolicyError(f"A control policy needs at least two classes, got {self.classes}.")
        self.config = config or PolicyConfig()
        self.step_s = float(step_s)
        self.window_s = window_s
        self.menu = menu
        if self.config.mode == "menu":
            if menu is None:
                raise PolicyError("Menu mode needs a menu (control.menu.ScanningMenu or GridMenu).")
            menu.check_classes(self.classes)
            # In menu mode the "rest" classes are those the menu does not use.
            self._movement = np.array([c in getattr(menu, "used_classes", self.classes)
                                       for c in self.classes])
            self.mapping = None
        else:
            if mapping is None:
                raise PolicyError(f"Mode {self.config.mode!r} needs a class -> action mapping.")
            self.mapping = (mapping if isinstance(mapping, ActionMapping)
                            else ActionMapping.from_dict(mapping))
            self.mapping.check_classes(self.classes)
            self._movement = np.array([not self.mapping.is_rest(c) for c in self.classes])
        self.reset()

    # ----------------------------------------------------------------- state
    def reset(self, reason: str = "") -> None:
        """Back to idle with no evidence (the world stops)."""
        k = len(self.classes)
        self._smoothed = np.full(k, 1.0 / k)
        self._evidence = np.zeros(k)
        self.state = PolicyState.IDLE
        self.candidate: str | None = None
        self.action: Action = IDLE
        self.reason = reason
        self._since: float | None = None
        self._refractory_until = -np.inf
        self._last_t: float | None = None
        self.n_detections = 0
        if self.menu is not None:
            self.menu.reset()

    @property
    def confidence(self) -> np.ndarray:
        """Current smoothed probability of each class."""
        return self._smoothed.copy()

    # ---------------------------------------------------------------- inputs
    def interrupt(self, timestamp: float, reason: str) -> PolicyOutput:
        """Force idle now (lost stream, panic, user pause) and remember ``reason``."""
        if self.state is not PolicyState.IDLE or reason != self.reason:
            logger.warning("Control policy idle: %s", reason)
        last_t = self._last_t
        self.reset(reason)
        self._last_t = last_t
        return self._output(timestamp, None)

    def check(self, now: float) -> PolicyOutput | None:
        """Call regularly with the current LSL time: goes idle if probabilities stopped coming.

        Returns the interrupting output when the policy had to stop, else None. Also advances a
        scanning menu.
        """
        if self.menu is not None:
            self.menu.tick(now)
        if self._last_t is None or now - self._last_t <= self.config.stale_s:
            return None
        if self.state is PolicyState.IDLE and self.reason:
            return None
        return self.interrupt(
            now, f"no decoder output for {now - self._last_t:.1f} s: the EEG stream may be lost; "
            "check the amplifier and the LSL stream")

    def update(self, timestamp: float, probabilities) -> PolicyOutput:
        """Feed the probabilities of one decoded window; returns what the world should do.

        Parameters
        ----------
        timestamp : float
            Time of the window's last sample (LSL clock); must increase.
        probabilities : array-like, shape (n_classes,)
            Class probabilities in the order of :attr:`classes`.
        """
        p = np.asarray(probabilities, dtype=np.float64).ravel()
        t = float(timestamp)
        if p.shape[0] != len(self.classes):
            raise PolicyError(
                f"Got {p.shape[0]} probabilities for {len(self.classes)} classes "
                f"({', '.join(self.classes)}); the decoder and the policy disagree.")
        if not np.all(np.isfinite(p)):
            return self.interrupt(t, "the decoder returned non-finite probabilities; "
                                     "check the signal for flat or saturated channels")
        if self._last_t is not None and t <= self._last_t:
            logger.debug("Ignoring probabilities at %.3f (not after %.3f).", t, self._last_t)
            return self._output(t, None)
        dt = self.step_s if self._last_t is None else t - self._last_t
        self._last_t = t
        self.reason = ""
        if self.menu is not None:
            self.menu.tick(t)
        self._smooth(np.clip(p, 0.0, 1.0), dt)
        return self._advance(t)

    # --------------------------------------------------------------- helpers
    def _smooth(self, p: np.ndarray, dt: float) -> None:
        cfg = self.config
        if cfg.smoothing == "none" or cfg.tau_s == 0:
            total = p.sum()
            self._smoothed = p / total if total > 0 else np.full_like(p, 1.0 / p.size)
            return
        keep = float(np.exp(-dt / cfg.tau_s))
        if cfg.smoothing == "ema":
            self._smoothed = keep * self._smoothed + (1.0 - keep) * p
            return
        # Leaky evidence accumulation: sum of log-probabilities, forgetting with tau_s.
        ev = keep * self._evidence + np.log(np.maximum(p, 1e-6))
        ev -= ev.max()
        self._evidence = np.maximum(ev, -cfg.evidence_clip)
        e = np.exp(self._evidence)
        self._smoothed = e / e.sum()

    def _detect(self) -> str | None:
        """The confident movement class, or None (rest wins or nothing is confident)."""
        best = int(np.argmax(self._smoothed))
        if not self._movement[best] or self._smoothed[best] < self.config.threshold:
            return None
        return self.classes[best]

    def _advance(self, t: float) -> PolicyOutput:
        cfg = self.config
        if self.state is PolicyState.FIRED and cfg.mode != "direct":
            self._enter_refractory(t)
        if self.state is PolicyState.REFRACTORY:
            if t + 1e-9 < self._refractory_until:
                return self._output(t, None)
            self.state = PolicyState.IDLE
        if self.state is PolicyState.FIRED:  # direct mode: hold while confident
            i = self.classes.index(self.candidate)
            holding = (int(np.argmax(self._smoothed)) == i
                       and self._smoothed[i] >= cfg.release_level)
            if holding:
                return self._output(t, None)
            self._enter_refractory(t)
            return self._output(t, None)
        found = self._detect()
        if found is None:
            self.state, self.candidate, self._since = PolicyState.IDLE, None, None
            return self._output(t, None)
        if found != self.candidate or self.state is not PolicyState.ACCUMULATING:
            self.state, self.candidate, self._since = PolicyState.ACCUMULATING, found, t
        if t - self._since + 1e-9 < cfg.dwell_s:
            return self._output(t, None)
        return self._fire(t)

    def _fire(self, t: float) -> PolicyOutput:
        cfg = self.config
        name = self.candidate
        if cfg.mode == "menu":
            command = self.menu.handle(name, t)
        else:
            command = self.mapping.action(name)
        self.state = PolicyState.FIRED
        self.n_detections += 1
        self.action = command if command is not None else IDLE
        logger.info("Command %s from class %s at %.3f", command, name, t)
        if cfg.mode != "direct":
            # A detection is used up: the next one needs fresh evidence.
            k = len(self.classes)
            self._smoothed = np.full(k, 1.0 / k)
            self._evidence = np.zeros(k)
        return self._output(t, command)

    def _enter_refractory(self, t: float) -> None:
        self.state = PolicyState.REFRACTORY
        self.action = IDLE
        self.candidate = None
        self._since = None
        wait = self.config.refractory_s
        if self.config.mode == "menu" and self.window_s:
            wait = max(wait, float(self.window_s))
        self._refractory_until = t + wait

    def _output(self, t: float, command: Action | None) -> PolicyOutput:
        if self.state is not PolicyState.FIRED:
            self.action = IDLE
        return PolicyOutput(t, self.state, self.action, command, self.candidate,
                            self._smoothed.copy(), self.reason)

