"""Run a calibration session: cues on a timeline, the participant follows, everything recorded.

:class:`CalibrationSession` holds what a cue does, whoever shows it (the headless runner here or
the Qt cue screen in ``gui/cue_screen.py``):

1. poll the source so the samples before the cue are written with the old intent;
2. set the simulated participant's intent (when the source is a simulated participant);
3. stamp the onset on the LSL clock (the cue screen stamps right after its repaint);
4. publish the label on an LSL marker stream (irregular rate, strings) with that timestamp,
   insert a numeric BrainFlow marker when the source is a BrainFlow board, and write the event
   into the recording (:class:`bci.recording.Recorder`).

:func:`run_headless` drives a live source along the timeline, faster than real time when the
simulated participant runs at ``speed`` > 1. :func:`run_offline` generates the whole run at once
with :func:`bci.simulated.simulate_run` (no waiting, deterministic) and writes the same kind of
recording.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pylsl import local_clock

from bci.recording import Recorder
from bci.stream import Source
from calibration.paradigm import BOOKKEEPING, Cue, Paradigm, paradigm_to_dict, schedule

logger = logging.getLogger(__name__)


def marker_codes(paradigm: Paradigm) -> dict[str, int]:
    """Numeric codes for BrainFlow's marker channel: classes 1..N, bookkeeping 100+."""
    codes = {label: i + 1 for i, label in enumerate(paradigm.labels)}
    codes.update({label: 100 + i for i, label in enumerate(BOOKKEEPING + ("pause", "resume"))})
    return codes


@dataclass
class SessionResult:
    """What a finished (or aborted) session left behind.

    Attributes
    ----------
    session_dir : Path
        The recording (read it with :func:`bci.recording.read_session`).
    events : list of (onset_lsl, duration_s, label)
        Every cue as stamped.
    lateness_s : ndarray
        How late each cue was stamped relative to its planned time (wall clock, s).
    aborted : bool
        True if the session was stopped before its end.
    """

    session_dir: Path
    events: list[tuple[float, float, str]] = field(default_factory=list)
    lateness_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    aborted: bool = False
    n_samples: int = 0


class CalibrationSession:
    """The actions of one calibration session around a source and a recorder.

    Parameters
    ----------
    paradigm : MIParadigm or SSVEPParadigm
        What to cue.
    source : bci.stream.Source
        Where the EEG comes from (not yet started); a
        :class:`bci.simulated.SimulatedParticipant` follows the cues.
    session_dir : path-like
        New folder for the recording.
    markers : bool
        Publish cue labels on an LSL marker stream.
    marker_name : str
        Name of that stream.
    recorder_kwargs
        Passed to :class:`bci.recording.Recorder` (subject, session, run...).
    """

    def __init__(self, paradigm: Paradigm, source: Source, session_dir: str | Path, *,
                 markers: bool = True, marker_name: str = "YumeCalibrationMarkers",
                 **recorder_kwargs) -> None:
        self.paradigm = paradigm
        self.source = source
        self.session_dir = Path(session_dir)
        self.cues = schedule(paradigm)
        self.codes = marker_codes(paradigm)
        self._markers = markers
        self._marker_name = marker_name
        self._recorder_kwargs = {"task": paradigm.kind, **recorder_kwargs}
        self.recorder: Recorder | None = None
        self.outlet = None
        self.result = SessionResult(self.session_dir)
        self._lock = threading.Lock()
        self._last_onset = 0.0

    @property
    def speed(self) -> float:
        """How fast the source's signal time runs relative to the clock (simulated sources)."""
        cfg = getattr(self.source, "config", None)
        return float(getattr(cfg, "speed", 1.0) or 1.0)

    def start(self) -> None:
        """Start the source, open the recording and the marker stream."""
        self.source.start()
        try:
            config = {"paradigm": paradigm_to_dict(self.paradigm), "marker_codes": self.codes,
                      "speed": self.speed}
            self.recorder = Recorder(self.session_dir, self.source.info, config=config,
                                     **self._recorder_kwargs)
            if self._markers:
                from bci.lsl import MarkerOutlet  # irregular-rate string stream

                self.outlet = MarkerOutlet(self._marker_name)
            self.recorder.log_event("calibration_started", paradigm=self.paradigm.kind,
                                    n_cues=len(self.cues))
        except Exception:
            self.source.stop()
            raise

    def pump(self) -> int:
        """Move newly acquired samples into the recording; returns how many."""
        data, ts = self.source.poll()
        if data.shape[1] and self.recorder is not None:
            self.recorder.push(data, ts)
        return int(data.shape[1])

    def prepare(self, cue: Cue) -> None:
        """Before the cue appears: flush samples, then switch the simulated participant's intent
        (from the next generated sample on)."""
        self.pump()
        set_intent = getattr(self.source, "set_intent", None)
        if set_intent is not None:
            set_intent(cue.intent)

    def mark(self, cue: Cue, onset: float | None = None, planned: float | None = None) -> float:
        """Stamp a cue (now, or at ``onset`` on the LSL clock) as marker, BrainFlow marker and
        recorded event; returns the onset."""
        onset = local_clock() if onset is None else float(onset)
        self._last_onset = max(self._last_onset, onset)
        with self._lock:
            if self.outlet is not None:
                self.outlet.push(cue.label, onset)
            insert_marker = getattr(self.source, "insert_marker", None)
            if insert_marker is not None and cue.label in self.codes:
                insert_marker(self.codes[cue.label])
            if self.recorder is not None:
                # The recorder counts durations on the LSL clock, like onsets; a simulated
                # participant at --speed 20 lives through a 2 s cue in 0.1 s of that clock.
                self.recorder.add_event(onset, cue.duration_s / self.speed, cue.label)
            self.result.events.append((onset, cue.duration_s, cue.label))
            if planned is not None:
                self.result.lateness_s = np.append(self.result.lateness_s, onset - planned)
        return onset

    def note(self, label: str) -> None:
        """Record a pause/resume/abort note as an event and log entry."""
        onset = local_clock()
        self._last_onset = max(self._last_onset, onset)
        if self.recorder is not None:
            self.recorder.add_event(onset, 0.0, label)
            self.recorder.log_event(label)
        if self.outlet is not None:
            self.outlet.push(label, onset)

    def stop(self, aborted: bool = False) -> SessionResult:
        """Flush, stop the source, close the recording (writes the BIDS copy)."""
        try:
            if self.recorder is not None and not self.recorder.closed:
                try:
                    # Wait (briefly) for the samples that cover the last event, so it lands
                    # inside the recording rather than after its last sample.
                    deadline = time.monotonic() + 0.2
                    self.pump()
                    while (self.recorder.last_timestamp or 0.0) < self._last_onset and \
                            time.monotonic() < deadline:
                        time.sleep(0.002)
                        self.pump()
                except Exception as err:  # keep what is recorded even if the source died
                    logger.warning("last poll failed: %s", err)
                self.recorder.log_event("calibration_stopped", aborted=aborted)
        finally:
            self.source.stop()
            if self.recorder is not None:
                self.result.n_samples = self.recorder.n_samples
                self.recorder.close()
            if self.outlet is not None:
                self.outlet.close()
                self.outlet = None
        self.result.aborted = aborted
        return self.result


def run_headless(session: CalibrationSession, *, interval: float = 0.005,
                 stop_event: threading.Event | None = None,
                 pause_event: threading.Event | None = None,
                 progress: bool = True) -> SessionResult:
    """Drive a session along its timeline without a screen.

    Cue ``k`` is due at ``start + onset_s / speed`` on the LSL clock. ``stop_event`` aborts (the
    recording so far is kept and closed properly); while ``pause_event`` is set the timeline
    holds (the participant rests) and resumes where it stopped.
    """
    from tqdm import tqdm

    speed = session.speed
    session.start()
    aborted = False
    try:
        t0 = local_clock()
        paused_at = None
        with tqdm(total=len(session.cues), desc="calibrating", unit="cue",
                  disable=not progress) as bar:
            for cue in session.cues:
                due = t0 + cue.onset_s / speed
                while True:
                    if stop_event is not None and stop_event.is_set():
                        raise _Abort
                    if pause_event is not None and pause_event.is_set():
                        if paused_at is None:
                            paused_at = local_clock()
                            session.note("pause")
                            set_intent = getattr(session.source, "set_intent", None)
                            if set_intent is not None:
                                set_intent("rest")
                    elif paused_at is not None:
                        t0 += local_clock() - paused_at
                        due = t0 + cue.onset_s / speed
                        paused_at = None
                        session.note("resume")
                    session.pump()
                    left = due - local_clock()
                    if left <= 0 and paused_at is None:
                        break
                    time.sleep(min(interval, max(left, 0.0)) if paused_at is None else interval)
                session.prepare(cue)
                session.mark(cue, planned=due)
                bar.update(1)
            # Let the last samples arrive before closing.
            end = t0 + cue.onset_s / speed + 0.25 / speed
            while local_clock() < end:
                session.pump()
                time.sleep(interval)
    except (_Abort, KeyboardInterrupt):
        aborted = True
        session.note("abort")
        logger.warning("calibration aborted; the recording so far is kept in %s",
                       session.session_dir)
    except BaseException:
        session.stop(aborted=True)
        raise
    return session.stop(aborted=aborted)


class _Abort(Exception):
    pass


def run_offline(paradigm: Paradigm, session_dir: str | Path, participant_config=None,
                seed: int = 0, chunk_s: float = 1.0, **recorder_kwargs) -> SessionResult:
    """Simulate a whole session at once (no waiting) and record it like a live one.

    The simulated participant performs each cue's intent exactly during ``[onset, onset +
    trial_s)``; sample timestamps are laid on the LSL clock from now on, at the nominal rate.
    """
    from bci.simulated import simulate_run

    cues = schedule(paradigm)
    total = max(c.onset_s + c.duration_s for c in cues) + 1.0
    task = [(c.onset_s, c.duration_s, c.intent) for c in cues
            if c.kind == "cue" and c.intent != "rest"]
    data, info, _ = simulate_run(task, total, participant_config, seed=seed)
    t0 = local_clock()
    sfreq = info.sfreq
    config = {"paradigm": paradigm_to_dict(paradigm), "marker_codes": marker_codes(paradigm),
              "offline": True, "seed": seed}
    result = SessionResult(Path(session_dir))
    rec = Recorder(session_dir, info, config=config, task=paradigm.kind, **recorder_kwargs)
    try:
        step = max(int(chunk_s * sfreq), 1)
        for start in range(0, data.shape[1], step):
            chunk = data[:, start:start + step]
            rec.push(chunk, t0 + (start + np.arange(chunk.shape[1])) / sfreq)
        for c in cues:
            rec.add_event(t0 + c.onset_s, c.duration_s, c.label)
            result.events.append((t0 + c.onset_s, c.duration_s, c.label))
        result.n_samples = rec.n_samples
    finally:
        rec.close()
    return result
