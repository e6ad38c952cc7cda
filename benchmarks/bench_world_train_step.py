"""Training-step time of the MVDT on one device: float32 against bfloat16 autocast, by batch size.

Times the full step the trainer runs (batch sampling and latent encoding on the device, masked
and unmasked passes, backward, AdamW) on clips already on disk; random initial weights (the
step's cost does not depend on training). Prints a table.

Usage::

    python benchmarks/bench_world_train_step.py \\
        --config world/configs/history/sandbox-64-gpu-p4b.json \\
        --data runs/world/data/gpu-train-01 --device cuda --batches 64,256
    python benchmarks/bench_world_train_step.py --config world/configs/tiny.json \\
        --data runs/world/data/tiny-train --device cpu --batches 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from world.data import ClipDataset, write_dataset  # noqa: E402
from world.mvdt import MVDTModel, codec_from_config, training_loss  # noqa: E402
from world.train import TrainConfig, build_model_config, make_sampler  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(model_config, sampler, batch: int, amp: bool, device: torch.device,
               warmup: int = 5, steps: int = 20) -> tuple[float, float]:
    """Seconds per training step and per batch sampling (mean of ``steps`` after ``warmup``)."""
    model = MVDTModel(model_config).to(device)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)

    def step() -> None:
        with torch.autocast(device.type, torch.bfloat16, enabled=amp):
            loss, _ = training_loss(model, sampler.sample(batch))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    per_step = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    for _ in range(steps):
        sampler.sample(batch)
    _sync(device)
    return per_step, (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="world/configs/history/sandbox-64-gpu-p4b.json",
                    help="training config whose model is timed")
    ap.add_argument("--data", default="runs/world/data/sandbox-64-heldout",
                    help="a clip folder (yume world data); made (32 held-out clips) if missing")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batches", default=None,
                    help="comma list of batch sizes (default: 64,256 on a GPU, 8,32 on a CPU)")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps per row (default: 20 on a GPU, 5 on a CPU)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    batches = args.batches or ("64,256" if gpu else "8,32")
    steps = args.steps or (20 if gpu else 5)
    if not (Path(args.data) / "index.json").is_file():
        write_dataset(args.data, 32, 64, 16, 4, split="heldout", seed=0)
    cfg = TrainConfig.load(args.config)
    mc = build_model_config(cfg)
    sampler = make_sampler(ClipDataset(args.data), codec_from_config(mc.codec), mc, 0, device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"{Path(args.config).stem} on {name}")
    print("| precision | batch | ms / step | sampling ms | examples / s |")
    print("|---|---|---|---|---|")
    for amp in (False, True):
        for batch in (int(b) for b in batches.split(",")):
            dt, ds = time_steps(mc, sampler, batch, amp, device, warmup=2 if not gpu else 5,
                                steps=steps)
            print(f"| {'bf16 autocast' if amp else 'float32'} | {batch} | {dt * 1e3:.1f} | "
                  f"{ds * 1e3:.1f} | {batch / dt:.0f} |", flush=True)


if __name__ == "__main__":
    main()
