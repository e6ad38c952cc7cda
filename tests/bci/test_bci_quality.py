"""Signal quality on real EEG (PhysioNet S001R03, 64 channels, 160 Hz, US mains at 60 Hz).

Faults are injected into copies of real channels; the Potato artifact index is fitted on the
first 30 s of the same recording; impedance is read from a real BrainFlow synthetic session.
"""

from __future__ import annotations

import copy
import json
import time

import numpy as np
import pytest
from brainflow.board_shim import BoardIds, BoardShim, BrainFlowInputParams

from bci.quality import (
    ArtifactMonitor,
    SignalQuality,
    board_impedance,
    board_reports_impedance,
    read_impedance,
)
from bci.simulated import ParticipantConfig, SimulatedParticipant

FRONTAL = {"Fp1": 1.0, "Fpz": 1.0, "Fp2": 1.0,  # blink maximum, decaying backwards
           "Af7": 0.6, "Af3": 0.6, "Afz": 0.6, "Af4": 0.6, "Af8": 0.6}


@pytest.fixture(scope="module")
def real(physionet_dir):
    """(data in uV, sfreq, channel names) of S001R03."""
    mne = pytest.importorskip("mne")
    raw = mne.io.read_raw_edf(physionet_dir / "S001R03.edf", preload=True, verbose="error")
    names = [n.strip(".") for n in raw.ch_names]  # EDF pads names with dots: "Fp1."
    return raw.get_data() * 1e6, float(raw.info["sfreq"]), names


@pytest.fixture(scope="module")
def monitor(real):
    x, sf, _ = real
    return ArtifactMonitor().fit(x[:, : int(30 * sf)], sf)


def _window(real, start_s: float, dur_s: float = 4.0) -> np.ndarray:
    x, sf, _ = real
    return x[:, int(start_s * sf): int((start_s + dur_s) * sf)].copy()


# --------------------------------------------------------------------------- traffic lights
def test_real_eeg_is_mostly_good(real):
    x, sf, names = real
    sq = SignalQuality()
    statuses, reasons = [], set()
    for start in np.arange(0, x.shape[1] / sf - 4, 4.0):
        report = sq.check(_window(real, start), sf, names)
        statuses += [ch.status for ch in report.channels]
        for ch in report.channels:
            reasons.update(ch.reasons)
    good = np.mean(np.array(statuses) == "good")
    assert good > 0.95, good
    # the only thing real, well-recorded EEG trips is frontal high variance (eye blinks)
    assert reasons <= {"high variance"}


def test_injected_faults_are_flagged_and_the_rest_stays_good(real):
    _, sf, names = real
    w = _window(real, 10.0)
    base = SignalQuality().check(w, sf, names)
    assert base.worst == "good", base.summary()
    i = {n: names.index(n) for n in ("C3", "Cz", "C4", "Pz", "Oz", "O1", "P3")}
    t = np.arange(w.shape[1]) / sf
    w[i["C3"]] = w[i["C3"], 0]  # electrode off: the amplifier holds one value
    lim = np.percentile(np.abs(w[i["Cz"]]), 80)
    w[i["Cz"]] = np.clip(w[i["Cz"]], -lim, lim)  # clipped at the ADC's limits
    w[i["C4"]] += 50.0 * np.sin(2 * np.pi * 60.0 * t)  # strong US mains pickup
    w[i["Pz"]] *= np.sqrt(10.0)  # 10x the variance
    w[i["Oz"]] = np.nan  # never arrived
    w[i["O1"], 100:260] = np.nan  # a 1 s gap
    w[i["P3"], 300:340] += 1500.0  # a 250 ms excursion beyond the rail

    report = SignalQuality().check(w, sf, names)
    assert report.line_freq == 60.0  # auto-detected from the injected pickup
    expect = {"C3": ("bad", ("flat",)), "Cz": ("bad", ("railing",)),
              "C4": ("bad", ("line noise",)), "Pz": ("warn", ("high variance",)),
              "Oz": ("bad", ("no data",)), "O1": ("warn", ("gaps",))}
    for name, (status, why) in expect.items():
        ch = report[name]
        assert (ch.status, ch.reasons) == (status, why), (name, ch)
    assert report["P3"].status == "bad" and "railing" in report["P3"].reasons
    assert report["C4"].line_ratio > 0.5 > 0.1 > base["C4"].line_ratio
    assert np.isnan(report["Oz"].std_uv) and report["O1"].nan_fraction == pytest.approx(0.25)
    touched = set(expect) | {"P3"}
    assert all(ch.status == "good" for ch in report.channels if ch.name not in touched)
    assert report.names("good") == [n for n in names if n not in touched]


def test_absolute_variance_bound_and_amplifier_range(real):
    _, sf, names = real
    w = _window(real, 10.0)
    # every channel 10x larger: nothing stands out against the median, the bound still fires
    report = SignalQuality(std_bad_uv=200.0).check(w * 10, sf, names)
    assert all("high variance" in ch.reasons for ch in report.channels if ch.std_uv > 200.0)
    assert len(report.names("bad")) > 50
    # a DC-coupled channel sitting at the amplifier's rail (ADS1299 at gain 24: 187.5 mV)
    w[0] = 187_500.0 + w[0] * 1e-3
    ch = SignalQuality(amplifier_range_uv=187_500.0).check(w, sf, names).channels[0]
    assert ch.status == "bad" and "railing" in ch.reasons


def test_report_summary_and_log_record(real):
    _, sf, names = real
    w = _window(real, 10.0)
    w[names.index("T7")] = 0.0
    # a sample-and-hold fault: normal amplitude, but every value repeated 4 times
    w[names.index("T8")] = np.repeat(w[names.index("T8"), ::4], 4)[: w.shape[1]]
    report = SignalQuality(line_freq=60).check(w, sf, names)
    assert str(report) == report.summary()
    assert report.summary() == "64 ch: 62 good, 2 bad (T7 flat, T8 flat), line 60 Hz"
    assert report["T8"].std_uv > 10 * SignalQuality().flat_uv  # flat by repetition, not std
    assert report.worst == "bad" and report.status["T7"] == "bad"
    record = json.loads(json.dumps(report.to_dict()))  # JSON-able, so it can be logged
    assert record["line_freq"] == 60 and record["channels"][names.index("T7")]["std_uv"] == 0.0
    with pytest.raises(KeyError):
        report["nope"]


def test_simulated_participant_reports_its_50_hz_mains():
    p = SimulatedParticipant(seed=3)
    x = p.generate(int(4 * p.info.sfreq))
    report = SignalQuality().check(x, p.info.sfreq, p.info.ch_names)
    assert len(report) == p.info.n_channels and report.line_freq == 50.0
    # the simulator adds 4 uV of mains to ~10 uV of EEG: visible (warn), not unusable (bad)
    assert report.names("bad") == []
    assert {r for ch in report.channels for r in ch.reasons} <= {"line noise"}

    quiet = SimulatedParticipant(ParticipantConfig(line_noise_uv=0.0, blink_rate=0.0,
                                                   muscle_rate=0.0), seed=3)
    x = quiet.generate(int(4 * quiet.info.sfreq))
    assert SignalQuality().check(x, quiet.info.sfreq, quiet.info.ch_names).worst == "good"


def test_input_validation():
    with pytest.raises(ValueError, match="n_channels, n_times"):
        SignalQuality().check(np.zeros(100), 100.0)
    with pytest.raises(ValueError, match="names"):
        SignalQuality().check(np.zeros((2, 100)), 100.0, ["a"])
    report = SignalQuality().check(np.full((2, 50), np.nan), 100.0)
    assert [ch.reasons for ch in report.channels] == [("no data",)] * 2
    assert report.line_freq is None


# --------------------------------------------------------------------------- Potato
def test_potato_rarely_flags_later_real_eeg(real, monitor):
    x, sf, _ = real
    times, z = monitor.scan(x[:, int(30 * sf):])
    assert len(z) > 300 and np.isfinite(z).all()
    assert np.all(np.diff(times) == pytest.approx(monitor.step_s))
    # later windows include the subject's own blinks and motor imagery: still < 10 % flagged
    assert np.mean(z > monitor.threshold) < 0.10
    assert monitor.calibration_scores_.shape == (117,)


def test_potato_flags_injected_blinks(real, monitor):
    x, sf, names = real
    n = monitor.n_window_
    blink = np.hanning(int(0.3 * sf))
    rng = np.random.default_rng(0)
    starts = np.arange(int(32 * sf), x.shape[1] - n, int(1.5 * sf))
    clean = np.stack([x[:, s: s + n] for s in starts])
    dirty = clean.copy()
    # This subject's own blinks reach 600-1000 uV peak-to-peak at Fp1 and are in the
    # calibration, so a 200 uV bump is ordinary for them; 800 uV is an outlier.
    for k in range(len(starts)):
        off = rng.integers(0, n - blink.size)
        for ch, gain in FRONTAL.items():
            dirty[k, names.index(ch), off: off + blink.size] += 800.0 * gain * blink
    z_clean, z_dirty = monitor.score_windows(clean), monitor.score_windows(dirty)
    assert np.mean(z_dirty > monitor.threshold) > 0.9
    assert np.mean(z_clean > monitor.threshold) < 0.15
    assert np.all(z_dirty > z_clean)
    k = int(np.argmin(z_clean))
    assert monitor.score(clean[k]) == pytest.approx(z_clean[k])
    assert not monitor.is_artifact(clean[k]) and monitor.is_artifact(dirty[k])


def test_potato_gaps_and_adaptation(real, monitor):
    x, sf, _ = real
    mon = copy.deepcopy(monitor)  # the module's monitor stays as fitted
    w = x[:, int(40 * sf): int(42 * sf)].copy()  # 2 s: the latest 1 s is scored
    assert mon.score(w) == pytest.approx(mon.score(w[:, -mon.n_window_:]))
    gap = w.copy()
    gap[5, -10:] = np.nan
    assert np.isnan(mon.score(gap)) and mon.is_artifact(gap)  # unverifiable counts as bad
    before = mon.potato_.covmean_.copy()
    assert mon.partial_fit(gap) is False
    junk = w + 1000.0 * np.random.default_rng(1).standard_normal(w.shape)
    assert mon.partial_fit(junk) is False  # artifacts never teach the Potato
    assert np.array_equal(mon.potato_.covmean_, before)
    times, z = mon.scan(x[:, int(60 * sf): int(70 * sf)])
    end = int((60 + times[np.argmin(z)]) * sf)
    clean = x[:, end - mon.n_window_: end]  # the most ordinary window of those 10 s
    assert mon.partial_fit(clean) is True
    assert not np.array_equal(mon.potato_.covmean_, before)
    with pytest.raises(ValueError, match="samples"):
        mon.score(w[:, :10])
    with pytest.raises(RuntimeError, match="not fitted"):
        ArtifactMonitor().score(w)
    with pytest.raises(ValueError, match="at least 10"):
        ArtifactMonitor().fit(x[:, : int(2 * sf)], sf)


# --------------------------------------------------------------------------- impedance
def test_which_boards_report_impedance():
    assert board_reports_impedance(BoardIds.SYNTHETIC_BOARD.value)
    assert board_reports_impedance(BoardIds.GANGLION_BOARD.value)
    assert board_reports_impedance(BoardIds.BRAINBIT_BOARD.value)
    assert not board_reports_impedance(BoardIds.CYTON_BOARD.value)
    assert not board_reports_impedance(BoardIds.CYTON_DAISY_BOARD.value)
    cyton = BoardIds.CYTON_BOARD.value
    assert board_impedance(cyton, np.zeros((BoardShim.get_num_rows(cyton), 10))) is None
    # a Ganglion outside impedance mode zero-fills its resistance rows: nothing to report
    ganglion = BoardIds.GANGLION_BOARD.value
    table = np.zeros((BoardShim.get_num_rows(ganglion), 20))
    assert board_impedance(ganglion, table) is None
    table[BoardShim.get_resistance_channels(ganglion)] = 5000.0
    assert board_impedance(ganglion, table) == {"EEG1": 5.0, "EEG2": 5.0, "EEG3": 5.0,
                                                "EEG4": 5.0, "REF": 5.0}


def test_synthetic_board_impedance_from_a_real_session():
    BoardShim.disable_board_logger()
    board = BoardShim(BoardIds.SYNTHETIC_BOARD.value, BrainFlowInputParams())
    board.prepare_session()
    try:
        board.start_stream()
        time.sleep(0.4)
        imp = read_impedance(board)
        board.stop_stream()
    finally:
        board.release_session()
    # the synthetic board fills its two resistance rows with ~1000 +- 50 (ohms)
    assert imp is not None and set(imp) == {"R1", "R2"}
    assert all(0.8 < v < 1.2 for v in imp.values()), imp
