"""Sub-commands of ``yume``; each module registers one with ``add_parser``."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.HelpFormatter):
    """Help that states each option's default once, and only a real one.

    :class:`argparse.ArgumentDefaultsHelpFormatter` appends ``(default: ...)`` to every help
    text, which gives ``(default: None)`` for options decided later, a second default after
    one the text already explains, and ``(default: True)`` for a ``store_false`` flag whose
    destination really defaults to something else. Here the default is added only when the
    option takes a value, has a default worth printing, and its help does not already mention
    one (help texts describe non-literal defaults themselves, e.g. "default: every cue label").
    ``yume`` gives every sub-command parser this formatter (:func:`gui.cli.build_parser`).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or action.nargs == 0 or default is None
                or default is False or default is argparse.SUPPRESS
                or (isinstance(default, (str, list, tuple)) and not default)):
            return text
        return text + " (default: %(default)s)"
