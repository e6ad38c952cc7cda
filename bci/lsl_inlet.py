"""LSL inlets as sources: resolve by name/type/source id, pull in chunks without blocking, watch
the backlog, report gaps and reconnect when a stream disappears and comes back.

Regular streams get clock correction from liblsl and gap-aware dejittering from
:class:`~bci.health.TimestampTracker`; marker streams get clock correction only (never dejitter an
irregular stream: it would move the events).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pylsl
from pylsl.util import LostError
from pylsl.util import TimeoutError as LSLTimeoutError

from bci.health import GapLog, GapReport, TimestampTracker, counter_gaps
from bci.stream import AcquisitionError, Source, SourceState, StreamInfo

logger = logging.getLogger(__name__)

_NP_DTYPE = {
    pylsl.cf_float32: np.float32, pylsl.cf_double64: np.float64, pylsl.cf_int32: np.int32,
    pylsl.cf_int16: np.int16, pylsl.cf_int8: np.int8, pylsl.cf_int64: np.int64,
}
_UNITS = {"microvolts": "uV", "microvolt": "uV", "uv": "uV", "µv": "uV", "μv": "uV",
          "millivolts": "mV", "mv": "mV", "volts": "V", "volt": "V", "v": "V"}
_TYPES = {"eeg": "eeg", "emg": "emg", "eog": "eog", "ecg": "ecg", "ekg": "ecg", "misc": "misc",
          "stim": "stim", "trigger": "stim", "markers": "stim", "gaze": "eyegaze",
          "eyegaze": "eyegaze", "pupil": "pupil", "resp": "resp", "gsr": "gsr", "temp": "temp"}


@dataclass(frozen=True)
class StreamQuery:
    """Which LSL stream to look for: any combination of name, content type and source id."""

    name: str | None = None
    type: str | None = None
    source_id: str | None = None

    def __post_init__(self) -> None:
        if not (self.name or self.type or self.source_id):
            raise ValueError("Say which LSL stream to open: give a name, a type or a source id.")

    def predicate(self) -> str:
        parts = []
        for key, value in (("name", self.name), ("type", self.type),
                           ("source_id", self.source_id)):
            if value:
                if "'" in value and '"' in value:
                    raise ValueError(f"LSL {key} {value!r} mixes both quote characters; rename "
                                     "the stream.")
                q = '"' if "'" in value else "'"
                parts.append(f"{key}={q}{value}{q}")
        return " and ".join(parts)

    def describe(self) -> str:
        return " and ".join(f"{k} {v!r}" for k, v in (("name", self.name), ("type", self.type),
                                                       ("source id", self.source_id)) if v)


def find_streams(name: str | None = None, type: str | None = None,
                 source_id: str | None = None, timeout: float = 1.0) -> list[pylsl.StreamInfo]:
    """Every visible LSL stream matching the query (all streams when no criterion is given)."""
    if not (name or type or source_id):
        return list(pylsl.resolve_streams(wait_time=timeout))
    query = StreamQuery(name, type, source_id)
    # minimum=1000: wait the whole timeout so duplicates are found too
    return list(pylsl.resolve_bypred(query.predicate(), minimum=1000, timeout=timeout))


def resolve_stream(query: StreamQuery, timeout: float = 5.0) -> pylsl.StreamInfo:
    """The stream matching ``query`` (the newest one if several match).

    Raises
    ------
    AcquisitionError
        If none appears within ``timeout`` seconds.
    """
    found = list(pylsl.resolve_bypred(query.predicate(), minimum=1, timeout=timeout))
    if not found:
        raise AcquisitionError(
            f"No LSL stream with {query.describe()} appeared within {timeout:g} s; check that "
            "the program sending it is running and streaming, that it is on this computer or "
            "network (firewall open for LSL's UDP/TCP ports 16571-16604), and the spelling of "
            "the name/type (`yume lsl` lists what is visible)."
        )
    if len(found) > 1:
        logger.warning("%d LSL streams match %s; using the newest", len(found), query.describe())
    return max(found, key=lambda s: s.created_at())


def stream_info_from_lsl(lsl_info: pylsl.StreamInfo) -> StreamInfo:
    """Our :class:`StreamInfo` from an LSL one, with channel names/types/units from its XML desc
    when present (falling back to ``ch1..chN``, the stream's content type and microvolts for
    EEG-like streams)."""
    n = lsl_info.channel_count()
    stype = lsl_info.type() or ""
    labels = _desc_values(lsl_info, "label", n)
    types = _desc_values(lsl_info, "type", n)
    units = _desc_values(lsl_info, "unit", n)
    default_type = _TYPES.get(stype.lower(), "misc")
    ch_names = tuple(lab or f"ch{i + 1}" for i, lab in enumerate(labels))
    if len(set(ch_names)) != n:  # MNE and the buffers need unique names
        ch_names = tuple(f"{lab}-{i + 1}" for i, lab in enumerate(ch_names))
    ch_types = tuple(_TYPES.get((t or "").lower(), default_type) for t in types)
    found_units = {_UNITS.get(u.lower(), u) for u in units if u}
    if len(found_units) == 1:
        unit = found_units.pop()
    elif found_units:
        unit = "mixed"
    else:
        unit = "uV" if default_type in ("eeg", "emg", "eog", "ecg") else ""
    return StreamInfo(
        name=lsl_info.name(), sfreq=float(lsl_info.nominal_srate()), ch_names=ch_names,
        ch_types=ch_types, units=unit, source_id=lsl_info.source_id(), stream_type=stype,
        extras={"hostname": lsl_info.hostname(), "uid": lsl_info.uid(),
                "manufacturer": lsl_info.desc().child("acquisition").child_value("manufacturer"),
                "channel_format": lsl_info.channel_format(),
                "units_per_channel": tuple(_UNITS.get(u.lower(), u) for u in units)},
    )


def _desc_values(lsl_info: pylsl.StreamInfo, key: str, n: int) -> list[str]:
    out = [""] * n
    ch = lsl_info.desc().child("channels").child("channel")
    i = 0
    while not ch.empty() and i < n:
        out[i] = ch.child_value(key)
        ch = ch.next_sibling("channel")
        i += 1
    return out


class _InletBase:
    """Resolution, opening and reconnection shared by :class:`LSLInlet` and
    :class:`MarkerInlet`."""

    _flags = pylsl.proc_clocksync

    def __init__(self, name: str | None, type: str | None, source_id: str | None,
                 stream: pylsl.StreamInfo | None, timeout: float, max_buffer_s: float,
                 stall_timeout: float | None) -> None:
        self.query = StreamQuery(name, type, source_id) if stream is None else StreamQuery(
            stream.name(), stream.type(), stream.source_id() or None)
        self.timeout = float(timeout)
        self.max_buffer_s = float(max_buffer_s)
        self._lsl_info = stream if stream is not None else resolve_stream(self.query, timeout)
        self.info = stream_info_from_lsl(self._lsl_info)  # for the error messages below
        # A resolved info has no <desc>; the inlet fetches the full header (channel labels...).
        self._inlet: pylsl.StreamInlet | None = self._make_inlet(self._lsl_info)
        try:
            self._lsl_info = self._inlet.info(timeout=self.timeout)
        except LSLTimeoutError as err:
            raise AcquisitionError(
                f"LSL stream {self.info.name!r} was found but did not answer within "
                f"{self.timeout:g} s; check that its sender is still running and that TCP ports "
                "16572-16604 are open."
            ) from err
        self.info = stream_info_from_lsl(self._lsl_info)
        self.stall_timeout = stall_timeout
        self.state = SourceState.IDLE
        self.gaps = GapLog()
        self.n_reconnects = 0
        self._resolver: pylsl.ContinuousResolver | None = None
        self._dead_uid = ""
        self._last_data = 0.0
        self._lost_at: float | None = None

    def _make_inlet(self, lsl_info: pylsl.StreamInfo) -> pylsl.StreamInlet:
        # max_buflen: seconds for regular streams, hundreds of samples for irregular ones
        buflen = max(1, math.ceil(self.max_buffer_s))
        # recover=False: liblsl's own recovery would silently reattach to any new stream with
        # the same source id, even at another rate or channel count (then written as if the
        # same); a LostError brings the reconnection here, where _try_reopen checks both.
        return pylsl.StreamInlet(lsl_info, max_buflen=buflen, recover=False,
                                 processing_flags=self._flags)

    def _open(self, inlet: pylsl.StreamInlet, timeout: float | None = None) -> None:
        timeout = self.timeout if timeout is None else timeout
        try:
            inlet.open_stream(timeout=timeout)
        except LSLTimeoutError as err:
            raise AcquisitionError(
                f"LSL stream {self.info.name!r} was found but did not accept a connection within "
                f"{self.timeout:g} s; check that its sender is still running and that TCP ports "
                "16572-16604 are open."
            ) from err
        # The first clock offset takes a few probes (~0.5 s); with proc_clocksync liblsl would
        # hold the first samples back until it has one. Wait for it now (not fatal if slow).
        try:
            inlet.time_correction(timeout=max(timeout, 2.0))
        except LSLTimeoutError:
            logger.info("LSL stream %s: no clock offset yet; the first samples may come late",
                        self.info.name)

    def start(self) -> None:
        if self.state in (SourceState.STREAMING, SourceState.RECONNECTING):
            return
        if self._inlet is None:
            self._inlet = self._make_inlet(self._lsl_info)
        self._open(self._inlet)
        self._last_data = time.monotonic()
        self.state = SourceState.STREAMING
        logger.info("LSL inlet open: %s (%d ch, %g Hz)", self.info.name, self.info.n_channels,
                    self.info.sfreq)

    def stop(self) -> None:
        inlet, self._inlet = self._inlet, None
        if inlet is not None:
            try:
                inlet.close_stream()
            except Exception:  # already gone
                pass
            del inlet
        self._resolver = None
        self.state = SourceState.STOPPED

    # -- reconnection
    def _lost(self, why: str) -> None:
        if self.state != SourceState.RECONNECTING:
            logger.warning("LSL stream %s lost (%s); waiting for it to come back",
                           self.info.name, why)
            self.state = SourceState.RECONNECTING
            self._lost_at = time.monotonic()

    def _try_reopen(self) -> bool:
        """After a LostError: look for the stream again without blocking; True if reopened."""
        if self._resolver is None:
            # the same stream (name, type and source id as first opened), not just any match
            # of the original query, and not the dead instance the resolver may still list
            same = StreamQuery(self._lsl_info.name(), self._lsl_info.type() or None,
                               self._lsl_info.source_id() or None)
            self._resolver = pylsl.ContinuousResolver(pred=same.predicate(), forget_after=1.0)
            self._dead_uid = self._lsl_info.uid()
        found = [s for s in self._resolver.results() if s.uid() != self._dead_uid]
        if not found:
            return False
        new = max(found, key=lambda s: s.created_at())
        old = self._lsl_info
        changed = [text for text, differs in (
            (f"{new.channel_count()} channels instead of {old.channel_count()}",
             new.channel_count() != old.channel_count()),
            (f"sample format {new.channel_format()} instead of {old.channel_format()}",
             new.channel_format() != old.channel_format()),
            (f"{new.nominal_srate():g} Hz instead of {old.nominal_srate():g}",
             new.nominal_srate() != old.nominal_srate())) if differs]
        if changed:  # samples of another layout or rate would be written as if the same
            self.state = SourceState.FAILED
            raise AcquisitionError(
                f"LSL stream {self.info.name!r} came back with {', '.join(changed)}; restart "
                "the acquisition to use the new layout."
            )
        try:
            inlet = self._make_inlet(new)
            self._open(inlet, timeout=0.5)  # poll() must stay short
        except AcquisitionError:
            return False
        self._inlet = inlet
        self._lsl_info = new
        self._resolver = None
        return True

    def _recovered(self) -> None:
        if self.state == SourceState.RECONNECTING:
            self.n_reconnects += 1
            logger.info("LSL stream %s is back", self.info.name)
        self.state = SourceState.STREAMING
        self._lost_at = None

    def _check_open(self) -> None:
        if self.state in (SourceState.IDLE, SourceState.STOPPED):
            raise AcquisitionError(f"LSL inlet {self.info.name!r} is not started; call start() "
                                   "first.")

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class LSLInlet(_InletBase, Source):
    """A numeric LSL stream (EEG, EMG, gaze...) as a :class:`~bci.stream.Source`.

    Regular streams get gap-aware dejittering, gap reports and stall detection; irregular
    numeric streams (decoder outputs...) are passed through with their clock-corrected stamps.

    Parameters
    ----------
    name, type, source_id : str or None
        Which stream to open (any combination); ignored when ``stream`` is given.
    stream : pylsl.StreamInfo or None
        An already resolved stream.
    timeout : float
        Seconds to wait for the stream to appear (and to open).
    max_buffer_s : float
        What liblsl keeps for us when we are slow; bounds memory.
    max_pull_s : float
        At most this much data is returned per :meth:`poll` (the rest waits for the next call,
        and counts as backlog).
    backlog_warn_s : float
        Backlog above which a warning is logged and :attr:`n_backlog_warnings` counts up.
    stall_timeout : float
        Seconds without any sample after which the stream counts as lost (state
        RECONNECTING) until data flows again.
    dejitter : bool
        Smooth the timestamps (gap-aware); False returns the clock-corrected stamps unchanged.
    counter_channel : str or None
        Name of a channel carrying a hardware sample counter, checked for skips.
    counter_modulo : int or None
        Wrap-around of that counter.

    Attributes
    ----------
    backlog_seconds : float
        Data waiting in the inlet after the last poll (s).
    gaps : GapLog
        Gap reports and totals (``gaps.n_missing``...).
    """

    _flags = pylsl.proc_clocksync  # dejittering is ours (gap-aware), see bci.health

    def __init__(self, name: str | None = None, type: str | None = None,
                 source_id: str | None = None, *, stream: pylsl.StreamInfo | None = None,
                 timeout: float = 5.0, max_buffer_s: float = 30.0, max_pull_s: float = 2.0,
                 backlog_warn_s: float = 0.5, stall_timeout: float = 1.0, dejitter: bool = True,
                 counter_channel: str | None = None, counter_modulo: int | None = None) -> None:
        super().__init__(name, type, source_id, stream, timeout, max_buffer_s, stall_timeout)
        if self._lsl_info.channel_format() == pylsl.cf_string:
            raise AcquisitionError(f"LSL stream {self.info.name!r} carries strings; open it with "
                                   "MarkerInlet.")
        sfreq = self.info.sfreq
        regular = sfreq > 0
        if not regular:  # irregular numeric stream (decoder outputs, some gaze trackers)
            self.stall_timeout = None  # silence is normal; no dejitter, no gap detection
        self._dtype = _NP_DTYPE[self._lsl_info.channel_format()]
        self._out_dtype = np.float64 if self._dtype == np.float64 else np.float32
        self._max_chunk = max(16, int(sfreq * 0.1)) if regular else 256
        self._buf = np.empty((self._max_chunk, self.info.n_channels), dtype=self._dtype)
        self._max_pull = max(self._max_chunk, int(sfreq * max_pull_s)) if regular else 4096
        self.backlog_warn_s = float(backlog_warn_s)
        self.backlog_seconds = 0.0
        self.n_backlog_warnings = 0
        self._last_backlog_log = -math.inf
        self.n_received = 0
        self.tracker = (TimestampTracker(sfreq, self.info.name, dejitter=dejitter) if regular
                        else None)
        if counter_channel is not None and counter_channel not in self.info.ch_names:
            raise ValueError(f"No channel {counter_channel!r} in {self.info.name!r}; its channels "
                             f"are {list(self.info.ch_names)}.")
        self._counter_idx = (self.info.ch_names.index(counter_channel)
                             if counter_channel is not None else None)
        self.counter_modulo = counter_modulo
        self._last_counter: int | None = None

    def poll(self) -> tuple[np.ndarray, np.ndarray]:
        self._check_open()
        n_ch = self.info.n_channels
        empty = (np.zeros((n_ch, 0), self._out_dtype), np.zeros(0))
        if self._inlet is None:  # lost without recovery: look for it again
            if not self._try_reopen():
                return empty
        parts, stamps, total = [], [], 0
        try:
            while total < self._max_pull:
                _, ts = self._inlet.pull_chunk(timeout=0.0, max_samples=self._max_chunk,
                                               dest_obj=self._buf, as_numpy=True)
                n = ts.shape[0]
                if n == 0:
                    break
                parts.append(self._buf[:n].T.astype(self._out_dtype))  # copy: buffer reused
                stamps.append(ts)
                total += n
                if n < self._max_chunk:
                    break
            backlog = self._inlet.samples_available() if total else 0
        except LostError:
            self._inlet = None
            self._lost("connection lost")
            return empty
        now = time.monotonic()
        if total == 0:
            if (self.stall_timeout is not None and self.state == SourceState.STREAMING
                    and self.n_received and now - self._last_data > self.stall_timeout):
                self._lost(f"no samples for {self.stall_timeout:g} s")
            return empty
        was_lost = self.state == SourceState.RECONNECTING
        self._last_data = now
        self._recovered()
        data = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        raw_ts = stamps[0] if len(stamps) == 1 else np.concatenate(stamps)
        ts = raw_ts
        if self.tracker is not None:
            ts, gaps = self.tracker.process(raw_ts,
                                            cause="reconnect" if was_lost else "timestamps")
            for g in gaps:
                self.gaps.add(g)
        if self._counter_idx is not None:
            self._check_counter(data[self._counter_idx], ts)
        self.n_received += total
        self._watch_backlog(backlog)
        return data, ts

    def _check_counter(self, counter: np.ndarray, ts: np.ndarray) -> None:
        skips, self._last_counter = counter_gaps(np.round(counter), self._last_counter,
                                                 self.counter_modulo)
        period = 1.0 / self.info.sfreq
        for idx, missing in skips:
            self.gaps.add(GapReport(self.info.name, float(ts[idx]) - missing * period,
                                    missing * period, missing, "counter"))

    def _watch_backlog(self, available: int) -> None:
        if self.info.sfreq <= 0:
            self.backlog_seconds = 0.0  # not defined for irregular streams
            return
        self.backlog_seconds = available / self.info.sfreq
        if self.backlog_seconds > self.backlog_warn_s:
            self.n_backlog_warnings += 1
            now = time.monotonic()
            if now - self._last_backlog_log > 5.0:  # at most one line per 5 s
                self._last_backlog_log = now
                logger.warning(
                    "LSL stream %s: the reader is %.2f s behind (%d warnings); poll more often "
                    "or do less work per poll", self.info.name, self.backlog_seconds,
                    self.n_backlog_warnings)


class MarkerInlet(_InletBase):
    """An irregular string stream (cues, commands, decoder outputs) with clock correction only.

    :meth:`poll` returns ``(markers, timestamps)``: a list of strings (multi-channel samples are
    joined with ``"|"``) and their LSL-clock timestamps, exactly as stamped by the sender.

    Parameters
    ----------
    name, type, source_id : str or None
        Which stream to open; ignored when ``stream`` is given.
    stream : pylsl.StreamInfo or None
        An already resolved stream.
    timeout : float
        Seconds to wait for the stream to appear.
    max_buffer_s : float
        liblsl buffer (x100 samples for irregular streams).
    """

    _flags = pylsl.proc_clocksync  # never dejitter events

    def __init__(self, name: str | None = None, type: str | None = None,
                 source_id: str | None = None, *, stream: pylsl.StreamInfo | None = None,
                 timeout: float = 5.0, max_buffer_s: float = 360.0) -> None:
        super().__init__(name, type, source_id, stream, timeout, max_buffer_s, None)
        if self._lsl_info.channel_format() != pylsl.cf_string:
            raise AcquisitionError(f"LSL stream {self.info.name!r} is numeric; open it with "
                                   "LSLInlet.")
        self.n_received = 0

    def poll(self) -> tuple[list[str], np.ndarray]:
        self._check_open()
        if self._inlet is None and not self._try_reopen():
            return [], np.zeros(0)
        markers: list[str] = []
        stamps: list[float] = []
        try:
            while True:
                samples, ts = self._inlet.pull_chunk(timeout=0.0, max_samples=256)
                if not ts:
                    break
                markers += [s[0] if len(s) == 1 else "|".join(s) for s in samples]
                stamps += ts
                if len(ts) < 256:
                    break
        except LostError:
            self._inlet = None
            self._lost("connection lost")
            return [], np.zeros(0)
        if markers:
            self._recovered()
        self.n_received += len(markers)
        return markers, np.asarray(stamps, dtype=np.float64)


def open_inlet(name: str | None = None, type: str | None = None, source_id: str | None = None,
               timeout: float = 5.0, **kwargs) -> LSLInlet | MarkerInlet:
    """Resolve a stream and open the right inlet for it (markers for string streams), started."""
    lsl_info = resolve_stream(StreamQuery(name, type, source_id), timeout)
    cls = MarkerInlet if lsl_info.channel_format() == pylsl.cf_string else LSLInlet
    inlet = cls(stream=lsl_info, timeout=timeout, **kwargs)
    inlet.start()
    return inlet


def open_inlets(queries: Sequence[StreamQuery | dict], timeout: float = 5.0
                ) -> list[LSLInlet | MarkerInlet]:
    """Open several streams at once (EEG, markers, EMG, gaze...), sharing one deadline.

    Raises
    ------
    AcquisitionError
        Naming every stream that did not appear (the ones already opened are closed again).
    """
    qs = [q if isinstance(q, StreamQuery) else StreamQuery(**q) for q in queries]
    deadline = time.monotonic() + timeout
    resolved: list[pylsl.StreamInfo | None] = []
    for q in qs:
        left = max(deadline - time.monotonic(), 0.05)
        found = list(pylsl.resolve_bypred(q.predicate(), minimum=1, timeout=left))
        resolved.append(max(found, key=lambda s: s.created_at()) if found else None)
    missing = [q.describe() for q, r in zip(qs, resolved, strict=True) if r is None]
    if missing:
        raise AcquisitionError(
            f"No LSL stream with {'; '.join(missing)} appeared within {timeout:g} s; check that "
            "the programs sending them are running, on this computer or network, and the "
            "spelling of the names/types (`yume lsl` lists what is visible)."
        )
    inlets: list[LSLInlet | MarkerInlet] = []
    try:
        for info in resolved:
            cls = MarkerInlet if info.channel_format() == pylsl.cf_string else LSLInlet
            inlet = cls(stream=info, timeout=timeout)
            inlet.start()
            inlets.append(inlet)
    except Exception:
        for inlet in inlets:
            inlet.stop()
        raise
    return inlets
