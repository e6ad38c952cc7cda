"""Sandbox world rendering speed on ONE CPU core: frames per second along a scripted walk.

Run: ``.venv/bin/python benchmarks/bench_sandbox.py [--repeats 5] [--frames 120]``

The process pins itself to core 0 and limits numpy/torch to one thread (set before importing
them), then renders the same walk (forward, turns, tilts, strafes) at 64x64,
128x128 and 256x256 through ``SandboxWorld.step`` (rendering + collision + pose bookkeeping;
scene generation is excluded) and prints the median frames/s over the repeats.
Goal: >= 60 frames/s at 256x256.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {0})

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from control.actions import parse_action  # noqa: E402
from world.sandbox import SandboxWorld  # noqa: E402

SCRIPT = (
    ["W"] * 30 + ["W →"] * 20 + ["↑"] * 10 + ["W+A ↓"] * 10 + ["←"] * 20 + ["S+D"] * 10
    + ["W ↑→"] * 10 + ["W"] * 200
)
SIZES = ((64, 64), (128, 128), (256, 256))


def run(frames: int, repeats: int, seed: int) -> list[tuple[str, float, float, float]]:
    actions = [parse_action(a) for a in (SCRIPT * (frames // len(SCRIPT) + 1))[:frames]]
    rows = []
    for h, w in SIZES:
        world = SandboxWorld(seed=seed, height=h, width=w)
        rates = []
        for _ in range(repeats):
            world.reset()
            t0 = time.perf_counter()
            for a in actions:
                world.step(a)
            rates.append(len(actions) / (time.perf_counter() - t0))
        rows.append((f"{h}x{w}", float(np.median(rates)), min(rates), max(rates)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120, help="frames per walk")
    ap.add_argument("--repeats", type=int, default=5, help="walks per resolution")
    ap.add_argument("--seed", type=int, default=0, help="scene seed")
    args = ap.parse_args()
    rows = run(args.frames, args.repeats, args.seed)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"sandbox render, {args.frames} frames x {args.repeats} repeats, seed {args.seed}, "
          f"cores {cores}, numpy {np.__version__}, {platform.processor() or platform.machine()}")
    print(f"{'resolution':>10} | {'median fps':>10} | {'min fps':>8} | {'max fps':>8}")
    print("-" * 46)
    for name, med, lo, hi in rows:
        print(f"{name:>10} | {med:10.1f} | {lo:8.1f} | {hi:8.1f}")
    goal = dict((r[0], r[1]) for r in rows)["256x256"]
    print(f"goal >= 60 fps at 256x256: {'met' if goal >= 60 else 'NOT met'} ({goal:.1f} fps)")


if __name__ == "__main__":
    main()
