"""Muscle/eye switch on the simulated participant's EMG and EOG channels."""

from __future__ import annotations

import numpy as np
import pytest

from bci.ringbuffer import RingBuffer
from bci.simulated import ParticipantConfig, SimulatedParticipant
from bci.stream import StreamInfo
from control.switch import (
    DoubleBlinkDetector,
    JawClenchDetector,
    MuscleSwitch,
    SwitchConfig,
    SwitchError,
)

SFREQ = 250.0


def participant(seed=0, **kw):
    cfg = ParticipantConfig(sfreq=SFREQ, montage=("Fp1", "Fp2", "C3", "Cz", "C4", "T7", "T8"),
                            extra_channels=("eog", "emg"), **kw)
    return SimulatedParticipant(cfg, seed=seed)


def run_gestures(part, switch, gestures, gap_s=3.0, lead_s=3.0, chunk=13):
    """Generate lead_s of rest, then each gesture followed by gap_s; feed in odd-size chunks."""
    data = [part.generate(int(lead_s * SFREQ))]
    onsets = []
    for g in gestures:
        onsets.append(part.n_generated / SFREQ)
        part.trigger_event(g)
        data.append(part.generate(int(gap_s * SFREQ)))
    x = np.concatenate(data, axis=1)
    ts = np.arange(x.shape[1]) / SFREQ
    events = []
    for a in range(0, x.shape[1], chunk):
        events += switch.process(x[:, a:a + chunk], ts[a:a + chunk])
    return events, onsets, x


def test_jaw_clench_and_double_blink_detected():
    part = participant(seed=1, blink_rate=0.0, muscle_rate=0.0)
    switch = MuscleSwitch(part.info)
    gestures = ["jaw_clench", "double_blink"] * 4
    events, onsets, _ = run_gestures(part, switch, gestures)
    assert [e.gesture for e in events] == gestures
    assert [e.command for e in events] == ["stop", "select"] * 4
    delays = np.array([e.timestamp for e in events]) - np.array(onsets)
    # Detected soon after the gesture starts (the second blink comes 0.35 s after the first).
    assert np.all(delays > 0) and np.all(delays < 0.8)


def test_rest_with_spontaneous_artifacts_gives_no_jaw_clench():
    # Single blinks (20/min) and ordinary muscle bursts (4/min) must not trigger the switch.
    part = participant(seed=2, blink_rate=20.0, muscle_rate=4.0)
    switch = MuscleSwitch(part.info)
    events, _, _ = run_gestures(part, switch, [], lead_s=90.0)
    assert not [e for e in events if e.gesture == "jaw_clench"]
    # Two spontaneous blinks within 0.6 s are rare, not impossible (Poisson onsets).
    assert len([e for e in events if e.gesture == "double_blink"]) <= 3
    single = DoubleBlinkDetector(SFREQ)
    x = part.generate(int(20 * SFREQ))
    single.process(x[part.info.ch_names.index("EOG")], np.arange(x.shape[1]) / SFREQ)
    assert single.n_blinks >= 2  # blinks were seen, just not as pairs


def test_detection_is_independent_of_chunking():
    part = participant(seed=3, blink_rate=0.0, muscle_rate=0.0)
    gestures = ["jaw_clench", "double_blink", "jaw_clench"]
    ev1, _, x = run_gestures(part, MuscleSwitch(part.info), gestures, chunk=7)
    ts = np.arange(x.shape[1]) / SFREQ
    ev2 = MuscleSwitch(part.info).process(x, ts)
    assert [(e.timestamp, e.gesture) for e in ev1] == [(e.timestamp, e.gesture) for e in ev2]


def test_switch_reads_ring_buffer_and_volts():
    part = participant(seed=4, blink_rate=0.0, muscle_rate=0.0)
    info_v = StreamInfo("sim", SFREQ, part.info.ch_names, part.info.ch_types, units="V")
    switch = MuscleSwitch(info_v, SwitchConfig(commands={"jaw_clench": "select"}))
    buf = RingBuffer(info_v.n_channels, 5000)
    assert switch.update(buf) == []
    x = part.generate(int(3 * SFREQ))
    part.trigger_event("jaw_clench")
    x = np.concatenate([x, part.generate(int(2 * SFREQ))], axis=1) * 1e-6
    events = []
    for a in range(0, x.shape[1], 50):
        buf.push(x[:, a:a + 50], np.arange(a, min(a + 50, x.shape[1])) / SFREQ)
        events += switch.update(buf)
    assert [(e.gesture, e.command) for e in events] == [("jaw_clench", "select")]
    assert events[0].timestamp == pytest.approx(3.0, abs=0.5)


def test_switch_errors():
    eeg_only = StreamInfo("eeg", SFREQ, ("C3", "C4"))
    with pytest.raises(SwitchError, match="no EMG channel"):
        MuscleSwitch(eeg_only)
    with pytest.raises(SwitchError, match="Unknown gesture"):
        SwitchConfig(commands={"wink": "select"})
    with pytest.raises(SwitchError, match="'select' or 'stop'"):
        SwitchConfig(commands={"jaw_clench": "jump"})
    with pytest.raises(SwitchError, match="200 Hz"):
        JawClenchDetector(60.0)
    # A named EMG channel without the type is found by name.
    named = StreamInfo("x", SFREQ, ("C3", "jaw"), ("eeg", "misc"))
    sw = MuscleSwitch(named, SwitchConfig(commands={"jaw_clench": "stop"}, emg_channels=("JAW",)))
    assert sw.detectors[0][0] == 1
