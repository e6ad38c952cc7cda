"""Reach all 81 actions with a few classes: a scanning menu or an SSVEP target grid.

Both menus pick an action in two levels: first the translation (9 items, ``·`` included), then
the rotation (9 items). A menu receives *detections* (class names) from the control policy in
``mode="menu"`` and returns the chosen :class:`~control.actions.Action` once both levels are
chosen (None before).

* :class:`ScanningMenu`: a highlight moves over the items (on a ``next`` detection, or on its own
  every ``scan_s`` seconds for one-switch users); ``select`` picks the highlighted item, ``back``
  returns to the first level. One class (with automatic scanning), two (next + select) or three
  (next + select + back) are enough: e.g. a jaw-clench switch alone reaches every action.
* :class:`GridMenu`: one class per target (e.g. nine SSVEP frequencies shown by
  :mod:`gui.ssvep_grid`); a detection of target ``i`` picks item ``i`` of the current level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from control.actions import ROTATIONS, TRANSLATIONS, Action
from control.mapping import MappingError

MENU_COMMANDS = ("select", "next", "back")
LEVELS: tuple[tuple[str, ...], ...] = (TRANSLATIONS, ROTATIONS)
LEVEL_NAMES = ("translation", "rotation")


class _TwoLevelMenu:
    """Shared state: the level being chosen and the translation picked so far."""

    def __init__(self) -> None:
        self.level = 0
        self.chosen: list[str] = []
        self.last_action: Action | None = None

    @property
    def items(self) -> tuple[str, ...]:
        """The keys offered at the current level."""
        return LEVELS[self.level]

    def reset(self) -> None:
        self.level = 0
        self.chosen = []

    def _pick(self, key: str) -> Action | None:
        self.chosen.append(key)
        if self.level + 1 < len(LEVELS):
            self.level += 1
            return None
        action = Action(*self.chosen)
        self.last_action = action
        self.reset()
        return action

    def describe(self) -> str:
        """One line for the control panel: what is being chosen."""
        done = " ".join(self.chosen)
        return f"choose {LEVEL_NAMES[self.level]}" + (f" (after {done})" if done else "")


class ScanningMenu(_TwoLevelMenu):
    """A scanning menu driven by ``select`` / ``next`` / ``back`` detections.

    Parameters
    ----------
    commands : dict of str to str
        Class name -> menu command (``"select"``, ``"next"`` or ``"back"``). Classes left out
        (e.g. ``"rest"``) do nothing.
    scan_s : float | None
        If set, the highlight advances on its own every ``scan_s`` seconds (one-switch
        scanning); otherwise only ``next`` moves it.
    """

    def __init__(self, commands: Mapping[str, str], scan_s: float | None = None) -> None:
        super().__init__()
        bad = {c: v for c, v in commands.items() if v not in MENU_COMMANDS}
        if bad:
            raise MappingError(
                f"Unknown menu commands {bad}; map classes to {', '.join(MENU_COMMANDS)}.")
        if "select" not in commands.values():
            raise MappingError("A scanning menu needs a class mapped to 'select'.")
        if "next" not in commands.values() and not scan_s:
            raise MappingError(
                "A scanning menu needs a class mapped to 'next' or automatic scanning (scan_s).")
        if scan_s is not None and scan_s <= 0:
            raise MappingError(f"scan_s must be positive, got {scan_s}.")
        self.commands = dict(commands)
        self.scan_s = scan_s
        self.highlight = 0
        self._scan_from: float | None = None

    @property
    def used_classes(self) -> tuple[str, ...]:
        return tuple(self.commands)

    def check_classes(self, classes: Sequence[str]) -> None:
        """Raise :class:`MappingError` if a menu class is not one of the decoder's classes."""
        missing = [c for c in self.commands if c not in classes]
        if missing:
            raise MappingError(
                f"The menu uses classes {missing} that the decoder does not have "
                f"({', '.join(classes)}); fix the menu commands.")

    def reset(self) -> None:
        super().reset()
        self.highlight = 0
        self._scan_from = None

    def tick(self, timestamp: float) -> None:
        """Advance the automatic scan to ``timestamp``."""
        if not self.scan_s:
            return
        if self._scan_from is None:
            self._scan_from = timestamp
            return
        steps = int((timestamp - self._scan_from) // self.scan_s)
        if steps > 0:
            self.highlight = (self.highlight + steps) % len(self.items)
            self._scan_from += steps * self.scan_s

    def handle(self, name: str, timestamp: float) -> Action | None:
        """Apply the detection of class ``name``; returns the action when one is complete."""
        self.tick(timestamp)
        command = self.commands.get(name)
        if command == "next":
            self.highlight = (self.highlight + 1) % len(self.items)
        elif command == "back":
            self.reset()
        elif command == "select":
            key = self.items[self.highlight]
            self.highlight = 0
            self._scan_from = timestamp
            return self._pick(key)
        if self.scan_s:
            self._scan_from = timestamp  # the user acted: restart the dwell on this item
        return None

    def describe(self) -> str:
        return f"{super().describe()}: [{self.items[self.highlight]}]"

    def detections_for(self, action: Action) -> list[str]:
        """The menu commands that select ``action`` from the top (for tests and tutorials)."""
        seq: list[str] = []
        for level, key in zip(LEVELS, (action.translation, action.rotation), strict=True):
            seq += ["next"] * level.index(key) + ["select"]
        return seq


class GridMenu(_TwoLevelMenu):
    """One class per target of a 3 x 3 grid (e.g. SSVEP frequencies); two picks = one action.

    Parameters
    ----------
    targets : sequence of str
        Nine class names, target ``i`` choosing item ``i`` of each level (row-major grid).
    back : str | None
        Optional class that returns to the first level.
    """

    def __init__(self, targets: Sequence[str], back: str | None = None) -> None:
        super().__init__()
        targets = tuple(str(t) for t in targets)
        if len(targets) != len(TRANSLATIONS) or len(set(targets)) != len(targets):
            raise MappingError(
                f"A grid menu needs {len(TRANSLATIONS)} distinct target classes, got "
                f"{len(targets)}; give one class (e.g. 'ssvep:8.0') per grid cell.")
        self.targets = targets
        self.back = back

    @property
    def used_classes(self) -> tuple[str, ...]:
        return self.targets + ((self.back,) if self.back else ())

    def check_classes(self, classes: Sequence[str]) -> None:
        missing = [c for c in self.used_classes if c not in classes]
        if missing:
            raise MappingError(
                f"The grid menu uses classes {missing} that the decoder does not have "
                f"({', '.join(classes)}); fix the targets.")

    def tick(self, timestamp: float) -> None:
        return None

    def handle(self, name: str, timestamp: float) -> Action | None:
        if name == self.back:
            self.reset()
            return None
        if name not in self.targets:
            return None
        return self._pick(self.items[self.targets.index(name)])

    def labels(self) -> tuple[str, ...]:
        """What each target shows at the current level."""
        return self.items


def ssvep_classes(frequencies: Sequence[float]) -> tuple[str, ...]:
    """Class names of SSVEP targets as calibration, the simulator and decoders spell them
    (``ssvep:12``, ``ssvep:8.5``): a menu built from these matches a calibrated bundle."""
    return tuple(f"ssvep:{float(f):g}" for f in frequencies)
