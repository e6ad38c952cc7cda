"""Asynchronous SSVEP: the learned no-control state, its operating point on held-out simulated
sessions, the bundle round trip, and bad input."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from calibration.async_training import sliding_windows
from calibration.dataset import DatasetError, Recording
from calibration.pseudo_online import OperatingPoint
from calibration.ssvep_async import (
    SSVEPAsyncConfig,
    evaluate,
    fit_ssvep_bundle,
    prepare,
    simulated_ssvep_runs,
    train_ssvep_async,
    with_rest_periods,
)
from control.bundle import load_bundle, save_bundle
from control.estimators import CCAClassifier

FREQS = (14.0, 17.0, 20.0, 23.0)
# A small grid keeps the test fast; the shipped default is finer.
FAST = dict(pipelines=("cca",), thresholds=(0.8, 0.9, 0.95, 0.98, 0.99, 0.995), dwells=(0.5, 1.0),
            taus=(0.25,))


@pytest.fixture(scope="module")
def calibration() -> list[Recording]:
    return simulated_ssvep_runs(FREQS, n_per_target=3, n_runs=2, seed=2, session=1)


@pytest.fixture(scope="module")
def held_out() -> list[Recording]:
    """The same person's next session: other cue order, drifted, none of the calibration."""
    return simulated_ssvep_runs(FREQS, n_per_target=3, n_runs=1, seed=2, session=2)


@pytest.mark.slow
def test_operating_point_meets_its_target_on_held_out_simulated_data(calibration, held_out):
    result = train_ssvep_async(calibration, SSVEPAsyncConfig(target_fa_per_min=1.0, **FAST))
    assert result.meets_target and result.chosen.fa_per_min <= 1.0
    assert "rest" in result.bundle.classes and result.bundle.paradigm == "ssvep"
    point = result.bundle.figures["operating_point"]
    assert point["threshold"] == result.chosen.point.threshold
    assert point["refractory_s"] >= result.bundle.window_s  # one gaze, one pick (menu rule)
    recs, cfg = prepare(held_out, result.config)
    s = evaluate(result.bundle, recs, result.chosen.point, cfg)
    assert s.rest_s / 60 > 1.0  # enough rest for the rate to mean something
    assert s.fa_per_min <= cfg.target_fa_per_min, s.to_dict()
    # Conservative (the calibration gazes are easy, so CV ties at every hit and the rule takes
    # the point with no false activation): half the gazes of the weaker next session answered.
    assert s.hit_rate >= 0.4 and s.wrong_rate <= 0.1, s.to_dict()
    # The same decoder without its no-control state, at the policy's default point, picks
    # items all along the rest (what the armed menu does today).
    no_rest = fit_ssvep_bundle("cca", *_windows(calibration, cfg, no_control=False))
    before = evaluate(no_rest, recs, OperatingPoint(0.7, 0.5, 0.5, 2.0), cfg)
    assert before.fa_per_min > 3 * max(s.fa_per_min, 0.5), before.to_dict()


def _windows(recordings, cfg, no_control):
    from dataclasses import replace

    recs, cfg = prepare(recordings, replace(cfg, no_control=no_control))
    X, y, _, ch, sfreq = sliding_windows(recs, cfg)
    return X, y, ch, sfreq, cfg


def test_no_control_state_is_a_class_and_survives_the_bundle(calibration, tmp_path):
    recs, cfg = prepare(calibration[:1], SSVEPAsyncConfig(**FAST))
    X, y, _, ch, sfreq = sliding_windows(recs, cfg)
    bundle = fit_ssvep_bundle("fbcca", X, y, ch, sfreq, cfg)
    est = bundle.pipeline[-1]
    assert list(est.classes_) == ["rest", *sorted(f"ssvep:{f:g}" for f in FREQS)]
    p = bundle.pipeline.predict_proba(X)
    assert np.allclose(p.sum(axis=1), 1.0)
    rest = y == "rest"
    # p(control) = 1 - p(rest) is referenced to rest: about uniform over rest windows, so a
    # threshold of 0.95 passes about 5 % of them, while gazes sit near 1.
    assert 0.02 < np.mean(p[rest, 0] < 0.05) < 0.15
    assert np.median(p[~rest, 0]) < 0.01
    assert np.mean(bundle.pipeline.predict(X[~rest]) == y[~rest]) > 0.8
    bundle.figures = {"operating_point": {"threshold": 0.9}}
    again = load_bundle(save_bundle(bundle, tmp_path / "decoder"))  # skops trusts the gate
    assert np.allclose(again.pipeline.predict_proba(X[:20]), p[:20])
    assert again.figures["operating_point"]["threshold"] == 0.9


def test_recording_without_rest_gives_one_sentence(calibration):
    rec = calibration[0]
    cues = rec.events[rec.events["description"] != "rest"]
    with pytest.raises(DatasetError, match=r"no rest period") as err:
        prepare([Recording(rec.raw, cues.reset_index(drop=True), rec.path)], SSVEPAsyncConfig())
    msg = str(err.value)
    assert msg.endswith(".") and "\n" not in msg and not re.search(r"\.\s+[A-Z]", msg), msg
    short = rec.events.assign(duration=np.where(rec.events["description"] == "rest", 1.0,
                                                rec.events["duration"]))
    with pytest.raises(DatasetError, match=r"longest rest period lasts 1\.00 s"):
        prepare([Recording(rec.raw, short, rec.path)], SSVEPAsyncConfig())
    X = np.random.default_rng(0).standard_normal((6, 3, 250))
    with pytest.raises(ValueError, match="No window labelled 'rest'"):
        CCAClassifier(250.0, rest_label="rest").fit(X, np.array(["ssvep:8", "ssvep:12"] * 3))


def test_calibration_session_bookkeeping_becomes_rest(calibration):
    """`yume calibrate` writes fixation / cue / iti events, not rest: consecutive fixation and
    iti events (and breaks) become one rest period each."""
    rec = calibration[0]
    events = pd.DataFrame([(0.0, 0.0, "run_start"), (0.0, 1.0, "fixation"),
                           (1.0, 4.0, "ssvep:14"), (5.0, 2.0, "iti"), (7.0, 1.0, "fixation"),
                           (8.0, 4.0, "ssvep:17"), (12.0, 1.5, "iti"), (13.5, 10.0, "break")],
                          columns=["onset", "duration", "description"])
    out = with_rest_periods(Recording(rec.raw, events, rec.path), SSVEPAsyncConfig())
    rest = out.events[out.events["description"] == "rest"]
    assert rest[["onset", "duration"]].to_numpy().tolist() == [[0.0, 1.0], [5.0, 3.0],
                                                               [12.0, 11.5]]
    assert set(out.events["description"]) == {"run_start", "rest", "ssvep:14", "ssvep:17"}
    # posterior channels by default (standard_32: P7, P3, Pz, P4, P8, O1, Oz, O2)
    assert out.raw.ch_names == ["P7", "P3", "Pz", "P4", "P8", "O1", "Oz", "O2"]


@pytest.mark.slow
def test_yume_train_asynchronous_on_a_yume_calibrate_ssvep_session(tmp_path, capsys):
    """The real workflow: `yume calibrate --paradigm ssvep` with rest between trials, then
    `yume train --asynchronous`; the bundle carries the operating point `yume run` applies."""
    from gui.cli import main

    assert main(["calibrate", "--paradigm", "ssvep", "--freqs", "14,17,20", "--trials", "5",
                 "--offline", "--headless", "--timing", "iti_min=3,iti_max=5",
                 "--out", str(tmp_path / "rec")]) == 0
    (session,) = list((tmp_path / "rec").iterdir())
    capsys.readouterr()
    assert main(["train", str(session), "--asynchronous", "--pipelines", "cca",
                 "--out", str(tmp_path / "dec")]) == 0
    out = capsys.readouterr().out
    assert "no-control state" in out and "decoder bundle" in out
    bundle = load_bundle(tmp_path / "dec" / "decoder")
    assert bundle.paradigm == "ssvep" and "rest" in bundle.classes
    assert {"threshold", "dwell_s", "tau_s", "refractory_s"} <= set(
        bundle.figures["operating_point"])
