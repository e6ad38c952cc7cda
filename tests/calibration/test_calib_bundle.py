"""Decoder bundles: round trip, tamper and untrusted-type refusal, stream matching."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

from bci.stream import StreamInfo
from calibration.pipelines import make_pipeline
from control.actions import parse_action
from control.bundle import BundleError, DecoderBundle, load_bundle, save_bundle

CH = ("C3", "Cz", "C4", "FC3", "FC4", "CP3", "CP4", "Pz")
SFREQ = 100.0
RAN = Path(__file__).with_name("_evil_ran.txt")


class Evil(TransformerMixin, BaseEstimator):
    """A type that must never be rebuilt from a bundle: it writes a file when it is."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X

    def __setstate__(self, state):
        RAN.write_text("code from the bundle ran")
        self.__dict__.update(state)


def _data(seed=0, n=40):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, len(CH), 200))
    y = np.array(["left_hand", "right_hand"] * (n // 2))
    X[y == "left_hand", 2] *= 3.0  # C4 power differs between classes
    return X, y


def _bundle(name="csp_lda") -> DecoderBundle:
    X, y = _data()
    pipe = make_pipeline(name, SFREQ, (8.0, 30.0), n_components=4).fit(X, y)
    return DecoderBundle(pipeline=pipe, ch_names=CH, sfreq=SFREQ, classes=tuple(pipe.classes_),
                         window_s=2.0, step_s=0.5, name=name)


@pytest.mark.parametrize("suffix", ["", ".zip"])
@pytest.mark.parametrize("name", ["csp_lda", "fbcsp_lda", "ts_lr", "mdm"])
def test_round_trip_predicts_the_same(tmp_path, name, suffix):
    bundle = _bundle(name)
    path = save_bundle(bundle, tmp_path / f"b{suffix}")
    loaded = load_bundle(path)
    X, _ = _data(seed=1, n=6)
    assert np.allclose(loaded.predict_proba(X), bundle.predict_proba(X))
    assert loaded.ch_names == CH and loaded.sfreq == SFREQ and loaded.window_s == 2.0
    assert loaded.actions == {"left_hand": "←", "right_hand": "→"}
    assert parse_action(loaded.actions["left_hand"]) == loaded.action("left_hand")
    assert "scikit-learn" in loaded.versions


def test_meta_is_plain_json(tmp_path):
    save_bundle(_bundle(), tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "meta.json").read_text())
    assert meta["classes"] == ["left_hand", "right_hand"] and meta["units"] == "uV"
    assert meta["band"] == [8.0, 30.0] and meta["step_s"] == 0.5


def test_modified_pipeline_file_is_refused(tmp_path):
    path = save_bundle(_bundle(), tmp_path / "b")
    blob = bytearray((path / "pipeline.skops").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (path / "pipeline.skops").write_bytes(bytes(blob))
    with pytest.raises(BundleError, match="modified after training"):
        load_bundle(path)


def _write_with_checksum(path: Path, obj) -> None:
    blob = sio.dumps(obj)
    meta = json.loads((path / "meta.json").read_text())
    meta["pipeline_sha256"] = hashlib.sha256(blob).hexdigest()
    (path / "pipeline.skops").write_bytes(blob)
    (path / "meta.json").write_text(json.dumps(meta))


def test_untrusted_type_is_refused_and_never_instantiated(tmp_path):
    path = save_bundle(_bundle(), tmp_path / "b")
    X, y = _data()
    evil = Pipeline([("evil", Evil()), ("clf", make_pipeline("mdm", SFREQ))]).fit(X, y)
    _write_with_checksum(path, evil)  # a forger who also fixed the checksum
    RAN.unlink(missing_ok=True)
    with pytest.raises(BundleError, match="not on the trusted list.*Evil"):
        load_bundle(path)
    assert not RAN.exists()


def test_function_reference_is_refused(tmp_path):
    from sklearn.preprocessing import FunctionTransformer

    path = save_bundle(_bundle(), tmp_path / "b")
    _write_with_checksum(path, FunctionTransformer(func=eval))
    with pytest.raises(BundleError, match="trusted list"):
        load_bundle(path)


def test_saving_an_untrusted_pipeline_is_refused(tmp_path):
    X, y = _data()
    pipe = Pipeline([("evil", Evil()), ("clf", make_pipeline("mdm", SFREQ))]).fit(X, y)
    with pytest.raises(BundleError, match="may not hold"):
        save_bundle(DecoderBundle(pipe, CH, SFREQ, tuple(pipe.classes_)), tmp_path / "b")


def test_garbage_and_missing_files(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(BundleError, match="not a readable decoder bundle"):
        load_bundle(junk)
    with pytest.raises(BundleError, match="No decoder bundle"):
        load_bundle(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="meta.json"):
        load_bundle(tmp_path / "empty")
    z = tmp_path / "other.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("meta.json", json.dumps({"format": "something-else"}))
        zf.writestr("pipeline.skops", b"")
    with pytest.raises(BundleError, match="not a Yume decoder bundle"):
        load_bundle(z)


def test_check_stream_reorders_and_matches_names():
    bundle = _bundle()
    stream = ("Fp1", "C4..", "cz", "C3.", "FC4", "FC3", "CP4", "CP3", "Pz", "O1")
    info = StreamInfo("amp", SFREQ, stream)
    index = bundle.check_stream(info)
    assert [stream[i] for i in index] == ["C3.", "cz", "C4..", "FC3", "FC4", "CP3", "CP4", "Pz"]
    data = np.arange(len(stream))[:, None] * np.ones((1, 250))
    x = bundle.prepare(data, info, index)
    assert x.shape == (1, len(CH), 200)
    assert list(x[0, :, 0]) == list(index)


def test_check_stream_refuses_another_montage():
    bundle = _bundle()
    info = StreamInfo("cyton", SFREQ, ("Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2"))
    with pytest.raises(BundleError, match="lacks 6 of the decoder's 8 channels.*Cz"):
        bundle.check_stream(info)


def test_check_stream_sampling_rates():
    bundle = _bundle()  # band up to 30 Hz at 100 Hz
    with pytest.raises(BundleError, match="resampling it .* unsafe"):
        bundle.check_stream(StreamInfo("slow", 64.0, CH))  # 30 Hz >= 0.4 x 64 Hz
    with pytest.raises(BundleError, match="set the amplifier to 100 Hz"):
        bundle.check_stream(StreamInfo("fast", 250.0, CH), allow_resample=False)
    info = StreamInfo("fast", 250.0, CH, units="V")
    index = bundle.check_stream(info)  # downsampling 250 -> 100 Hz keeps 8-30 Hz intact
    t = np.arange(500) / 250.0
    data = np.tile(1e-6 * np.sin(2 * np.pi * 10 * t), (len(CH), 1))
    x = bundle.prepare(data, info, index)
    assert x.shape == (1, len(CH), 200)
    assert np.isclose(np.abs(x[0, 0, 20:-20]).max(), 1.0, atol=0.05)  # V -> uV, 10 Hz kept


def test_bundle_validates_actions_and_classes():
    X, y = _data()
    pipe = make_pipeline("mdm", SFREQ).fit(X, y)
    with pytest.raises(ValueError):
        DecoderBundle(pipe, CH, SFREQ, tuple(pipe.classes_), actions={"left_hand": "jump",
                                                                       "right_hand": "→"})
    with pytest.raises(BundleError, match="differ"):
        DecoderBundle(pipe, CH, SFREQ, ("right_hand", "left_hand"))


@pytest.mark.parametrize("name", ["cca", "fbcca"])
def test_ssvep_bundle_round_trip(tmp_path, name):
    rng = np.random.default_rng(0)
    t = np.arange(200) / SFREQ
    y = np.array(["ssvep:8", "ssvep:13"] * 6)
    X = rng.standard_normal((12, len(CH), 200))
    X[:, -2:] += np.array([np.sin(2 * np.pi * float(lab[6:]) * t) for lab in y])[:, None]
    pipe = make_pipeline(name, SFREQ, (6.0, 40.0)).fit(X, y)
    bundle = DecoderBundle(pipe, CH, SFREQ, tuple(pipe.classes_), band=(6.0, 40.0),
                           paradigm="ssvep")
    loaded = load_bundle(save_bundle(bundle, tmp_path / "s.zip"))
    assert np.allclose(loaded.predict_proba(X), bundle.predict_proba(X))
    assert set(loaded.actions) == {"ssvep:8", "ssvep:13"}
