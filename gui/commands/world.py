"""``yume world``: make sandbox data, train, distill and evaluate the MVDT world model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_CHECKPOINT = "world/checkpoints/mvdt-warp"
DEFAULT_RECIPE = "world/recipes/mvdt-warp.json"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "world", help="world-model data, training and evaluation",
        description="Generate sandbox exploration clips, train the MVDT world model, train its "
                    "inverse-dynamics evaluator and few-step student, and evaluate it against the "
                    "sandbox.",
    )
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])
    ws = p.add_subparsers(dest="world_command", metavar="SUBCOMMAND")

    d = ws.add_parser("data", help="generate exploration clips from the sandbox",
                      description="Random plausible walks through sandbox scenes, written as "
                                  "safetensors shards with a JSON index (world/data.py).")
    d.add_argument("--out", required=True, help="output folder")
    d.add_argument("--clips", type=int, default=256, help="number of clips (one scene each)")
    d.add_argument("--resolution", type=int, default=64, help="square frame size in pixels")
    d.add_argument("--chunks", type=int, default=16, help="actions (chunks) per clip")
    d.add_argument("--frames-per-step", type=int, default=4, help="frames per chunk")
    d.add_argument("--split", choices=("train", "heldout"), default="train",
                   help="scene-seed range (train and held-out never share a scene)")
    d.add_argument("--seed", type=int, default=0, help="seed of scenes and actions")
    d.add_argument("--shard-size", type=int, default=64, help="clips per shard file")
    d.add_argument("--push", type=float, default=0.0, metavar="P",
                   help="chance that a walker blocked by a wall keeps pushing into it instead of "
                        "turning away (0 = always turn)")
    d.set_defaults(func=run_data)

    t = ws.add_parser("train", help="train (or resume) the MVDT world model",
                      description="Run a recipe (stages in one file: clips, IDMs, training "
                                  "runs, export), or one training run from a JSON config; "
                                  "re-running skips finished stages and resumes the "
                                  "interrupted one from its last checkpoint.")
    source = t.add_mutually_exclusive_group()
    source.add_argument("--recipe", default=None,
                        help=f"recipe file (default {DEFAULT_RECIPE}: rebuilds the shipped "
                             "checkpoint from nothing)")
    source.add_argument("--config", default=None,
                        help="one training config instead of a recipe (world/configs/tiny.json; "
                             "the shipped model's stage configs are in world/configs/history/)")
    t.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a recipe variable, e.g. --set runs=/scratch/runs or "
                        "--set out=world/checkpoints/mvdt-warp")
    t.add_argument("--device", default=None,
                   help="device of every recipe stage (cpu, cuda, auto = CUDA when present; "
                        "default: the recipe's, auto)")
    t.add_argument("--stages", type=int, metavar="N",
                   help="run only the recipe's first N stages (finished ones count)")
    t.add_argument("--max-steps", type=int, help="override the config's max_steps (with a "
                                                  "recipe: cap every training stage)")
    t.add_argument("--max-minutes", type=float, help="override the config's max_minutes")
    t.add_argument("--threads", type=int, help="override the config's torch threads")
    t.add_argument("--for-minutes", type=float, metavar="M",
                   help="stop this call after M minutes (with a checkpoint) without changing the "
                        "run's budget or schedule; run again to resume")
    t.set_defaults(func=run_train)

    x = ws.add_parser("export", help="copy a training run's checkpoint into a shippable folder",
                      description="Copy the EMA checkpoint, training log, loss plot, IDM and "
                                  "recommended sampler of a run into one folder.")
    x.add_argument("--run", default="runs/world/sandbox-64", help="training run folder")
    x.add_argument("--out", default=DEFAULT_CHECKPOINT, help="destination folder")
    x.add_argument("--idm", default=None, help="IDM folder to include")
    x.add_argument("--sampler", default=None,
                   help='recommended sampler as JSON, e.g. \'{"name": "euler", "params": '
                        '{"num_steps": 4, "guidance_scale": 1.0}}\'')
    x.add_argument("--weights", choices=("ema", "raw"), default="ema",
                   help="weights to ship: the EMA weights or the last raw ones")
    x.set_defaults(func=run_export)

    i = ws.add_parser("idm", help="train the inverse-dynamics evaluator",
                      description="Train the action classifier on ground-truth sandbox clips and "
                                  "report its held-out accuracy.")
    i.add_argument("--data", default="runs/world/data/sandbox-64-train",
                   help="training clip folders, comma-separated")
    i.add_argument("--heldout", default="runs/world/data/sandbox-64-heldout",
                   help="held-out clips")
    i.add_argument("--out", default=f"{DEFAULT_CHECKPOINT}/idm", help="output folder")
    i.add_argument("--steps", type=int, default=1500, help="training steps")
    i.add_argument("--dropout", type=float, default=0.3, help="dropout of the classifier head")
    i.add_argument("--batch", type=int, default=64, help="pairs per training step")
    i.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="stop after M minutes even if --steps are not done")
    i.add_argument("--device", default="cpu",
                   help="torch device to train on (cpu, cuda); batches are drawn on the CPU")
    i.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    i.add_argument("--width", type=int, default=24,
                   help="channels of the first strided layer (the CNN's width multiplier)")
    i.add_argument("--seed", type=int, default=0,
                   help="seed of initialisation and batches (a motion critic for training "
                        "should differ from the evaluator in seed and data)")
    i.set_defaults(func=run_idm)

    s = ws.add_parser("distill", help="train the few-step student from a teacher checkpoint",
                      description="Distil the 50-step teacher into a few-step student.")
    s.add_argument("--teacher", default=DEFAULT_CHECKPOINT, help="teacher checkpoint folder")
    s.add_argument("--data", default="runs/world/data/sandbox-64-train",
                   help="training clips; each teacher trajectory starts from one")
    s.add_argument("--out", default="runs/world/student", help="output folder")
    s.add_argument("--student-steps", type=int, default=4, help="sampler steps of the student")
    s.add_argument("--teacher-steps", type=int, default=16, help="Euler steps of the teacher")
    s.add_argument("--teacher-guidance", type=float, default=3.0,
                   help="teacher's guidance scale (baked into the student)")
    s.add_argument("--trajectories", type=int, default=64, help="teacher trajectories recorded")
    s.add_argument("--max-steps", type=int, default=500, help="student training steps")
    s.add_argument("--max-minutes", type=float, default=20.0,
                   help="stop after this many minutes even if --max-steps are not done")
    s.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    s.set_defaults(func=run_distill)

    e = ws.add_parser("eval", help="evaluate a checkpoint against the sandbox",
                      description="PSNR/SSIM per step vs repeat-last-frame, IDM action following, "
                                  "drift and speed on held-out scenes; prints a table, writes "
                                  "JSON, a PNG strip and a GIF.")
    e.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="checkpoint folder")
    e.add_argument("--idm", default=None,
                   help="IDM folder (default: CHECKPOINT/idm when present)")
    e.add_argument("--also-idm", nargs="+", default=[], metavar="DIR",
                   help="more IDM folders that score the same rollouts (a second opinion, e.g. "
                        "on a model trained against an IDM critic)")
    e.add_argument("--episodes", type=int, default=8, help="held-out scenes scored")
    e.add_argument("--horizon", type=int, default=16, help="chunks per scored rollout")
    e.add_argument("--drift-chunks", type=int, default=64, help="chunks per long drift rollout")
    e.add_argument("--drift-episodes", type=int, default=2, help="long drift rollouts")
    e.add_argument("--sampler", default="euler", help="euler, tts-sde or aam")
    e.add_argument("--steps", type=int, default=4, help="sampler steps")
    e.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale")
    e.add_argument("--guidance-interval", default="0,1", metavar="LOW,HIGH",
                   help="guide only the steps whose noise level lies in [LOW, HIGH] (0,1 = all)")
    e.add_argument("--negative", choices=("null", "still"), default="null",
                   help="what guidance pushes away from: the null prompt (Yume), or the same "
                        "rotation standing still (amplifies the walking the action asks for)")
    e.add_argument("--shift", type=float, default=None,
                   help="sampler schedule shift (default: the model's training shift)")
    e.add_argument("--cache-blocks", type=int, default=0,
                   help="residual-cache this many least important blocks")
    e.add_argument("--cache-reuse", type=int, default=0, help="calls reusing a cached residual")
    e.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    e.add_argument("--seed", type=int, default=0, help="seed of scenes, actions and noise")
    e.add_argument("--speed", action="store_true", help="also time batch-1 generation")
    e.add_argument("--out", default="runs/world/eval", help="folder for eval.json and images")
    e.add_argument("--shipped-sampler", action="store_true",
                   help="take sampler, steps, guidance, interval, shift and negative from "
                        "CHECKPOINT/sampler.json (the sampler the checkpoint ships with) instead "
                        "of the options above")
    e.add_argument("--honest", action="store_true",
                   help="the honest evaluation instead (world/honest_eval.py): fresh scenes "
                        "outside the train and held-out ranges; repeat-last-frame and camera-warp "
                        "baselines; PSNR/SSIM/sharpness at horizons 1, 4, 8, 16; loop closure; "
                        "long-horizon windows; action following by a training-free judge; "
                        "writes honest.json and drive.png")
    e.add_argument("--loop-episodes", type=int, default=8,
                   help="--honest: scenes per loop (turn / walk K out and back, K = 2, 4, 8)")
    e.add_argument("--long-episodes", type=int, default=4,
                   help="--honest: long random walks")
    e.add_argument("--long-chunks", type=int, default=64,
                   help="--honest: chunks per long walk (reported in windows of 16)")
    e.add_argument("--prior-depth", action="store_true",
                   help="--honest: warp the model's geometric memory with the fixed depth prior "
                        "even when the checkpoint ships a learned depth (CHECKPOINT/depth), "
                        "for the ablation")
    e.set_defaults(func=run_eval)

    v = ws.add_parser("serve", help="serve world engines over a WebSocket API",
                      description="Run the world service (world/service.py): sessions open a "
                                  "sandbox or MVDT world over a WebSocket at /ws, send actions "
                                  "and receive frames; GET /viewer is a browser viewer (keys "
                                  "in, frames out; ?token=... off localhost). Binds to "
                                  "127.0.0.1 unless --host says otherwise; any other address "
                                  "needs a token.")
    v.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 (every interface) or any address other "
                        "than loopback requires --token (default: 127.0.0.1)")
    v.add_argument("--port", type=int, default=8765, help="TCP port (0: any free port)")
    v.add_argument("--token", default=None,
                   help="token every client must send (default: $YUME_WORLD_TOKEN); required "
                        "off localhost")
    v.add_argument("--engines", default="sandbox,mvdt", help="engines sessions may open")
    v.add_argument("--checkpoint", default=None, help="MVDT checkpoint folder (default: shipped)")
    v.add_argument("--device", default="cpu", help="torch device of MVDT sessions (cpu, cuda)")
    v.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    v.add_argument("--max-sessions", type=int, default=4, help="sessions open at once")
    v.add_argument("--max-side", type=int, default=1024, help="largest frame height or width")
    v.add_argument("--max-upload-mb", type=float, default=8.0,
                   help="largest start image or clip, in MiB")
    v.add_argument("--engine-process", action="store_true",
                   help="run each session's engine in a process of its own: a crashed engine "
                        "ends only its session (costs more CPU per frame than a thread on a "
                        "small machine; worth it for GPU models)")
    v.add_argument("--cluster", nargs="?", const="", default=None, metavar="CONFIG.json",
                   help="serve as a Ray Serve deployment across the GPUs of a Ray cluster "
                        "(world/cluster.py; needs ray[serve]): a replica per GPU, a session "
                        "pinned to its replica, --max-sessions per replica; the JSON file "
                        "holds the cluster settings (address, min_replicas, max_replicas, "
                        "target_sessions, ...); the options above override it")
    v.set_defaults(func=run_serve)


def run_data(args: argparse.Namespace) -> int:
    from world.training.data import WalkPolicy, write_dataset

    path = write_dataset(args.out, args.clips, args.resolution, args.chunks,
                         args.frames_per_step, split=args.split, seed=args.seed,
                         clips_per_shard=args.shard_size,
                         policy=WalkPolicy(push_probability=args.push))
    print(f"wrote {args.clips} {args.split} clips: {path}")
    return 0


def _interval(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        low, high = -1.0, -1.0
    if not 0.0 <= low <= high <= 1.0:  # the CLI prints the error as one line
        raise ValueError(f"--guidance-interval takes LOW,HIGH with 0 <= LOW <= HIGH <= 1 (e.g. "
                         f"0,0.25), not {text!r}.")
    return low, high


def run_train(args: argparse.Namespace) -> int:
    if args.config is None:
        return _run_recipe(args)
    from world.training.train import TrainConfig, train

    cfg = TrainConfig.load(args.config)
    if args.max_minutes is not None:
        cfg.max_minutes = args.max_minutes
    if args.threads is not None:
        cfg.threads = args.threads
    out = train(cfg, max_steps=args.max_steps, session_minutes=args.for_minutes)
    print(f"checkpoint: {out}")
    return 0


def _run_recipe(args: argparse.Namespace) -> int:
    from world.training.recipe import run_recipe

    if args.max_minutes is not None or args.threads is not None or args.for_minutes is not None:
        raise ValueError("--max-minutes, --threads and --for-minutes change one training "
                         "config; with a recipe, edit its stages (or use --config FILE).")
    variables = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--set takes NAME=VALUE (e.g. runs=/scratch/runs), not {item!r}.")
        variables[name.strip()] = value
    records = run_recipe(args.recipe or DEFAULT_RECIPE, variables, device=args.device,
                         stop_after=args.stages, max_steps=args.max_steps)
    for r in records:
        made = r.get("checkpoint") or r.get("out") or ""
        print(f"{r['status']:8} {r['name']:28} {r['seconds']:8.1f} s  {made}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from world.training.train import export_checkpoint

    sampler = json.loads(args.sampler) if args.sampler else None
    out = export_checkpoint(args.run, args.out, args.idm, sampler, args.weights)
    print(f"exported: {out}")
    return 0


def run_idm(args: argparse.Namespace) -> int:
    from world.training.idm import train_idm_from_folders

    seconds = None if args.max_minutes is None else 60.0 * args.max_minutes
    report = train_idm_from_folders(args.data, args.heldout, args.out, steps=args.steps,
                                    threads=args.threads, seconds=seconds,
                                    config={"dropout": args.dropout, "width_mult": args.width},
                                    seed=args.seed, batch=args.batch, device=args.device)
    print(json.dumps(report, indent=1))
    return 0


def run_distill(args: argparse.Namespace) -> int:
    from world.training.distill import DistillConfig, distill

    cfg = DistillConfig(teacher=args.teacher, data=args.data, out=args.out,
                        student_steps=args.student_steps, teacher_steps=args.teacher_steps,
                        teacher_guidance=args.teacher_guidance, trajectories=args.trajectories,
                        max_steps=args.max_steps,
                        max_minutes=args.max_minutes, threads=args.threads)
    print(f"student: {distill(cfg)}")
    return 0


def _apply_shipped_sampler(args: argparse.Namespace) -> None:
    """Overwrite the sampler options by CHECKPOINT/sampler.json (for --shipped-sampler)."""
    path = Path(args.checkpoint) / "sampler.json"
    if not path.is_file():
        raise ValueError(f"--shipped-sampler: {path} does not exist.")
    spec = json.loads(path.read_text())
    params = spec.get("params", {})
    args.sampler = spec.get("name", args.sampler)
    args.steps = int(params.get("num_steps", args.steps))
    args.guidance = float(params.get("guidance_scale", args.guidance))
    args.shift = params.get("shift", args.shift)
    low, high = params.get("guidance_interval", (0.0, 1.0))
    args.guidance_interval = f"{low},{high}"
    args.negative = spec.get("negative", args.negative)


def run_eval(args: argparse.Namespace) -> int:
    from world.mvdt import codec_from_config, load_checkpoint
    from world.training.evaluate import EvalConfig, evaluate, format_table, measure_speed
    from world.training.idm import InverseDynamics

    if args.shipped_sampler:
        _apply_shipped_sampler(args)
    interval = _interval(args.guidance_interval)
    model = load_checkpoint(args.checkpoint)
    codec = codec_from_config(model.config.codec, args.checkpoint)
    idm_dir = Path(args.idm) if args.idm else Path(args.checkpoint) / "idm"
    idm = InverseDynamics.load(idm_dir) if (args.idm or idm_dir.is_dir()) else None
    cfg = EvalConfig(episodes=args.episodes, horizon=args.horizon,
                     drift_chunks=args.drift_chunks, drift_episodes=args.drift_episodes,
                     sampler=args.sampler, num_steps=args.steps, guidance_scale=args.guidance,
                     guidance_interval=interval, negative=args.negative,
                     shift=args.shift, cache_blocks=args.cache_blocks, cache_reuse=args.cache_reuse,
                     seed=args.seed, threads=args.threads)
    if args.honest:
        return _run_honest(args, model, codec, idm, cfg)
    judges = {Path(d).name: InverseDynamics.load(d) for d in args.also_idm}
    results = evaluate(model, codec, idm, cfg, out_dir=args.out, other_judges=judges)
    if args.speed:
        results["speed_batch1"] = measure_speed(model, codec, cfg)
        Path(args.out, "eval.json").write_text(json.dumps(results, indent=1))
    print(format_table(results))
    if args.speed:
        print(f"batch-1 generation: {results['speed_batch1']['frames_per_second']:.1f} frames/s")
    print(f"wrote {Path(args.out) / 'eval.json'}, rollouts.png, rollout.gif")
    return 0


def _run_honest(args: argparse.Namespace, model, codec, idm, cfg) -> int:
    import torch

    from world.honest_eval import (
        HonestConfig,
        format_honest_table,
        honest_evaluate,
        model_generator,
    )

    torch.set_num_threads(max(1, args.threads))
    mc = model.config
    honest = HonestConfig(episodes=args.episodes, horizon=args.horizon,
                          loop_episodes=args.loop_episodes, long_episodes=args.long_episodes,
                          long_chunks=args.long_chunks, seed=args.seed)
    from world.baselines import CameraWarp, SandboxCamera
    from world.mvdt.depth import DepthWarp, memory_depth

    depth = None if args.prior_depth else memory_depth(args.checkpoint)
    depth_warp = (None if depth is None else
                  DepthWarp(CameraWarp(SandboxCamera(mc.frame_height, mc.frame_width)), depth))
    results = honest_evaluate(model_generator(model, codec, cfg, depth_model=depth), honest,
                              (mc.frame_height, mc.frame_width), mc.frames_per_chunk,
                              out_dir=args.out, idm=idm, depth_warp=depth_warp)
    results["memory_depth"] = "fixed prior" if depth is None else "learned (checkpoint/depth)"
    results["sampler"] = {"name": cfg.sampler, "num_steps": cfg.num_steps,
                          "guidance_scale": cfg.guidance_scale,
                          "guidance_interval": list(cfg.guidance_interval),
                          "shift": cfg.shift, "negative": cfg.negative}
    results["checkpoint"] = str(args.checkpoint)
    Path(args.out, "honest.json").write_text(json.dumps(results, indent=1))
    print(format_honest_table(results))
    print(f"{results['seconds']:.0f} s; wrote {Path(args.out) / 'honest.json'}, drive.png")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    import os

    from world.service import ServiceConfig, WorldService

    token = args.token if args.token is not None else os.environ.get("YUME_WORLD_TOKEN")
    if args.cluster is not None:
        return _run_serve_cluster(args, token or None)
    cfg = ServiceConfig(  # refuses a non-loopback host without a token (one sentence)
        host=args.host, port=args.port, token=token or None,
        engines=tuple(e.strip().lower() for e in args.engines.split(",") if e.strip()),
        checkpoint=Path(args.checkpoint) if args.checkpoint else None, device=args.device,
        torch_threads=args.threads, max_sessions=args.max_sessions, max_side=args.max_side,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        engine_process=args.engine_process)
    service = WorldService(cfg)
    port = service.bind()
    print(f"world service on {cfg.host}:{port}: WebSocket at /ws, viewer at "
          f"http://{cfg.host}:{port}/viewer (Ctrl+C stops)", flush=True)
    service.serve_forever()
    return 0


def _run_serve_cluster(args: argparse.Namespace, token: str | None) -> int:
    from world.cluster import ClusterConfig, ClusterService

    overrides = dict(
        host=args.host, port=args.port, token=token,
        engines=tuple(e.strip().lower() for e in args.engines.split(",") if e.strip()),
        checkpoint=args.checkpoint, torch_threads=args.threads,
        sessions_per_replica=args.max_sessions, max_side=args.max_side,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024))
    cfg = (ClusterConfig.from_file(args.cluster, **overrides) if args.cluster
           else ClusterConfig(**overrides))
    service = ClusterService(cfg).start()
    status = service.status()
    print(f"world cluster service on {service.url} (replicas {status['replicas']}, options "
          f"{status['options']}); Ctrl+C stops", flush=True)
    service.serve_forever()
    return 0
