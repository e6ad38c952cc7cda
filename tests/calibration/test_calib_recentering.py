"""Unsupervised Riemannian re-centring: a shifted session comes back, identity stays identity,
bundles round-trip, online updates converge, bad input is one sentence."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pyriemann.geometry.distance import distance_riemann
from sklearn.base import clone

from bci.simulated import ParticipantConfig
from calibration.adaptation import (
    AdaptationError,
    cross_session_accuracy,
    fit_recentred_bundle,
    random_mixing,
    recenter_bundle,
    recording_windows,
    simulated_recordings,
)
from calibration.dataset import Recording, epoch_recordings
from calibration.pipelines import make_pipeline
from control.bundle import load_bundle, save_bundle
from control.recentering import Recenter, find_recenter, pipeline_covariances, update_pipeline

# A small sensorimotor montage at 125 Hz keeps every simulated session well under a second.
MONTAGE = ("FC3", "FCz", "FC4", "C5", "C3", "C1", "Cz", "C2", "C4", "C6", "CP3", "CPz", "CP4",
           "Pz")
CONFIG = ParticipantConfig(sfreq=125.0, ch_names=MONTAGE)


def trials(rec: Recording):
    """The labelled trial windows of a simulated session (rest is not a class)."""
    return epoch_recordings([rec], classes=["left_hand", "right_hand"], min_trials=1)


@pytest.fixture(scope="module")
def sessions():
    """Two consecutive sessions of one simulated person, the second also with its channels
    mixed by a fixed random SPD matrix (a cap put on differently, other gains)."""
    warnings.simplefilter("ignore", UserWarning)
    plain = simulated_recordings(seed=1, n_trials=10, n_sessions=2, config=CONFIG)
    mixed = simulated_recordings(seed=1, n_trials=10, n_sessions=2, config=CONFIG,
                                 mixing=[None, random_mixing(len(MONTAGE), 1.5, seed=3)])
    return plain[0], plain[1], mixed[1]


def test_recentering_moves_a_shifted_session_back(sessions):
    train, same, shifted = sessions
    for name in ("rc_mdm", "rc_ts_lr"):
        bundle = fit_recentred_bundle([train], name)
        ok = cross_session_accuracy(bundle, same, sources=("rest",))
        res = cross_session_accuracy(bundle, shifted, sources=("rest", "all"))
        assert res["n_trials"] == 20 and res["n_windows_rest"] == 80
        # The mixing breaks the decoder (chance, 0.5, measured); re-centring from the rest
        # periods alone (no labels) brings most of it back: 0.70-0.75 measured, against 0.80
        # on the unshifted session of this realistic participant (20 trials: 0.05 = 1 trial).
        assert res["rest"] >= res["before"] + 0.15, (name, res)
        assert res["all"] >= res["before"] + 0.15, (name, res)
        assert res["rest"] >= ok["before"] - 0.15, (name, res, ok)


def test_reference_equal_to_training_mean_changes_nothing(sessions):
    train, same, _ = sessions
    bundle = fit_recentred_bundle([train], "rc_ts_lr")
    X = trials(same).X
    before = bundle.predict_proba(X)
    # Re-centred on its own training windows: the reference is the training mean again.
    again = recenter_bundle(bundle, train, source="trials")
    _, rc = find_recenter(again.pipeline)
    np.testing.assert_allclose(rc.reference_, rc.train_reference_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(again.predict_proba(X), before, atol=1e-10)
    # Unadapted, the re-centred pipeline decodes as the plain one (affine invariance).
    ep = trials(train)
    plain = make_pipeline("ts_lr", ep.sfreq).fit(ep.X, ep.y)
    np.testing.assert_allclose(plain.predict_proba(X), before, atol=1e-4)
    # The input bundle is not touched by re-centring it elsewhere.
    recenter_bundle(bundle, same, source="rest")
    np.testing.assert_array_equal(bundle.predict_proba(X), before)


def test_recentred_bundle_survives_save_and_load(sessions, tmp_path):
    train, _, shifted = sessions
    adapted = recenter_bundle(fit_recentred_bundle([train], "rc_ts_lr"), shifted, "rest")
    loaded = load_bundle(save_bundle(adapted, tmp_path / "rc"))
    X = trials(shifted).X
    np.testing.assert_array_equal(loaded.predict_proba(X), adapted.predict_proba(X))
    assert loaded.figures["recentering"]["source"] == "rest"
    assert loaded.figures["recentering"]["n_windows"] == 80
    _, rc = find_recenter(loaded.pipeline)
    np.testing.assert_array_equal(rc.reference_, find_recenter(adapted.pipeline)[1].reference_)
    # Still adaptable after loading: an online update moves the loaded reference.
    ref = rc.reference_.copy()
    update_pipeline(loaded.pipeline, X[0])
    assert distance_riemann(ref, rc.reference_) > 0


def test_online_updates_converge_to_the_batch_reference(sessions):
    train, _, shifted = sessions
    bundle = fit_recentred_bundle([train], "rc_mdm")
    win = recording_windows(shifted, "rest", bundle.ch_names, bundle.sfreq, bundle.window_s)
    covs = pipeline_covariances(bundle.pipeline, win)
    rc = find_recenter(bundle.pipeline)[1]
    batch = clone(rc).fit(covs).reference_
    start = distance_riemann(rc.train_reference_, batch)
    # Running mean of the new session (alpha=None, from the first window on).
    running = clone(rc).set_params(alpha=None).fit(pipeline_covariances(
        bundle.pipeline, trials(train).X)).reset()
    for c in covs:
        running.partial_fit(c)
    assert distance_riemann(running.reference_, batch) < 0.05 * start
    # Exponential forgetting from the training reference: most of the way after 80 windows.
    fading = clone(rc).set_params(alpha=0.1)
    fading.reference_, fading.n_averaged_ = rc.train_reference_.copy(), 0
    fading.whitener_, fading.train_reference_ = rc.whitener_.copy(), rc.train_reference_
    fading.partial_fit(covs)
    assert distance_riemann(fading.reference_, batch) < 0.3 * start


def test_recenter_is_a_plain_sklearn_step():
    pipe = make_pipeline("rc_ts_lr", 125.0)
    assert pipe.get_params()["recenter__alpha"] == 0.05
    copy = clone(pipe).set_params(recenter__metric="logeuclid")
    assert copy.named_steps["recenter"].metric == "logeuclid"
    assert pipe.named_steps["recenter"].metric == "riemann"
    assert [n for n, _ in pipe.steps] == ["filter", "cov", "recenter", "ts", "lr"]
    rng = np.random.default_rng(0)
    A = rng.standard_normal((30, 4, 40))
    covs = A @ np.swapaxes(A, 1, 2) / 40
    for metric, tol in (("riemann", 1e-6), ("logeuclid", 0.05)):
        out = Recenter(metric=metric).fit_transform(covs)
        # Whitened by their own mean, the covariances are centred on the identity: exactly
        # with the Riemannian mean, nearly with the log-Euclidean one.
        assert distance_riemann(np.eye(4), Recenter(metric="riemann").fit(out).reference_) < tol


def test_bad_input_is_one_sentence(sessions):
    train, _, shifted = sessions
    bundle = fit_recentred_bundle([train], "rc_mdm")
    no_rest = Recording(raw=shifted.raw, path=shifted.path,
                        events=shifted.events[shifted.events["description"] != "rest"])
    with pytest.raises(AdaptationError, match=r"has no rest period.*source='all'"):
        recenter_bundle(bundle, no_rest, source="rest")
    plain = fit_recentred_bundle([train], "mdm")
    with pytest.raises(AdaptationError, match="has no re-centring step"):
        recenter_bundle(plain, shifted, source="rest")
    with pytest.raises(AdaptationError, match="Unknown re-centring source 'eyes'"):
        recenter_bundle(bundle, shifted, source="eyes")
    with pytest.raises(ValueError, match="alpha must be in"):
        Recenter(alpha=2.0).fit(np.stack([np.eye(3)] * 2))
    with pytest.raises(ValueError, match="have 3 channels but the reference has 14"):
        find_recenter(bundle.pipeline)[1].transform(np.stack([np.eye(3)] * 2))
