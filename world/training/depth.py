"""Train the geometric memory's depth model (:class:`world.mvdt.depth.DepthNet`) on the sandbox.

Frames and their exact depth (:meth:`world.sandbox.render.SandboxRenderer.render_depth`) come
from walks (:class:`world.training.data.WalkPolicy`) through training-split scenes; the held-out
split scores it. The loss is L1 on log depth (a metre of error matters more near the camera,
which is where the warp moves pixels most).

Run: ``python -m world.training.depth --out world/checkpoints/mvdt-warp/depth --minutes 20``
(CPU, one thread by default; it saves every few minutes and at the end).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from world.mvdt.depth import DepthConfig, DepthNet, save_depth_model
from world.training.data import WalkPolicy, make_world, scene_seeds

logger = logging.getLogger(__name__)


def depth_samples(split: str, n_scenes: int, chunks: int = 24, size: int = 64,
                  seed: int = 0, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(N, H, W, 3)`` uint8 and depths ``(N, H, W)`` float32 of walks through scenes
    of ``split``: one sample after each chunk of a :class:`WalkPolicy` walk."""
    from tqdm import tqdm

    world = make_world(size, size, 4)
    policy, rng = WalkPolicy(), np.random.default_rng([seed, 29])
    frames, depths = [], []
    try:
        for s in tqdm(scene_seeds(split, n_scenes, seed=seed), desc=f"depth data ({split})",
                      unit="scene", disable=not progress):
            world.reset(seed=int(s))
            action = None
            for _ in range(chunks):
                action = policy.next_action(rng, action, False, float(world.state.pitch))
                world.step(action)
                frames.append(world.render())
                depths.append(world._renderer.render_depth(world.state))
    finally:
        world.close()
    return np.stack(frames), np.stack(depths)


def log_depth_error(model: DepthNet, frames: np.ndarray, depths: np.ndarray) -> dict:
    """Mean absolute log-depth error and the median relative error, on the held-out samples,
    and the same for the fixed prior of :class:`world.baselines.CameraWarp` at pitch 0."""
    lo, hi = model.config.min_depth, model.config.max_depth
    truth = np.log(np.clip(depths, lo, hi))
    pred = np.concatenate([model.predict(frames[i:i + 256]).log().numpy()
                           for i in range(0, len(frames), 256)])
    from world.baselines import CameraWarp, SandboxCamera

    warp = CameraWarp(SandboxCamera(frames.shape[1], frames.shape[2]))
    prior = np.log(np.clip(warp.prior_depth([0.0]).numpy(), lo, hi))
    return {"log_l1": float(np.mean(np.abs(pred - truth))),
            "median_rel": float(np.median(np.abs(np.exp(pred - truth) - 1))),
            "prior_log_l1": float(np.mean(np.abs(prior - truth))),
            "prior_median_rel": float(np.median(np.abs(np.exp(prior - truth) - 1)))}


def train_depth(out: str | Path, scenes: int = 400, heldout_scenes: int = 32,
                minutes: float = 20.0, batch: int = 32, lr: float = 2e-3, seed: int = 0,
                save_every_s: float = 300.0, progress: bool = True) -> dict:
    """Train a :class:`DepthNet` for ``minutes`` and save it into ``out``; returns the figures."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    x, d = depth_samples("train", scenes, seed=seed, progress=progress)
    xh, dh = depth_samples("heldout", heldout_scenes, seed=seed + 1, progress=progress)
    model = DepthNet(DepthConfig())
    cfg = model.config
    target = torch.from_numpy(np.log(np.clip(d, cfg.min_depth, cfg.max_depth)))
    frames = torch.from_numpy(x).permute(0, 3, 1, 2).float()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    limit, t0, saved, step, losses = minutes * 60.0, time.monotonic(), time.monotonic(), 0, []

    def save() -> None:
        model.eval()
        save_depth_model(model, out, {"steps": step, "train_samples": len(x),
                                      "heldout": log_depth_error(model, xh, dh)})
        model.train()

    bar = tqdm(total=int(limit), desc="depth training", unit="s", disable=not progress)
    model.train()
    while time.monotonic() - t0 < limit:
        idx = torch.randint(len(x), (batch,), generator=gen)
        xb, yb = frames[idx], target[idx]
        flip = torch.rand(batch, generator=gen) < 0.5  # a mirrored street is a street
        xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
        yb = torch.where(flip[:, None, None], yb.flip(-1), yb)
        frac = (time.monotonic() - t0) / limit
        for g in opt.param_groups:  # cosine decay over the time budget
            g["lr"] = lr * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0)))
        loss = (model(xb) - yb).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        bar.n = int(time.monotonic() - t0)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", step=step)
        if time.monotonic() - saved > save_every_s:
            save()
            saved = time.monotonic()
    bar.close()
    save()
    model.eval()
    return {"steps": step, "train_loss": float(np.mean(losses[-100:])),
            "heldout": log_depth_error(model, xh, dh)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m world.training.depth",
        description="Train the depth model of the MVDT's geometric memory on sandbox scenes "
                    "(exact depth from the renderer); CPU, one thread.")
    parser.add_argument("--out", required=True, help="folder for depth.safetensors/depth.json")
    parser.add_argument("--scenes", type=int, default=400, help="training scenes (24 frames each)")
    parser.add_argument("--minutes", type=float, default=20.0, help="training time")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = train_depth(args.out, scenes=args.scenes, minutes=args.minutes, seed=args.seed)
    print(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
