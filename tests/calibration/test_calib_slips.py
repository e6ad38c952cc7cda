"""Reading recordings for `yume train`: truncated EDFs refused like playback does, no MNE
RuntimeWarning on load, and cue durations of sped-up sessions in signal seconds."""

from __future__ import annotations

import shutil
import warnings

import mne
import numpy as np
import pandas as pd
import pytest

from bci.playback import FilePlayback
from bci.stream import AcquisitionError
from calibration.dataset import DatasetError, load_recording
from gui.cli import main


def test_truncated_edf_is_refused_with_playbacks_sentence(physionet_dir, tmp_path, capsys):
    edf = tmp_path / "S001R04.edf"
    shutil.copy(physionet_dir / "S001R04.edf", edf)
    shutil.copy(physionet_dir / "S001R04_events.csv", tmp_path / "S001R04_events.csv")
    whole = load_recording(edf)  # the intact copy loads
    assert whole.raw.n_times > 0
    with open(edf, "r+b") as f:  # cut it as an interrupted copy would
        f.truncate(edf.stat().st_size // 2)
    with pytest.raises(AcquisitionError) as played:
        FilePlayback(edf)
    with pytest.raises(DatasetError) as loaded:
        load_recording(edf)
    assert str(loaded.value) == str(played.value)
    assert "is truncated" in str(loaded.value) and "copy it again" in str(loaded.value)
    assert main(["train", str(edf), "--classes", "left_hand,right_hand",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "truncated" in err and not (tmp_path / "out").exists()


def _fif_with_events(tmp_path, events: pd.DataFrame):
    info = mne.create_info(["C3", "Cz", "C4"], 100.0, "eeg")
    raw = mne.io.RawArray(np.random.default_rng(0).standard_normal((3, 3000)) * 1e-5, info,
                          verbose="error")
    raw.set_meas_date(1.7e9)  # absolute times: float rounding at the end is real
    path = tmp_path / "run_raw.fif"
    raw.save(path, verbose="error")
    events.to_csv(tmp_path / "run_raw_events.csv", index=False)
    return path


def test_events_past_the_end_load_without_a_runtime_warning(tmp_path):
    # The last cue is still on when the recording stops, another one ends a rounding error
    # after the last sample; MNE used to cut them and warn on every load.
    events = pd.DataFrame({"onset_s": [5.0, 15.0, 25.0, 29.5],
                           "duration_s": [4.0, 4.0, 10.0, 0.5 + 1e-9],
                           "label": ["left_hand", "right_hand", "left_hand", "right_hand"]})
    path = _fif_with_events(tmp_path, events)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        rec = load_recording(path)
    last = rec.raw.times[-1]
    assert list(rec.events["onset"]) == [5.0, 15.0, 25.0, 29.5]
    assert rec.events["duration"].tolist()[:2] == [4.0, 4.0]
    assert rec.events["duration"].iloc[2] == pytest.approx(last - 25.0)  # cut at the end
    ann = rec.raw.annotations
    assert len(ann) == 4 and (ann.onset - rec.raw.first_time + ann.duration <= last + 1e-6).all()


def test_sped_up_calibration_records_cue_durations_in_signal_seconds(tmp_path):
    from bci.simulated import ParticipantConfig, SimulatedParticipant
    from calibration.paradigm import MIParadigm, Timing
    from calibration.session import CalibrationSession, run_headless

    timing = Timing(fixation_s=0.5, cue_s=0.5, trial_s=2.0, iti_min_s=0.5, iti_max_s=0.5)
    paradigm = MIParadigm(classes=("left_hand", "right_hand"), trials_per_class=5,
                          timing=timing, seed=1)
    participant = SimulatedParticipant(ParticipantConfig(speed=20.0), seed=2)
    session = CalibrationSession(paradigm, participant, tmp_path / "s", markers=False)
    assert not run_headless(session, progress=False).aborted
    (vhdr,) = (tmp_path / "s" / "bids").rglob("*_eeg.vhdr")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for path in (vhdr, tmp_path / "s"):
            rec = load_recording(path)
            trials = rec.events[rec.events["description"].isin(["left_hand", "right_hand"])]
            assert len(trials) == 10
            # 2 s of imagery in the signal, not 2 s x 20 of it (the LSL clock ran 20x slower).
            np.testing.assert_allclose(trials["duration"], 2.0, atol=0.1)
