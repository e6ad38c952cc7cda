"""Offscreen Qt: the control panel and the SSVEP grid."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt6 import QtCore, QtTest

from control.actions import parse_action
from control.hybrid import HybridController
from control.policy import ControlPolicy, PolicyConfig, PolicyState
from gui.control_panel import ControlPanel
from gui.ssvep_grid import SSVEPGrid, StimulusError, Target, square_is_exact, stimulus_luminance

CLASSES = ("rest", "left_hand", "right_hand")
MAPPING = {"rest": "·", "left_hand": "←", "right_hand": "→"}


def test_panel_shows_policy_outputs(qapp):
    panel = ControlPanel(CLASSES, MAPPING, threshold=0.7)
    panel.show()
    pol = ControlPolicy(CLASSES, MAPPING, PolicyConfig(mode="direct", smoothing="none",
                                                       dwell_s=0.2))
    out = pol.update(1.0, [0.1, 0.8, 0.1])
    panel.show_output(out)
    assert panel.bars["left_hand"].value() == 800
    assert panel.bars["rest"].value() == 100
    assert panel.state_label.text().startswith("accumulating") and "left_hand" in \
        panel.state_label.text()
    for t in (1.1, 1.2):
        out = pol.update(t, [0.1, 0.8, 0.1])
    panel.show_output(out)
    assert out.state is PolicyState.FIRED
    assert panel.action_label.text() == "action: ←"
    lost = pol.interrupt(2.0, "no EEG for 1.2 s: the stream may be lost")
    panel.show_output(lost)
    assert panel.state_label.text() == "idle" and "stream may be lost" in \
        panel.reason_label.text()
    from control.menu import ScanningMenu

    menu = ScanningMenu({"left_hand": "next", "right_hand": "select"})
    menu.handle("right_hand", 0.0)
    panel.show_menu(menu)
    assert panel.menu_label.text() == "choose rotation (after ·): [·]"
    panel.show_menu(None)
    assert panel.menu_label.text() == ""


def test_panel_buttons_without_keyboard_focus(qapp):
    panel = ControlPanel(CLASSES, MAPPING)
    hc = HybridController()
    panel.attach(hc)
    panel.show()
    seen = []
    for name in ("start_requested", "stop_requested", "panic_requested", "release_requested"):
        getattr(panel, name).connect(lambda name=name: seen.append(name))
    assert not panel.stop_button.isEnabled()
    QtTest.QTest.mouseClick(panel.start_button, QtCore.Qt.MouseButton.LeftButton)
    assert panel.running and not panel.start_button.isEnabled()
    hc.submit("decoder", parse_action("W"), 0.0)
    QtTest.QTest.mouseClick(panel.panic_button, QtCore.Qt.MouseButton.LeftButton)
    assert hc.panicked and hc.resolve(0.1).source == "panic"
    assert "PANIC" in panel.reason_label.text()
    QtTest.QTest.mouseClick(panel.release_button, QtCore.Qt.MouseButton.LeftButton)
    assert not hc.panicked
    QtTest.QTest.mouseClick(panel.stop_button, QtCore.Qt.MouseButton.LeftButton)
    assert seen == ["start_requested", "panic_requested", "release_requested", "stop_requested"]
    for b in (panel.start_button, panel.stop_button, panel.panic_button, panel.release_button):
        assert b.focusPolicy() == QtCore.Qt.FocusPolicy.NoFocus


def test_mapping_editor_validates(qapp):
    panel = ControlPanel(CLASSES, MAPPING)
    changed = []
    panel.mapping_changed.connect(changed.append)
    panel.table.item(2, 1).setText("w+d")  # right_hand -> forward-right, lower case
    assert changed and changed[-1].action("right_hand") == parse_action("W+D")
    assert panel.table.item(2, 1).text() == "W+D"
    panel.table.item(1, 1).setText("jump")
    assert "not a camera action" in panel.mapping_error.text()
    assert panel.table.item(1, 1).text() == "←"  # reverted to the last valid mapping
    assert panel.mapping.action("left_hand") == parse_action("←")
    assert len(changed) == 1


def test_luminance_is_frame_locked():
    frames = np.arange(120)
    lum = stimulus_luminance(frames, 12.0, 60.0)
    assert lum.min() >= 0 and lum.max() <= 1
    # Period of 5 frames at 12 Hz on 60 Hz: exactly periodic in the frame counter.
    np.testing.assert_allclose(lum[:-5], lum[5:], atol=1e-9)
    spectrum = np.abs(np.fft.rfft(lum - lum.mean()))
    assert np.fft.rfftfreq(120, 1 / 60.0)[np.argmax(spectrum)] == pytest.approx(12.0)
    # A sampled sinusoid reaches frequencies that are not a divisor of the refresh rate.
    lum = stimulus_luminance(np.arange(600), 8.57, 60.0)
    spectrum = np.abs(np.fft.rfft(lum - lum.mean()))
    assert np.fft.rfftfreq(600, 1 / 60.0)[np.argmax(spectrum)] == pytest.approx(8.57, abs=0.1)
    sq = stimulus_luminance(frames, 10.0, 60.0, waveform="square")
    assert set(np.unique(sq)) == {0.0, 1.0} and sq[:3].tolist() == [1.0, 1.0, 1.0]
    assert square_is_exact(10.0, 60.0) and not square_is_exact(8.57, 60.0)
    with pytest.raises(StimulusError, match="below 30 Hz"):
        stimulus_luminance(0, 35.0, 60.0)
    with pytest.raises(StimulusError, match="waveform"):
        stimulus_luminance(0, 10.0, 60.0, waveform="triangle")


def test_ssvep_grid_flickers_and_measures_refresh(qapp, pump, grab):
    targets = [Target(f, label) for f, label in zip((8.0, 10.0, 12.0, 15.0), "WASD",
                                                     strict=True)]
    grid = SSVEPGrid(targets, refresh_hz=60.0, use_opengl=False)
    grid.resize(300, 300)
    grid.show()
    grid.start()
    pump(0.6)
    assert grid.frame > 10
    measured = grid.measured_refresh_hz
    assert measured is not None and 20 < measured < 120  # a timer on a shared CI machine
    # Target 0 (top-left cell) is drawn with the luminance of the current frame.
    grid.stop()
    frame = grid.frame
    img = grab(grid.canvas)
    expected = stimulus_luminance(frame, 8.0, 60.0)
    centre = img[75 - 40, 75 - 40]  # inside the top-left square, away from its label
    assert abs(int(centre[0]) - 255 * expected) <= 3
    lum = grid.luminances()
    assert len(lum) == 4 and lum[0] == pytest.approx(expected)
    grid.set_labels(["↑", "↓"])
    assert [t.label for t in grid.targets] == ["↑", "↓", "S", "D"]
    with pytest.raises(StimulusError, match="1 to 9"):
        SSVEPGrid([8.0] * 10, refresh_hz=60.0, use_opengl=False)
    with pytest.raises(StimulusError, match="cannot be shown"):
        SSVEPGrid([40.0], refresh_hz=60.0, use_opengl=False)
