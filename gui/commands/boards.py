"""``yume boards``: list the BrainFlow boards this installation knows."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "boards", help="list BrainFlow board ids and names",
        description="List every BrainFlow board id and name; pass either to --board.",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bci.brainflow_source import board_names

    for bid, name in sorted(board_names().items()):
        print(f"{bid:>4}  {name}")
    return 0
