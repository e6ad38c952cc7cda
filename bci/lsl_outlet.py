"""LSL outlets for what the app publishes: EEG (regular, float32, channel metadata) and markers
(irregular, strings: cues, decoder outputs, commands, frame events), each with a unique source id
so LabRecorder can record and re-identify them."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Sequence

import numpy as np
import pylsl

from bci.stream import StreamInfo

_LIVE_IDS: set[str] = set()
_LIVE_LOCK = threading.Lock()

#: How units are spelled in LSL channel metadata (XDF meta-data conventions).
_UNIT_TO_LSL = {"uV": "microvolts", "mV": "millivolts", "V": "volts"}


def unique_source_id(name: str) -> str:
    """A fresh source id derived from ``name`` (``"yume-cue-markers-1a2b3c4d"``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "stream"
    return f"yume-{slug}-{uuid.uuid4().hex[:8]}"


class _Outlet:
    """Common part: claim a unique source id, create the outlet, release it on close."""

    def __init__(self, info: pylsl.StreamInfo, chunk_size: int, max_buffered: int) -> None:
        sid = info.source_id()
        with _LIVE_LOCK:
            if sid in _LIVE_IDS:
                raise ValueError(
                    f"An outlet with source id {sid!r} is already open in this process; give "
                    "each stream its own source id (or close the other outlet first)."
                )
            _LIVE_IDS.add(sid)
        self.source_id = sid
        self.name = info.name()
        self.n_channels = info.channel_count()
        try:
            self._outlet: pylsl.StreamOutlet | None = pylsl.StreamOutlet(
                info, chunk_size=chunk_size, max_buffered=max_buffered)
        except Exception:
            self._release_id()
            raise

    def _release_id(self) -> None:
        with _LIVE_LOCK:
            _LIVE_IDS.discard(self.source_id)

    @property
    def outlet(self) -> pylsl.StreamOutlet:
        if self._outlet is None:
            raise RuntimeError(f"The LSL outlet {self.name!r} is closed; create a new one.")
        return self._outlet

    def have_consumers(self) -> bool:
        """Whether an inlet (the app, LabRecorder...) is connected."""
        return self.outlet.have_consumers()

    def wait_for_consumers(self, timeout: float) -> bool:
        """Block until an inlet connects or ``timeout`` s pass; True if one did."""
        return self.outlet.wait_for_consumers(timeout)

    def close(self) -> None:
        """Withdraw the stream from the network (safe to call twice)."""
        outlet, self._outlet = self._outlet, None
        if outlet is not None:
            del outlet  # liblsl destroys the outlet when the last reference goes
            self._release_id()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


class EEGOutlet(_Outlet):
    """Publish a regular multichannel stream (EEG, EMG...) as float32 with channel metadata.

    Parameters
    ----------
    info : StreamInfo
        Name, rate, channel names/types and units; an empty ``source_id`` gets a unique one.
    chunk_size : int
        Preferred chunk size in samples (0: as pushed).
    max_buffered : int
        Seconds the outlet buffers for slow receivers.
    """

    def __init__(self, info: StreamInfo, chunk_size: int = 0, max_buffered: int = 60) -> None:
        if info.sfreq <= 0:
            raise ValueError(f"EEGOutlet needs a regular rate, got sfreq={info.sfreq}; use "
                             "MarkerOutlet for irregular streams.")
        sid = info.source_id or unique_source_id(info.name)
        lsl_info = pylsl.StreamInfo(info.name, info.stream_type, info.n_channels, info.sfreq,
                                    pylsl.cf_float32, sid)
        desc = lsl_info.desc()
        channels = desc.append_child("channels")
        unit = _UNIT_TO_LSL.get(info.units, info.units)
        for name, typ in zip(info.ch_names, info.ch_types, strict=True):
            ch = channels.append_child("channel")
            ch.append_child_value("label", name)
            ch.append_child_value("type", typ.upper())
            ch.append_child_value("unit", unit)
        acq = desc.append_child("acquisition")
        acq.append_child_value("manufacturer", "Yume BCI")
        super().__init__(lsl_info, chunk_size, max_buffered)
        self.info = StreamInfo(name=info.name, sfreq=info.sfreq, ch_names=info.ch_names,
                               ch_types=info.ch_types, units=info.units, source_id=sid,
                               stream_type=info.stream_type)

    def push(self, data: np.ndarray, timestamps: np.ndarray | float | None = None) -> None:
        """Send ``data`` (n_channels, n) with per-sample ``timestamps`` (LSL clock).

        ``timestamps=None`` stamps the last sample with the current time; a float stamps the
        last sample; an array gives every sample its own stamp.

        Raises
        ------
        ValueError
            If the channel count or the number of timestamps does not match.
        """
        data = np.asarray(data)
        if data.ndim != 2 or data.shape[0] != self.n_channels:
            raise ValueError(
                f"Outlet {self.name!r} has {self.n_channels} channels but the chunk has shape "
                f"{data.shape}; push an array of shape ({self.n_channels}, n_samples)."
            )
        n = data.shape[1]
        if n == 0:
            return
        chunk = np.ascontiguousarray(data.T, dtype=np.float32)
        if timestamps is None or np.isscalar(timestamps):
            self.outlet.push_chunk(chunk, float(timestamps or 0.0))
            return
        ts = np.asarray(timestamps, dtype=np.float64).ravel()
        if ts.shape[0] != n:
            raise ValueError(f"{n} samples but {ts.shape[0]} timestamps; give one per sample.")
        self.outlet.push_chunk(chunk, ts.tolist())


class MarkerOutlet(_Outlet):
    """Publish events as an irregular string stream (what LabRecorder and analysis tools expect).

    Parameters
    ----------
    name : str
        LSL stream name (``"YumeCues"``, ``"YumeCommands"``...).
    source_id : str or None
        Unique id; None derives a fresh one from the name.
    stream_type : str
        LSL content type (``"Markers"`` by convention).
    """

    def __init__(self, name: str, source_id: str | None = None,
                 stream_type: str = "Markers") -> None:
        sid = source_id or unique_source_id(name)
        lsl_info = pylsl.StreamInfo(name, stream_type, 1, pylsl.IRREGULAR_RATE, pylsl.cf_string,
                                    sid)
        lsl_info.desc().append_child("acquisition").append_child_value("manufacturer",
                                                                       "Yume BCI")
        super().__init__(lsl_info, 0, 360)
        self.info = StreamInfo(name=name, sfreq=0.0, ch_names=("marker",), ch_types=("stim",),
                               units="", source_id=sid, stream_type=stream_type)

    def push(self, marker: str, timestamp: float | None = None) -> None:
        """Send one marker string, stamped now or at ``timestamp`` (LSL clock)."""
        if not isinstance(marker, str):
            raise ValueError(f"Markers are strings, got {type(marker).__name__}; use push_json "
                             "for structured values.")
        self.outlet.push_sample([marker], float(timestamp or 0.0))

    def push_json(self, value, timestamp: float | None = None) -> None:
        """Send ``value`` (dict, list, number...) encoded as a JSON string."""
        self.push(json.dumps(value, separators=(",", ":")), timestamp)


class ValueOutlet(_Outlet):
    """Publish irregular numeric vectors, e.g. decoder class probabilities, one per decision.

    Parameters
    ----------
    name : str
        LSL stream name.
    ch_names : sequence of str
        One label per value (class names...).
    source_id : str or None
        Unique id; None derives a fresh one from the name.
    stream_type : str
        LSL content type.
    """

    def __init__(self, name: str, ch_names: Sequence[str], source_id: str | None = None,
                 stream_type: str = "Probabilities") -> None:
        sid = source_id or unique_source_id(name)
        lsl_info = pylsl.StreamInfo(name, stream_type, len(ch_names), pylsl.IRREGULAR_RATE,
                                    pylsl.cf_float32, sid)
        channels = lsl_info.desc().append_child("channels")
        for label in ch_names:
            ch = channels.append_child("channel")
            ch.append_child_value("label", str(label))
            ch.append_child_value("type", "MISC")
        super().__init__(lsl_info, 0, 360)
        self.info = StreamInfo(name=name, sfreq=0.0, ch_names=tuple(ch_names),
                               ch_types=("misc",) * len(ch_names), units="", source_id=sid,
                               stream_type=stream_type)

    def push(self, values: Sequence[float], timestamp: float | None = None) -> None:
        """Send one vector of ``n_channels`` values."""
        vals = np.asarray(values, dtype=np.float32).ravel()
        if vals.shape[0] != self.n_channels:
            raise ValueError(f"Outlet {self.name!r} carries {self.n_channels} values per "
                             f"sample, got {vals.shape[0]}.")
        self.outlet.push_sample(vals.tolist(), float(timestamp or 0.0))
