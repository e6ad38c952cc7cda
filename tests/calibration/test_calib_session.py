"""A session on a real BrainFlow (synthetic) board, with cues read back from the LSL marker
stream by a real inlet."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pylsl

from bci.brainflow_source import BoardSpec, BrainFlowSource
from bci.recording import read_session
from calibration.paradigm import MIParadigm, Timing
from calibration.session import CalibrationSession, run_headless


def test_brainflow_session_publishes_lsl_markers(tmp_path):
    timing = Timing(fixation_s=0.3, cue_s=0.3, trial_s=0.6, iti_min_s=0.3, iti_max_s=0.3,
                    break_s=0.0)
    paradigm = MIParadigm(classes=("left_hand", "right_hand"), trials_per_class=2, timing=timing)
    source = BrainFlowSource(BoardSpec("synthetic"))
    name = f"calib-markers-{uuid.uuid4().hex[:8]}"
    session = CalibrationSession(paradigm, source, tmp_path / "bf", marker_name=name)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (run_headless(session, progress=False), done.set()))
    thread.start()
    streams = pylsl.resolve_byprop("name", name, timeout=5.0)
    assert streams, "marker stream not found"
    assert streams[0].type() == "Markers" and streams[0].nominal_srate() == 0
    inlet = pylsl.StreamInlet(streams[0])
    inlet.open_stream(timeout=5.0)
    received = []
    while not done.is_set() or inlet.samples_available():
        sample, ts = inlet.pull_sample(timeout=0.1)
        if sample is not None:
            received.append((sample[0], ts + inlet.time_correction()))
    thread.join()
    assert session.result.n_samples > 0 and not session.result.aborted
    cues = [(label, t) for t, _, label in session.result.events
            if label in ("left_hand", "right_hand")]
    got = [(label, t) for label, t in received if label in ("left_hand", "right_hand")]
    # Every cue pushed after the inlet connected arrives, with the stamped LSL time.
    tail = cues[len(cues) - len(got):]
    assert len(got) >= 2
    assert [c[0] for c in got] == [c[0] for c in tail]
    assert np.allclose([c[1] for c in got], [c[1] for c in tail], atol=1e-3)
    raw, events = read_session(tmp_path / "bf")
    assert list(events["description"]).count("left_hand") == 2
    assert raw.info["sfreq"] == source.info.sfreq


def test_headless_pause_resume_and_abort(tmp_path):
    import time

    from bci.simulated import ParticipantConfig, SimulatedParticipant

    timing = Timing(fixation_s=0.5, cue_s=0.5, trial_s=1.0, iti_min_s=0.5, iti_max_s=0.5,
                    break_s=0.0)
    paradigm = MIParadigm(classes=("left_hand", "right_hand"), trials_per_class=3, timing=timing)
    pause, stop = threading.Event(), threading.Event()

    def run(folder, stop_event):
        source = SimulatedParticipant(ParticipantConfig(speed=10.0), seed=3)
        session = CalibrationSession(paradigm, source, folder, markers=False)
        return run_headless(session, pause_event=pause, stop_event=stop_event, progress=False)

    pause.set()
    timer = threading.Timer(0.4, pause.clear)
    timer.start()
    t0 = time.monotonic()
    result = run(tmp_path / "p", None)
    assert time.monotonic() - t0 >= 0.4 and not result.aborted
    _, events = read_session(tmp_path / "p")
    labels = list(events["description"])
    assert labels[:2] == ["pause", "resume"] and labels.count("left_hand") == 3

    threading.Timer(0.3, stop.set).start()
    result = run(tmp_path / "a", stop)
    assert result.aborted
    raw, events = read_session(tmp_path / "a")
    assert raw.n_times > 0 and "abort" in list(events["description"])
