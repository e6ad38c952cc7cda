"""What each asynchronous decoder could reach on real EEG at best: the test-swept ceiling.

Leave-one-run-out over PhysioNet S001's four left/right runs (R03, R07 executed, R04, R08
imagined; executed cues mapped to the imagined classes), scored on the two imagery runs. For
each variant the held-out run is decoded through the live path once and every operating point
of the grid is replayed; the table prints the point with the most right first commands at
<= 1 false activation per minute **read off the test runs themselves**. That is a ceiling of
the variant, not a result (a result chooses its point on the training runs: ``yume evaluate``);
it separates "the decoder cannot" from "the operating point was chosen badly".

Usage::

    python benchmarks/bench_async_ceiling.py [--data ../shared/data/eeg/physionet_mi_S001]
"""

from __future__ import annotations

import argparse
import itertools
import warnings
from pathlib import Path

from threadpoolctl import threadpool_limits

from calibration.async_training import AsyncConfig, fit_bundle, sliding_windows
from calibration.dataset import load_recording
from calibration.pseudo_online import (
    OperatingPoint,
    PseudoOnlineScore,
    decode_recording,
    mapped_events,
    recording_duration,
    replay_policy,
    score_commands,
)

MAP = {"left_hand_exec": "left_hand", "right_hand_exec": "right_hand"}
VARIANTS = (  # (label, pipeline, window s, online re-centering)
    ("3-class ts_lr, 2 s (the old default)", "ts_lr", 2.0, None),
    ("3-class ts_lr, 1 s", "ts_lr", 1.0, None),
    ("3-class mdm, 1 s", "mdm", 1.0, None),
    ("rest gate x left/right (gated_ts_lr), 2 s", "gated_ts_lr", 2.0, None),
    ("rest gate x left/right (gated_ts_lr), 1 s", "gated_ts_lr", 1.0, None),
    ("re-centred ts_lr, 1 s, no adaptation", "rc_ts_lr", 1.0, None),
    ("re-centred ts_lr, 1 s, online re-centering", "rc_ts_lr", 1.0, "all"),
)
POINTS = [OperatingPoint(t, d, tau, 1.0) for t, d, tau in itertools.product(
    (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9), (0.25, 0.5, 1.0, 1.5), (0.5, 1.0))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/eeg/physionet_mi_S001"))
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    runs = {r: load_recording(args.data / f"S001R{r:02d}.edf") for r in (3, 4, 7, 8)}
    print("| variant | right first commands | wrong | FA/min | point (threshold, dwell, tau) |")
    print("|---|---|---|---|---|")
    for label, name, window, adapt in VARIANTS:
        cfg = AsyncConfig(label_map=MAP, window_s=window)
        scores: dict[OperatingPoint, list[PseudoOnlineScore]] = {}
        for test in (4, 8):
            X, y, _, ch, sf = sliding_windows([runs[r] for r in runs if r != test], cfg)
            bundle = fit_bundle(name, X, y, ch, sf, cfg)
            with threadpool_limits(1):
                windows = decode_recording(bundle, runs[test], chunk_s=0.25, adapt=adapt)
            ev = mapped_events(runs[test], MAP)
            for p in POINTS:
                scores.setdefault(p, []).append(score_commands(
                    replay_policy(windows, bundle, p), ev, list(cfg.classes),
                    recording_duration(runs[test]), ("rest",), cfg.grace_s))
        pooled = {p: PseudoOnlineScore.pooled(s) for p, s in scores.items()}
        ok = [p for p, s in pooled.items() if s.fa_per_min <= 1.0]
        best = max(ok, key=lambda p: (pooled[p].hit_rate, -pooled[p].wrong_rate))
        s = pooled[best]
        print(f"| {label} | {s.hit_rate:.2f} ({s.n_cues} cues) | {s.wrong_rate:.2f} | "
              f"{s.fa_per_min:.2f} | {best.threshold:g}, {best.dwell_s:g} s, {best.tau_s:g} s |",
              flush=True)


if __name__ == "__main__":
    main()
