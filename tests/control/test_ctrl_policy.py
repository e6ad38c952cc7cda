"""Control policy: each parameter's effect (threshold, dwell, refractory), modes, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from control.actions import IDLE, parse_action
from control.mapping import MappingError
from control.menu import ScanningMenu
from control.policy import ControlPolicy, PolicyConfig, PolicyError, PolicyState

CLASSES = ("rest", "left_hand", "right_hand")
MAPPING = {"rest": "·", "left_hand": "←", "right_hand": "→"}
STEP = 0.1


def probs(name: str, p: float = 0.9) -> np.ndarray:
    out = np.full(len(CLASSES), (1 - p) / (len(CLASSES) - 1))
    out[CLASSES.index(name)] = p
    return out


def run(policy: ControlPolicy, script, t0: float = 100.0):
    """Feed (class, p, seconds) segments at STEP; return all outputs."""
    outs, t = [], t0
    for name, p, dur in script:
        for _ in range(int(round(dur / STEP))):
            t += STEP
            outs.append(policy.update(t, probs(name, p)))
    return outs


def commands(outs):
    return [(round(o.timestamp, 3), str(o.command)) for o in outs if o.command is not None]


def test_states_sequence_discrete():
    pol = ControlPolicy(CLASSES, MAPPING, PolicyConfig(smoothing="none", threshold=0.7,
                                                       dwell_s=0.3, refractory_s=0.5))
    assert pol.state is PolicyState.IDLE
    outs = run(pol, [("rest", 0.9, 0.3), ("left_hand", 0.9, 0.5)])
    states = [o.state for o in outs]
    assert states[:3] == [PolicyState.IDLE] * 3
    assert states[3] is PolicyState.ACCUMULATING
    fired = [o for o in outs if o.state is PolicyState.FIRED]
    assert len(fired) == 1 and fired[0].command == parse_action("←")
    assert fired[0].action == parse_action("←")
    # Dwell 0.3 s: first confident window at 100.4, fires when 0.3 s have passed.
    assert fired[0].timestamp == pytest.approx(100.7)
    assert outs[-1].state is PolicyState.REFRACTORY and outs[-1].action == IDLE


def test_threshold_effect():
    script = [("left_hand", 0.65, 2.0)]
    low = ControlPolicy(CLASSES, MAPPING, PolicyConfig(smoothing="none", threshold=0.6,
                                                       dwell_s=0.2))
    high = ControlPolicy(CLASSES, MAPPING, PolicyConfig(smoothing="none", threshold=0.7,
                                                        dwell_s=0.2))
    assert len(commands(run(low, script))) >= 1
    assert commands(run(high, script)) == []
    assert high.state is PolicyState.IDLE


def test_dwell_effect_rejects_short_bursts():
    # 0.3 s bursts of confident left-hand separated by rest.
    script = [("left_hand", 0.95, 0.3), ("rest", 0.9, 0.5)] * 4
    short = ControlPolicy(CLASSES, MAPPING, PolicyConfig(smoothing="none", dwell_s=0.1,
                                                         refractory_s=0.0))
    long = ControlPolicy(CLASSES, MAPPING, PolicyConfig(smoothing="none", dwell_s=0.5,
                                                        refractory_s=0.0))
    assert len(commands(run(short, script))) == 4
    assert commands(run(long, script)) == []


def test_dwell_time_to_command():
    for dwell in (0.0, 0.4, 1.0):
        pol = ControlPolicy(CLASSES, MAPPING, PolicyConfig(smoothing="none", dwell_s=dwell))
        outs = run(pol, [("right_hand", 0.9, 2.0)], t0=0.0)
        first = next(o for o in outs if o.command is not None)
        assert first.timestamp == pytest.approx(STEP + dwell)


def test_refractory_effect_limits_rate():
    script = [("left_hand", 0.95, 6.0)]
    fast = ControlPolicy(CLASSES, MAPPING, PolicyConfig(smoothing="none", dwell_s=0.2,
                                                        refractory_s=0.3))
    slow = ControlPolicy(CLASSES, MAPPING, PolicyConfig(smoothing="none", dwell_s=0.2,
                                                        refractory_s=1.8))
    n_fast, n_slow = len(commands(run(fast, script))), len(commands(run(slow, script)))
    assert n_fast > n_slow >= 2
    times = [t for t, _ in commands(run(ControlPolicy(
        CLASSES, MAPPING, PolicyConfig(smoothing="none", dwell_s=0.2, refractory_s=1.8)),
        script, t0=0.0))]
    assert np.min(np.diff(times)) >= 1.8 + 0.2 - 1e-6


def test_ema_smoothing_rejects_single_outlier():
    pol = ControlPolicy(CLASSES, MAPPING, PolicyConfig(smoothing="ema", tau_s=0.5,
                                                       threshold=0.7, dwell_s=0.0))
    outs = run(pol, [("rest", 0.9, 1.0), ("left_hand", 0.99, 0.1), ("rest", 0.9, 1.0)])
    assert commands(outs) == []
    raw = ControlPolicy(CLASSES, MAPPING, PolicyConfig(smoothing="none", threshold=0.7,
                                                       dwell_s=0.0))
    assert len(commands(run(raw, [("rest", 0.9, 1.0), ("left_hand", 0.99, 0.1)]))) == 1


def test_evidence_accumulation_needs_consistent_evidence():
    cfg = PolicyConfig(smoothing="accumulate", tau_s=1.0, threshold=0.9, dwell_s=0.0)
    pol = ControlPolicy(CLASSES, MAPPING, cfg)
    # Weak but consistent evidence (p=0.5 vs 0.25) accumulates to a decision ...
    outs = run(pol, [("right_hand", 0.5, 2.0)])
    assert [c for _, c in commands(outs)][:1] == ["→"]
    # ... alternating evidence does not.
    pol2 = ControlPolicy(CLASSES, MAPPING, cfg)
    outs2 = run(pol2, [("right_hand", 0.5, 0.1), ("left_hand", 0.5, 0.1)] * 20)
    assert commands(outs2) == []


def test_direct_mode_holds_while_class_held():
    pol = ControlPolicy(CLASSES, MAPPING, PolicyConfig(mode="direct", smoothing="none",
                                                       dwell_s=0.2, refractory_s=0.5))
    outs = run(pol, [("left_hand", 0.9, 1.5), ("rest", 0.9, 1.0)], t0=0.0)
    held = [o for o in outs if o.action == parse_action("←")]
    assert len([o for o in outs if o.command is not None]) == 1
    # Held from the firing window to the last left-hand window: 1.5 s - 0.2 s dwell.
    assert len(held) == pytest.approx(13, abs=1)
    assert all(o.state is PolicyState.FIRED for o in held)
    assert outs[-1].action == IDLE and outs[-1].state is PolicyState.IDLE


def test_rest_never_moves():
    pol = ControlPolicy(CLASSES, MAPPING, PolicyConfig(smoothing="none", dwell_s=0.0))
    outs = run(pol, [("rest", 0.99, 5.0)])
    assert commands(outs) == [] and all(o.action == IDLE for o in outs)
    assert all(o.state is PolicyState.IDLE for o in outs)


def test_lost_stream_goes_idle_with_reason():
    pol = ControlPolicy(CLASSES, MAPPING, PolicyConfig(mode="direct", smoothing="none",
                                                       dwell_s=0.0, stale_s=0.5))
    outs = run(pol, [("left_hand", 0.9, 1.0)], t0=0.0)
    assert outs[-1].action == parse_action("←")
    assert pol.check(1.2) is None  # 0.2 s since the last window: still fine
    out = pol.check(2.0)
    assert out is not None and out.action == IDLE and pol.state is PolicyState.IDLE
    assert "lost" in out.reason and pol.reason == out.reason
    assert pol.check(3.0) is None  # reported once, stays idle
    # Probabilities flowing again clear the reason.
    again = pol.update(3.1, probs("rest"))
    assert again.reason == "" and pol.reason == ""


def test_bad_probabilities():
    pol = ControlPolicy(CLASSES, MAPPING)
    with pytest.raises(PolicyError, match="3 classes"):
        pol.update(1.0, [0.5, 0.5])
    out = pol.update(1.0, [np.nan, 0.5, 0.5])
    assert out.action == IDLE and "non-finite" in out.reason
    # Time going backwards is ignored, not a crash.
    pol.update(2.0, probs("rest"))
    assert pol.update(1.5, probs("left_hand")).command is None


def test_mapping_errors():
    with pytest.raises(MappingError, match="'feet'"):
        ControlPolicy(("rest", "feet"), {"rest": "·", "left_hand": "←"})
    with pytest.raises(MappingError, match="not a camera action"):
        ControlPolicy(CLASSES, {"rest": "·", "left_hand": "jump", "right_hand": "→"})
    with pytest.raises(MappingError, match="idle"):
        ControlPolicy(("rest", "left_hand"), {"rest": "·", "left_hand": "·"})
    with pytest.raises(PolicyError, match="mode"):
        PolicyConfig(mode="telepathy")
    with pytest.raises(PolicyError, match="menu"):
        ControlPolicy(CLASSES, MAPPING, PolicyConfig(mode="menu"))


def test_menu_mode_reaches_an_action_with_two_classes():
    menu = ScanningMenu({"left_hand": "next", "right_hand": "select"})
    pol = ControlPolicy(CLASSES, config=PolicyConfig(mode="menu", smoothing="none", dwell_s=0.2,
                                                     refractory_s=0.2), menu=menu)
    target = parse_action("W+A ↑→")
    script = []
    for cmd in menu.detections_for(target):
        script += [("left_hand" if cmd == "next" else "right_hand", 0.9, 0.3), ("rest", 0.9, 0.5)]
    outs = run(pol, script)
    cmds = [o.command for o in outs if o.command is not None]
    assert cmds == [target]
    # Nothing moves while the menu is being navigated.
    assert all(o.action == IDLE for o in outs if o.command is None)
