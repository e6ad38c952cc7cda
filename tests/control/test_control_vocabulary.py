"""The 81-action vocabulary, its prompts, pose integration, quantization and the keyboard map."""

from __future__ import annotations

import numpy as np
import pytest

from control.actions import (
    IDLE,
    ROTATIONS,
    TRANSLATIONS,
    Action,
    ActionError,
    action_prompt,
    format_action,
    parse_action,
    parse_prompt,
    vocabulary,
)
from control.keyboard import KeyboardMap
from control.motion import (
    CameraState,
    MotionStep,
    apply_action,
    pose_angles,
    quantize_motion,
    quantize_trajectory,
    segment_constant,
)

VOCAB = vocabulary()


def test_vocabulary_has_81_distinct_actions_in_index_order():
    assert len(VOCAB) == 81 == len(TRANSLATIONS) * len(ROTATIONS)
    assert len(set(VOCAB)) == 81
    assert [a.index for a in VOCAB] == list(range(81))
    assert VOCAB[0] == IDLE and IDLE.is_idle
    assert sum(a.is_idle for a in VOCAB) == 1


@pytest.mark.parametrize("action", VOCAB, ids=[format_action(a) for a in VOCAB])
def test_every_action_round_trips(action):
    text = format_action(action)
    assert parse_action(text) == action
    assert str(action) == text
    assert Action.from_index(action.index) == action
    for template in ("14b", "5b"):
        prompt = action_prompt(action, template)
        assert parse_prompt(prompt) == action
        assert action.prompt(template) == prompt
    assert parse_prompt(action_prompt(action, "14b", speed=3.0)) == action
    # Glued and reversed spellings of the same action.
    if action.translation != "·" and action.rotation != "·":
        assert parse_action(action.translation + action.rotation) == action
        assert parse_action(f"{action.rotation}, {action.translation}") == action


def test_prompt_texts_follow_the_templates():
    a = parse_action("W+A ↑→")
    assert action_prompt(a, "14b") == (
        "This video depicts a city walk scene with a first-person view (FPV)."
        "Person moves forward and left (W+A).Camera tilts up and turns right (↑→)."
    )
    assert action_prompt(IDLE, "5b") == (
        "First-person perspective.The camera's movement direction remains stationary (·)."
        "The rotation direction of the camera remains stationary (·)."
    )
    assert "speed):10.00" in action_prompt(a, "14b", speed=50)
    assert "speed):0.10" in action_prompt(a, "14b", speed=0)
    with pytest.raises(ActionError):
        action_prompt(a, "7b")
    with pytest.raises(ActionError):
        parse_prompt("no keys here")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("w", Action("W")),
        ("a+w", Action("W+A")),
        ("D+S", Action("S+D")),
        ("LEFT", Action("·", "←")),
        ("right", Action("·", "→")),
        ("UP+LEFT", Action("·", "↑←")),
        ("left+down", Action("·", "↓←")),
        ("S, DOWN+RIGHT", Action("S", "↓→")),
        ("↑+→", Action("·", "↑→")),
        ("→↑", Action("·", "↑→")),
        ("W+D↓←", Action("W+D", "↓←")),
        ("·", IDLE),
        ("idle", IDLE),
        ("none", IDLE),
        (". .", IDLE),
        ("  W   RIGHT  ", Action("W", "→")),
    ],
)
def test_aliases_parse(text, expected):
    assert parse_action(text) == expected


@pytest.mark.parametrize(
    "text", ["Q", "W+S", "A+D", "↑↓", "", "   ", "W W", "→ ←", "W+A+D", "UPLEFT", "W+", "forward"]
)
def test_unknown_actions_raise(text):
    with pytest.raises(ActionError):
        parse_action(text)


def test_bad_constructor_index_and_type():
    with pytest.raises(ActionError):
        Action("X", "·")
    with pytest.raises(ActionError):
        Action("W", "↑↓")
    with pytest.raises(ActionError):
        Action.from_index(81)
    with pytest.raises(ActionError):
        Action.from_index(-1)
    with pytest.raises(ActionError):
        parse_action(5)  # type: ignore[arg-type]
    assert issubclass(ActionError, ValueError)


def _random_walk(rng, n, start):
    states, actions = [start], []
    step = MotionStep()
    for _ in range(n):
        a = VOCAB[rng.integers(81)]
        actions.append(a)
        states.append(apply_action(states[-1], a, step))
    return states, actions


def _expected(prev: CameraState, nxt: CameraState, action: Action) -> Action:
    """The commanded action, minus a tilt that the pitch clamp swallowed."""
    rotation = action.rotation
    if abs(nxt.pitch - prev.pitch) < 1e-12 and action.rotation_axes[1] != 0:
        yaw = action.rotation_axes[0]
        rotation = {1: "→", -1: "←", 0: "·"}[yaw]
    return Action(action.translation, rotation)


@pytest.mark.parametrize("seed", range(5))
def test_quantize_trajectory_recovers_random_actions(seed):
    rng = np.random.default_rng(seed)
    start = CameraState(
        x=rng.normal(), z=rng.normal(), yaw=rng.uniform(-np.pi, np.pi),
        pitch=np.deg2rad(rng.uniform(-50, 50)),
    )
    states, actions = _random_walk(rng, 200, start)
    poses = np.stack([s.pose() for s in states])
    got = quantize_trajectory(poses)
    steps = zip(states[:-1], states[1:], actions, strict=True)
    want = [_expected(a, b, act) for a, b, act in steps]
    assert got == want


@pytest.mark.parametrize("pitch_deg", [-58.0, -30.0, 0.0, 30.0, 58.0])
@pytest.mark.parametrize("action", [a for a in VOCAB if a.rotation_axes[1] == 0])
def test_quantize_each_action_at_pitched_cameras(action, pitch_deg):
    state = CameraState(x=1.0, z=-2.0, yaw=0.7, pitch=np.deg2rad(pitch_deg))
    nxt = apply_action(state, action)
    assert quantize_motion(state.pose(), nxt.pose()) == action


@pytest.mark.parametrize("pitch_deg", [-55.0, -45.0, 45.0, 55.0])
def test_pan_of_a_tilted_camera_is_not_labelled_a_tilt(pitch_deg):
    """Regression: relative Euler angles read a big pan at high pitch as pan + tilt."""
    state = CameraState(pitch=np.deg2rad(pitch_deg), yaw=3.1)
    big = MotionStep(degrees_per_frame=8.0)
    for rotation in ("→", "←"):
        nxt = apply_action(state, Action("W", rotation), big)
        assert quantize_motion(state.pose(), nxt.pose()) == Action("W", rotation)
    states = [state]
    for _ in range(8):
        states.append(apply_action(states[-1], Action("·", "←")))  # crosses yaw = pi
    poses = np.stack([s.pose() for s in states])
    assert quantize_trajectory(poses, stride=4) == [Action("·", "←")] * 2


def test_quantize_with_stride_and_constant_segments():
    state = CameraState(pitch=-0.5)  # stays within the +/-60 degree pitch clamp below
    states = [state]
    actions = [Action("W+D", "↑←")] * 40 + [Action("S", "·")] * 10 + [Action("A", "↓→")] * 36
    for a in actions:
        states.append(apply_action(states[-1], a))
    poses = np.stack([s.pose() for s in states])
    assert quantize_trajectory(poses[:41], stride=4) == [Action("W+D", "↑←")] * 10
    labels = quantize_trajectory(poses)
    assert segment_constant(labels, min_length=33) == [(0, 40), (50, 86)]
    with pytest.raises(ValueError):
        quantize_trajectory(poses[:, :3, :3])
    with pytest.raises(ValueError):
        quantize_trajectory(poses, stride=0)


def test_apply_action_geometry():
    s = CameraState(yaw=np.pi / 2)  # facing +x
    w = apply_action(s, Action("W"))
    np.testing.assert_allclose([w.x, w.z], [0.08, 0.0], atol=1e-12)
    d = apply_action(s, Action("D"))  # right of +x is -z
    np.testing.assert_allclose([d.x, d.z], [0.0, -0.08], atol=1e-12)
    diag = apply_action(CameraState(), Action("W+A"))
    assert np.hypot(diag.x, diag.z) == pytest.approx(0.08)
    # The pose's third column is the viewing direction, y points down.
    pose = CameraState(yaw=0.0, pitch=0.0).pose()
    np.testing.assert_allclose(pose[:3, 2], [0, 0, 1])
    up = apply_action(CameraState(), Action("·", "↑")).pose()
    assert up[1, 2] < 0  # tilting up looks towards -y (up)
    # Pitch is clamped.
    st = CameraState()
    for _ in range(100):
        st = apply_action(st, Action("·", "↑"))
    assert st.pitch == pytest.approx(np.deg2rad(60))
    # pose_angles reads back yaw and pitch.
    tilted = CameraState(yaw=-2.5, pitch=0.4)
    np.testing.assert_allclose(pose_angles(tilted.pose()), (-2.5, 0.4), atol=1e-12)
    # A world-supplied delta overrides the commanded displacement.
    blocked = apply_action(CameraState(), Action("W"), delta=np.zeros(3))
    assert (blocked.x, blocked.z) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"W"}, Action("W")),
        ({"W", "A"}, Action("W+A")),
        ({"S", "D"}, Action("S+D")),
        ({"W", "S"}, IDLE),
        ({"W", "S", "A"}, Action("A")),
        ({"Up"}, Action("·", "↑")),
        ({"Left"}, Action("·", "←")),
        ({"Up", "Right"}, Action("·", "↑→")),
        ({"Down", "Left", "W"}, Action("W", "↓←")),
        ({"Left", "Right"}, IDLE),
        ({"w", "up"}, Action("W", "↑")),
        (set(), IDLE),
        ({"Q", "Escape"}, IDLE),
    ],
)
def test_keyboard_combos(keys, expected):
    km = KeyboardMap()
    assert km.action(keys) == expected
    if keys <= set(km.keys) and expected != IDLE:
        assert km.action(km.lit_keys(expected)) == expected


def test_keyboard_lit_keys_and_aliases():
    km = KeyboardMap(aliases={"Z": "W", "Q": "A"})  # AZERTY
    assert km.action({"Z", "Q"}) == Action("W+A")
    assert KeyboardMap().lit_keys(Action("S+D", "↑←")) == {"S", "D", "Up", "Left"}
    assert all(KeyboardMap().action(KeyboardMap().lit_keys(a)) == a for a in VOCAB)


def test_mirrored_action_swaps_left_and_right_only():
    for a in vocabulary():
        m = a.mirrored()
        assert m.mirrored() == a
        (x, z), (yaw, pitch) = a.translation_axes, a.rotation_axes
        assert m.translation_axes == (-x, z) and m.rotation_axes == (-yaw, pitch)
    assert Action("S+D", "↑←").mirrored() == Action("S+A", "↑→")
