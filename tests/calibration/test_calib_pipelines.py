"""Pipelines as scikit-learn estimators, CCA for SSVEP, metrics and the Wolpaw ITR."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score

from calibration.metrics import score_predictions, wolpaw_bits, wolpaw_itr
from calibration.paradigm import SSVEPParadigm, SSVEPTarget, Timing
from calibration.pipelines import make_pipeline
from calibration.report import write_report
from calibration.session import run_offline
from calibration.training import TrainingConfig, train_decoder
from control.estimators import CCAClassifier, FilterBankCCA, parse_frequency


def test_wolpaw_itr_matches_the_reference_figures():
    # bci-anchors.md: 2 classes at 80 % every 4 s: 4.2 bits/min; 9 at 90 % every 2 s: 72;
    # 40 targets at 90 % every 1 s: 260.
    assert wolpaw_itr(2, 0.8, 4.0) == pytest.approx(4.2, abs=0.05)
    assert wolpaw_itr(9, 0.9, 2.0) == pytest.approx(72, abs=1)
    assert wolpaw_itr(40, 0.9, 1.0) == pytest.approx(260, abs=3)
    assert wolpaw_bits(4, 0.25) == 0.0 and wolpaw_bits(4, 1.0) == 2.0


def test_scores():
    s = score_predictions(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b"], 2.0)
    assert s["accuracy"] == 0.75 and s["balanced_accuracy"] == 0.75
    assert s["confusion"] == [[1, 1], [0, 2]] and s["kappa"] == pytest.approx(0.5)


def _ssvep_windows(freqs=(8.0, 10.0, 12.0, 15.0), n=12, sfreq=250.0, snr=0.5, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(2 * sfreq)) / sfreq
    X, y = [], []
    for k in range(n):
        f = freqs[k % len(freqs)]
        sig = np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) + 0.5 * np.sin(4 * np.pi * f * t)
        mix = rng.uniform(0.2, 1.0, (8, 1))
        X.append(snr * mix * sig + rng.standard_normal((8, t.size)))
        y.append(f"ssvep:{f:g}")
    return np.array(X), np.array(y)


@pytest.mark.parametrize("cls", [CCAClassifier, FilterBankCCA])
def test_cca_is_a_proper_estimator(cls):
    X, y = _ssvep_windows(n=24)
    est = cls(sfreq=250.0)
    assert clone(est).get_params() == est.get_params()
    scores = cross_val_score(est, X, y, cv=3)
    assert scores.mean() >= 0.9
    est.fit(X, y)
    proba = est.predict_proba(X[:5])
    assert proba.shape == (5, 4) and np.allclose(proba.sum(axis=1), 1.0)
    assert list(est.classes_[proba.argmax(axis=1)]) == list(est.predict(X[:5]))
    assert est.temperature_ > 1.0  # calibrated sharper than raw correlations


def test_cca_frequencies_from_labels_or_mapping():
    assert parse_frequency("ssvep:12.5") == 12.5 and parse_frequency("8Hz") == 8.0
    with pytest.raises(ValueError, match="names no frequency"):
        CCAClassifier(250.0).fit(np.zeros((4, 2, 100)), np.array(["up", "down"] * 2))
    X, y = _ssvep_windows(freqs=(8.0, 12.0), n=8)
    names = np.where(y == "ssvep:8", "up", "down")
    est = CCAClassifier(250.0, freqs={"up": 8.0, "down": 12.0}).fit(X, names)
    assert (est.predict(X) == names).mean() >= 0.9


def test_unknown_pipeline():
    with pytest.raises(ValueError, match="Unknown pipeline 'svm'"):
        make_pipeline("svm", 250.0)


@pytest.mark.slow
def test_ssvep_session_trains_cca(tmp_path):
    p = SSVEPParadigm(targets=(SSVEPTarget(8.0), SSVEPTarget(11.0), SSVEPTarget(14.0)),
                      trials_per_class=6, timing=Timing(1.0, 1.0, 3.0, 1.0, 1.0, 0.0))
    run_offline(p, tmp_path / "s", seed=4)
    res = train_decoder([tmp_path / "s"], TrainingConfig(paradigm="ssvep", tmin=0.5, tmax=2.5),
                        progress=False)
    assert {r.name for r in res.results} == {"cca", "fbcca"}
    assert max(r.cv["accuracy"] for r in res.results) >= 0.9
    assert res.bundle.classes == ("ssvep:11", "ssvep:14", "ssvep:8")
    html = write_report(res, tmp_path / "report").read_text()
    assert "SSVEP spectra" in html and html.count("data:image/png;base64,") >= 3


def test_fast_filter_and_covariances_match_the_reference_implementations():
    from pyriemann.estimation import Covariances
    from scipy.signal import sosfiltfilt

    from control.estimators import BandPass, OASCovariances

    X = np.random.default_rng(0).standard_normal((4, 16, 250))
    bp = BandPass(250.0, 8.0, 30.0).fit()
    assert np.allclose(bp.transform(X), sosfiltfilt(bp.sos_, X, axis=-1))
    assert np.allclose(OASCovariances().fit_transform(X), Covariances("oas").fit_transform(X))


def test_sequential_union_matches_feature_union():
    from sklearn.pipeline import FeatureUnion

    from control.estimators import SequentialUnion

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 8, 250)) * 10
    y = np.repeat([0, 1], 20)
    pipe = make_pipeline("fbcsp_lda", 250.0).fit(X, y)
    bank = pipe.named_steps["bank"]
    assert isinstance(bank, SequentialUnion)
    reference = FeatureUnion(bank.transformer_list)
    np.testing.assert_allclose(bank.transform(X[:5]), reference.transform(X[:5]))
