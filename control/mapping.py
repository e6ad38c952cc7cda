"""Which decoded class drives which camera action: a validated, JSON-serialisable config.

A mapping is data (``{"left_hand": "←", "right_hand": "→", "feet": "W", "rest": "·"}``): every
value is checked with :func:`control.actions.parse_action`, and a decoder whose classes are not
all mapped is refused before control starts, so a typo never becomes a silent "do nothing".
Classes mapped to ``"·"`` (idle) are *rest* classes: detecting them never moves the world.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from control.actions import Action, ActionError, format_action, parse_action

# Motor imagery -> the most useful moves (see reference/bci-anchors.md, "steering a world").
DEFAULT_MI_MAPPING: dict[str, str] = {
    "rest": "·",
    "left_hand": "←",
    "right_hand": "→",
    "feet": "W",
}


class MappingError(ValueError):
    """A class-to-action mapping that cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class ActionMapping:
    """Class name -> :class:`Action`.

    Parameters
    ----------
    actions : dict of str to Action
        The action of each class. Build it with :meth:`from_dict` to parse action strings.
    """

    actions: dict[str, Action] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.actions:
            raise MappingError(
                "The action mapping is empty; map each decoder class to an action, e.g. "
                "{'left_hand': '←', 'rest': '·'}."
            )
        for name, action in self.actions.items():
            if not isinstance(name, str) or not name:
                raise MappingError(f"Class names must be non-empty strings, got {name!r}.")
            if not isinstance(action, Action):
                raise MappingError(
                    f"Class {name!r} maps to {action!r}, which is not an Action; build the "
                    "mapping with ActionMapping.from_dict."
                )

    @classmethod
    def from_dict(cls, mapping: Mapping[str, str | Action]) -> ActionMapping:
        """Parse ``{class: action string}``; raises :class:`MappingError` on an unknown action."""
        if not isinstance(mapping, Mapping):
            raise MappingError(
                "An action mapping must be a dict of class -> action, not "
                f"{type(mapping).__name__}."
            )
        actions: dict[str, Action] = {}
        for name, value in mapping.items():
            if isinstance(value, Action):
                actions[str(name)] = value
                continue
            try:
                actions[str(name)] = parse_action(value)
            except ActionError as err:
                raise MappingError(
                    f"Class {name!r} maps to {value!r}, which is not a camera action ({err}); "
                    "fix the mapping."
                ) from None
        return cls(actions)

    @classmethod
    def load(cls, path: str | Path) -> ActionMapping:
        """Read a mapping from a JSON file ``{"class": "action"}``."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise MappingError(
                f"Cannot read the action mapping {path}: {err}; give a JSON file of "
                "class -> action strings."
            ) from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        """Write the mapping as JSON (action key strings, UTF-8)."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n",
                              encoding="utf-8")

    def to_dict(self) -> dict[str, str]:
        """``{class: action key string}``, the inverse of :meth:`from_dict`."""
        return {name: format_action(a) for name, a in self.actions.items()}

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.actions)

    def action(self, name: str) -> Action:
        """The action of class ``name``."""
        try:
            return self.actions[name]
        except KeyError:
            raise MappingError(
                f"Class {name!r} is not in the action mapping ({', '.join(self.actions)}); add it."
            ) from None

    def is_rest(self, name: str) -> bool:
        """True for a class that maps to idle (its detection never moves the world)."""
        return self.action(name).is_idle

    def check_classes(self, classes: Iterable[str]) -> None:
        """Raise :class:`MappingError` unless every decoder class has an action."""
        classes = [str(c) for c in classes]
        missing = [c for c in classes if c not in self.actions]
        if missing:
            raise MappingError(
                f"The decoder's classes {missing} have no action in the mapping "
                f"(mapped: {', '.join(self.actions)}); add them, e.g. {{'{missing[0]}': '·'}}."
            )
        if all(self.actions[c].is_idle for c in classes):
            raise MappingError(
                "Every decoder class maps to idle ('·'), so control could never move the world; "
                "map at least one class to an action."
            )


def mapping_for(classes: Iterable[str], mapping: Mapping[str, str] | ActionMapping | None = None
                ) -> ActionMapping:
    """The validated mapping for a decoder's ``classes`` (default: :data:`DEFAULT_MI_MAPPING`).

    Accepts a dict, an :class:`ActionMapping` or None, and raises :class:`MappingError` when a
    class is unmapped or an action unknown.
    """
    if mapping is None:
        mapping = DEFAULT_MI_MAPPING
    result = mapping if isinstance(mapping, ActionMapping) else ActionMapping.from_dict(mapping)
    result.check_classes(classes)
    return result
