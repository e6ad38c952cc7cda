"""How much the geometric memory's warp gains from depth: the fixed prior, a learned depth, and
the sandbox's exact depth (two ceilings).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_world_depth.py
[--depth world/checkpoints/mvdt-warp/depth] [--episodes 16] [--seed 0]``

On the honest evaluation's fresh scenes (``world.honest_eval.fresh_scene_seeds``, the same
walks as ``yume world eval --honest``), the start frame is warped into every commanded camera
of 16 chunks by :class:`world.baselines.CameraWarp` with, per target view:

- the fixed prior (the baseline: ground plane, 16 m above the horizon);
- the learned depth of the start frame (:class:`world.mvdt.depth.DepthWarp`), carried into the
  target view by :func:`world.mvdt.depth.target_depth`;
- the exact depth of the start frame, carried the same way (the ceiling of any depth model
  that sees only the start frame);
- the exact depth of the target view itself (the ceiling of any depth at all: it knows the
  geometry the start frame cannot show).

Each is resampled bilinearly (as the baseline) and bicubically (``warp_interpolation`` of the
MVDT's memory). PSNR (pooled), SSIM and sharpness (Laplacian energy, beside the truth's) per
horizon; a table.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from control.actions import Action  # noqa: E402
from control.motion import CameraState  # noqa: E402
from world.baselines import CameraWarp, SandboxCamera, commanded_states  # noqa: E402
from world.honest_eval import HonestConfig, fresh_scene_seeds  # noqa: E402
from world.metrics import pooled_psnr, sharpness, ssim  # noqa: E402
from world.mvdt.depth import DepthWarp, load_depth_model, target_depth  # noqa: E402
from world.training.data import make_world  # noqa: E402
from world.training.evaluate import ground_truth_episodes  # noqa: E402

HORIZONS = (1, 4, 8, 16)


def _u8(x: torch.Tensor) -> np.ndarray:
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depth", default=str(ROOT / "world/checkpoints/mvdt-warp/depth"))
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--horizon", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0,
                    help="scene seed of world.honest_eval.fresh_scene_seeds (0: the honest "
                         "evaluation's scenes)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    fpc, size = 4, 64
    cfg = HonestConfig(episodes=args.episodes, horizon=args.horizon, seed=args.seed)
    seeds = fresh_scene_seeds(cfg.episodes + cfg.loop_episodes + cfg.long_episodes,
                              cfg.seed)[:cfg.episodes]
    clips = ground_truth_episodes(seeds, args.horizon, (size, size), fpc, seed=cfg.seed)
    warp = CameraWarp(SandboxCamera(size, size))
    learned = DepthWarp(warp, load_depth_model(args.depth))
    world = make_world(size, size, fpc)
    names = ("fixed prior (baseline)", "learned depth of the start frame",
             "exact depth of the start frame (ceiling)", "exact depth of each target view "
             "(ceiling)")
    modes = ("bilinear", "bicubic")
    preds: dict[tuple[str, str], list] = {(n, m): [] for n in names for m in modes}
    truth = []
    for clip in clips:
        world.reset(seed=int(clip.seed))
        start, render = world.state, world._renderer
        acts = [Action.from_index(int(a)) for a in clip.actions]
        dst_abs = commanded_states(acts, fpc, start, warp.step)  # the scene's own cameras
        rel0 = CameraState(y=start.y, pitch=start.pitch)
        dst = commanded_states(acts, fpc, rel0, warp.step)  # as every predictor sees them
        src, n = [rel0] * len(dst), len(dst)
        x = torch.from_numpy(np.repeat(clip.frames[:1], n, 0)).permute(0, 3, 1, 2).float()
        src_true = torch.from_numpy(render.render_depth(start))[None].repeat(n, 1, 1)
        depths = [None, None, target_depth(warp, src_true, src, dst),
                  torch.from_numpy(np.stack([render.render_depth(s) for s in dst_abs]))]
        for name, depth in zip(names, depths, strict=True):
            if name.startswith("learned"):
                grid = learned.sampling_grid(np.repeat(clip.frames[:1], n, 0), src, dst)
            else:
                grid = warp.sampling_grid(src, dst, depth=depth)
            for mode in modes:
                preds[name, mode].append(_u8(F.grid_sample(
                    x, grid, mode=mode, padding_mode="border", align_corners=True)))
        truth.append(clip.frames[1:1 + n])
    world.close()
    t = np.stack(truth)
    hs = [h for h in HORIZONS if h <= args.horizon]
    print(f"{len(clips)} fresh scenes x {args.horizon} chunks, 64x64; depth model {args.depth}")
    print("| depth used by the warp | resampling | " + " | ".join(
        f"PSNR / SSIM / sharpness h{h}" for h in hs) + " |")
    print("|---|---|" + "---|" * len(hs))
    for (name, mode), rows in preds.items():
        p = np.stack(rows)
        cells = []
        for h in hs:
            sl = slice((h - 1) * fpc, h * fpc)
            cells.append(f"{pooled_psnr(p[:, sl], t[:, sl]):.2f} / {ssim(p[:, sl], t[:, sl]):.3f}"
                         f" / {sharpness(p[:, sl]):.0f}")
        print(f"| {name} | {mode} | " + " | ".join(cells) + " |")
    print("| truth | - | " + " | ".join(
        f"- / 1 / {sharpness(t[:, (h - 1) * fpc:h * fpc]):.0f}" for h in hs) + " |")


if __name__ == "__main__":
    main()
