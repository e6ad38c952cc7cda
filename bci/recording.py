"""Record a stream to a session folder, incrementally, and finish it as a BIDS dataset.

:class:`Recorder` appends samples to a crash-safe BrainVision file as they arrive, appends
events and app-log lines as they happen, and flushes to the operating system at once and to
disk (fsync) every ``fsync_interval`` seconds; memory use does not grow with the recording.
``close()`` writes the BIDS dataset with mne-bids. A killed recording loses at most the last
second or so and is turned into the same BIDS dataset by :func:`recover_session`; both are
read with :func:`read_session`. The folder layout is described in :mod:`bci.session_files`.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pylsl import local_clock

from bci.eventlog import EventLog, jsonable
from bci.health import SourceWatch, TimestampTracker
from bci.session_files import (
    CONFIG_FILE,
    EVENTS_FILE,
    GAP_ANNOTATION,
    LOG_FILE,
    RAW_DIR,
    RAW_EEG,
    RAW_TIMES,
    SESSION_FILE,
    VOLTAGE_TYPES,
    RecordingError,
    finalise_session,
    info_to_dict,
    read_session,
    recover_session,
    uv_factor,
    write_brainvision_header,
    write_json_atomic,
)
from bci.stream import Source, StreamInfo

logger = logging.getLogger(__name__)

__all__ = ["Recorder", "RecordingError", "new_session_dir", "read_session", "record",
           "recover_session"]

_LABEL = re.compile(r"^[A-Za-z0-9]+$")


def _check_label(kind: str, value) -> str | None:
    if value is None:
        return None
    value = str(value)
    if not _LABEL.match(value):
        raise RecordingError(
            f"BIDS {kind} label {value!r} may only hold letters and digits; use e.g. '01'."
        )
    return value


def new_session_dir(root: str | os.PathLike, subject: str = "01", session: str = "01",
                    task: str = "bci") -> Path:
    """A new, not yet existing folder under ``root`` named for the date, subject and task."""
    root = Path(root)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / f"{stamp}_sub-{subject}_ses-{session}_task-{task}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path



class Recorder:
    """Write one run to ``session_dir`` while it is acquired.

    Parameters
    ----------
    session_dir : path-like
        The run's folder; created, and must not already hold a recording
        (see :func:`new_session_dir`).
    info : StreamInfo
        The recorded stream (regular sampling rate; units ``"uV"``, ``"V"``...).
    subject, session, task : str
        BIDS entities (letters and digits).
    run : int or None
        BIDS run number.
    config : dict or dataclass or None
        The configuration used, written to ``config.json``.
    line_freq : float or None
        Mains frequency for the BIDS sidecar (50 or 60 Hz).
    fsync_interval : float
        Seconds between forced writes to disk. Data reach the operating system at once, so a
        killed process loses nothing written; a power cut loses at most this much.
    bids_format : {"BrainVision", "EDF"}
        Format of the BIDS copy. BrainVision is copied file to file; EDF is converted in
        memory at close.
    keep_raw : bool
        Keep the raw BrainVision file after the BIDS copy is written.

    Notes
    -----
    :meth:`push` has the signature of an :meth:`bci.acquisition.Acquisition.add_listener`
    callback. All methods are thread-safe.
    """

    def __init__(self, session_dir: str | os.PathLike, info: StreamInfo, *,
                 subject: str = "01", session: str = "01", task: str = "bci",
                 run: int | None = None, config=None, line_freq: float | None = None,
                 fsync_interval: float = 1.0, bids_format: str = "BrainVision",
                 keep_raw: bool = False) -> None:
        if not info.sfreq or info.sfreq <= 0:
            raise RecordingError(
                f"The stream {info.name!r} has no regular sampling rate; record it as events "
                "with add_event() instead."
            )
        if bids_format not in ("BrainVision", "EDF"):
            raise RecordingError(
                f"Unknown BIDS format {bids_format!r}; use 'BrainVision' or 'EDF'."
            )
        self.session_dir = Path(session_dir)
        if (self.session_dir / SESSION_FILE).exists():
            raise RecordingError(
                f"{self.session_dir} already holds a recording; choose a new folder "
                "(bci.recording.new_session_dir makes one)."
            )
        self.info = info
        self.keep_raw = keep_raw
        self.fsync_interval = float(fsync_interval)
        factor = uv_factor(info.units)
        # One gain per channel: voltages to µV, other channels unchanged.
        self._gain = np.array([factor if t in VOLTAGE_TYPES else 1.0 for t in info.ch_types],
                              dtype=np.float64)[:, None]
        raw_dir = self.session_dir / RAW_DIR
        raw_dir.mkdir(parents=True, exist_ok=True)
        self._meta = {
            "format": "yume-session", "version": 1, "status": "recording",
            "pid": os.getpid(), "host": socket.gethostname(),
            "created": datetime.now(UTC).isoformat(), "created_lsl": local_clock(),
            "stream": info_to_dict(info),
            "bids": {"subject": _check_label("subject", subject),
                     "session": _check_label("session", session),
                     "task": _check_label("task", task),
                     "run": None if run is None else int(run),
                     "format": bids_format, "line_freq": line_freq},
            "first_sample_unix": None,
        }
        write_json_atomic(self.session_dir / SESSION_FILE, self._meta)
        cfg = json.loads(json.dumps(config if config is not None else {}, default=jsonable))
        write_json_atomic(self.session_dir / CONFIG_FILE, cfg)
        write_brainvision_header(raw_dir, info)
        self._eeg = open(raw_dir / RAW_EEG, "ab")
        self._times = open(raw_dir / RAW_TIMES, "ab")
        self._events = open(self.session_dir / EVENTS_FILE, "a", encoding="utf-8", newline="")
        self._events.write("onset_lsl\tduration\tdescription\n")
        self._log = EventLog(self.session_dir / LOG_FILE, fsync_every=20)
        self._files = (self._eeg, self._times, self._events)
        self._lock = threading.Lock()
        self._last_sync = time.monotonic()
        self._closed = False
        self.n_samples = 0
        self.n_events = 0
        # The gap detector of the live inlets, on what reaches the file: every hole is logged
        # as it is seen (the BIDS copy finds the same holes again from the stored timestamps).
        self._tracker = TimestampTracker(info.sfreq, info.name, dejitter=False)
        self.n_gaps = 0
        self.n_missing = 0
        self.n_nonfinite = 0
        self.write_error: str | None = None
        self.first_timestamp: float | None = None
        self.last_timestamp: float | None = None
        self.bids_path = None
        logger.info("recording %s to %s", info.name, self.session_dir)

    # -- writing -------------------------------------------------------------------------

    def push(self, data: np.ndarray, timestamps: np.ndarray) -> None:
        """Append samples ``data`` (n_channels, n) stamped ``timestamps`` (n,) on the LSL clock."""
        data = np.asarray(data)
        timestamps = np.asarray(timestamps, dtype="<f8").ravel()
        if data.ndim != 2 or data.shape[0] != self.info.n_channels:
            raise RecordingError(
                f"Expected samples of shape ({self.info.n_channels}, n) for {self.info.name!r}, "
                f"got {data.shape}; record each stream with its own Recorder."
            )
        if timestamps.shape[0] != data.shape[1]:
            raise RecordingError(
                f"{data.shape[1]} samples but {timestamps.shape[0]} timestamps were pushed; "
                "pass one timestamp per sample."
            )
        if data.shape[1] == 0:
            return
        frames = np.ascontiguousarray((data * self._gain).T, dtype="<f4")
        bad = int(data.size - np.count_nonzero(np.isfinite(frames)))
        with self._lock:
            if self._closed:
                logger.debug("samples pushed after close() are ignored")
                return
            if self.first_timestamp is None:
                self.first_timestamp = float(timestamps[0])
                # Wall-clock time of the first sample, for the BIDS measurement date.
                self._meta["first_sample_unix"] = time.time() - (local_clock() - timestamps[0])
                self._meta["first_sample_lsl"] = float(timestamps[0])
                write_json_atomic(self.session_dir / SESSION_FILE, self._meta)
            with self._writing():
                # Data before timestamps: recovery keeps samples present in both files.
                self._eeg.write(frames.tobytes())
                self._times.write(timestamps.tobytes())
                self._eeg.flush()
                self._times.flush()
                self.n_samples += data.shape[1]
                self.last_timestamp = float(timestamps[-1])
                if bad:  # kept as they came (NaN/inf); the log says where
                    self.n_nonfinite += bad
                    self._log.log("nonfinite_samples", t=float(timestamps[0]),
                                  wall=datetime.now(UTC).isoformat(), n_values=bad)
                for gap in self._tracker.process(timestamps)[1]:
                    self.n_gaps += 1
                    self.n_missing += gap.n_missing
                    self._log.log("gap", t=gap.start, wall=datetime.now(UTC).isoformat(),
                                  duration_s=gap.duration, n_missing=gap.n_missing,
                                  after_sample=gap.index)
                self._maybe_sync()

    def add_event(self, onset_lsl: float, duration: float = 0.0, description: str = "") -> None:
        """Append an event (cue, marker, decision) at ``onset_lsl`` on the LSL clock."""
        desc = re.sub(r"[\t\r\n]+", " ", str(description))
        with self._lock:
            if self._closed:
                raise RecordingError(
                    f"The recording in {self.session_dir} is closed; start a new one to add "
                    "events."
                )
            with self._writing():
                self._events.write(f"{float(onset_lsl)!r}\t{float(duration)!r}\t{desc}\n")
                self._events.flush()
                self.n_events += 1
                self._maybe_sync()

    def log_event(self, kind: str, t: float | None = None, **fields) -> None:
        """Append one JSON line ``{"t": <LSL clock>, "wall": ..., "kind": kind, **fields}``."""
        with self._lock:
            if self._closed:
                logger.debug("log entry %r after close() dropped", kind)
                return
            if self.write_error is not None:
                return  # the disk is full; the failure itself is already reported
            with self._writing():
                self._log.log(str(kind), t=t, wall=datetime.now(UTC).isoformat(), **fields)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn a failed write (disk full, drive gone) into one sentence, once, keeping the rest.

        What reached the files before stays there; :meth:`close` then skips the BIDS copy,
        which :func:`recover_session` makes once there is room again.
        """
        if self.write_error is not None:
            raise RecordingError(self.write_error)
        try:
            yield
        except OSError as err:
            self.write_error = (
                f"Writing the recording in {self.session_dir} failed ({err.strerror or err}); "
                f"the {self.n_samples} samples written before are kept: free some space, then "
                f"run `yume record --recover {self.session_dir}`."
            )
            logger.error("%s", self.write_error)
            raise RecordingError(self.write_error) from err

    def _maybe_sync(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_sync >= self.fsync_interval:
            for f in self._files:
                f.flush()
                os.fsync(f.fileno())
            self._last_sync = now

    # -- state ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def duration(self) -> float:
        """Seconds of samples recorded so far."""
        return self.n_samples / self.info.sfreq

    @property
    def nbytes(self) -> int:
        """Bytes written so far (samples, timestamps, events and log)."""
        with self._lock:
            if self._closed:
                return sum(p.stat().st_size for p in self.session_dir.rglob("*") if p.is_file())
            return sum(f.tell() for f in (*self._files, self._log._file))

    # -- closing -------------------------------------------------------------------------

    def close(self):
        """Stop recording and write the BIDS dataset; safe to call twice.

        Returns
        -------
        bids_path : mne_bids.BIDSPath or None
            The BIDS recording (None when no sample arrived).
        """
        with self._lock:
            if self._closed:
                return self.bids_path
            self._closed = True
            if self.write_error is not None:  # the disk is full: keep what is there, no BIDS
                for f in (*self._files, self._log):
                    try:
                        f.close()
                    except OSError:
                        pass
                try:  # tells recover_session that no live process owns it any more
                    write_json_atomic(self.session_dir / SESSION_FILE,
                                      {**self._meta, "status": "write_failed"})
                except OSError:
                    pass
                return None
            self._maybe_sync(force=True)
            for f in self._files:
                f.close()
            self._log.close()
        if self.n_samples == 0:
            self._meta["status"] = "empty"
            write_json_atomic(self.session_dir / SESSION_FILE, self._meta)
            logger.warning("no samples arrived; %s holds no BIDS dataset", self.session_dir)
            return None
        self.bids_path = finalise_session(self.session_dir, "finished", keep_raw=self.keep_raw)
        return self.bids_path

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "recording"
        return (f"<Recorder {state} {self.session_dir} | {self.info.n_channels} ch, "
                f"{self.duration:.1f} s, {self.n_events} events>")


def _poll_source_events(source: Source) -> list[tuple[float, float, str]]:
    poll_events = getattr(source, "poll_events", None)
    if poll_events is None:
        return []
    try:  # sources that know durations (file playback) return them on request
        with_durations = "durations" in inspect.signature(poll_events).parameters
    except (TypeError, ValueError):
        with_durations = False
    out = []
    for ev in (poll_events(durations=True) if with_durations else poll_events()):
        if len(ev) == 2:
            out.append((float(ev[0]), 0.0, str(ev[1])))
        else:
            out.append((float(ev[0]), float(ev[1]), str(ev[2])))
    return out


def record(source: Source, session_dir: str | os.PathLike, duration: float, *,
           progress: bool = True, interval: float = 0.02, markers: Sequence = (),
           **recorder_kwargs) -> Path:
    """Record ``duration`` seconds of ``source`` (started and stopped here) to ``session_dir``.

    Events the source reports through ``poll_events()`` (file playback) are recorded with
    the samples. A source that ends early (a file played
    without looping) ends the recording, and so does Ctrl+C (KeyboardInterrupt), keeping what
    was recorded.

    Parameters
    ----------
    source : Source
        Not yet started.
    session_dir : path-like
        A new folder (see :func:`new_session_dir`).
    duration : float
        Seconds to record, on the LSL clock.
    progress : bool
        Show a tqdm progress bar.
    interval : float
        Polling period in seconds.
    markers : sequence of marker inlets
        Event streams (e.g. :class:`bci.lsl_inlet.MarkerInlet`, started and stopped here) whose
        ``poll()`` returns ``(labels, timestamps)``; each label becomes an event.
    **recorder_kwargs
        Passed to :class:`Recorder` (subject, task, config...).

    Returns
    -------
    session_dir : Path
    """
    from tqdm import tqdm

    source.start()
    rec = None
    started = []
    try:
        for inlet in markers:
            inlet.start()
            started.append(inlet)
        rec = Recorder(session_dir, source.info, **recorder_kwargs)
        rec.log_event("recording_started", source=source.info.name,
                      source_id=source.info.source_id)
        # Counted in whole tenths of a second (shown as seconds by unit_scale): float steps
        # would add up past the total and make tqdm warn at the end of every recording.
        with tqdm(total=int(round(duration * 10)), unit="s", unit_scale=0.1,
                  disable=not progress, desc="recording",
                  bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s") as bar:
            try:
                with _ctrl_c_as_request() as stop:
                    _record_loop(source, rec, duration, interval, bar, markers, stop)
            except KeyboardInterrupt:  # Ctrl+C ends the run early; what was recorded is kept
                logger.warning("recording interrupted after %.1f s", rec.duration)
                rec.log_event("recording_interrupted")
        rec.log_event("recording_stopped", n_samples=rec.n_samples, n_events=rec.n_events,
                      n_gaps=rec.n_gaps, n_missing=rec.n_missing)
        if rec.n_gaps:
            logger.warning("%d sample(s) in %d gap(s) never arrived; the BIDS copy keeps them "
                           "as NaN marked %s", rec.n_missing, rec.n_gaps, GAP_ANNOTATION)
    finally:
        source.stop()
        for inlet in started:
            inlet.stop()
        if rec is not None:
            rec.close()
    return Path(session_dir)


@contextmanager
def _ctrl_c_as_request() -> Iterator[threading.Event]:
    """Turn Ctrl+C and SIGTERM into a request that the loop reads between polls.

    A KeyboardInterrupt raised at an arbitrary point could land between a lock's acquire and
    its ``with`` block (leaving the recorder's lock held, so closing it would hang) or in the
    middle of a write; the loop instead stops at its next safe point. SIGTERM (a session
    manager, ``kill``, a desktop logging out) ends the run the same way, so the BIDS copy is
    still written. Only the main thread can own signal handlers; elsewhere both are left as
    they are.
    """
    stop, previous = threading.Event(), {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _record_loop(source: Source, rec: Recorder, duration: float, interval: float, bar,
                 markers: Sequence, stop: threading.Event | None = None) -> None:
    t0 = local_clock()
    shown = 0
    watch = SourceWatch(source, gaps=False)  # the recorder logs the gaps it writes
    while True:
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt
        data, ts = source.poll()
        for kind, fields in watch.poll(local_clock()):
            rec.log_event(kind, **fields)
        if data.shape[1]:
            rec.push(data, ts)
        for onset, dur, desc in _poll_source_events(source):
            rec.add_event(onset, dur, desc)
        for inlet in markers:
            labels, stamps = inlet.poll()
            for label, stamp in zip(labels, stamps, strict=True):
                rec.add_event(stamp, 0.0, label)
        elapsed = local_clock() - t0
        tenths = int(min(elapsed, duration) * 10)
        bar.update(tenths - shown)
        shown = tenths
        # At the end, samples already waiting in the source (a backlog, a late burst) are
        # still written: stop once a poll brings nothing stamped before the end.
        behind = data.shape[1] > 0 and ts[-1] < t0 + duration
        if (elapsed >= duration and not behind) or getattr(source, "finished", False):
            return
        time.sleep(interval)
