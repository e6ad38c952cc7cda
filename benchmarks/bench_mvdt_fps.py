"""Frames per second of the shipped MVDT world: ``engine.step`` with and without inference reuse.

The shipped checkpoint (``world/checkpoints/mvdt-warp``) with its shipped sampler
(``sampler.json``), 64x64, ``torch.set_num_threads(--threads)``, driven by the action loop
``W, W →, W, ←`` from ``reset(seed=3100003)`` after a warm-up. Two worlds run side by side on
the same load: one with the inference reuse of :mod:`world.mvdt.reuse` switched off (the
computation before it existed), one with it on (the default), interleaved one action loop
(4 steps) at a time, in alternating order, so a burst of other work lands on both. The machine
may be shared: the load average is printed beside the figures, and the before/after ratio per
repeat is the number to trust; the absolute figure of the default path is repeated at the end.
The two paths' frames are checked to be identical. The process's CPU time per chunk is shown
too: with ``--threads 1`` it hardly depends on what else runs, a steadier ratio on a busy
machine than the wall clock's.

Usage::

    .venv/bin/python benchmarks/bench_mvdt_fps.py [--repeats 7] [--steps 12] [--threads 2]
        [--final 3] [--json out.json] [--checkpoint FOLDER]

``--checkpoint`` times another MVDT folder (a copy of the shipped one with another inference
setting, say) with its own sampler.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from world.mvdt import reuse  # noqa: E402
from world.registry import make_world  # noqa: E402

ACTIONS = ["W", "W →", "W", "←"]
SEED = 3100003


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def _drive(world, steps: int, use_reuse: bool, start: int
           ) -> tuple[int, float, float, list[np.ndarray]]:
    """Frames, wall and CPU seconds, and the frames of ``steps`` steps of the loop from loop
    position ``start``."""
    reuse.set_enabled(use_reuse)
    frames, n = [], 0
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(start, start + steps):
        chunk = world.step(ACTIONS[i % len(ACTIONS)])
        n += len(chunk.frames)
        frames.append(chunk.frames)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    reuse.set_enabled(True)
    return n, seconds, cpu, frames


def _summary(rates: list[float]) -> str:
    return f"{statistics.median(rates):6.1f}  ({min(rates):.1f}-{max(rates):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7, help="interleaved before/after pairs")
    ap.add_argument("--steps", type=int, default=12, help="engine steps per repeat")
    ap.add_argument("--warmup", type=int, default=5, help="'W' steps before timing")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--final", type=int, default=3, help="repeats of the default path at the end")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--checkpoint", default=None, help="MVDT checkpoint (default: shipped)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    worlds = {name: make_world("mvdt", checkpoint=args.checkpoint)
              for name in ("before (reuse off)", "after (default)")}
    flags = {"before (reuse off)": False, "after (default)": True}
    for name, world in worlds.items():
        world.reset(seed=SEED)
        reuse.set_enabled(flags[name])
        for _ in range(args.warmup):
            world.step("W")
    reuse.set_enabled(True)
    sampler = worlds["after (default)"].pipeline.sampler
    frames_per_step = len(worlds["after (default)"].step("·").frames)
    print(f"MVDT engine.step, {args.checkpoint or 'shipped checkpoint'}, {sampler!r}, 64x64, "
          f"{args.threads} threads, {args.steps} steps x {frames_per_step} frames per repeat")
    worlds["before (reuse off)"].step("·")  # the same history in both worlds

    rates: dict[str, list[float]] = {k: [] for k in worlds}
    cpu_ms: dict[str, list[float]] = {k: [] for k in worlds}
    ratios, cpu_ratios, identical = [], [], True
    print(f"{'repeat':>6}  {'load avg (1/5/15 min)':>22}  {'before f/s':>10}  {'after f/s':>9}  "
          f"{'ratio':>5}  {'before cpu ms/chunk':>19}  {'after cpu ms/chunk':>18}  {'ratio':>5}")
    loop = len(ACTIONS)
    for r in range(args.repeats):
        load = _load()
        totals = {name: [0, 0.0, 0.0, []] for name in worlds}
        for k in range(0, args.steps, loop):
            # One action loop per path at a time, alternating which goes first.
            order = list(worlds) if (r + k // loop) % 2 == 0 else list(worlds)[::-1]
            for name in order:
                n, seconds, cpu, frames = _drive(worlds[name], min(loop, args.steps - k),
                                                 flags[name], r * args.steps + k)
                totals[name][0] += n
                totals[name][1] += seconds
                totals[name][2] += cpu
                totals[name][3] += frames
        for name, (n, seconds, cpu, _) in totals.items():
            rates[name].append(n / seconds)
            cpu_ms[name].append(1000 * cpu / (n / frames_per_step))
        out = [totals[name][3] for name in worlds]
        identical &= all(np.array_equal(a, b) for a, b in zip(*out, strict=True))
        before, after = rates["before (reuse off)"][-1], rates["after (default)"][-1]
        cb, ca = cpu_ms["before (reuse off)"][-1], cpu_ms["after (default)"][-1]
        ratios.append(after / before)
        cpu_ratios.append(cb / ca)
        print(f"{r:>6}  {load:>22}  {before:>10.1f}  {after:>9.1f}  {after / before:>5.2f}  "
              f"{cb:>19.1f}  {ca:>18.1f}  {cb / ca:>5.2f}")
    print()
    print(f"{'path':<20} frames/s median (range) over {args.repeats} repeats")
    for name, values in rates.items():
        print(f"{name:<20} {_summary(values)}")
    print(f"{'ratio after/before':<20} {statistics.median(ratios):6.2f}  "
          f"({min(ratios):.2f}-{max(ratios):.2f})")
    print(f"{'CPU ms per chunk':<20} before {_summary(cpu_ms['before (reuse off)'])}, after "
          f"{_summary(cpu_ms['after (default)'])}, ratio {statistics.median(cpu_ratios):.2f} "
          f"({min(cpu_ratios):.2f}-{max(cpu_ratios):.2f})")
    print(f"frames identical on both paths: {identical}")

    final = []
    world = worlds["after (default)"]
    print()
    for k in range(args.final):
        n, seconds, _, _ = _drive(world, args.steps, True, k * args.steps)
        rate = n / seconds
        final.append(rate)
        print(f"default path, final repeat {k}: {rate:.1f} frames/s  (load avg {_load()})")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "threads": args.threads, "steps": args.steps, "sampler": repr(sampler),
            "rates": rates, "ratios": ratios, "cpu_ms_per_chunk": cpu_ms,
            "cpu_ratios": cpu_ratios, "final": final, "identical": identical,
        }, indent=1))


if __name__ == "__main__":
    main()
