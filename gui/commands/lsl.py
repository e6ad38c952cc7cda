"""``yume lsl``: list the LSL streams visible on the network."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "lsl", help="list visible LSL streams (name, type, channels, rate, source id)",
        description="List the Lab Streaming Layer streams this machine can see, to pick one for "
                    "--source lsl:NAME. Use --name/--type to filter.",
    )
    p.add_argument("--name", default=None, help="only streams with this name")
    p.add_argument("--type", default=None, help="only streams of this content type (EEG...)")
    p.add_argument("--wait", type=float, default=1.0, help="seconds to listen for streams")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bci.lsl_inlet import find_streams

    streams = find_streams(name=args.name, type=args.type, timeout=args.wait)
    if not streams:
        print("no LSL stream found; is the amplifier's LSL app running on this network?")
        return 1
    print(f"{'name':<32}{'type':<12}{'ch':>5}{'rate':>10}  source id")
    for s in sorted(streams, key=lambda s: s.name()):
        rate = f"{s.nominal_srate():g}" if s.nominal_srate() else "irregular"
        print(f"{s.name():<32}{s.type():<12}{s.channel_count():>5}{rate:>10}  {s.source_id()}")
    return 0
