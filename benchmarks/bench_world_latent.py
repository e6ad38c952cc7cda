"""Latent space for the 64x64 world model: fixed space-to-depth pixels vs a small trained Wan VAE.

Trains diffusers' ``AutoencoderKLWan`` (small config, world/vae.py) on sandbox clips for a fixed
wall-clock budget and reports reconstruction PSNR on held-out scenes and codec time per frame,
next to the space-to-depth pixel latent that the shipped model uses.

    python benchmarks/bench_world_latent.py [--seconds 240] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from world.data import ClipDataset, write_dataset  # noqa: E402
from world.vae import PixelLatent, reconstruction_psnr, train_wan_vae  # noqa: E402


def codec_ms_per_frame(space, frames: torch.Tensor, repeats: int = 3) -> float:
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            space.decode(space.encode(frames))
            best = min(best, time.perf_counter() - t0)
    return 1000 * best / (frames.shape[0] * frames.shape[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", default="runs/world/data/sandbox-64-train")
    ap.add_argument("--heldout", default="runs/world/data/sandbox-64-heldout")
    ap.add_argument("--seconds", type=float, default=240.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for split, path, n in (("train", args.train, 64), ("heldout", args.heldout, 8)):
        if not Path(path, "index.json").is_file():
            write_dataset(path, n, 64, 16, 4, split=split)
    train = ClipDataset(args.train).all_frames()[:128]
    held = ClipDataset(args.heldout).all_frames()[:8, :17]
    pixel = PixelLatent()
    vae, log = train_wan_vae(train, seconds=args.seconds)
    rows = [
        ("space-to-depth 4 (shipped)", pixel.channels, 1, 0.0,
         reconstruction_psnr(pixel, held), codec_ms_per_frame(pixel, held[:2])),
        (f"Wan VAE small, {len(log)} steps", vae.channels, 1, log[-1]["seconds"],
         reconstruction_psnr(vae, held), codec_ms_per_frame(vae, held[:2])),
    ]
    print(f"{'latent space':34} {'C@16x16':>8} {'train s':>8} {'PSNR dB':>8} "
          f"{'codec ms/frame':>15}")
    for name, c, _, secs, p, ms in rows:
        print(f"{name:34} {c:>8} {secs:8.0f} {p:8.2f} {ms:15.2f}")


if __name__ == "__main__":
    main()
