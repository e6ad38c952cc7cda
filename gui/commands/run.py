"""``yume run``: steer a world (window when there is a display, headless scripted run otherwise)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _resolution(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a resolution; write HEIGHTxWIDTH such as 256x256") from err
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"resolution {text} must be positive, e.g. 256x256")
    return h, w


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run", help="steer a world with the keyboard or a decoder (the main app)",
        description=(
            "Open the Yume BCI window: the world on the left (W/A/S/D move, arrows turn and "
            "tilt), live signals on the right. Without a display, run a scripted ~20 s route "
            "headless and write an animated GIF, a contact sheet, a signal plot and the session "
            "log into --out."),
    )
    p.add_argument("--world", default="sandbox",
                   help="world engine: sandbox, mvdt, or remote://HOST:PORT[/ENGINE] for one "
                        "that runs in `yume world serve` (token: $YUME_WORLD_TOKEN)")
    p.add_argument("--seed", type=int, default=0, help="scene seed")
    p.add_argument("--resolution", type=_resolution, default=(256, 256),
                   help="frame size HEIGHTxWIDTH (default: 256x256)")
    p.add_argument("--source", default="simulated",
                   help="signal source: simulated (a simulated participant streamed over LSL), "
                        "synthetic (BrainFlow), brainflow:BOARD[:PORT], lsl:NAME, file:PATH, "
                        "a .toml/.json source file, or none")
    p.add_argument("--checkpoint", type=Path, default=None, metavar="DIR",
                   help="mvdt: a checkpoint folder (model.safetensors + config.json, e.g. from "
                        "`yume world export`) instead of the shipped "
                        "world/checkpoints/mvdt-warp (mvdt-sandbox: the model without the "
                        "geometric memory)")
    p.add_argument("--start-image", type=Path, default=None, metavar="PATH",
                   help="an image file (PNG, JPEG...; grayscale, RGBA and 16-bit are converted) "
                        "the world starts from: mvdt starts from the picture itself, the "
                        "sandbox colours scene --seed with the picture's dominant colours")
    p.add_argument("--decoder", type=Path, default=None,
                   help="decoder bundle from `yume train`: decoded brain signals steer the world "
                        "(the keyboard still overrides; Esc is the panic stop)")
    p.add_argument("--adapt", choices=("all", "rest", "none"), default=None,
                   help="re-centre the decoder online, without labels, from every decoded "
                        "window or from those decoded as rest (rc_* pipelines of `yume train "
                        "--pipelines`; rest needs `--asynchronous`); default: what the bundle "
                        "was tuned with (an asynchronous rc_ts_lr bundle adapts from every "
                        "window), none turns it off")
    p.add_argument("--control-mode", choices=("direct", "discrete"), default="direct",
                   help="decoder control: direct = the action lasts while the class is held; "
                        "discrete = each detection moves the world for one second")
    p.add_argument("--out", type=Path, default=Path("runs"), help="folder for session outputs")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--headless", dest="headless", action="store_true", default=None,
                      help="scripted run without a window, even with a display")
    mode.add_argument("--window", dest="headless", action="store_false",
                      help="open the window (needs a display)")
    p.add_argument("--fast", action="store_true",
                   help="headless: do not pace the route in real time")
    p.add_argument("--task", choices=("auto", "mission", "route", "cued", "navigation"),
                   default="auto",
                   help="what the run does. mission: calibrate the simulated participant faster "
                        "than real time, train a decoder with a no-control state, then (headless) "
                        "a cued online run and a navigation task steered by the decoded EEG, or "
                        "(window) the window with that decoder, the keys playing the "
                        "participant's intent; route: the scripted ~20 s route headless, free "
                        "keyboard steering in the window; cued / navigation: that online task "
                        "alone (headless: the task's intent steers through --decoder, or "
                        "directly without one; window: the task's instruction above the world, "
                        "a person steers, or with --decoder the simulated participant imagines "
                        "what the task asks). auto is "
                        "mission for the simulated source without --decoder, otherwise route")
    p.add_argument("--participant", choices=("easy", "realistic"), default="easy",
                   help="mission: the simulated participant (easy: a clear imagery signature, "
                        "so that the loop can be seen working; realistic: about as hard to "
                        "decode as a person)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="window: close automatically after this many seconds")
    p.add_argument("--photodiode", action="store_true",
                   help="window: a square in the world view's top-left corner flips "
                        "black/white with every new command the world shows, and each flip is "
                        "an LSL marker (stream 'yume-photodiode') and a 'photodiode' log line; "
                        "tape a photodiode on it, record it on an auxiliary channel, and compare")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gui.app import RunOptions, has_display, run_headless_session, run_window

    if args.adapt and not args.decoder:
        raise ValueError("--adapt re-centres a decoder; give one with --decoder.")

    opts = RunOptions(world=args.world, seed=args.seed, resolution=args.resolution,
                      source=args.source, decoder=args.decoder,
                      control_mode=args.control_mode, adapt=args.adapt, out=args.out,
                      headless=args.headless,
                      realtime=not args.fast, max_seconds=args.max_seconds,
                      checkpoint=args.checkpoint, start_image=args.start_image,
                      photodiode=args.photodiode)
    headless = (not has_display()) if opts.headless is None else opts.headless
    if opts.photodiode and headless:
        raise ValueError("--photodiode draws its patch in the window; run with a display or "
                         "--window.")
    task = args.task
    if task == "auto":
        task = "mission" if args.source == "simulated" and args.decoder is None else "route"
    if task == "mission":
        return _mission(args, opts, headless)
    if task in ("cued", "navigation"):
        opts.task = task  # the window shows its instructions; headless runs it unattended
    if not headless:
        return run_window(opts)
    result = run_headless_session(opts)
    s = result.summary
    print(f"headless run: {s['frames']} frames of the {s['world']} world "
          f"({s['generation_fps']} frames/s generated), outputs in {result.folder}")
    print(f"  animation:     {result.animation}")
    print(f"  contact sheet: {result.contact_sheet}")
    if result.signals:
        print(f"  signals:       {result.signals}")
    print(f"  session log:   {result.log}")
    if "decoder_agreement" in s:
        print(f"  decoder:       the world did what the participant intended in "
              f"{s['decoder_agreement']:.0%} of the frames "
              f"({s['decoder_agreement_moving']:.0%} of those meant to move)")
    if s.get("interrupted"):
        print("  (interrupted: the outputs hold the route up to the stop)")
        return 130
    return 0


def _mission(args: argparse.Namespace, opts, headless: bool) -> int:
    """``--task mission``: the whole loop, headless or up to the decoder in the window."""
    from dataclasses import replace

    from gui.app import make_engine, run_window
    from gui.mission import (
        MissionOptions,
        calibrate_and_train,
        participant_source_file,
        print_mission,
        run_mission,
    )

    engine, _ = make_engine(opts)  # a bad world, resolution or image fails before training
    engine.close()
    mission = MissionOptions(out=args.out, world=args.world, resolution=args.resolution,
                             seed=args.seed, participant=args.participant)
    if headless:
        result = run_mission(mission)
        print_mission(result)
        return 0
    from gui.app import session_folder

    folder = session_folder(args.out)
    print("calibrating the simulated participant (faster than real time) and training a "
          "decoder with a no-control state ...", flush=True)
    bundle, _ = calibrate_and_train(folder / "calibration", mission)
    source = participant_source_file(folder / "participant.json", mission)
    print(f"decoder: {bundle}; in the window the keys make the participant imagine (← left "
          "hand, → right hand, W feet) and the decoded EEG steers", flush=True)
    return run_window(replace(opts, decoder=bundle, source=str(source), control_mode="discrete"))
