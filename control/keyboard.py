"""Keyboard to action: W/A/S/D translate, arrow keys rotate, several keys at once combine.

Keys are named by plain strings (``"W"``, ``"Up"``, ``"Left"`` ...) so that this module does not
depend on a GUI toolkit; the window translates its key events into these names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from control.actions import Action

TRANSLATION_KEYS = ("W", "A", "S", "D")
ROTATION_KEYS = ("Up", "Down", "Left", "Right")


@dataclass(frozen=True)
class KeyboardMap:
    """Which physical key stands for which direction (defaults: WASD and the arrows).

    Opposite keys held together cancel out (W+S = no forward motion).
    """

    forward: str = "W"
    left: str = "A"
    backward: str = "S"
    right: str = "D"
    tilt_up: str = "Up"
    tilt_down: str = "Down"
    turn_left: str = "Left"
    turn_right: str = "Right"
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.forward, self.left, self.backward, self.right,
                self.tilt_up, self.tilt_down, self.turn_left, self.turn_right)

    def action(self, pressed: Iterable[str]) -> Action:
        """The action for the set of keys currently held down."""
        held = {self.aliases.get(k, k).upper() for k in pressed}

        def on(key: str) -> bool:
            return key.upper() in held

        fb = ""
        if on(self.forward) != on(self.backward):
            fb = "W" if on(self.forward) else "S"
        lr = ""
        if on(self.left) != on(self.right):
            lr = "A" if on(self.left) else "D"
        ud = ""
        if on(self.tilt_up) != on(self.tilt_down):
            ud = "↑" if on(self.tilt_up) else "↓"
        turn = ""
        if on(self.turn_left) != on(self.turn_right):
            turn = "←" if on(self.turn_left) else "→"
        translation = "+".join(k for k in (fb, lr) if k) or "·"
        return Action(translation, (ud + turn) or "·")

    def lit_keys(self, action: Action) -> set[str]:
        """The keys that would produce ``action`` (for showing it as lit keys)."""
        lit: set[str] = set()
        x, z = action.translation_axes
        yaw, pitch = action.rotation_axes
        lit |= {self.forward} if z > 0 else {self.backward} if z < 0 else set()
        lit |= {self.right} if x > 0 else {self.left} if x < 0 else set()
        lit |= {self.turn_right} if yaw > 0 else {self.turn_left} if yaw < 0 else set()
        lit |= {self.tilt_up} if pitch > 0 else {self.tilt_down} if pitch < 0 else set()
        return lit
