"""Hybrid control: priority between sources, panic stop latching, pause, timeouts."""

from __future__ import annotations

import pytest

from control.actions import IDLE, parse_action
from control.hybrid import HybridController, HybridError
from control.keyboard import KeyboardMap

W, LEFT, RIGHT, S = (parse_action(a) for a in ("W", "←", "→", "S"))


def test_priority_keyboard_over_gamepad_over_switch_over_decoder():
    hc = HybridController()
    hc.submit("decoder", LEFT, 0.0)
    assert hc.resolve(0.1).source == "decoder"
    hc.submit("gamepad", RIGHT, 0.1)
    out = hc.resolve(0.2)
    assert (out.action, out.source) == (RIGHT, "gamepad")
    keys = KeyboardMap()
    hc.submit("keyboard", keys.action({"W"}), 0.2)
    out = hc.resolve(0.3)
    assert (out.action, out.source) == (W, "keyboard")
    # Letting go of the keys hands control back to the next engaged source.
    hc.submit("keyboard", keys.action(set()), 0.4)
    assert hc.resolve(0.45).source == "gamepad"
    hc.clear("gamepad")
    assert hc.resolve(0.5) .source == "decoder"


def test_idle_high_priority_source_does_not_block():
    hc = HybridController()
    hc.submit("keyboard", IDLE, 0.0)
    hc.submit("decoder", LEFT, 0.0)
    assert hc.resolve(0.1).action == LEFT


def test_panic_latches_until_released():
    hc = HybridController()
    hc.submit("keyboard", W, 0.0)
    hc.submit("decoder", LEFT, 0.0)
    hc.panic("carer pressed STOP")
    for t in (0.1, 0.5, 5.0):
        hc.submit("keyboard", W, t)
        hc.submit("decoder", RIGHT, t, held=False)
        out = hc.resolve(t)
        assert out.action == IDLE and out.source == "panic" and "STOP" in out.reason
    hc.release()
    # Inputs made while latched were dropped: nothing replays after the release.
    hc.submit("keyboard", IDLE, 5.1)
    assert hc.resolve(5.1).action == IDLE
    hc.submit("decoder", RIGHT, 5.2)
    assert hc.resolve(5.2).action == RIGHT


def test_steps_are_used_once_and_overridden_steps_dropped():
    hc = HybridController()
    hc.submit("decoder", LEFT, 0.0, held=False)
    assert hc.resolve(0.1).action == LEFT
    assert hc.resolve(0.2).action == IDLE
    # An idle step does not erase a pending step.
    hc.submit("decoder", RIGHT, 0.3, held=False)
    hc.submit("decoder", IDLE, 0.35, held=False)
    assert hc.resolve(0.4).action == RIGHT
    # A step made while the keyboard overrides is not replayed later.
    hc.submit("keyboard", S, 0.5)
    hc.submit("decoder", LEFT, 0.5, held=False)
    assert hc.resolve(0.6).action == S
    hc.submit("keyboard", IDLE, 0.7)
    assert hc.resolve(0.8).action == IDLE


def test_timeouts_drop_stale_held_inputs():
    hc = HybridController(timeouts={"decoder": 0.5})
    hc.submit("decoder", LEFT, 0.0)
    assert hc.resolve(0.4).action == LEFT
    assert hc.resolve(0.6).action == IDLE
    # The keyboard never times out (it reports key changes only).
    hc.submit("keyboard", W, 0.0)
    assert hc.resolve(100.0).action == W


def test_pause_toggles_automatic_sources_only():
    hc = HybridController()
    hc.submit("decoder", LEFT, 0.0)
    assert hc.toggle_pause() is True
    hc.submit("decoder", LEFT, 0.1)
    out = hc.resolve(0.1)
    assert out.action == IDLE and out.source == "pause" and "resume" in out.reason
    hc.submit("keyboard", W, 0.2)
    assert hc.resolve(0.2).action == W  # the carer can still drive
    hc.submit("keyboard", IDLE, 0.3)
    assert hc.toggle_pause() is False
    hc.submit("decoder", RIGHT, 0.4)
    assert hc.resolve(0.4).action == RIGHT


def test_bad_configuration():
    with pytest.raises(HybridError, match="Unknown control source"):
        HybridController().submit("telepathy", W, 0.0)
    with pytest.raises(HybridError, match="not an Action"):
        HybridController().submit("decoder", "W", 0.0)
    with pytest.raises(HybridError, match="once"):
        HybridController(priority=("decoder", "decoder"))
    with pytest.raises(HybridError, match="panic"):
        HybridController(priority=("panic", "decoder"))
    # A custom priority: decoder above the gamepad.
    hc = HybridController(priority=("keyboard", "decoder", "gamepad"))
    hc.submit("gamepad", RIGHT, 0.0)
    hc.submit("decoder", LEFT, 0.0)
    assert hc.resolve(0.1).source == "decoder"


def _policy_outputs(mode):
    from control.policy import ControlPolicy, PolicyConfig

    classes = ("rest", "left_hand")
    pol = ControlPolicy(classes, {"rest": "·", "left_hand": "←"},
                        PolicyConfig(mode=mode, smoothing="none", dwell_s=0.0, refractory_s=0.5))
    script = [[0.1, 0.9]] * 5 + [[0.9, 0.1]] * 5
    return [pol.update(0.1 * (i + 1), p) for i, p in enumerate(script)]


def test_policy_outputs_into_hybrid():
    # Discrete: one step, used once even if later idle windows arrive before the world step.
    hc = HybridController()
    outs = _policy_outputs("discrete")
    for out in outs[:3]:
        hc.submit_policy(out)
    assert hc.resolve(0.35).action == LEFT
    assert hc.resolve(0.4).action == IDLE
    # Direct: held while the class is held, released when the policy lets go.
    hc = HybridController()
    outs = _policy_outputs("direct")
    for out in outs[:4]:
        hc.submit_policy(out)
    assert hc.resolve(0.45).action == LEFT and hc.resolve(0.46).action == LEFT
    for out in outs[4:7]:
        hc.submit_policy(out)
    assert hc.resolve(0.75).action == IDLE


def test_switch_and_button_commands():
    from control.switch import SwitchEvent

    hc = HybridController()
    hc.submit("decoder", LEFT, 0.0)
    jaw = SwitchEvent(0.1, "jaw_clench", "stop")
    assert hc.command(jaw.command, jaw.timestamp) is False
    assert hc.paused and hc.resolve(0.2).action == IDLE
    assert hc.command("stop", 0.3) is False and not hc.paused  # a second clench resumes
    assert hc.command("select", 0.4) is True  # goes on to the menu
    hc.command("panic", 0.5, "gamepad B")
    assert hc.resolve(0.5).reason == "gamepad B"
    hc.command("stop", 0.6)  # a pause cannot undo a panic
    assert hc.panicked and not hc.paused
    hc.command("release", 0.7)
    assert not hc.panicked


def test_decoder_switch_and_keyboard_on_one_stream():
    """EEG decoder, jaw-clench switch and keyboard combined on one simulated stream."""
    import numpy as np

    from bci.ringbuffer import RingBuffer
    from bci.simulated import ParticipantConfig, SimulatedParticipant
    from control.online import OnlineControl, OnlineDecoder
    from control.policy import ControlPolicy, PolicyConfig
    from control.switch import MuscleSwitch, SwitchConfig
    from tests.control.ctrl_helpers import MOTOR_MONTAGE, calibrate_participant

    sf = 160.0
    part = SimulatedParticipant(ParticipantConfig(
        sfreq=sf, montage=MOTOR_MONTAGE, extra_channels=("emg",), muscle_rate=0.0,
        blink_rate=0.0), seed=11)
    bundle = calibrate_participant(part, classes=("rest", "left_hand", "right_hand"), trials=8)
    decoder = OnlineDecoder.from_bundle(bundle)
    decoder.bind(part.info)  # the EMG channel is ignored by the decoder ...
    switch = MuscleSwitch(part.info, SwitchConfig(commands={"jaw_clench": "stop"},
                                                  jaw={"band": (30.0, 75.0)}))  # ... not here
    policy = ControlPolicy(bundle.classes, bundle.actions,
                           PolicyConfig(mode="direct", dwell_s=0.5, refractory_s=0.5))
    loop = OnlineControl(decoder, policy)  # timestamps = signal time: one clock for all
    hc = HybridController()
    keys = KeyboardMap()
    buf = RingBuffer(part.info.n_channels, int(10 * sf))
    chunk = int(0.05 * sf)
    world = []  # (signal time, resolved action, source)

    def run(seconds):
        for _ in range(int(seconds / 0.05)):
            x = part.generate(chunk)
            n0 = part.n_generated - chunk
            buf.push(x, np.arange(n0, n0 + chunk) / sf)
            now = part.n_generated / sf
            for out in loop.step(buf, now):
                hc.submit_policy(out)
            for ev in switch.update(buf):
                hc.command(ev.command, ev.timestamp)
            out = hc.resolve(now)
            world.append((now, out.action, out.source))

    def actions(since):
        return {(str(a), s) for t, a, s in world if t > since}

    run(3.0)
    part.set_intent("left_hand")
    t_left = part.n_generated / sf
    run(4.0)
    assert ("←", "decoder") in actions(t_left)  # the decoder turns the camera left
    part.trigger_event("jaw_clench")  # the participant pauses without hands
    t_pause = part.n_generated / sf
    run(3.0)
    assert hc.paused and actions(t_pause + 0.5) == {("·", "pause")}
    hc.submit("keyboard", keys.action({"W"}), part.n_generated / sf)  # a carer drives meanwhile
    t_key = part.n_generated / sf
    run(1.0)
    assert actions(t_key) == {("W", "keyboard")}
    hc.submit("keyboard", keys.action(set()), part.n_generated / sf)
    part.trigger_event("jaw_clench")  # resume
    t_resume = part.n_generated / sf
    run(3.0)
    assert not hc.paused and ("←", "decoder") in actions(t_resume + 0.5)
    hc.panic("operator")
    t_panic = part.n_generated / sf
    run(2.0)
    assert actions(t_panic) == {("·", "panic")}
