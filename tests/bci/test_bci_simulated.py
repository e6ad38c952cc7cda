"""The simulated participant: determinism, physiology (ERD, SSVEP, artifacts), decodability, the
real-time source interface and the live LSL stream."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
from scipy import signal

from bci.simulated import (
    EASY_PRESET,
    IntentScript,
    ParticipantConfig,
    ParticipantStream,
    SimulatedParticipant,
    parse_intent,
    simulate_run,
)
from bci.stream import AcquisitionError, SourceState

SF = 250.0


def _band_power(x: np.ndarray, lo: float, hi: float, sfreq: float = SF) -> float:
    f, p = signal.welch(x, sfreq, nperseg=int(2 * sfreq))
    return float(p[(f >= lo) & (f <= hi)].mean())


def _segment(intent: str, seconds: float = 20.0, seed: int = 0, **cfg) -> tuple[np.ndarray, list]:
    part = SimulatedParticipant(ParticipantConfig(**cfg), seed=seed)
    part.set_intent(intent)
    part.generate(int(SF))  # let the ramp finish
    return part.generate(int(seconds * SF)), list(part.info.ch_names)


def test_montage_info_and_units():
    part = SimulatedParticipant()
    info = part.info
    assert info.n_channels == 32 and info.sfreq == 250.0 and info.units == "uV"
    for ch in ("C3", "Cz", "C4", "FC3", "FC4", "CP3", "CP4", "O1", "Oz", "O2", "Fp1", "T7"):
        assert ch in info.ch_names
    assert set(info.ch_types) == {"eeg"}
    big = SimulatedParticipant(ParticipantConfig(montage="standard_64",
                                                 extra_channels=("eog", "emg")))
    assert big.info.n_channels == 66
    assert big.info.ch_names[-2:] == ("EOG", "EMG")
    assert big.info.ch_types[-2:] == ("eog", "emg")
    x = big.generate(500)
    assert x.shape == (66, 500) and np.all(np.isfinite(x))
    # EEG-like amplitudes: tens of microvolts, not volts
    assert 3.0 < np.median(x[:64].std(axis=1)) < 60.0


def test_deterministic_with_seed_and_chunking():
    a = SimulatedParticipant(seed=7).generate(3000)
    np.testing.assert_array_equal(a, SimulatedParticipant(seed=7).generate(3000))
    p = SimulatedParticipant(seed=7)
    b = np.concatenate([p.generate(1), p.generate(1234), p.generate(1765)], axis=1)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)  # BLAS rounding only
    c = SimulatedParticipant(seed=8).generate(3000)
    assert not np.allclose(a, c)
    # subjects differ in their physiology, not only in noise
    assert SimulatedParticipant(seed=7).traits != SimulatedParticipant(seed=8).traits


def test_channels_are_correlated_by_volume_conduction():
    x, names = _segment("rest", seconds=10.0, line_noise_uv=0.0, blink_rate=0.0)
    r = np.corrcoef(x)
    near = r[names.index("C3"), names.index("CP3")]
    far = r[names.index("C3"), names.index("O2")]
    assert near > 0.3 and near > far + 0.2


def test_erd_over_contralateral_motor_cortex():
    # The topography itself, on the easy preset: the realistic default moves and tilts the
    # sources per person and lets attempts fail (tests/bci/test_bci_simulated_realism.py).
    mu = (8.0, 13.0)
    easy = EASY_PRESET
    rest, names = _segment("rest", **easy)
    left, _ = _segment("left_hand", **easy)
    right, _ = _segment("right_hand", **easy)
    feet, _ = _segment("feet", **easy)
    c3, cz, c4 = (names.index(c) for c in ("C3", "Cz", "C4"))
    assert _band_power(right[c3], *mu) < 0.6 * _band_power(rest[c3], *mu)
    assert _band_power(left[c4], *mu) < 0.6 * _band_power(rest[c4], *mu)
    assert _band_power(feet[cz], *mu) < 0.75 * _band_power(rest[cz], *mu)
    # beta desynchronises too, and the ipsilateral side does not drop
    assert _band_power(right[c3], 18, 26) < _band_power(rest[c3], 18, 26)
    assert _band_power(right[c4], *mu) > 0.9 * _band_power(rest[c4], *mu)


@pytest.mark.parametrize("freq", [12.0, 15.0])
def test_ssvep_peak_at_commanded_frequency(freq):
    rest, names = _segment("rest", seconds=16.0)
    ssvep, _ = _segment(f"ssvep:{freq}", seconds=16.0)
    oz = names.index("Oz")
    f, p_s = signal.welch(ssvep[oz], SF, nperseg=int(4 * SF))
    _, p_r = signal.welch(rest[oz], SF, nperseg=int(4 * SF))
    ratio = p_s / p_r
    band = (f >= 5) & (f <= 45) & (np.abs(f - 2 * freq) > 1)  # the harmonic may win
    assert f[band][np.argmax(ratio[band])] == pytest.approx(freq, abs=0.3)
    assert ratio[np.argmin(np.abs(f - freq))] > 3
    assert ratio[np.argmin(np.abs(f - 2 * freq))] > 2  # second harmonic
    assert ratio[np.argmin(np.abs(f - (freq + 3)))] < 2


def test_intent_ramps_smoothly():
    quiet = dict(background_uv=0.0, alpha_uv=0.0, mu_uv=0.0, beta_uv=0.0, line_noise_uv=0.0,
                 blink_rate=0.0, muscle_rate=0.0, ssvep_uv=10.0, ramp_s=0.5)
    part = SimulatedParticipant(ParticipantConfig(**quiet), seed=0)
    assert part.intent == "rest"
    assert np.abs(part.generate(250)).max() == 0.0
    part.set_intent("ssvep:10")
    assert part.intent == "ssvep:10"
    oz = part.info.ch_names.index("Oz")
    x = part.generate(500)[oz]
    # 0.5 s ramp = 125 samples; one 10 Hz cycle = 25 samples
    first, mid, full = (np.abs(x[a:a + 25]).max() for a in (0, 50, 200))
    assert first < 0.3 * full
    assert 0.35 * full < mid < 0.75 * full
    assert np.abs(x[300:]).max() == pytest.approx(full, rel=0.05)


def test_unknown_intent_lists_valid_ones():
    part = SimulatedParticipant()
    with pytest.raises(ValueError, match="left_hand.*ssvep"):
        part.set_intent("jump")
    with pytest.raises(ValueError):
        part.set_intent("ssvep:abc")
    with pytest.raises(ValueError, match="Nyquist"):
        part.set_intent("ssvep:70")
    assert parse_intent("SSVEP:12.5") == ("ssvep", 12.5)
    with pytest.raises(ValueError):
        IntentScript([(1.0, "fly")])
    with pytest.raises(ValueError, match="eog"):
        ParticipantConfig(extra_channels=("ecg",))
    with pytest.raises(ValueError, match="montage"):
        ParticipantConfig(montage="standard_17")
    with pytest.raises(ValueError, match="C99"):
        ParticipantConfig(ch_names=("C3", "C99"))


def test_artifacts_blinks_frontal_and_jaw_clench_emg():
    cfg = ParticipantConfig(extra_channels=("eog", "emg"), blink_rate=0.0, muscle_rate=0.0)
    # same seed with and without the events: the difference is the artifact alone
    plain, part = SimulatedParticipant(cfg, seed=1), SimulatedParticipant(cfg, seed=1)
    names = list(part.info.ch_names)
    ref = plain.generate(750)
    part.generate(250)
    part.trigger_event("double_blink")
    blink = part.generate(250)
    part.trigger_event("jaw_clench")
    clench = part.generate(250)
    fp1, oz, eog = names.index("Fp1"), names.index("Oz"), names.index("EOG")
    d_blink = blink - ref[:, 250:500]
    assert 80 < np.ptp(d_blink[fp1]) < 300  # microvolts, like a real blink
    assert np.ptp(d_blink[oz]) < 0.1 * np.ptp(d_blink[fp1])  # frontal topography
    peaks, _ = signal.find_peaks(d_blink[eog], height=0.5 * d_blink[eog].max(), distance=40)
    assert len(peaks) == 2
    d_clench = clench - ref[:, 500:]
    emg, t7, cz = names.index("EMG"), names.index("T7"), names.index("Cz")
    hp = signal.butter(4, 30, "highpass", fs=SF, output="sos")
    base = ref[:, 500:]
    assert signal.sosfilt(hp, clench[emg]).std() > 5 * signal.sosfilt(hp, base[emg]).std()
    assert signal.sosfilt(hp, clench[t7]).std() > 3 * signal.sosfilt(hp, base[t7]).std()
    assert d_clench[t7].std() > 3 * d_clench[cz].std()  # temporal muscles
    assert [k for _, k in part.events] == ["double_blink", "jaw_clench"]
    with pytest.raises(ValueError, match="jaw_clench"):
        part.trigger_event("sneeze")


def test_simulate_run_events_and_validation():
    cues = [(6.0, 3.0, "feet"), (1.0, 3.0, "left_hand")]
    data, info, events = simulate_run(cues, total_s=10.0, seed=3)
    assert data.shape == (32, 2500)
    assert info.sfreq == 250.0
    assert events == [(1.0, 3.0, "left_hand"), (6.0, 3.0, "feet")]
    again, _, _ = simulate_run(cues, total_s=10.0, seed=3)
    np.testing.assert_array_equal(data, again)
    with pytest.raises(ValueError, match="overlaps"):
        simulate_run([(1.0, 3.0, "feet"), (2.0, 1.0, "rest")], total_s=10.0)
    with pytest.raises(ValueError, match="fit"):
        simulate_run([(9.0, 3.0, "feet")], total_s=10.0)


def _cued_run(classes, n_per, seed, snr=1.0, easy=False):
    rng = np.random.default_rng(seed)
    labels = np.repeat(classes, n_per)
    rng.shuffle(labels)
    cues, t = [], 2.0
    for label in labels:
        cues.append((t, 4.0, str(label)))
        t += 4.0 + rng.uniform(2.0, 3.0)
    config = ParticipantConfig.easy(snr=snr) if easy else ParticipantConfig(snr=snr)
    return simulate_run(cues, t + 1.0, config, seed=seed)


def _csp_lda_accuracy(classes, snr: float = 1.0, easy: bool = False) -> float:
    from mne.decoding import CSP
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from threadpoolctl import threadpool_limits

    data, info, events = _cued_run(classes, n_per=15, seed=0, snr=snr, easy=easy)
    sos = signal.butter(4, [8, 30], btype="band", fs=info.sfreq, output="sos")
    x = signal.sosfiltfilt(sos, data, axis=1)
    win = (int(0.5 * info.sfreq), int(3.0 * info.sfreq))  # 2.5 s windows
    X = np.stack([x[:, int(o * info.sfreq) + win[0]: int(o * info.sfreq) + win[1]]
                  for o, _, _ in events])
    y = np.array([label for _, _, label in events])
    clf = make_pipeline(CSP(n_components=6, reg="ledoit_wolf", log=True),
                        LinearDiscriminantAnalysis())
    with threadpool_limits(1):  # small matrices: threads only fight over the shared cores
        acc = cross_val_score(clf, X, y, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    return float(acc.mean())


@pytest.mark.parametrize("classes", [("left_hand", "right_hand", "feet"),
                                     ("rest", "left_hand", "right_hand")])
def test_easy_preset_decodes_three_classes_at_default_snr(classes):
    # the easy preset is the near-perfect participant that plumbing tests rely on
    assert _csp_lda_accuracy(classes, easy=True) >= 0.9


def test_zero_snr_removes_the_task_signal():
    assert _csp_lda_accuracy(("left_hand", "right_hand", "feet"), snr=0.0) < 0.6


def test_poll_follows_the_wall_clock_and_speed():
    from pylsl import local_clock

    rate = 250 * 4.0
    part = SimulatedParticipant(ParticipantConfig(speed=4.0), seed=0)
    with pytest.raises(AcquisitionError, match="start"):
        part.poll()
    part.start()
    assert part.state == SourceState.STREAMING
    time.sleep(0.25)
    before = local_clock()
    data, ts = part.poll()
    after = local_clock()
    t_start = ts[0]  # the first sample is due at start()
    # exactly the samples due by the wall clock x speed, however the scheduler behaved
    assert int((before - t_start) * rate) <= data.shape[1] <= int((after - t_start) * rate) + 1
    assert data.shape[1] >= 0.25 * rate - 1
    assert data.dtype == np.float32 and data.shape[0] == 32
    assert ts[-1] <= after + 1e-6
    np.testing.assert_allclose(np.diff(ts), 1.0 / rate, rtol=1e-6)
    _, ts2 = part.poll()
    assert ts2.size == 0 or ts2[0] == pytest.approx(ts[-1] + 1.0 / rate)
    part.stop()
    assert part.state == SourceState.STOPPED


def test_script_applies_intents_sample_exactly():
    quiet = dict(background_uv=0.0, alpha_uv=0.0, mu_uv=0.0, beta_uv=0.0, line_noise_uv=0.0,
                 blink_rate=0.0, muscle_rate=0.0, ramp_s=0.0, speed=20.0)
    part = SimulatedParticipant(ParticipantConfig(**quiet), seed=0)
    part.set_script(IntentScript([(0.2, "left_hand"), (0.6, "ssvep:10")]))
    part.start()
    parts, deadline = [], time.monotonic() + 3.0
    while sum(p.shape[1] for p in parts) < 250 and time.monotonic() < deadline:
        parts.append(part.poll()[0])
        time.sleep(0.005)
    part.stop()
    oz = np.concatenate(parts, axis=1)[part.info.ch_names.index("Oz")]
    assert part.intent == "ssvep:10"
    # the SSVEP starts at sample 150 = 0.6 s x 250 Hz, whatever the polling pattern
    assert np.all(oz[:151] == 0.0) and np.abs(oz[151:176]).max() > 1.0


def test_participant_stream_publishes_real_lsl():
    from bci.lsl import LSLInlet, find_streams

    name = f"sim-{uuid.uuid4().hex[:8]}"
    part = SimulatedParticipant(ParticipantConfig(extra_channels=("emg",)), seed=2)
    script = IntentScript([(0.3, "right_hand")])
    with ParticipantStream(part, name=name, script=script) as stream:
        inlet = LSLInlet(name=name, timeout=3.0)
        assert inlet.info.ch_names == part.info.ch_names
        assert inlet.info.ch_types[-1] == "emg" and inlet.info.units == "uV"
        assert inlet.info.source_id == stream.source_id and stream.source_id
        inlet.start()
        got, t_end = 0, time.monotonic() + 1.0
        while time.monotonic() < t_end:
            data, ts = inlet.poll()
            got += data.shape[1]
            time.sleep(0.01)
        inlet.stop()
        assert got > 150  # about 1 s at 250 Hz
        assert part.intent == "right_hand"
        assert inlet.gaps.n_gaps == 0
        assert not stream.stats.errors
    assert stream._thread is None and stream.outlet is None
    assert part.state == SourceState.STOPPED
    assert find_streams(name=name, timeout=0.3) == []
