"""Gamepad path: axis/button mapping, a real SDL virtual joystick read by pygame, no-pad error."""

from __future__ import annotations

import pytest

from control.actions import IDLE, parse_action
from control.gamepad import Gamepad, GamepadError, GamepadMap, VirtualGamepad
from control.hybrid import HybridController


def test_mapping_sticks_dead_zone_and_dpad():
    m = GamepadMap(dead_zone=0.3)
    assert m.action([0.0] * 6) == IDLE
    assert m.action([0.29, -0.29, 0, 0.2, -0.1, 0]) == IDLE  # inside the dead zone
    assert m.action([0, -1.0, 0, 0, 0, 0]) == parse_action("W")
    assert m.action([-0.8, -0.9, 0, 0, 0, 0]) == parse_action("W+A")
    assert m.action([0.5, 0.6, 0, 0, 0, 0]) == parse_action("S+D")
    assert m.action([0, 0, 0, 0.9, -0.9, 0]) == parse_action("↑→")
    assert m.action([0, -1, 0, -0.9, 0, 0]) == parse_action("W ←")
    assert GamepadMap(invert_look_y=True).action([0, 0, 0, 0, -1, 0]) == parse_action("↓")
    assert m.action([0] * 6, hats=[(1, 1)]) == parse_action("↑→")
    assert m.action([0, 0], hats=[(0, -1)]) == parse_action("↓")  # a pad with two axes only
    assert m.commands([0, 1, 5, 7]) == ["select", "panic", "release"]
    with pytest.raises(GamepadError, match="dead_zone"):
        GamepadMap(dead_zone=1.5)
    with pytest.raises(GamepadError, match="Unknown gamepad commands"):
        GamepadMap(buttons={0: "fire"})


def test_no_gamepad_gives_clear_message():
    with pytest.raises(GamepadError, match="No gamepad found.*keyboard"):
        Gamepad().open()
    with pytest.raises(GamepadError, match="open"):
        Gamepad().poll()


def test_virtual_sdl_gamepad_end_to_end():
    try:
        pad = VirtualGamepad()
    except GamepadError as err:
        pytest.skip(str(err))
    try:
        gp = Gamepad(pad.index).open()
        assert gp.poll().action == IDLE
        pad.set_axis(1, -1.0)  # left stick up
        pad.set_axis(3, 0.8)  # right stick right
        state = gp.poll()
        assert state.action == parse_action("W →")
        assert state.axes[1] == pytest.approx(-1.0, abs=1e-3)
        pad.set_axis(1, -0.1)  # back inside the dead zone
        pad.set_axis(3, 0.0)
        pad.set_hat(0, -1, 0)  # d-pad left
        assert gp.poll().action == parse_action("←")
        pad.set_hat(0, 0, 0)
        # Buttons are edge-triggered: one command per press.
        pad.set_button(1, True)
        assert gp.poll().commands == ("panic",)
        assert gp.poll().commands == ()
        pad.set_button(1, False)
        gp.poll()
        # Gamepad input through the hybrid controller: panic wins and latches.
        hc = HybridController()
        pad.set_axis(1, -1.0)
        st = gp.poll()
        hc.submit("gamepad", st.action, 0.0)
        assert hc.resolve(0.0).action == parse_action("W")
        pad.set_button(1, True)
        st = gp.poll()
        if "panic" in st.commands:
            hc.panic("gamepad B")
        hc.submit("gamepad", st.action, 0.1)
        assert hc.resolve(0.1).source == "panic"
        # Unplugging is reported, not a crash.
        pad.detach()
        with pytest.raises(GamepadError, match="disconnected"):
            gp.poll()
    finally:
        pad.detach()
