"""The ``yume`` command line: parses arguments and calls library functions, nothing more.

Each sub-command lives in its own module under :mod:`gui.commands` and provides
``add_parser(subparsers)``, which registers the parser and sets ``func`` to the function that
runs it. New modules there are picked up automatically.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import signal
import sys
import threading
import warnings
from collections.abc import Iterator

import gui.commands

# BrainFlow imports pkg_resources, which setuptools deprecates; users cannot act on that warning.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

EPILOG = """\
Typical session:
  yume run                     steer the sandbox world (window, or headless without a display)
  yume boards                  list BrainFlow boards and their ids
Run `yume COMMAND --help` for the options of each command."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yume",
        description="Yume BCI: steer a generated, explorable world with brain signals.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in sorted(pkgutil.iter_modules(gui.commands.__path__), key=lambda m: m.name):
        if not mod.name.startswith("_"):
            importlib.import_module(f"gui.commands.{mod.name}").add_parser(sub)
    for name, command in iter_parsers(parser):
        if name != "yume":  # the top level keeps its raw epilog
            # One formatter for all, so no command can print "(default: None)" again.
            command.formatter_class = gui.commands.HelpFormatter
    return parser


def iter_parsers(parser: argparse.ArgumentParser,
                 name: str = "yume") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every sub-command parser below it, as ``("yume world train", parser)``."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from iter_parsers(sub, f"{name} {sub_name}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``yume`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (kill, a session manager, logging out) stops every command the way Ctrl+C
        # does, so each closes and keeps what it was writing; the window and `yume record`
        # install their own handlers for the same end.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("yume: interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError) as err:
        # Project errors are ValueError/RuntimeError subclasses with a message for the user.
        if args.verbose >= 2:
            raise
        print(f"yume {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
