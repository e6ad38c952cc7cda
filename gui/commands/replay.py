"""``yume replay``: re-run a recorded session through the same (or another) decoder."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "replay", help="re-run a recorded session: same samples, same decisions, same world",
        description=(
            "Play a session folder written by `yume run` (headless or window) back through the "
            "decoder: before each recorded control tick the buffer holds exactly the samples the "
            "live decoder had, so the same bundle gives the same decisions bit for bit, and the "
            "world re-renders the resulting commands. Give --decoder to decode the same data with "
            "another bundle and compare. Writes a new session folder (decisions, ticks, route, "
            "latency, report) and comparison.json (identical or the first difference, commands "
            "as intended by each decoder). With --window the replay plays at the session's pace "
            "in a window: the re-rendered world beside the recorded probabilities and commands, "
            "with a cursor at the tick being replayed."),
    )
    p.add_argument("session", type=Path, help="the session folder (e.g. runs/20261201-101500)")
    p.add_argument("--decoder", type=Path, default=None,
                   help="another decoder bundle (default: the one the session ran with)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for the replay (default: SESSION/replays/<time>)")
    p.add_argument("--realtime", action="store_true",
                   help="wait between ticks as the session did; without it the replay "
                        "runs as fast as it can")
    p.add_argument("--window", action="store_true",
                   help="show the replay in a window at the session's pace (needs a display); "
                        "closing the window before the end stops it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.window:
        from gui.replay_window import run_replay_window

        window = run_replay_window(args.session, decoder=args.decoder, out=args.out)
        if window.error is not None:
            raise ValueError(window.error)
        if window.result is None:
            print(f"replay of {args.session}: stopped when the window closed")
            return 130
        result = window.result
    else:
        from gui.runtime.replay import replay_session

        result = replay_session(args.session, decoder=args.decoder, out=args.out,
                                realtime=args.realtime)
    c = result.comparison
    print(f"replay of {args.session}: {c['ticks']} ticks, {c['windows_replay']} decoded windows, "
          f"outputs in {result.folder}")
    if c["same_decoder"]:
        verdict = ("identical to the session's" if c["identical"] else
                   f"DIFFERENT from the session's from decoded window {c['first_difference_row']}")
        print(f"  decisions: {c['windows_identical']} of {c['windows_original']} windows "
              f"identical; {verdict}")
    print(f"  commands as intended: session {c['original_commands_as_intended']} of "
          f"{c['commands_original']}, replay {c['replay_commands_as_intended']} of "
          f"{c['commands_replay']} ({c['decoder']})")
    return 0 if c["identical"] or not c["same_decoder"] else 1
