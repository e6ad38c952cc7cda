"""Menus: all 81 actions with 1-3 classes (scanning) or nine SSVEP targets (grid); mappings."""

from __future__ import annotations

import pytest

from control.actions import Action, vocabulary
from control.mapping import DEFAULT_MI_MAPPING, ActionMapping, MappingError, mapping_for
from control.menu import GridMenu, ScanningMenu, ssvep_classes
from control.policy import ControlPolicy, PolicyConfig


def drive(menu, detections, t0=0.0, dt=1.0):
    """Send class detections at 1 s intervals; return the actions produced."""
    out = []
    for i, name in enumerate(detections):
        a = menu.handle(name, t0 + i * dt)
        if a is not None:
            out.append(a)
    return out


def test_scanning_menu_reaches_all_81_actions_with_two_classes():
    menu = ScanningMenu({"left_hand": "next", "right_hand": "select"})
    names = {"next": "left_hand", "select": "right_hand"}
    for action in vocabulary():
        seq = [names[c] for c in menu.detections_for(action)]
        assert drive(menu, seq) == [action]
        assert menu.level == 0  # ready for the next action
    # At most 8 "next" + 1 "select" per level.
    assert max(len(menu.detections_for(a)) for a in vocabulary()) == 18


def test_back_class_returns_to_first_level():
    menu = ScanningMenu({"left_hand": "next", "right_hand": "select", "feet": "back"})
    assert drive(menu, ["left_hand", "right_hand"]) == []  # translation W chosen
    assert menu.level == 1 and "after W" in menu.describe()
    drive(menu, ["feet"])
    assert menu.level == 0 and menu.chosen == []
    assert drive(menu, ["right_hand", "left_hand", "right_hand"]) == [Action("·", "→")]


def test_one_switch_automatic_scanning():
    # A single class (e.g. a jaw clench) with the highlight moving every 1.5 s.
    menu = ScanningMenu({"jaw": "select"}, scan_s=1.5)
    menu.tick(0.0)
    menu.tick(3.1)  # two scan steps: highlight on item 2 ("A")
    assert menu.items[menu.highlight] == "A"
    assert menu.handle("jaw", 3.2) is None
    menu.tick(3.2 + 1.5 * 3 + 0.1)  # highlight on rotation item 3 ("↑")
    assert menu.handle("jaw", 3.2 + 1.5 * 3 + 0.2) == Action("A", "↑")


def test_grid_menu_with_ssvep_targets_in_policy():
    freqs = (8.0, 8.6, 9.2, 10.0, 10.8, 11.6, 12.4, 13.2, 14.0)
    targets = ssvep_classes(freqs)
    # Spelled as calibration and the simulator spell them, so a calibrated bundle matches.
    assert targets[:2] == ("ssvep:8", "ssvep:8.6")
    from calibration.paradigm import SSVEPParadigm

    assert SSVEPParadigm(targets=tuple({"freq": f} for f in freqs)).classes == targets
    menu = GridMenu(targets, back="rest_back")
    assert menu.labels()[5] == "W+A"
    classes = ("rest",) + targets
    policy = ControlPolicy(classes, config=PolicyConfig(mode="menu", smoothing="none",
                                                        dwell_s=0.0, refractory_s=0.0),
                           menu=GridMenu(targets))
    probs = [[0.9 if c == name else 0.1 / 9 for c in classes]
             for name in (targets[5], "rest", targets[6])]
    outs = [policy.update(t, p) for t, p in zip((1.0, 2.0, 3.0), probs, strict=True)]
    assert outs[0].command is None and outs[1].command is None
    assert outs[2].command == Action("W+A", "↑←")
    with pytest.raises(MappingError, match="9 distinct"):
        GridMenu(targets[:4])


def test_menu_configuration_errors():
    with pytest.raises(MappingError, match="Unknown menu commands"):
        ScanningMenu({"a": "jump", "b": "select"})
    with pytest.raises(MappingError, match="'select'"):
        ScanningMenu({"a": "next"})
    with pytest.raises(MappingError, match="'next' or automatic"):
        ScanningMenu({"a": "select"})
    with pytest.raises(MappingError, match="does not have"):
        ControlPolicy(("rest", "left_hand"), config=PolicyConfig(mode="menu"),
                      menu=ScanningMenu({"left_hand": "next", "feet": "select"}))


def test_mapping_roundtrip_and_errors(tmp_path):
    m = mapping_for(("rest", "left_hand", "right_hand", "feet"))
    assert m.to_dict() == DEFAULT_MI_MAPPING
    m2 = ActionMapping.from_dict({"a": "w+a up", "b": "·"})
    assert m2.action("a") == Action("W+A", "↑") and m2.is_rest("b")
    path = tmp_path / "mapping.json"
    m2.save(path)
    assert ActionMapping.load(path) == m2
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(MappingError, match="Cannot read"):
        ActionMapping.load(path)
    with pytest.raises(MappingError, match="empty"):
        ActionMapping.from_dict({})
    with pytest.raises(MappingError, match="'tongue'.*no action"):
        mapping_for(("rest", "tongue"))
    with pytest.raises(MappingError, match="dict"):
        ActionMapping.from_dict(["W"])
