"""Action following by an independent evaluator (the flow judge) beside the geometric judge.

On the honest evaluation's fresh scenes (:func:`world.honest_eval.fresh_scene_seeds`, its
horizon and long-walk seeds for ``--seed``) every predictor's video is read chunk by chunk by

- :class:`world.flow_judge.FlowJudge`: frame-to-frame motion (phase correlation, planar flow
  fits) read by two small tree ensembles trained on sandbox scenes of their own seed range (no
  model, warp or critic ever saw them) -- the independent evaluator;
- :class:`world.action_judge.GeometricJudge`: analysis by synthesis with the very warp that
  ``mvdt-warp`` is conditioned on, so biased in that model's favour (shown for comparison).

Predictors: the truth (each judge's ceiling), "repeat the start frame", the geometric warp of
the start frame (:class:`world.baselines.CameraWarp`) and the MVDT checkpoints. Reported:
translation and rotation accuracy at h1-h16 (the 16-chunk walks) and in chunks 49-64 of the
64-chunk walks, each with its fraction of the ceiling; single horizons h1/h4/h8/h16; per key;
and, for turning chunks, the whole-chunk shift against the sum of the frame-to-frame shifts
(a chunk that dissolves into its end view instead of panning has only the first).

    .venv/bin/python benchmarks/bench_action_judge.py [--episodes 16] [--long-episodes 4] \\
        [--checkpoints world/checkpoints/mvdt-sandbox world/checkpoints/mvdt-warp] \\
        [--cache runs/world/judge-videos] [--json out.json] [--threads 2]

Generating the models' videos is the slow part (minutes on a CPU); ``--cache`` keeps them in an
``.npz`` per checkpoint so a rerun only judges.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from control.actions import ROTATION_AXES, ROTATIONS, TRANSLATIONS  # noqa: E402
from world.action_judge import GeometricJudge, judge_scores  # noqa: E402
from world.baselines import CameraWarp, SandboxCamera, repeat_last  # noqa: E402
from world.flow_judge import FlowJudge, chunk_windows, phase_correlation  # noqa: E402
from world.honest_eval import (  # noqa: E402
    HonestConfig,
    _pairs,
    _pitch_before_chunks,
    fresh_scene_seeds,
    model_generator,
)
from world.training.evaluate import EvalConfig, ground_truth_episodes  # noqa: E402

RESOLUTION = (64, 64)
FPC = 4


def honest_parts(cfg: HonestConfig) -> dict[str, dict]:
    """The horizon and long-walk clips :func:`world.honest_eval.honest_evaluate` scores.

    Same seed layout (horizon scenes, then loop scenes, then long scenes) and the same action
    streams (``seed`` for the horizon walks, ``seed + 1`` for the long walks).
    """
    seeds = fresh_scene_seeds(cfg.episodes + cfg.loop_episodes + cfg.long_episodes, cfg.seed)
    s_h = seeds[:cfg.episodes]
    s_long = seeds[cfg.episodes + cfg.loop_episodes:]
    return {"horizon": {"seeds": s_h, "clips": ground_truth_episodes(
                s_h, cfg.horizon, RESOLUTION, FPC, seed=cfg.seed)},
            "long": {"seeds": s_long, "clips": ground_truth_episodes(
                s_long, cfg.long_chunks, RESOLUTION, FPC, seed=cfg.seed + 1)}}


def baseline_videos(clips, n: int) -> dict[str, np.ndarray]:
    """Truth, repeat and warp videos ``(B, n * FPC, H, W, 3)`` of a set of clips."""
    first = np.stack([c.frames[0] for c in clips])
    actions = np.stack([c.actions[:n] for c in clips])
    return {"truth": np.stack([c.frames[1:1 + n * FPC] for c in clips]),
            "repeat": repeat_last(first, n * FPC),
            "warp": CameraWarp(SandboxCamera(*RESOLUTION)).predict(first, actions, FPC)}


def model_videos(checkpoint: str, parts: dict, cache: Path | None, threads: int
                 ) -> dict[str, np.ndarray]:
    """A checkpoint's rollouts of every part (its shipped sampler), cached in ``cache``."""
    from world.mvdt import codec_from_config, load_checkpoint
    from world.mvdt.engine import read_sampler_spec

    key = "-".join(f"{name}{len(p['seeds'])}x{p['clips'][0].actions.size}"
                   for name, p in parts.items())
    path = None if cache is None else cache / f"{Path(checkpoint).name}-{key}.npz"
    seeds = np.concatenate([p["seeds"] for p in parts.values()])
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if np.array_equal(z["seeds"], seeds):
                print(f"  {checkpoint}: videos from {path}", flush=True)
                return {name: z[name] for name in parts}
    torch.set_num_threads(threads)
    model = load_checkpoint(checkpoint)
    codec = codec_from_config(model.config.codec, checkpoint)
    name, params, negative = read_sampler_spec(checkpoint)
    cfg = EvalConfig(sampler=name, num_steps=int(params.get("num_steps", 4)),
                     guidance_scale=float(params.get("guidance_scale", 1.0)),
                     guidance_interval=tuple(params.get("guidance_interval", (0.0, 1.0))),
                     shift=params.get("shift"), negative=negative, threads=threads)
    generate = model_generator(model, codec, cfg, progress=True)
    out = {}
    for part, p in parts.items():
        t0 = time.perf_counter()
        out[part] = generate(p["clips"], p["clips"][0].actions.size)
        print(f"  {checkpoint} {part}: {time.perf_counter() - t0:.0f} s", flush=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, seeds=seeds, **out)
    return out


def read_all(video: np.ndarray, clips, flow: FlowJudge, geo: GeometricJudge) -> dict:
    """Both judges' (translation, rotation) reading of every chunk, ``(B, n, 2)`` each."""
    first = np.stack([c.frames[0] for c in clips])
    actions = np.stack([c.actions for c in clips])
    b, n = actions.shape
    before, after = _pairs(first, video, FPC)
    pitch = _pitch_before_chunks(actions, FPC)
    return {"flow": flow.predict(chunk_windows(first, video, FPC)).reshape(b, n, 2),
            "geometric": geo.predict(before, after, pitch).reshape(b, n, 2)}


def yaw_coherence(video: np.ndarray, clips) -> dict:
    """How a predictor's turns move: whole-chunk shift against the sum of frame-to-frame shifts.

    On chunks commanded to turn, the median horizontal shift (pixels, signed so that the
    commanded direction is positive) of the frame before against the chunk's last frame, and
    of the four consecutive frame pairs added up. The two agree for a picture that pans; a
    chunk that dissolves into its end view has the first without the second, which the
    flow judge (it reads consecutive frames) does not count as a turn.
    """
    first = np.stack([c.frames[0] for c in clips])
    acts = np.stack([c.actions for c in clips]).reshape(-1)
    yaw = np.array([ROTATION_AXES[ROTATIONS[a % len(ROTATIONS)]][0] for a in acts])
    win = chunk_windows(first, video, FPC)[yaw != 0]
    grey = torch.from_numpy(win.astype(np.float32) / 255) @ torch.tensor([0.299, 0.587, 0.114])
    sign = -yaw[yaw != 0]  # turning right moves the picture left
    with torch.no_grad():
        pair = phase_correlation(grey[:, 0], grey[:, -1])[:, 0].numpy()
        steps = phase_correlation(grey[:, :-1], grey[:, 1:])[..., 0].sum(1).numpy()
    return {"chunks": int(len(win)), "whole_chunk_px": float(np.median(pair * sign)),
            "sum_of_steps_px": float(np.median(steps * sign))}


def _ratio(x: float, ceiling: float) -> float:
    return x / ceiling if ceiling > 0 else float("nan")


def summarise(reads: dict, actions: np.ndarray, window: slice) -> dict:
    """Scores of every predictor and judge on chunks ``window``, with fractions of the ceiling."""
    acts = actions[:, window].reshape(-1)
    out: dict = {}
    for judge in ("flow", "geometric"):
        scores = {name: judge_scores(r[judge][:, window].reshape(-1, 2), acts)
                  for name, r in reads.items()}
        ceiling = scores["truth"]
        for s in scores.values():
            s["translation_of_ceiling"] = _ratio(s["translation"], ceiling["translation"])
            s["rotation_of_ceiling"] = _ratio(s["rotation"], ceiling["rotation"])
        out[judge] = scores
    return out


def per_chunk(reads: dict, actions: np.ndarray) -> dict:
    """Translation and rotation accuracy at each chunk index (over episodes), per judge."""
    want = np.stack(np.divmod(actions, len(ROTATIONS)), -1)  # (B, n, 2)
    return {judge: {name: {"translation": (r[judge][..., 0] == want[..., 0]).mean(0).tolist(),
                           "rotation": (r[judge][..., 1] == want[..., 1]).mean(0).tolist()}
                    for name, r in reads.items()}
            for judge in ("flow", "geometric")}


def format_table(res: dict) -> str:
    """One markdown table: predictor x judge, translation / rotation, h1-16 and chunks 49-64."""
    cols = [("h1-16", "horizon"), (f"chunks {res['late_window'][0]}-{res['late_window'][1]}",
                                   "late")]
    head = "| predictor | judge | " + " | ".join(
        f"{c} translation (of ceiling) | {c} rotation (of ceiling)" for c, _ in cols) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(cols))]
    names = list(res["horizon"]["flow"])
    for name in names:
        for judge in ("flow", "geometric"):
            cells = []
            for _, part in cols:
                s = res[part][judge].get(name)
                if s is None:
                    cells += ["-", "-"]
                    continue
                for axis in ("translation", "rotation"):
                    frac = ("ceiling" if name == "truth"
                            else f"{s[axis + '_of_ceiling']:.2f}")
                    cells.append(f"{s[axis]:.3f} ({frac})")
            lines.append(f"| {name} | {judge} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_horizons(res: dict, hs: tuple[int, ...] = (1, 4, 8, 16)) -> str:
    """Flow judge's translation / rotation accuracy at single horizons (16 chunks each)."""
    pc = res["per_chunk"]["horizon"]["flow"]
    lines = ["flow judge at single horizons (translation / rotation, one chunk per episode): "
             + ", ".join(f"h{h}" for h in hs)]
    for name, r in pc.items():
        lines.append(f"  {name}: " + ", ".join(
            f"{r['translation'][h - 1]:.2f}/{r['rotation'][h - 1]:.2f}" for h in hs))
    return "\n".join(lines)


def format_keys(res: dict, part: str = "horizon", judge: str = "flow") -> str:
    """Per-key accuracy lines (predictor: key accuracy/ceiling)."""
    truth = res[part][judge]["truth"]
    lines = [f"per key ({judge} judge, {part}; accuracy, ceiling in brackets):"]
    for name, s in res[part][judge].items():
        if name == "truth":
            continue
        t = ", ".join(f"{k} {v['accuracy']:.2f} ({truth['by_translation_key'][k]['accuracy']:.2f})"
                      for k, v in s["by_translation_key"].items())
        r = ", ".join(f"{k} {v['accuracy']:.2f} ({truth['by_rotation_key'][k]['accuracy']:.2f})"
                      for k, v in s["by_rotation_key"].items())
        lines.append(f"  {name}: translation {t}")
        lines.append(f"  {' ' * len(name)}  rotation    {r}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=16, help="16-chunk walks (h1-h16)")
    ap.add_argument("--long-episodes", type=int, default=4, help="64-chunk walks")
    ap.add_argument("--long-chunks", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0, help="honest_eval's seed (scenes, actions)")
    ap.add_argument("--checkpoints", nargs="*",
                    default=["world/checkpoints/mvdt-sandbox", "world/checkpoints/mvdt-warp"])
    ap.add_argument("--judge", default=None, help="flow-judge folder (default: the shipped one)")
    ap.add_argument("--cache", default=None, help="folder for the models' videos (.npz)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--videos-only", action="store_true", help="make the cache and stop")
    ap.add_argument("--json", default=None, help="also write the full results here")
    args = ap.parse_args()
    if args.long_chunks < 16:
        raise SystemExit("--long-chunks must be at least 16 (the late window is 16 chunks).")
    t0 = time.perf_counter()
    cfg = HonestConfig(episodes=args.episodes, horizon=16, long_episodes=args.long_episodes,
                       long_chunks=args.long_chunks, seed=args.seed)
    parts = honest_parts(cfg)
    print(f"scenes: horizon {parts['horizon']['seeds'].tolist()}, "
          f"long {parts['long']['seeds'].tolist()}", flush=True)
    videos = {part: baseline_videos(p["clips"], p["clips"][0].actions.size)
              for part, p in parts.items()}
    cache = Path(args.cache) if args.cache else None
    for ckpt in args.checkpoints:
        gen = model_videos(ckpt, parts, cache, args.threads)
        for part in parts:
            videos[part][Path(ckpt).name] = gen[part]
    if args.videos_only:
        return
    flow = FlowJudge.load(args.judge) if args.judge else FlowJudge.load()
    geo = GeometricJudge(SandboxCamera(*RESOLUTION), FPC)
    res: dict = {"seeds": {k: p["seeds"].tolist() for k, p in parts.items()},
                 "flow_judge": flow.describe(), "late_window": [args.long_chunks - 15,
                                                                args.long_chunks]}
    for part, p in parts.items():
        actions = np.stack([c.actions for c in p["clips"]])
        reads = {}
        for name, video in videos[part].items():
            t1 = time.perf_counter()
            reads[name] = read_all(video, p["clips"], flow, geo)
            print(f"  judged {part} {name}: {time.perf_counter() - t1:.1f} s", flush=True)
        window = (slice(0, actions.shape[1]) if part == "horizon"
                  else slice(args.long_chunks - 16, args.long_chunks))
        res["horizon" if part == "horizon" else "late"] = summarise(reads, actions, window)
        res.setdefault("per_chunk", {})[part] = per_chunk(reads, actions)
        if part == "horizon":
            res["yaw_coherence"] = {name: yaw_coherence(video, p["clips"])
                                    for name, video in videos[part].items()}
    res["seconds"] = time.perf_counter() - t0
    res["keys"] = {"translations": list(TRANSLATIONS), "rotations": list(ROTATIONS)}
    print()
    print(format_table(res))
    print()
    print(format_horizons(res))
    print()
    print("turning chunks, median shift in the turn's direction (px): whole chunk / sum of the "
          "frame-to-frame shifts")
    for name, c in res["yaw_coherence"].items():
        print(f"  {name}: {c['whole_chunk_px']:.2f} / {c['sum_of_steps_px']:.2f} "
              f"({c['chunks']} chunks)")
    print()
    print(format_keys(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
        print(f"wrote {args.json}")
    print(f"{res['seconds']:.0f} s")


if __name__ == "__main__":
    main()
