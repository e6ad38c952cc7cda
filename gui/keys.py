"""The active action shown as lit keys: W/A/S/D and the four arrows."""

from __future__ import annotations

from PyQt6 import QtCore, QtWidgets

from control.actions import Action
from control.keyboard import KeyboardMap

_LAYOUT = (  # (label, key name, row, column)
    ("W", "W", 0, 1), ("A", "A", 1, 0), ("S", "S", 1, 1), ("D", "D", 1, 2),
    ("↑", "Up", 0, 5), ("←", "Left", 1, 4), ("↓", "Down", 1, 5), ("→", "Right", 1, 6),
)
_ON = "background:#f5a623;color:#111;border:1px solid #a66;border-radius:4px;font-weight:bold;"
_OFF = "background:#2b2b2b;color:#aaa;border:1px solid #555;border-radius:4px;"


class KeysWidget(QtWidgets.QWidget):
    """Eight key caps; :meth:`show_action` lights the ones that make up an action."""

    def __init__(self, keymap: KeyboardMap | None = None,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.keymap = keymap or KeyboardMap()
        grid = QtWidgets.QGridLayout(self)
        grid.setSpacing(3)
        self.caps: dict[str, QtWidgets.QLabel] = {}
        for label, key, row, col in _LAYOUT:
            cap = QtWidgets.QLabel(label, alignment=QtCore.Qt.AlignmentFlag.AlignCenter)
            cap.setFixedSize(34, 30)
            cap.setStyleSheet(_OFF)
            grid.addWidget(cap, row, col)
            self.caps[key] = cap
        grid.setColumnMinimumWidth(3, 16)
        self.action_label = QtWidgets.QLabel("·")
        self.action_label.setStyleSheet("font-size:16px;")
        grid.addWidget(self.action_label, 0, 7, 2, 1)
        self.lit: set[str] = set()

    def show_action(self, action: Action) -> None:
        self.lit = self.keymap.lit_keys(action)
        for key, cap in self.caps.items():
            cap.setStyleSheet(_ON if key in self.lit else _OFF)
        self.action_label.setText(f"  {action}")
