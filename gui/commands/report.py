"""``yume report``: the HTML report of a session folder (written by ``yume run``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report", help="write the HTML report of a recorded session",
        description=(
            "Read a session folder that `yume run` wrote (session.jsonl, decisions.tsv, "
            "latency, route, task results and the EEG recording) and write report.html into "
            "it: the run's settings, intended beside issued commands, decoder probabilities "
            "over time, the EEG around commands, the route over the map, latency per stage, "
            "gaps and signal-quality events, and the task's results. The figures (PNG) and "
            "the tables behind them (TSV/JSON) are saved in its report/ folder. `yume run` "
            "writes this report itself at the end of a run; use this command to redo it."),
    )
    p.add_argument("folder", type=Path, metavar="SESSION_FOLDER",
                   help="the session folder (the one `yume run` printed)")
    p.add_argument("--open", action="store_true",
                   help="open the report in the web browser once it is written")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gui.session_report import write_report

    path = write_report(args.folder, verbose="info" if args.verbose >= 2 else None)
    print(path)
    if args.open:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())
    return 0
