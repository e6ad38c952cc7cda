"""Quality/speed trade-off of the shipped world model's samplers, caching and few-step student.

For each setting: batch-1 generation speed (frames/s, as the live engine runs), and on held-out
sandbox scenes the PSNR gain over "repeat the last frame" at horizon 8 and IDM action following.

    python benchmarks/bench_world_samplers.py [--checkpoint world/checkpoints/mvdt-sandbox]
        [--student runs/world/student] [--episodes 4] [--horizon 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from world.evaluate import EvalConfig, evaluate, measure_speed  # noqa: E402
from world.idm import InverseDynamics  # noqa: E402
from world.mvdt import codec_from_config, load_checkpoint  # noqa: E402
from world.mvdt.engine import read_sampler_spec  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="world/checkpoints/mvdt-sandbox")
    ap.add_argument("--student", default=None, help="distilled student checkpoint (optional)")
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--settings", default="all",
                    help="comma list of: euler50-cfg5, euler50-cfg5-cache, euler50, euler50-cache, "
                         "euler4, euler4-shift1, euler4-cfg3, euler2, euler1, shipped, student")
    ap.add_argument("--json", default=None, help="write the table as JSON here")
    args = ap.parse_args()
    ckpt = Path(args.checkpoint)
    teacher = load_checkpoint(ckpt)
    codec = codec_from_config(teacher.config.codec, ckpt)
    idm = InverseDynamics.load(ckpt / "idm")
    settings = {
        "euler50-cfg5": (teacher, dict(num_steps=50, guidance_scale=5.0)),
        "euler50-cfg5-cache": (teacher, dict(num_steps=50, guidance_scale=5.0, cache_blocks=2,
                                             cache_reuse=1)),
        "euler50": (teacher, dict(num_steps=50, guidance_scale=1.0)),
        "euler50-cache": (teacher, dict(num_steps=50, guidance_scale=1.0, cache_blocks=2,
                                        cache_reuse=1)),
        "euler4-cfg3": (teacher, dict(num_steps=4, guidance_scale=3.0)),
        "euler4": (teacher, dict(num_steps=4, guidance_scale=1.0)),
        "euler4-shift1": (teacher, dict(num_steps=4, guidance_scale=1.0, shift=1.0)),
        "euler2": (teacher, dict(num_steps=2, guidance_scale=1.0)),
        "euler1": (teacher, dict(num_steps=1, guidance_scale=1.0)),
    }
    # The checkpoint's recommended sampler, as the engine runs it.
    name, p, negative = read_sampler_spec(ckpt)
    settings["shipped"] = (teacher, dict(
        sampler=name, num_steps=p.get("num_steps", 4), guidance_scale=p.get("guidance_scale", 1.0),
        shift=p.get("shift"), guidance_interval=tuple(p.get("guidance_interval", (0.0, 1.0))),
        negative=negative))
    if args.student:
        meta = json.loads(Path(args.student, "student.json").read_text())
        settings["student"] = (load_checkpoint(args.student),
                               dict(num_steps=meta["num_steps"], guidance_scale=1.0))
    names = list(settings) if args.settings == "all" else args.settings.split(",")
    rows = []
    print(f"{'setting':20} {'calls/chunk':>11} {'frames/s':>9} {'PSNR@h':>7} {'gain@h':>7} "
          f"{'SSIM@h':>7} {'IDM acc':>8}")
    for name in names:
        model, params = settings[name]
        cfg = EvalConfig(episodes=args.episodes, horizon=args.horizon, drift_episodes=0,
                         threads=args.threads, **params)
        speed = measure_speed(model, codec, cfg, chunks=3)
        res = evaluate(model, codec, idm, cfg, progress=False)
        s, af = res["summary"], res["action_following"]["model"]
        row = {"setting": name, **params, "calls_per_chunk": speed["model_calls_per_chunk"],
               "frames_per_second": speed["frames_per_second"], "psnr_at_h": s["psnr_at_h"],
               "psnr_gain_at_h": s["psnr_gain_at_h"], "ssim_at_h": s["ssim_at_h"],
               "action_following": af["action"], "horizon": s["horizon_step"]}
        rows.append(row)
        print(f"{name:20} {row['calls_per_chunk']:>11} {row['frames_per_second']:9.1f} "
              f"{row['psnr_at_h']:7.2f} {row['psnr_gain_at_h']:+7.2f} {row['ssim_at_h']:7.3f} "
              f"{row['action_following']:8.3f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
