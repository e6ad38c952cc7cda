"""The simulated participant as the app sees it: published on LSL and read back by an inlet.

This is the default source of ``yume run``: the samples take the same path as a real amplifier's
(LSL outlet -> network stack -> inlet with clock correction), so what works here works with a lab's
LSL amplifier.
"""

from __future__ import annotations

import numpy as np

from bci.lsl_inlet import LSLInlet
from bci.simulated import ParticipantConfig, ParticipantStream, SimulatedParticipant
from bci.stream import AcquisitionError, Source, SourceState


class PublishedParticipant(Source):
    """A :class:`SimulatedParticipant` published as an LSL stream, consumed through LSL.

    Parameters
    ----------
    participant : SimulatedParticipant or None
        The participant (default: default configuration, seed 0).
    name : str
        LSL stream name (its source id is made unique).
    timeout : float
        Seconds to wait for the stream when starting.
    """

    def __init__(self, participant: SimulatedParticipant | None = None,
                 name: str = "Yume simulated participant", timeout: float = 5.0) -> None:
        self.participant = participant or SimulatedParticipant(ParticipantConfig(), seed=0)
        self.name = name
        self.timeout = float(timeout)
        self.info = self.participant.info
        self.stream: ParticipantStream | None = None
        self.inlet: LSLInlet | None = None

    @property
    def state(self) -> SourceState:  # type: ignore[override]
        return self.inlet.state if self.inlet is not None else SourceState.IDLE

    @state.setter
    def state(self, value: SourceState) -> None:
        if self.inlet is not None:
            self.inlet.state = value

    def set_intent(self, intent: str) -> None:
        """What the simulated person imagines now (see :meth:`SimulatedParticipant.set_intent`)."""
        self.participant.set_intent(intent)

    def start(self) -> None:
        self.stream = ParticipantStream(self.participant, name=self.name)
        self.stream.start()
        try:
            self.inlet = LSLInlet(source_id=self.stream.source_id, timeout=self.timeout)
            self.inlet.start()
        except AcquisitionError:
            self.stream.stop()
            raise
        self.info = self.inlet.info

    def poll(self) -> tuple[np.ndarray, np.ndarray]:
        if self.inlet is None:
            raise AcquisitionError("The simulated participant is not started; call start().")
        return self.inlet.poll()

    def stop(self) -> None:
        if self.inlet is not None:
            self.inlet.stop()
        if self.stream is not None:
            self.stream.stop()
