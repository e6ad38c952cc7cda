"""The real-data path on PhysioNet EEGMMIDB S001 (EDF + _events.csv), and bad training input."""

from __future__ import annotations

import hashlib

import mne
import numpy as np
import pandas as pd
import pytest

from calibration.dataset import DatasetError, epoch_recordings, load_recording
from calibration.training import TrainingConfig, train_decoder
from gui.cli import main


def test_physionet_files_are_intact_and_load(physionet_dir):
    for line in (physionet_dir / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((physionet_dir / name.lstrip("*")).read_bytes()).hexdigest() == digest
    rec = load_recording(physionet_dir / "S001R04.edf")
    assert rec.raw.info["sfreq"] == 160.0 and len(rec.raw.ch_names) == 64
    assert {"C3", "Cz", "C4", "FCz"} <= set(rec.raw.ch_names)  # "C3.." -> "C3", "Fcz." -> "FCz"
    assert rec.raw.get_montage() is not None
    # R04 is imagined left/right fist: T1/T2 become the project's class names.
    assert rec.events["description"].value_counts().to_dict() == {
        "rest": 15, "left_hand": 8, "right_hand": 7}
    ep = epoch_recordings([rec], classes=["left_hand", "right_hand"])
    assert ep.X.shape == (15, 64, 320) and ep.units == "uV"
    assert 1.0 < np.median(np.std(ep.X, axis=-1)) < 200.0  # microvolts, not volts


@pytest.mark.slow
@pytest.mark.parametrize("runs, classes, floor", [
    (("S001R04.edf", "S001R08.edf"), ["left_hand", "right_hand"], 0.6),
    (("S001R06.edf",), ["hands", "feet"], 0.75),
])
def test_physionet_imagery_cross_validated(physionet_dir, runs, classes, floor):
    result = train_decoder([physionet_dir / r for r in runs], TrainingConfig(classes=classes),
                           progress=False)
    assert {r.name for r in result.results} == {"csp_lda", "fbcsp_lda", "ts_lr", "mdm"}
    best = max(r.cv["accuracy"] for r in result.results)
    assert best > floor
    csp = next(r for r in result.results if r.name == "csp_lda")
    assert best >= csp.cv["accuracy"]  # the chosen one is at least plain CSP+LDA
    assert result.bundle.ch_names[0] == "FC5" and result.bundle.sfreq == 160.0


def test_yume_train_prints_scores(physionet_dir, tmp_path, capsys):
    code = main(["train", str(physionet_dir / "S001R06.edf"), "--classes", "hands,feet",
                 "--pipelines", "csp_lda,mdm", "--out", str(tmp_path / "dec")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "cv acc" in out and "chrono acc" in out and "best: " in out and "kappa" in out
    assert "confusion matrix" in out and "bits/min" in out
    assert (tmp_path / "dec" / "decoder" / "meta.json").is_file()
    html = (tmp_path / "dec" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and "<script" not in html
    assert (tmp_path / "dec" / "report.json").is_file()


def test_recording_without_events(tmp_path):
    info = mne.create_info(["C3", "Cz", "C4"], 100.0, "eeg")
    raw = mne.io.RawArray(np.random.default_rng(0).standard_normal((3, 3000)) * 1e-5, info)
    path = tmp_path / "plain_raw.fif"
    raw.save(path)
    with pytest.raises(DatasetError, match="has no events"):
        train_decoder([path], progress=False)
    assert main(["train", str(path), "--out", str(tmp_path / "o")]) == 2


def test_too_few_trials_and_unknown_classes(tmp_path, physionet_dir):
    rec = load_recording(physionet_dir / "S001R04.edf")
    with pytest.raises(DatasetError, match="Too few trials for class.*right_hand \\(7\\)"):
        epoch_recordings([rec], classes=["left_hand", "right_hand"], min_trials=10)
    with pytest.raises(DatasetError, match="No trial of class.*feet.*left_hand"):
        epoch_recordings([rec], classes=["left_hand", "feet"])
    # An events table beside an EDF is picked up; a table with one class is refused.
    edf = tmp_path / "one_class_raw.fif"
    rec.raw.copy().crop(0, 60).save(edf)
    pd.DataFrame({"onset_s": [5.0, 15.0, 25.0], "duration_s": 4.0,
                  "label": "left_hand"}).to_csv(tmp_path / "one_class_raw_events.csv", index=False)
    with pytest.raises(DatasetError, match="Only one class"):
        epoch_recordings([load_recording(edf)])


def test_channel_selection_and_resampling(physionet_dir):
    rec = load_recording(physionet_dir / "S001R06.edf")
    ep = epoch_recordings([rec], classes=["hands", "feet"], picks=["C3", "Cz", "C4"],
                          resample=80.0, tmin=0.0, tmax=1.0)
    assert ep.X.shape == (15, 3, 80) and ep.ch_names == ("C3", "Cz", "C4") and ep.sfreq == 80.0
    with pytest.raises(DatasetError, match="lacks channel.*Xyz"):
        epoch_recordings([rec], picks=["C3", "Xyz"])


def test_bids_file_from_a_session_loads_with_its_events(tmp_path):
    from bci.simulated import ParticipantConfig
    from calibration.paradigm import MIParadigm, Timing
    from calibration.session import run_offline

    timing = Timing(fixation_s=0.5, cue_s=0.5, trial_s=1.0, iti_min_s=0.5, iti_max_s=0.5)
    run_offline(MIParadigm(classes=("left_hand", "feet"), trials_per_class=5, timing=timing),
                tmp_path / "s", ParticipantConfig(montage="standard_32"), seed=1)
    (vhdr,) = (tmp_path / "s" / "bids").rglob("*_eeg.vhdr")
    rec = load_recording(vhdr)  # plain BIDS file: events from its _events.tsv
    ep = epoch_recordings([rec], classes=["left_hand", "feet"], tmin=0.0, tmax=1.0)
    assert ep.counts() == {"feet": 5, "left_hand": 5} and len(ep.ch_names) == 32
    same = epoch_recordings([load_recording(tmp_path / "s")], classes=["left_hand", "feet"],
                            tmin=0.0, tmax=1.0)
    assert np.allclose(same.X, ep.X, atol=1e-3)


def test_training_crops_are_the_same_trials_shifted(physionet_dir):
    from calibration.training import make_crops

    rec = load_recording(physionet_dir / "S001R06.edf")
    config = TrainingConfig(classes=["hands", "feet"], crop_offsets=(0.5, 1.5, 3.0))
    ep = epoch_recordings([rec], classes=config.classes)
    crops = make_crops([rec], ep, config)
    assert crops.offsets == [0.5, 1.5]  # 2.5 + 3.0 s outlasts the 4.1 s cues
    assert all(v.all() for v in crops.valid)
    assert np.allclose(crops.X[0][:, :, :-80], ep.X[:, :, 80:])  # +0.5 s = 80 samples
    idx = np.array([0, 3])
    X, y = crops.training_set(ep, idx)  # only the crops of the given trials
    assert X.shape[0] == 6 and list(y) == [ep.y[0], ep.y[3]] * 3
