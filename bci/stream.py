"""What every source of samples is: its metadata (:class:`StreamInfo`) and the start/stop/poll
interface (:class:`Source`)."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


class AcquisitionError(RuntimeError):
    """A source could not be opened or read; the message says what to do."""


class SourceState(StrEnum):
    """Where a source stands, as shown in the window and written to the log."""

    IDLE = "idle"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class StreamInfo:
    """Metadata that travels with samples.

    Attributes
    ----------
    name : str
        Human-readable stream name (``"BrainFlow synthetic"``, an LSL stream name...).
    sfreq : float
        Nominal sampling rate in Hz (0 for irregular streams such as markers).
    ch_names : tuple of str
        One name per channel.
    ch_types : tuple of str
        MNE channel types (``"eeg"``, ``"emg"``, ``"eog"``, ``"misc"``, ``"stim"``...).
    units : str
        Unit of the samples (``"uV"`` or ``"V"``).
    source_id : str
        A unique id (LSL source id, board id and serial...).
    stream_type : str
        LSL content type (``"EEG"``, ``"Markers"``...).
    """

    name: str
    sfreq: float
    ch_names: tuple[str, ...]
    ch_types: tuple[str, ...] = ()
    units: str = "uV"
    source_id: str = ""
    stream_type: str = "EEG"
    extras: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.ch_types:
            object.__setattr__(self, "ch_types", ("eeg",) * len(self.ch_names))
        if len(self.ch_types) != len(self.ch_names):
            raise ValueError("ch_types and ch_names must have the same length.")

    @property
    def n_channels(self) -> int:
        return len(self.ch_names)


class Source(abc.ABC):
    """A stream of samples: ``start()``, then ``poll()`` as often as you like, then ``stop()``.

    ``poll`` never blocks for long: it returns whatever arrived since the last call, as
    ``(data, timestamps)`` with data of shape (n_channels, n) and timestamps on the LSL clock
    (:func:`pylsl.local_clock`, seconds).
    """

    info: StreamInfo
    state: SourceState = SourceState.IDLE

    @abc.abstractmethod
    def start(self) -> None:
        """Open the device or stream and begin acquisition."""

    @abc.abstractmethod
    def poll(self) -> tuple[np.ndarray, np.ndarray]:
        """New samples since the last call (possibly none)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop acquisition and release the device; safe to call twice."""

    def __enter__(self) -> Source:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
