"""Gamepad to action through SDL2 (pygame's joystick module).

Left stick: walk (up = W, down = S, left/right = A/D, diagonals combine). Right stick or d-pad:
look (left/right = turn, up/down = tilt). Each axis has a dead zone, so a stick at rest never
moves the camera. Buttons give commands: A = ``select``, B = ``panic``, Start = ``release``
(lift a panic stop), Y = ``pause`` (toggle automatic control).

:class:`GamepadMap` is pure (axis/button values -> action and commands) so it is the same for
every backend; :class:`Gamepad` reads a real device through pygame; :class:`VirtualGamepad`
attaches an SDL *virtual* joystick (``SDL_JoystickAttachVirtual``), a real SDL device driven
from code, for tests and demos without hardware.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from control.actions import Action

logger = logging.getLogger(__name__)

GAMEPAD_COMMANDS = ("select", "panic", "release", "pause")


class GamepadError(RuntimeError):
    """No usable gamepad, or SDL could not be started; the message says what to do."""


@dataclass(frozen=True)
class GamepadMap:
    """Which axes and buttons mean what (defaults: an Xbox-style pad on Linux).

    Parameters
    ----------
    dead_zone : float
        Axis values with ``abs(value) < dead_zone`` count as centred (0-1).
    walk_x, walk_y, look_x, look_y : int
        Axis indices of the left stick (x, y) and the right stick (x, y). SDL reports "up"
        as negative y.
    invert_look_y : bool
        Flight-style look: stick up tilts down.
    buttons : dict of int to str
        Button index -> command (``"select"``, ``"panic"``, ``"release"``, ``"pause"``).
    """

    dead_zone: float = 0.25
    walk_x: int = 0
    walk_y: int = 1
    look_x: int = 3
    look_y: int = 4
    invert_look_y: bool = False
    buttons: Mapping[int, str] = field(
        default_factory=lambda: {0: "select", 1: "panic", 3: "pause", 7: "release"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.dead_zone < 1.0:
            raise GamepadError(f"dead_zone must lie in [0, 1), got {self.dead_zone}.")
        bad = {b: c for b, c in self.buttons.items() if c not in GAMEPAD_COMMANDS}
        if bad:
            raise GamepadError(
                f"Unknown gamepad commands {bad}; use {', '.join(GAMEPAD_COMMANDS)}.")

    def _axis(self, axes: Sequence[float], i: int) -> int:
        """-1, 0 or +1 for axis ``i`` after the dead zone (0 if the pad lacks the axis)."""
        if i >= len(axes):
            return 0
        v = float(axes[i])
        if abs(v) < self.dead_zone:
            return 0
        return 1 if v > 0 else -1

    def action(self, axes: Sequence[float], hats: Sequence[tuple[int, int]] = ()) -> Action:
        """The action for the current stick and d-pad positions."""
        x, y = self._axis(axes, self.walk_x), self._axis(axes, self.walk_y)
        fb = {-1: "W", 1: "S"}.get(y, "")
        lr = {-1: "A", 1: "D"}.get(x, "")
        translation = "+".join(k for k in (fb, lr) if k) or "·"
        turn = self._axis(axes, self.look_x)
        tilt = self._axis(axes, self.look_y) * (-1 if self.invert_look_y else 1)
        if hats:  # the d-pad adds to the right stick (hat y is +1 for up)
            hx, hy = hats[0]
            turn = turn or int(hx)
            tilt = tilt or -int(hy)
        rotation = {-1: "↑", 1: "↓"}.get(tilt, "") + {-1: "←", 1: "→"}.get(turn, "")
        return Action(translation, rotation or "·")

    def commands(self, pressed: Sequence[int]) -> list[str]:
        """Commands of the buttons in ``pressed`` (indices of buttons that went down)."""
        return [self.buttons[b] for b in pressed if b in self.buttons]


@dataclass(frozen=True)
class GamepadState:
    """One reading: the action held by the sticks and the commands of newly pressed buttons."""

    action: Action
    commands: tuple[str, ...]
    axes: tuple[float, ...]
    buttons: tuple[int, ...]


def _pygame():
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ImportError as err:  # pragma: no cover - pygame is a pinned dependency
        raise GamepadError(f"pygame is not installed ({err}); install yume-bci's "
                           "dependencies.") from None
    return pygame


class Gamepad:
    """A gamepad read through SDL2 (pygame). ``open()``, then ``poll()`` often, then ``close()``.

    Parameters
    ----------
    index : int
        Which SDL joystick (0 = the first one connected).
    mapping : GamepadMap
        Axis and button meanings.
    """

    def __init__(self, index: int = 0, mapping: GamepadMap | None = None) -> None:
        self.index = int(index)
        self.mapping = mapping or GamepadMap()
        self._joy = None
        self._prev_buttons: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return self._joy.get_name() if self._joy is not None else ""

    def open(self) -> Gamepad:
        """Open the gamepad; raises :class:`GamepadError` when none is connected."""
        pg = _pygame()
        try:
            pg.display.init()  # SDL pumps joystick events through the video subsystem
            pg.joystick.init()
        except pg.error as err:
            raise GamepadError(f"SDL could not start ({err}); set SDL_VIDEODRIVER=dummy on a "
                               "machine without a display.") from None
        pg.event.pump()
        count = pg.joystick.get_count()
        if count == 0:
            raise GamepadError(
                "No gamepad found; connect one (USB or Bluetooth) and try again, or steer with "
                "the keyboard.")
        if self.index >= count:
            raise GamepadError(
                f"Gamepad {self.index} does not exist ({count} connected); use an index from "
                f"0 to {count - 1}.")
        self._joy = pg.joystick.Joystick(self.index)
        logger.info("Gamepad %d: %s (%d axes, %d buttons)", self.index, self._joy.get_name(),
                    self._joy.get_numaxes(), self._joy.get_numbuttons())
        self._prev_buttons = ()
        return self

    def poll(self) -> GamepadState:
        """Read the sticks and buttons now; raises :class:`GamepadError` if it was unplugged."""
        if self._joy is None:
            raise GamepadError("The gamepad is not open; call open() first.")
        pg = _pygame()
        pg.event.pump()
        if pg.joystick.get_count() <= self.index:
            self._joy = None
            raise GamepadError("The gamepad was disconnected; plug it back in and reopen it.")
        j = self._joy
        axes = tuple(float(j.get_axis(i)) for i in range(j.get_numaxes()))
        hats = [tuple(j.get_hat(i)) for i in range(j.get_numhats())]
        down = tuple(i for i in range(j.get_numbuttons()) if j.get_button(i))
        new = [b for b in down if b not in self._prev_buttons]
        self._prev_buttons = down
        return GamepadState(self.mapping.action(axes, hats), tuple(self.mapping.commands(new)),
                            axes, down)

    def close(self) -> None:
        """Release the device (safe to call twice)."""
        self._joy = None

    def __enter__(self) -> Gamepad:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


class VirtualGamepad:
    """An SDL virtual joystick: a real SDL device whose sticks and buttons are set from code.

    Uses the SDL2 library that pygame loaded (``SDL_JoystickAttachVirtual``, SDL >= 2.0.14), so
    :class:`Gamepad` reads it exactly like hardware.

    Parameters
    ----------
    n_axes, n_buttons, n_hats : int
        Layout of the virtual pad.
    """

    def __init__(self, n_axes: int = 6, n_buttons: int = 11, n_hats: int = 1) -> None:
        pg = _pygame()
        pg.display.init()
        pg.joystick.init()
        libs = glob.glob(os.path.join(os.path.dirname(pg.__file__), os.pardir, "pygame.libs",
                                      "libSDL2-2*"))
        try:
            self._sdl = ctypes.CDLL(libs[0] if libs else "libSDL2-2.0.so.0")
        except OSError as err:
            raise GamepadError(f"Cannot find pygame's SDL2 library ({err}).") from None
        sdl = self._sdl
        if not hasattr(sdl, "SDL_JoystickAttachVirtual"):
            raise GamepadError("This SDL2 has no virtual joysticks (needs SDL >= 2.0.14).")
        sdl.SDL_JoystickOpen.restype = ctypes.c_void_p
        sdl.SDL_JoystickSetVirtualAxis.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int16]
        sdl.SDL_JoystickSetVirtualButton.argtypes = [ctypes.c_void_p, ctypes.c_int,
                                                     ctypes.c_uint8]
        sdl.SDL_JoystickSetVirtualHat.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint8]
        sdl.SDL_JoystickClose.argtypes = [ctypes.c_void_p]
        self.index = sdl.SDL_JoystickAttachVirtual(1, n_axes, n_buttons, n_hats)
        if self.index < 0:
            raise GamepadError("SDL refused to attach a virtual joystick.")
        self._handle = sdl.SDL_JoystickOpen(self.index)
        for axis in range(n_axes):  # SDL starts trigger axes at -1; a pad at rest reads 0
            self.set_axis(axis, 0.0)
        pg.event.pump()

    def set_axis(self, axis: int, value: float) -> None:
        """Set an axis to ``value`` in [-1, 1]."""
        v = int(round(max(-1.0, min(1.0, value)) * 32767))
        self._sdl.SDL_JoystickSetVirtualAxis(self._handle, int(axis), v)

    def set_button(self, button: int, down: bool) -> None:
        self._sdl.SDL_JoystickSetVirtualButton(self._handle, int(button), 1 if down else 0)

    def set_hat(self, hat: int, x: int, y: int) -> None:
        """Set the d-pad: x -1/0/1 (left/right), y -1/0/1 (down/up)."""
        bits = (1 if y > 0 else 0) | (2 if x > 0 else 0) | (4 if y < 0 else 0) | \
            (8 if x < 0 else 0)
        self._sdl.SDL_JoystickSetVirtualHat(self._handle, int(hat), bits)

    def detach(self) -> None:
        """Unplug the virtual pad."""
        if self._handle:
            self._sdl.SDL_JoystickClose(self._handle)
            self._handle = None
            self._sdl.SDL_JoystickDetachVirtual(self.index)
            _pygame().event.pump()
