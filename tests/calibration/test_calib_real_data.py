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
    edf = tmp_path / "one_class.fif"
    rec.raw.copy().crop(0, 60).save(edf)
    pd.DataFrame({"onset_s": [5.0, 15.0, 25.0], "duration_s": 4.0,
                  "label": "left_hand"}).to_csv(tmp_path / "one_class_events.csv", index=False)
    with pytest.raises(DatasetError, match="Only one class"):
        epoch_recordings([load_recording(edf)])
