"""Two minutes of driving: does the generated world stay recognisable? A frame every 15 s.

Drives the shipped MVDT world and the sandbox (which renders the true view for the same
commands) along one scripted route from the same start, saves their frames at 0, 15, ..., 120 s
side by side (top row the sandbox's truth, bottom row the model) and prints, for each saved
moment, the model's sharpness (Laplacian variance) as a fraction of the truth's and its mean
colour difference (0-255). Look at the PNG; the numbers only say where to look.

    .venv/bin/python benchmarks/bench_world_drive.py [--seconds 120] [--every 15] \\
        [--size 64] [--seed 3000001] [--out runs/world/drive.png] [--checkpoint DIR] \\
        [--context-noise 0.0] [--feedback shown|latents]

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--every", type=float, default=15.0)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=3_000_001, help="scene (outside training seeds)")
    ap.add_argument("--out", type=Path, default=Path("runs/world/drive.png"))
    ap.add_argument("--checkpoint", default=None, help="MVDT checkpoint (default: shipped)")
    ap.add_argument("--context-noise", type=float, default=0.0,
                    help="std of noise on the history latents at inference (0 = off)")
    ap.add_argument("--feedback", choices=("shown", "latents"), default="shown",
                    help="history keeps the shown frames re-encoded, or the raw latents")
    args = ap.parse_args()

    rows, walls = {}, {}
    for name in ("sandbox", "mvdt"):
        extra = ({"checkpoint": args.checkpoint, "context_noise": args.context_noise,
                  "feedback": args.feedback} if name == "mvdt" else {})
        engine = make_world(name, height=args.size, width=args.size, **extra)
        try:
            rows[name], walls[name] = drive(engine, args.seconds, args.every, args.seed)
        finally:
            engine.close()
    truth, model = rows["sandbox"], rows["mvdt"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    gap = np.full((args.size, 4, 3), 255, np.uint8)
    strip = np.concatenate([np.concatenate([x for f in r for x in (f, gap)], axis=1)
                            for r in (truth, model)], axis=0)
    Image.fromarray(strip).resize((strip.shape[1] * 2, strip.shape[0] * 2),
                                  Image.NEAREST).save(args.out)
    print(f"{args.seconds:g} s drive, {args.size}x{args.size}, scene {args.seed}; "
          f"wall: sandbox {walls['sandbox']:.1f} s, mvdt {walls['mvdt']:.1f} s")
    print(f"{'t (s)':>6} {'sharpness model/truth':>22} {'colour diff (0-255)':>20}")
    for k, (a, b) in enumerate(zip(truth, model, strict=True)):
        ratio = sharpness(b[None]) / max(sharpness(a[None]), 1e-9)
        colour = float(np.abs(a.reshape(-1, 3).mean(0) - b.reshape(-1, 3).mean(0)).mean())
        print(f"{k * args.every:>6g} {ratio:>22.2f} {colour:>20.1f}")
    print(f"strip: {args.out} (top: the sandbox's true view; bottom: the MVDT)")


if __name__ == "__main__":
    main()
