"""Who steers the world: keyboard, decoder (and later other peripherals) through one arbiter.

:class:`Steering` owns a :class:`control.hybrid.HybridController` (priority rules and the panic
stop) and, when a decoder bundle is loaded, the :class:`control.online.OnlineControl` loop that
turns the live buffer into policy outputs. The window ticks it from a timer on the LSL clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from bci.acquisition import Acquisition
from control.actions import Action
from control.bundle import load_bundle
from control.hybrid import HybridController, HybridOutput
from control.online import OnlineControl, OnlineDecoder, ProbabilityOutlet
from control.policy import ControlPolicy, PolicyConfig, PolicyOutput

logger = logging.getLogger(__name__)


@dataclass
class SteeringTick:
    """What one tick decided."""

    output: HybridOutput
    policy: list[PolicyOutput] = field(default_factory=list)


class Steering:
    """Arbitrates the keyboard and an optional online decoder.

    Parameters
    ----------
    acquisition : Acquisition or None
        The live stream the decoder reads.
    online : OnlineControl or None
        Decoder + policy loop (see :func:`decoder_control`).
    hybrid : HybridController or None
        Priority rules; the default puts the keyboard above the decoder.
    step_s : float
        In discrete mode, how long one decoded command moves the world (seconds).
    """

    def __init__(self, acquisition: Acquisition | None = None,
                 online: OnlineControl | None = None,
                 hybrid: HybridController | None = None, step_s: float = 1.0) -> None:
        self.acquisition = acquisition
        self.online = online
        self.hybrid = hybrid or HybridController(timeouts={"decoder": step_s})
        self.decoder_enabled = online is not None

    @property
    def keys_drive_intent(self) -> bool:
        """True when the keyboard plays the simulated participant instead of steering.

        With a simulated participant and a decoder, a key press makes the participant imagine
        the class mapped to that key's action, so the whole loop (imagery -> EEG -> LSL ->
        decoder -> policy -> world) can be tried without a person in a cap.
        """
        return self.online is not None and hasattr(
            getattr(self.acquisition, "source", None), "set_intent")

    def intent_for(self, action: Action) -> str:
        """The decoder class whose mapped action is ``action`` ("rest" when none is)."""
        mapping = self.online.policy.mapping if self.online is not None else None
        if mapping is not None and not action.is_idle:
            for name in mapping.classes:
                if mapping.action(name) == action:
                    return name
        return "rest"

    def keyboard(self, action: Action, now: float) -> None:
        """The keys held now (idle when all are released)."""
        if self.keys_drive_intent:
            intent = self.intent_for(action)
            try:
                self.acquisition.source.set_intent(intent)
            except ValueError:
                logger.warning("the simulated participant cannot imagine %r", intent)
            return
        if action.is_idle:
            self.hybrid.clear("keyboard")
        else:
            self.hybrid.submit("keyboard", action, now, held=True)

    def set_decoder_enabled(self, enabled: bool, now: float) -> None:
        """Start or stop decoder control (the operator's buttons)."""
        self.decoder_enabled = bool(enabled) and self.online is not None
        if not self.decoder_enabled:
            self.hybrid.clear("decoder")
            if self.online is not None:
                self.online.policy.reset("control stopped by the operator")

    def tick(self, now: float) -> SteeringTick:
        """Decode what is new, then resolve the action for the world; never raises."""
        outs: list[PolicyOutput] = []
        if self.online is not None and self.acquisition is not None:
            outs = self.online.step(self.acquisition.buffer, now, self.acquisition.error)
            if self.decoder_enabled:
                for out in outs:
                    self._submit(out)
        return SteeringTick(self.hybrid.resolve(now), outs)

    def _submit(self, out: PolicyOutput) -> None:
        if self.online.policy.config.mode != "discrete":
            self.hybrid.submit_policy(out)
        elif out.reason:  # forced idle (lost stream, bad input): stop at once
            self.hybrid.clear("decoder")
        elif out.command is not None:
            # A discrete command moves the world for one step of `step_s` seconds (the
            # decoder's hold timeout), not for one frame: 2 degrees would be invisible.
            self.hybrid.submit("decoder", out.command, out.timestamp, held=True)


def decoder_control(bundle_path: str | Path, acquisition: Acquisition,
                    config: PolicyConfig | None = None, publish: bool = True,
                    adapt: str | None = None) -> OnlineControl:
    """Load a decoder bundle and build its online loop for ``acquisition``'s stream.

    Raises a clear error when the bundle does not fit the stream (missing channels, another
    sampling rate) or its classes are not all mapped to actions. ``adapt`` None takes the
    bundle's own (an asynchronous re-centred bundle was tuned adapting, ``"all"``); ``"none"``
    turns it off.
    """
    bundle = load_bundle(bundle_path)
    if adapt is None:  # as its operating point was chosen (`yume train --asynchronous`)
        adapt = bundle.figures.get("adapt")
    decoder = OnlineDecoder.from_bundle(bundle, adapt=None if adapt == "none" else adapt,
                                        adapt_alpha=float(bundle.figures.get("adapt_alpha",
                                                                             0.02)))
    decoder.bind(acquisition.info)
    config = config or PolicyConfig()
    point = bundle.figures.get("operating_point")
    if point:  # chosen pseudo-online for a false-activation target (`yume train --asynchronous`)
        config = replace(config, threshold=point["threshold"], dwell_s=point["dwell_s"],
                         tau_s=point["tau_s"], refractory_s=point["refractory_s"])
    policy = ControlPolicy(bundle.classes, bundle.actions, config, step_s=bundle.step_s)
    outlet = ProbabilityOutlet(bundle.classes, name="yume-probabilities") if publish else None
    return OnlineControl(decoder, policy, outlet=outlet)
