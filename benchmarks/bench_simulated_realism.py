"""How hard is the simulated participant to decode, beside a real person?

Two-class (left/right hand) motor imagery, ``--trials`` cues per class, 4 s cues with 2-3 s of
rest between them, scored by 5-fold stratified cross-validation of the project's ``csp_lda`` and
``ts_lr`` pipelines on 0.5-2.5 s windows (8-30 Hz). The simulated participant is scored for
several seeds (persons) with the realistic default and with :meth:`ParticipantConfig.easy`; the
real PhysioNet S001 imagery runs R04+R08 (15 left/right cues) are scored the same way. A second
table trains on session 1 and tests on held-out trials of session 1, on session 2 and on
session 3 (drift).

Usage::

    .venv/bin/python benchmarks/bench_simulated_realism.py [--seeds 5] [--trials 20]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from bci.simulated import ParticipantConfig, simulate_run
from calibration.pipelines import make_pipeline

CLASSES = ("left_hand", "right_hand")
PIPELINES = ("csp_lda", "ts_lr")
WINDOW = (0.5, 2.5)  # seconds after the cue: past the ERD onset, inside the cue
PHYSIONET = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "eeg" / \
    "physionet_mi_S001"


def simulated_epochs(config: ParticipantConfig, seed: int, trials: int,
                     order_seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cued left/right run of one simulated person: windows (n, ch, t) and labels."""
    rng = np.random.default_rng(seed if order_seed is None else order_seed)
    labels = rng.permutation(np.repeat(CLASSES, trials))
    cues, t = [], 2.0
    for label in labels:
        cues.append((t, 4.0, str(label)))
        t += 4.0 + rng.uniform(2.0, 3.0)
    data, info, events = simulate_run(cues, t + 1.0, config, seed=seed)
    sf = info.sfreq
    a, b = int(WINDOW[0] * sf), int(WINDOW[1] * sf)
    X = np.stack([data[:, int(round(o * sf)) + a: int(round(o * sf)) + b] for o, _, _ in events])
    return X, np.array([label for _, _, label in events])


def cv_accuracy(X: np.ndarray, y: np.ndarray, pipeline: str, sfreq: float) -> float:
    """Mean 5-fold stratified CV accuracy of one project pipeline."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    pipe = make_pipeline(pipeline, sfreq, (8.0, 30.0))
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        return float(cross_val_score(pipe, X, y, cv=StratifiedKFold(5, shuffle=True,
                                                                     random_state=0)).mean())


def physionet_epochs() -> tuple[np.ndarray, np.ndarray, float] | None:
    """S001 R04+R08 imagined left/right fist, 0.5-2.5 s windows, microvolts (None if absent)."""
    import mne
    import pandas as pd

    if not (PHYSIONET / "S001R04.edf").is_file():
        return None
    X, y, sf = [], [], 160.0
    for run in ("S001R04", "S001R08"):
        raw = mne.io.read_raw_edf(PHYSIONET / f"{run}.edf", preload=True, verbose="error")
        sf = raw.info["sfreq"]
        data = raw.get_data() * 1e6
        ev = pd.read_csv(PHYSIONET / f"{run}_events.csv")
        for onset, label in zip(ev.onset_s, ev.label, strict=True):
            if label in ("T1", "T2"):
                s = int(round(onset * sf))
                X.append(data[:, s + int(WINDOW[0] * sf): s + int(WINDOW[1] * sf)])
                y.append(CLASSES[label == "T2"])
    return np.stack(X), np.array(y), sf


def drift_accuracy(seed: int, trials: int) -> tuple[float, float, float]:
    """ts_lr trained on session 1: CV on session 1, then tested on sessions 2 and 3."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    X1, y1 = simulated_epochs(ParticipantConfig(session=1), seed, trials)
    pipe = make_pipeline("ts_lr", 250.0, (8.0, 30.0))
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        within = float(np.mean(cross_val_predict(
            pipe, X1, y1, cv=StratifiedKFold(5, shuffle=True, random_state=0)) == y1))
        pipe.fit(X1, y1)
        later = []
        for session in (2, 3):
            X, y = simulated_epochs(ParticipantConfig(session=session), seed, trials,
                                    order_seed=seed + 1000 * session)
            later.append(float(np.mean(pipe.predict(X) == y)))
    return within, later[0], later[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5, help="simulated persons per preset")
    p.add_argument("--trials", type=int, default=20, help="cues per class")
    args = p.parse_args()
    t0 = time.perf_counter()
    rows = []
    for name, config in (("default (realistic)", ParticipantConfig()),
                         ("easy preset", ParticipantConfig.easy())):
        scores = {k: [] for k in PIPELINES}
        for seed in range(args.seeds):
            X, y = simulated_epochs(config, seed, args.trials)
            for k in PIPELINES:
                scores[k].append(cv_accuracy(X, y, k, config.sfreq))
        rows.append((f"simulated, {name}", f"{args.seeds} seeds x {2 * args.trials}", scores))
    real = physionet_epochs()
    if real is not None:
        X, y, sf = real
        rows.append(("real PhysioNet S001 R04+R08", f"1 person x {len(y)}",
                     {k: [cv_accuracy(X, y, k, sf)] for k in PIPELINES}))
    print(f"Two-class left/right, 5-fold CV accuracy, windows {WINDOW[0]}-{WINDOW[1]} s, 8-30 Hz\n")
    print("| participant | trials | " + " | ".join(f"{k} mean (range)" for k in PIPELINES) + " |")
    print("|---|---|" + "---|" * len(PIPELINES))
    for label, n, scores in rows:
        cells = []
        for k in PIPELINES:
            v = np.array(scores[k])
            cells.append(f"{v.mean():.2f}" if v.size == 1
                         else f"{v.mean():.2f} ({v.min():.2f}-{v.max():.2f})")
        print(f"| {label} | {n} | " + " | ".join(cells) + " |")
    print("\nSession drift (default participant, ts_lr trained on session 1)\n")
    print("| seed | session 1 (5-fold CV) | session 2 | session 3 |")
    print("|---|---|---|---|")
    res = np.array([drift_accuracy(seed, args.trials) for seed in range(args.seeds)])
    for seed, (a, b, c) in enumerate(res):
        print(f"| {seed} | {a:.2f} | {b:.2f} | {c:.2f} |")
    m = res.mean(axis=0)
    print(f"| mean | {m[0]:.2f} | {m[1]:.2f} | {m[2]:.2f} |")
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
