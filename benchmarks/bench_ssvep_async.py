"""SSVEP picks with and without the learned no-control state, on held-out simulated sessions.

For each simulated person (seed), two calibration runs of session 1 train the decoders; the
person's sessions 2 and 3 (other cue orders and rest lengths, the simulator's session drift,
none of the calibration samples) are played through the live path and scored per gaze and per
minute of rest (:mod:`calibration.pseudo_online`). Rows:

- ``today``: what ``yume train --paradigm ssvep`` ships (every EEG channel, cue-locked windows,
  no rest state) at the policy's default point (threshold 0.7, dwell 0.5 s, tau 0.5 s) with the
  menu's refractory period (one window);
- ``posterior, no rest state, default point``: posterior channels only, same policy;
- ``posterior, no rest state, CV point``: threshold and dwell chosen by pseudo-online CV for
  the false-activation target, no rest class (the simple no-control baseline);
- ``no-control state, CV point``: :func:`calibration.ssvep_async.train_ssvep_async`.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ssvep_async.py [--persons 1,2,3]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from calibration.pseudo_online import OperatingPoint, PseudoOnlineScore
from calibration.ssvep_async import (
    SSVEPAsyncConfig,
    evaluate,
    prepare,
    simulated_ssvep_runs,
    train_ssvep_async,
)
from calibration.training import TrainingConfig, train_decoder

SETUPS = {
    # Nine targets of the 3 x 3 grid menu (below 30 Hz for a 60 Hz display, above alpha).
    "grid9": dict(freqs=(14.0, 15.5, 17.0, 18.5, 20.0, 21.5, 23.0, 24.5, 26.0), n_per_target=2),
    # The default SSVEP paradigm's four targets (10 Hz sits on the resting alpha).
    "paradigm4": dict(freqs=(8.0, 10.0, 12.0, 15.0), n_per_target=4),
}


def _row(name: str, s: PseudoOnlineScore, cv_fa: float | None = None) -> dict:
    d = s.to_dict()
    d.pop("cues")
    return {"row": name, **d, "cv_fa_per_min": cv_fa}


def run_setup(setup: str, persons: list[int]) -> list[dict]:
    spec = SETUPS[setup]
    parts: dict[str, list[PseudoOnlineScore]] = {}
    cv: dict[str, list[float]] = {}
    points: dict[str, list[dict]] = {}
    for seed in persons:
        cal = simulated_ssvep_runs(spec["freqs"], spec["n_per_target"], 2, seed=seed, session=1)
        held = [r for sess in (2, 3)
                for r in simulated_ssvep_runs(spec["freqs"], spec["n_per_target"], 1, seed=seed,
                                              session=sess)]
        # today: the cue-locked decoder of `yume train --paradigm ssvep`, default policy point
        targets = sorted({d for r in cal for d in r.events["description"] if d != "rest"})
        today = train_decoder(cal, TrainingConfig(paradigm="ssvep", classes=targets,
                                                          min_trials=2),
                              progress=False).bundle
        base = SSVEPAsyncConfig(picks=None)
        recs_all, base = prepare(held, base)
        default = OperatingPoint(0.7, 0.5, 0.5, max(1.0, today.window_s))
        parts.setdefault("today (all channels, no rest state, default point)", []).append(
            evaluate(today, recs_all, default, base))
        for nc in (False, True):
            res = train_ssvep_async(cal, SSVEPAsyncConfig(no_control=nc))
            recs, cfg = prepare(held, res.config)
            name = ("no-control state, CV point" if nc
                    else "posterior, no rest state, CV point")
            if not nc:
                parts.setdefault("posterior, no rest state, default point", []).append(
                    evaluate(res.bundle, recs, replace(default, refractory_s=cfg.refractory),
                             cfg))
            parts.setdefault(name, []).append(evaluate(res.bundle, recs, res.chosen.point, cfg))
            cv.setdefault(name, []).append(res.chosen.fa_per_min)
            points.setdefault(name, []).append(
                {"person": seed, "pipeline": res.best, "meets_target": res.meets_target,
                 **res.chosen.to_dict()})
    rows = []
    for name, scores in parts.items():
        row = _row(name, PseudoOnlineScore.pooled(scores),
                   float(np.mean(cv[name])) if name in cv else None)
        row["per_person_fa_per_min"] = [s.fa_per_min for s in scores]
        row["chosen"] = points.get(name)
        rows.append(row | {"setup": setup})
    return rows


def table(rows: list[dict]) -> str:
    head = ("| setup | decoder | hits | wrong | misses | false picks / min of rest "
            "(n, rest min) | median time to pick s | CV estimate FA/min |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lat = "" if r["median_latency_s"] is None else f"{r['median_latency_s']:.2f}"
        cvf = "" if r["cv_fa_per_min"] is None else f"{r['cv_fa_per_min']:.2f}"
        lines.append(
            f"| {r['setup']} | {r['row']} | {r['hits']}/{r['n_cues']} | {r['wrong']} | "
            f"{r['misses']} | {r['fa_per_min']:.2f} ({r['false_activations']}, "
            f"{r['rest_minutes']:.1f}) | {lat} | {cvf} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--persons", default="1,2,3")
    p.add_argument("--setups", default=",".join(SETUPS))
    p.add_argument("--out", type=Path, default=Path("benchmarks/figures/ssvep_async.json"))
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.simplefilter("ignore")
    persons = [int(v) for v in args.persons.split(",")]
    t0 = time.perf_counter()
    rows = []
    for setup in args.setups.split(","):
        rows += run_setup(setup, persons)
    print(table(rows))
    print(f"persons {persons}; calibration: 2 runs of session 1; held out: sessions 2 and 3; "
          f"{time.perf_counter() - t0:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2, default=float))


if __name__ == "__main__":
    main()
