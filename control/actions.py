"""The quantized camera-motion vocabulary of Yume: 9 translations x 9 rotations = 81 actions.

An :class:`Action` is a pair (translation, rotation), each one of nine keys, held for a whole
chunk. Actions parse from and format to key strings (``"W+A"``, ``"↑→"``, ``"W+A ↑→"``), render
to the two prompt templates used by Yume (14B and 5B style), and have an integer index (0-80) for
classifiers and embeddings.

Camera convention (OpenCV / RealEstate10K): camera x right, y down, z forward; poses are
camera-to-world 4x4 matrices. Positive yaw turns right (rotation about +y), positive pitch tilts
up (rotation about +x).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

TRANSLATIONS: tuple[str, ...] = ("·", "W", "A", "S", "D", "W+A", "W+D", "S+A", "S+D")
ROTATIONS: tuple[str, ...] = ("·", "→", "←", "↑", "↓", "↑→", "↑←", "↓→", "↓←")

# Unit direction of each translation key in the camera's horizontal plane: (x right, z forward).
TRANSLATION_AXES: dict[str, tuple[int, int]] = {
    "·": (0, 0), "W": (0, 1), "A": (-1, 0), "S": (0, -1), "D": (1, 0),
    "W+A": (-1, 1), "W+D": (1, 1), "S+A": (-1, -1), "S+D": (1, -1),
}
# Sign of each rotation key: (yaw, positive = turn right; pitch, positive = tilt up).
ROTATION_AXES: dict[str, tuple[int, int]] = {
    "·": (0, 0), "→": (1, 0), "←": (-1, 0), "↑": (0, 1), "↓": (0, -1),
    "↑→": (1, 1), "↑←": (-1, 1), "↓→": (1, -1), "↓←": (-1, -1),
}
_TRANSLATION_BY_AXES = {v: k for k, v in TRANSLATION_AXES.items()}
_ROTATION_BY_AXES = {v: k for k, v in ROTATION_AXES.items()}

# ASCII spellings accepted by the parser (for terminals, config files and LSL markers).
_ROTATION_ALIASES: dict[str, str] = {
    "RIGHT": "→", "LEFT": "←", "UP": "↑", "DOWN": "↓",
    "UP+RIGHT": "↑→", "UP+LEFT": "↑←", "DOWN+RIGHT": "↓→", "DOWN+LEFT": "↓←",
    "RIGHT+UP": "↑→", "LEFT+UP": "↑←", "RIGHT+DOWN": "↓→", "LEFT+DOWN": "↓←",
    "↑+→": "↑→", "↑+←": "↑←", "↓+→": "↓→", "↓+←": "↓←", "→↑": "↑→", "←↑": "↑←",
    "→↓": "↓→", "←↓": "↓←",
}
_NONE_ALIASES = {"·", ".", "-", "NONE", "IDLE", "STILL"}

_TRANSLATION_14B = {
    "W": "forward", "A": "left", "S": "backward", "D": "right",
    "W+A": "forward and left", "W+D": "forward and right",
    "S+A": "backward and left", "S+D": "backward and right",
}
_ROTATION_14B = {
    "→": "turns right", "←": "turns left", "↑": "tilts up", "↓": "tilts down",
    "↑→": "tilts up and turns right", "↑←": "tilts up and turns left",
    "↓→": "tilts down and turns right", "↓←": "tilts down and turns left",
}
_TRANSLATION_5B = {
    "W": "pushes forward", "A": "moves to the left", "S": "pulls back", "D": "moves to the right",
    "W+A": "pushes forward and moves to the left", "W+D": "pushes forward and moves to the right",
    "S+A": "pulls back and moves to the left", "S+D": "pulls back and moves to the right",
}
_ROTATION_5B = {
    "→": "pans to the right", "←": "pans to the left", "↑": "tilts up", "↓": "tilts down",
    "↑→": "tilts up and pans to the right", "↑←": "tilts up and pans to the left",
    "↓→": "tilts down and pans to the right", "↓←": "tilts down and pans to the left",
}
PREFIX_14B = "This video depicts a city walk scene with a first-person view (FPV)."
PREFIX_5B = "First-person perspective."

Template = Literal["14b", "5b"]


class ActionError(ValueError):
    """An action string, key or index that is not part of the vocabulary."""


@dataclass(frozen=True, order=True)
class Action:
    """One camera action: a translation key and a rotation key, held for a chunk.

    Parameters
    ----------
    translation : str
        One of :data:`TRANSLATIONS` (``"·"`` = stand still).
    rotation : str
        One of :data:`ROTATIONS` (``"·"`` = no rotation).
    """

    translation: str = "·"
    rotation: str = "·"

    def __post_init__(self) -> None:
        if self.translation not in TRANSLATION_AXES:
            raise ActionError(
                f"Unknown translation key {self.translation!r}; use one of "
                f"{', '.join(TRANSLATIONS)}."
            )
        if self.rotation not in ROTATION_AXES:
            raise ActionError(
                f"Unknown rotation key {self.rotation!r}; use one of {', '.join(ROTATIONS)}."
            )

    @property
    def index(self) -> int:
        """Position in the 81-action vocabulary (translation-major)."""
        return TRANSLATIONS.index(self.translation) * len(ROTATIONS) + ROTATIONS.index(
            self.rotation
        )

    @classmethod
    def from_index(cls, index: int) -> Action:
        """The action at ``index`` (0-80) of :func:`vocabulary`."""
        if not 0 <= int(index) < len(TRANSLATIONS) * len(ROTATIONS):
            raise ActionError(f"Action index {index} is outside 0-80.")
        t, r = divmod(int(index), len(ROTATIONS))
        return cls(TRANSLATIONS[t], ROTATIONS[r])

    @property
    def is_idle(self) -> bool:
        """True for the action that moves nothing (``"· ·"``)."""
        return self.translation == "·" and self.rotation == "·"

    @property
    def translation_axes(self) -> tuple[int, int]:
        """(x, z) signs of the translation in the camera's horizontal plane."""
        return TRANSLATION_AXES[self.translation]

    @property
    def rotation_axes(self) -> tuple[int, int]:
        """(yaw, pitch) signs of the rotation; positive = right / up."""
        return ROTATION_AXES[self.rotation]

    def mirrored(self) -> Action:
        """The action seen in a left-right mirror: A <-> D and turning right <-> left.

        A mirrored video of a walk is a valid video of the mirrored walk, which training and
        the inverse-dynamics model use as a symmetry of the data.
        """
        (x, z), (yaw, pitch) = self.translation_axes, self.rotation_axes
        return Action(_TRANSLATION_BY_AXES[(-x, z)], _ROTATION_BY_AXES[(-yaw, pitch)])

    def __str__(self) -> str:
        return format_action(self)

    def prompt(self, template: Template = "14b", speed: float | None = None) -> str:
        """The text prompt describing this action (see :func:`action_prompt`)."""
        return action_prompt(self, template, speed)


IDLE = Action()


def vocabulary() -> list[Action]:
    """All 81 actions in index order."""
    return [Action(t, r) for t in TRANSLATIONS for r in ROTATIONS]


def format_action(action: Action) -> str:
    """Key string of an action: ``"W+A ↑→"``, ``"W"``, ``"→"`` or ``"·"`` for idle.

    A missing half is omitted, so the output parses back to the same action.
    """
    parts = [p for p in (action.translation, action.rotation) if p != "·"]
    return " ".join(parts) if parts else "·"


def _parse_rotation(token: str) -> str | None:
    up = token.upper()
    if token in ROTATION_AXES and token != "·":
        return token
    return _ROTATION_ALIASES.get(up)


def _parse_translation(token: str) -> str | None:
    up = token.upper().replace(" ", "")
    if up in TRANSLATION_AXES and up != "·":
        return up
    # Accept "A+W" for "W+A" and so on.
    keys = sorted(up.split("+"), key=lambda k: "WSAD".find(k))
    cand = "+".join(keys)
    return cand if cand in TRANSLATION_AXES and cand != "·" else None


def parse_action(text: str) -> Action:
    """Parse a key string such as ``"W+A"``, ``"↑→"``, ``"W+A ↑→"``, ``"S, LEFT"`` or ``"·"``.

    Translation and rotation may come in either order, separated by spaces or commas; either may
    be omitted (it is then ``"·"``). ASCII rotation names (``UP``, ``LEFT``, ``UP+RIGHT``) are
    accepted.

    Raises
    ------
    ActionError
        If the string is not an action of the vocabulary.
    """
    if not isinstance(text, str):
        raise ActionError(f"An action must be a string such as 'W+A ↑→', not {type(text)}.")
    # Accept glued forms such as "W+A↑→" by splitting letters from arrows.
    spaced = re.sub(r"([A-Za-z·.])([↑↓←→])", r"\1 \2", text.replace(",", " "))
    tokens = [t for t in spaced.split() if t]
    translation = rotation = None
    for token in tokens:
        if token.upper() in _NONE_ALIASES:
            continue
        rot = _parse_rotation(token)
        if rot is not None and rotation is None:
            rotation = rot
            continue
        trans = _parse_translation(token)
        if trans is not None and translation is None:
            translation = trans
            continue
        raise ActionError(
            f"Cannot read {text!r} as a camera action: {token!r} is not a key of the vocabulary "
            "(translations W A S D, W+A W+D S+A S+D; rotations → ← ↑ ↓ ↑→ ↑← ↓→ ↓← or "
            "RIGHT/LEFT/UP/DOWN; '·' for none)."
        )
    if not tokens:
        raise ActionError("An empty string is not an action; use '·' for standing still.")
    return Action(translation or "·", rotation or "·")


def action_prompt(action: Action, template: Template = "14b", speed: float | None = None) -> str:
    """The Yume text prompt for an action.

    Parameters
    ----------
    action : Action
        The action to describe.
    template : {"14b", "5b"}
        ``"14b"``: Yume's template (``Person moves forward (W). Camera turns right (→).``);
        ``"5b"``: the Yume 1.5 template (``The camera pushes forward (W). ...``).
    speed : float | None
        Optional speed suffix (14B template only), clipped to [0.1, 10].
    """
    t, r = action.translation, action.rotation
    if template == "14b":
        move = (
            "Person stands still (·)." if t == "·" else f"Person moves {_TRANSLATION_14B[t]} ({t})."
        )
        turn = "Camera remains still (·)." if r == "·" else f"Camera {_ROTATION_14B[r]} ({r})."
        text = PREFIX_14B + move + turn
        if speed is not None:
            s = min(max(float(speed), 0.1), 10.0)
            text += (
                f"Actual distance moved:{s:.2f} at 100 meters per second."
                f"Angular change rate (turn speed):{s:.2f}.View rotation speed:{s:.2f}."
            )
        return text
    if template == "5b":
        move = (
            "The camera's movement direction remains stationary (·)."
            if t == "·"
            else f"The camera {_TRANSLATION_5B[t]} ({t})."
        )
        turn = (
            "The rotation direction of the camera remains stationary (·)."
            if r == "·"
            else f"The camera {_ROTATION_5B[r]} ({r})."
        )
        return PREFIX_5B + move + turn
    raise ActionError(f"Unknown prompt template {template!r}; use '14b' or '5b'.")


def parse_prompt(text: str) -> Action:
    """Recover the action from a prompt made by :func:`action_prompt` (either template)."""
    keys = re.findall(r"\(([^()]*)\)", text.replace("(FPV)", ""))
    if len(keys) < 2:
        raise ActionError(f"No action keys found in prompt {text[:60]!r}.")
    return Action(keys[0], keys[1])
