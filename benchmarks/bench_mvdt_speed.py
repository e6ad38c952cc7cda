"""Speed of the MVDT world model: model call, sampler steps, chunks, residual caching.

Random weights (speed does not depend on training). The history is the steady-state one of a
long run (first frame + the full compression schedule), so the figures are those of chunk 1000
as much as of chunk 10; the last table checks that per-chunk time stays flat in an engine run.

Usage::

    .venv/bin/python benchmarks/bench_mvdt_speed.py                 # small preset, 50 steps
    .venv/bin/python benchmarks/bench_mvdt_speed.py --steps 10 --threads 2
    .venv/bin/python benchmarks/bench_mvdt_speed.py \\
        --train-config world/configs/history/sandbox-64.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from control.actions import Action
from world.mvdt import (
    MVDTConfig,
    MVDTModel,
    MVDTPipeline,
    ResidualCache,
    block_importance,
    least_important,
    preset,
)
from world.mvdt.engine import MVDTWorld
from world.mvdt.memory import history_token_count


def _model_config(args) -> tuple[MVDTConfig, str]:
    if args.train_config:
        spec = dict(json.loads(Path(args.train_config).read_text())["model"])
        name = spec.pop("preset", None)
        cfg = preset(name, **spec) if name else MVDTConfig.from_dict(spec)
        return cfg, Path(args.train_config).stem
    return preset(args.preset), args.preset


def _time(fn, repeats: int, warmup: bool = True) -> tuple[float, object]:
    out = fn() if warmup else None
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--train-config", default=None, help="use the model of a training config")
    ap.add_argument("--steps", type=int, default=50, help="sampler steps of the full samplers")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest on the shared 2-core machine)")
    ap.add_argument("--cache-blocks", type=int, default=3, help="k least important blocks")
    ap.add_argument("--engine-chunks", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg, label = _model_config(args)
    model = MVDTModel(cfg).eval()
    n_hist = 1 + cfg.max_history_frames
    g = torch.Generator().manual_seed(0)
    history = torch.randn(cfg.latent_channels, n_hist, cfg.latent_height, cfg.latent_width,
                          generator=g)
    x = torch.randn(1, cfg.latent_channels, cfg.chunk_latent_frames, cfg.latent_height,
                    cfg.latent_width, generator=g)
    action = Action("W", "→")
    hist_tokens = history_token_count(n_hist, cfg)
    print(f"MVDT speed, config {label}: {model.num_parameters() / 1e6:.2f} M params, "
          f"{cfg.chunk_tokens} chunk tokens + {hist_tokens} history tokens "
          f"({n_hist} history frames, bounded), {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.1f}")

    with torch.no_grad():
        ctx = model.encode_actions([action])
        hist = model.embed_history(history[None])
        t_call, _ = _time(lambda: model(x, 0.5, ctx, hist), 5)
        t_hist, _ = _time(lambda: model.embed_history(history[None]), 5)
    print(f"\none model call: {t_call * 1e3:.1f} ms; history embedding (once per chunk): "
          f"{t_hist * 1e3:.1f} ms\n")

    s = args.steps
    runs = [
        ("euler", {"num_steps": s, "guidance_scale": 5.0}, None),
        ("euler", {"num_steps": s, "guidance_scale": 1.0}, None),
        ("euler", {"num_steps": 4, "guidance_scale": 1.0}, None),
        ("tts-sde", {"num_steps": s, "guidance_scale": 5.0}, None),
        ("aam", {"num_steps": s, "guidance_scale": 5.0}, None),
    ]
    # Residual caching: calibrate block importance, cache the k least important blocks.
    with torch.no_grad():
        scores = block_importance(model, x, ctx, hist, num_steps=s)
    chosen = least_important(scores, args.cache_blocks)
    for reuse in (1, 2, 3):
        runs.append(("euler", {"num_steps": s, "guidance_scale": 5.0}, (chosen, reuse)))

    header = ("| sampler | steps | CFG | cache (blocks, reuse) | model calls | block runs skipped |"
              " ms / step | s / chunk | chunk fps | rel. diff vs uncached |")
    print(header)
    print("|" + "---|" * 10)
    ref_out = None
    for name, params, cache_spec in runs:
        cache = ResidualCache(*cache_spec) if cache_spec else None
        pipe = MVDTPipeline(model, sampler=name, cache=cache, **params)

        def run(pipe=pipe):
            gen = torch.Generator().manual_seed(1)
            return pipe.generate_latents(history, action, generator=gen)

        t, out = _time(run, 1, warmup=False)  # the model calls above warmed everything up
        if name == "euler" and params["num_steps"] == s and params["guidance_scale"] == 5.0 \
                and cache is None:
            ref_out = out
        diff = "-"
        if cache is not None and ref_out is not None:
            diff = f"{float((out - ref_out).norm() / ref_out.norm()):.3f}"
        cache_txt = f"{chosen}, {cache_spec[1]}" if cache_spec else "off"
        skipped = cache.skipped / (pipe.sampler.num_evals * len(model.blocks)) if cache else 0.0
        frames = cfg.frames_per_chunk
        print(f"| {name} | {params['num_steps']} | {params['guidance_scale']:g} | {cache_txt} | "
              f"{pipe.sampler.num_evals} | {skipped:.0%} | {t / params['num_steps'] * 1e3:.0f} | "
              f"{t:.2f} | {frames / t:.2f} | {diff} |")
    print(f"\nblock importance (relative change when reused, {len(scores)} blocks): "
          + ", ".join(f"{v:.4f}" for v in scores.tolist()))

    # One model call computing all blocks vs reusing the cached residuals of k blocks. The
    # variants are timed in interleaved rounds (best of 15), so drifting load from other jobs
    # hits them alike.
    print("\n| model call | blocks computed | ms (best of 15, interleaved) | speed-up |")
    print("|---|---|---|---|")
    n_blocks = len(model.blocks)
    variants: dict[str, object] = {"full": None}
    with torch.no_grad():
        for k in sorted({1, args.cache_blocks, n_blocks // 2}):
            cache = ResidualCache(least_important(scores, k), reuse=10**9)
            model(x, 0.5, ctx, hist, cache=cache.call())  # fills the residuals
            variants[f"reuse {k} cached residuals"] = cache
        best = {name: float("inf") for name in variants}
        for _ in range(15):
            for name, cache in variants.items():
                call = cache.call() if cache is not None else None
                t0 = time.perf_counter()
                model(x, 0.5, ctx, hist, cache=call)
                best[name] = min(best[name], time.perf_counter() - t0)
    for name, cache in variants.items():
        computed = n_blocks - (len(cache.blocks) if cache is not None else 0)
        print(f"| {name} | {computed} | {best[name] * 1e3:.1f} | "
              f"{best['full'] / best[name]:.2f} |")

    # Engine: per-chunk time and context size stay flat over a long run (4-step sampler).
    world = MVDTWorld(model=model, sampler_params={"num_steps": 4, "guidance_scale": 1.0})
    world.reset(seed=0)
    times, tokens = [], []
    for i in range(args.engine_chunks):
        chunk = world.step([Action("W"), Action("·", "→"), Action("A", "↑")][i % 3])
        times.append(chunk.info["generation_time"])
        tokens.append(chunk.info["history_tokens"])
    print("\n| engine chunk | history tokens | s / chunk (4-step Euler, no CFG) |")
    print("|---|---|---|")
    for i in sorted({0, 1, 4, 9, 19, args.engine_chunks - 1}):
        if i < len(times):
            print(f"| {i + 1} | {tokens[i]} | {times[i]:.3f} |")


if __name__ == "__main__":
    main()
