"""The control panel: live class probabilities, the policy's state, an editable class -> action
mapping and big start / stop / panic buttons the operator can use with the mouse or a touch
screen (never the participant's keyboard, which may be the control input).

Self-contained :class:`ControlPanel` QWidget; the main window feeds it
:class:`control.policy.PolicyOutput` objects and listens to its signals. When a
:class:`control.hybrid.HybridController` is attached, the panic button stops it directly, so the
stop works even if the code listening to the signals is busy or broken.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from PyQt6 import QtCore, QtWidgets

from control.actions import format_action
from control.mapping import ActionMapping, MappingError
from control.policy import PolicyOutput, PolicyState

logger = logging.getLogger(__name__)

_STATE_COLOURS = {
    PolicyState.IDLE: "#607d8b", PolicyState.ACCUMULATING: "#f9a825",
    PolicyState.FIRED: "#2e7d32", PolicyState.REFRACTORY: "#1565c0",
}


class ControlPanel(QtWidgets.QWidget):
    """Probability bars, policy state, mapping editor and control buttons.

    Parameters
    ----------
    classes : sequence of str
        Decoder classes (one bar and one mapping row each).
    mapping : ActionMapping | dict | None
        Initial class -> action mapping (every class must be mapped).
    threshold : float
        Drawn on the bars' labels so the operator sees how far a class is from firing.
    parent : QWidget | None
        Qt parent.

    Signals
    -------
    start_requested, stop_requested, panic_requested, release_requested
        The operator pressed the matching button.
    mapping_changed(object)
        A valid new :class:`ActionMapping` after an edit.
    """

    start_requested = QtCore.pyqtSignal()
    stop_requested = QtCore.pyqtSignal()
    panic_requested = QtCore.pyqtSignal()
    release_requested = QtCore.pyqtSignal()
    mapping_changed = QtCore.pyqtSignal(object)

    def __init__(self, classes: Sequence[str], mapping: ActionMapping | dict | None = None,
                 threshold: float = 0.7, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("controlPanel")
        self.classes = tuple(str(c) for c in classes)
        self.threshold = float(threshold)
        self.hybrid = None
        if mapping is None:
            from control.bundle import default_actions

            mapping = default_actions(self.classes)
        self.mapping = (mapping if isinstance(mapping, ActionMapping)
                        else ActionMapping.from_dict(mapping))
        self.mapping.check_classes(self.classes)
        self.running = False
        self._build()
        self._fill_mapping()
        self.set_running(False)

    # ---------------------------------------------------------------- layout
    def _build(self) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        bars_box = QtWidgets.QGroupBox("Decoder probabilities")
        grid = QtWidgets.QGridLayout(bars_box)
        self.bars: dict[str, QtWidgets.QProgressBar] = {}
        for row, name in enumerate(self.classes):
            label = QtWidgets.QLabel(name)
            bar = QtWidgets.QProgressBar()
            bar.setRange(0, 1000)
            bar.setValue(0)
            bar.setFormat("%p %")
            bar.setTextVisible(True)
            grid.addWidget(label, row, 0)
            grid.addWidget(bar, row, 1)
            self.bars[name] = bar
        layout.addWidget(bars_box)

        self.state_label = QtWidgets.QLabel()
        self.state_label.setObjectName("policyState")
        font = self.state_label.font()
        font.setPointSize(font.pointSize() + 4)
        font.setBold(True)
        self.state_label.setFont(font)
        self.action_label = QtWidgets.QLabel("action: ·")
        self.reason_label = QtWidgets.QLabel("")
        self.reason_label.setWordWrap(True)
        self.reason_label.setStyleSheet("color: #c62828;")
        self.menu_label = QtWidgets.QLabel("")  # menu mode: what is being chosen
        layout.addWidget(self.state_label)
        layout.addWidget(self.action_label)
        layout.addWidget(self.menu_label)
        layout.addWidget(self.reason_label)

        map_box = QtWidgets.QGroupBox("Class → action (double-click to edit)")
        map_layout = QtWidgets.QVBoxLayout(map_box)
        self.table = QtWidgets.QTableWidget(len(self.classes), 2)
        self.table.setHorizontalHeaderLabels(["class", "action"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        # As tall as its rows, so the mapping is read without scrolling inside the panel.
        self.table.setSizeAdjustPolicy(
            QtWidgets.QAbstractScrollArea.SizeAdjustPolicy.AdjustToContents)
        self.table.itemChanged.connect(self._on_item_changed)
        self.mapping_error = QtWidgets.QLabel("")
        self.mapping_error.setWordWrap(True)
        self.mapping_error.setStyleSheet("color: #c62828;")
        map_layout.addWidget(self.table)
        map_layout.addWidget(self.mapping_error)
        layout.addWidget(map_box)

        buttons = QtWidgets.QGridLayout()
        self.start_button = self._button("Start control", "#2e7d32", self._on_start)
        self.stop_button = self._button("Stop control", "#455a64", self._on_stop)
        self.panic_button = self._button("PANIC STOP", "#c62828", self._on_panic, big=True)
        self.release_button = self._button("Release stop", "#6d4c41", self._on_release)
        # Two rows, so the panel fits beside the traces at 1280x720 with every button visible.
        buttons.addWidget(self.start_button, 0, 0)
        buttons.addWidget(self.stop_button, 0, 1)
        buttons.addWidget(self.panic_button, 1, 0)
        buttons.addWidget(self.release_button, 1, 1)
        buttons.setColumnStretch(0, 3)
        buttons.setColumnStretch(1, 2)
        layout.addLayout(buttons)
        layout.addStretch(1)
        self.show_state(PolicyState.IDLE)

    def _button(self, text: str, colour: str, slot, big: bool = False) -> QtWidgets.QPushButton:
        b = QtWidgets.QPushButton(text)
        # Never take keyboard focus: the participant's keys must keep driving the world.
        b.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        b.setMinimumHeight(64 if big else 44)
        b.setStyleSheet(f"QPushButton {{ background: {colour}; color: white; font-weight: bold;"
                        f" font-size: {18 if big else 13}px; border-radius: 6px; }}"
                        "QPushButton:disabled { background: #9e9e9e; }")
        b.clicked.connect(slot)
        return b

    def _fill_mapping(self) -> None:
        self.table.blockSignals(True)
        for row, name in enumerate(self.classes):
            cls_item = QtWidgets.QTableWidgetItem(name)
            cls_item.setFlags(cls_item.flags() & ~QtCore.Qt.ItemFlag.ItemIsEditable)
            self.table.setItem(row, 0, cls_item)
            self.table.setItem(row, 1, QtWidgets.QTableWidgetItem(
                format_action(self.mapping.action(name))))
        self.table.blockSignals(False)

    # ---------------------------------------------------------------- actions
    def attach(self, hybrid) -> None:
        """Let the panic / release buttons act on ``hybrid`` directly."""
        self.hybrid = hybrid

    def set_running(self, running: bool) -> None:
        """Show whether the decoder steers now: only the button that changes that is enabled.

        The window calls this with the steering's real state (a decoder loaded with the app
        steers from the start), so "Start control" is never offered while it already runs.
        """
        self.running = bool(running)
        self.start_button.setEnabled(not self.running)
        self.start_button.setText("Decoder steering" if self.running else "Start control")
        self.stop_button.setEnabled(self.running)

    def _on_start(self) -> None:
        self.set_running(True)
        self.start_requested.emit()

    def _on_stop(self) -> None:
        self.set_running(False)
        self.stop_requested.emit()

    def _on_panic(self) -> None:
        if self.hybrid is not None:
            self.hybrid.panic("panic button in the control panel")
        self.reason_label.setText("PANIC STOP: the world is held still until released.")
        self.panic_requested.emit()

    def _on_release(self) -> None:
        if self.hybrid is not None:
            self.hybrid.release()
        self.reason_label.setText("")
        self.release_requested.emit()

    def _on_item_changed(self, item: QtWidgets.QTableWidgetItem) -> None:
        if item.column() != 1:
            return
        edited = {self.table.item(r, 0).text(): self.table.item(r, 1).text()
                  for r in range(self.table.rowCount())}
        try:
            mapping = ActionMapping.from_dict(edited)
            mapping.check_classes(self.classes)
        except (MappingError, ValueError) as err:
            self.mapping_error.setText(str(err))
            self._fill_mapping()  # back to the last valid mapping
            return
        self.mapping_error.setText("")
        self.mapping = mapping
        self._fill_mapping()  # show the canonical spelling ("w+a" -> "W+A")
        self.mapping_changed.emit(mapping)

    # ---------------------------------------------------------------- display
    def show_probabilities(self, probabilities, candidate: str | None = None) -> None:
        """Update the bars (one probability per class, in class order)."""
        p = np.asarray(probabilities, dtype=float).ravel()
        for name, value in zip(self.classes, p, strict=False):
            bar = self.bars[name]
            bar.setValue(int(round(np.clip(value, 0, 1) * 1000)))
            colour = ("#2e7d32" if value >= self.threshold else "#f9a825"
                      if name == candidate else "#90a4ae")
            bar.setStyleSheet(f"QProgressBar::chunk {{ background: {colour}; }}")

    def show_state(self, state: PolicyState, candidate: str | None = None,
                   reason: str = "") -> None:
        """Show the policy state (and why it is idle, when it was forced)."""
        text = state.value + (f" — {candidate}" if candidate else "")
        self.state_label.setText(text)
        self.state_label.setStyleSheet(f"color: {_STATE_COLOURS[state]};")
        if self.hybrid is not None and self.hybrid.panicked:
            reason = "PANIC STOP: the world is held still until released."
        self.reason_label.setText(reason)

    def show_output(self, output: PolicyOutput) -> None:
        """Update bars, state, action and reason from one policy output."""
        self.show_probabilities(output.confidence, output.candidate)
        self.show_state(output.state, output.candidate, output.reason)
        self.action_label.setText(f"action: {format_action(output.action)}")

    def show_menu(self, menu) -> None:
        """Show a :mod:`control.menu` menu's progress (``menu.describe()``), or clear it."""
        self.menu_label.setText(menu.describe() if menu is not None else "")

    def sizeHint(self) -> QtCore.QSize:  # noqa: N802 - Qt naming
        return QtCore.QSize(340, super().sizeHint().height())

