"""Two minutes of driving: does the generated world stay recognisable? A frame every 15 s.

Drives the shipped MVDT world and the sandbox (which renders the true view for the same
commands) along one scripted route from the same start, saves their frames at 0, 15, ..., 120 s
side by side (top row the sandbox's truth, bottom row the model) and prints, for each saved
moment, the model's sharpness (Laplacian variance) as a fraction of the truth's and its mean
colour difference (0-255), per scene and (several scenes) their median. Look at the PNG; the
numbers only say where to look.

    .venv/bin/python benchmarks/bench_world_drive.py [--seconds 120] [--every 15] \\
        [--size 64] [--seed 3000001 | 3000001-3000005] [--out runs/world/drive.png] \\
        [--checkpoint DIR] [--context-noise 0.0] [--feedback shown|latents]

``--checkpoint`` drives another MVDT checkpoint (e.g. one with geometric memory,
``world/mvdt/warp.py``); ``--context-noise`` and ``--feedback`` are the engine's inference
options against long-drive divergence (:class:`world.mvdt.engine.MVDTWorld`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from control.actions import parse_action
from world.evaluate import sharpness
from world.honest_eval import colour_drift
from world.registry import make_world

# Walk, turn while walking, look around, back up: the mix of keys a person uses, on a loop.
ROUTE = (("W", 4.0), ("W ←", 2.0), ("W", 3.0), ("→", 1.5), ("W", 3.0), ("W →", 2.0),
         ("S", 1.0), ("W+A", 1.5), ("←", 1.0), ("W", 2.0))


def drive(engine, seconds: float, every: float, seed: int) -> tuple[list[np.ndarray], float]:
    """Frames of ``engine`` at 0, ``every``, 2 ``every``... seconds of the looped route."""
    first = engine.reset(seed=seed)
    rate = engine.frame_rate
    keep = {int(round(k * every * rate)) for k in range(int(seconds // every) + 1)}
    shots, n, t0 = {0: first.frames[-1]}, 0, time.perf_counter()
    while n < seconds * rate:
        for key, length in ROUTE:
            action = parse_action(key)
            for _ in range(int(round(length * rate / engine.frames_per_step))):
                chunk = engine.step(action)
                for frame in chunk.frames:
                    n += 1
                    if n in keep:
                        shots[n] = frame
                if n >= seconds * rate:
                    break
            if n >= seconds * rate:
                break
    return [shots[k] for k in sorted(shots)], time.perf_counter() - t0


def _scenes(text: str) -> list[int]:
    """``3000001`` or ``3000001-3000005`` or ``3000001,3000004``."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--every", type=float, default=15.0)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=_scenes, default=[3_000_001],
                    help="scene, or scenes as 3000001-3000005 (outside training seeds)")
    ap.add_argument("--out", type=Path, default=Path("runs/world/drive.png"),
                    help="the strip image (.png or .jpg)")
    ap.add_argument("--checkpoint", default=None, help="MVDT checkpoint (default: shipped)")
    ap.add_argument("--context-noise", type=float, default=0.0,
                    help="std of noise on the history latents at inference (0 = off)")
    ap.add_argument("--feedback", choices=("shown", "latents"), default="shown",
                    help="history keeps the shown frames re-encoded, or the raw latents")
    args = ap.parse_args()
    if args.out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        ap.error(f"--out names the strip image: a .png or .jpg file, not {str(args.out)!r}.")

    engines = {"sandbox": make_world("sandbox", height=args.size, width=args.size),
               "mvdt": make_world("mvdt", height=args.size, width=args.size,
                                  checkpoint=args.checkpoint, context_noise=args.context_noise,
                                  feedback=args.feedback)}
    gap = np.full((args.size, 4, 3), 255, np.uint8)
    blocks, table, walls = [], [], dict.fromkeys(engines, 0.0)
    try:
        for scene in args.seed:
            rows = {}
            for name, engine in engines.items():
                rows[name], wall = drive(engine, args.seconds, args.every, scene)
                walls[name] += wall
            truth, model = rows["sandbox"], rows["mvdt"]
            # Per scene: the truth above the model, one column per saved moment.
            blocks.append(np.concatenate(
                [np.concatenate([x for f in r for x in (f, gap)], axis=1)
                 for r in (truth, model)], axis=0))
            table.append([(sharpness(b[None]) / max(sharpness(a[None]), 1e-9),
                           colour_drift(b, a)) for a, b in zip(truth, model, strict=True)])
    finally:
        for engine in engines.values():
            engine.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sep = np.full((6, blocks[0].shape[1], 3), 255, np.uint8)
    strip = np.concatenate([x for b in blocks for x in (b, sep)][:-1], axis=0)
    Image.fromarray(strip).resize((strip.shape[1] * 2, strip.shape[0] * 2),
                                  Image.NEAREST).save(args.out)
    times = [k * args.every for k in range(len(table[0]))]
    print(f"{args.seconds:g} s drive, {args.size}x{args.size}, scenes "
          f"{', '.join(map(str, args.seed))}; wall: sandbox {walls['sandbox']:.1f} s, "
          f"mvdt {walls['mvdt']:.1f} s")
    values = np.array(table)  # scene x moment x (sharpness ratio, colour difference)
    for title, col, fmt in (("sharpness, model / truth", 0, ">6.2f"),
                            ("mean colour difference (0-255)", 1, ">6.1f")):
        print(f"\n{title}")
        print(f"{'scene':>8} " + " ".join(f"{t:>6g}" for t in times))
        rows = list(zip(args.seed, values[:, :, col], strict=True))
        if len(table) > 1:
            rows.append(("median", np.median(values[:, :, col], axis=0)))
        for label, row in rows:
            print(f"{label:>8} " + " ".join(format(v, fmt) for v in row))
    print(f"strip: {args.out} (per scene, top: the sandbox's true view; bottom: the MVDT)")


if __name__ == "__main__":
    main()
