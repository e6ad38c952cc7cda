"""Paradigms, the trial scheduler and paradigm files."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from calibration.paradigm import (
    MIParadigm,
    ParadigmError,
    SSVEPParadigm,
    Timing,
    build_paradigm,
    load_paradigm,
    schedule,
    session_length,
)


def test_mi_schedule_is_balanced_ordered_and_seeded():
    p = MIParadigm(classes=("left_hand", "right_hand", "feet"), trials_per_class=20, runs=2,
                   seed=4)
    cues = schedule(p)
    trials = [c for c in cues if c.kind == "cue"]
    assert Counter(c.label for c in trials) == {"left_hand": 20, "right_hand": 20, "feet": 20}
    for run in (0, 1):  # balanced within each run too
        assert set(Counter(c.label for c in trials if c.run == run).values()) == {10}
    onsets = [c.onset_s for c in cues]
    assert onsets == sorted(onsets)
    for a, b in zip(cues, cues[1:], strict=False):  # contiguous timeline, no overlap
        assert b.onset_s == pytest.approx(a.onset_s + a.duration_s)
    assert [c.kind for c in cues].count("break") == 1
    assert all(c.intent == c.label for c in trials)
    itis = [c.duration_s for c in cues if c.kind == "iti"]
    assert min(itis) >= 1.5 and max(itis) <= 2.5 and len(set(itis)) > 10  # random ITI
    assert schedule(p) == cues  # same seed, same timeline
    other = [c.label for c in schedule(MIParadigm(classes=p.classes, trials_per_class=20,
                                                  runs=2, seed=5)) if c.kind == "cue"]
    assert other != [c.label for c in trials]
    assert session_length(cues) == pytest.approx(cues[-1].onset_s)


def test_rest_class_keeps_the_participant_resting():
    cues = schedule(MIParadigm(classes=("rest", "feet"), trials_per_class=3))
    assert {c.intent for c in cues if c.label == "rest"} == {"rest"}


def test_ssvep_targets_and_labels():
    p = build_paradigm("ssvep", freqs="8,10,12", trials=4)
    assert p.classes == ("ssvep:8", "ssvep:10", "ssvep:12")
    assert [t.phase for t in p.targets] == pytest.approx([0.0, 1.5708, 3.1416], abs=1e-3)
    cues = [c for c in schedule(p) if c.kind == "cue"]
    assert Counter(c.intent for c in cues) == {"ssvep:8": 4, "ssvep:10": 4, "ssvep:12": 4}


def test_paradigm_files_json_and_toml(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({
        "kind": "mi", "classes": ["left_hand", "right_hand"], "trials_per_class": 12,
        "timing": {"fixation_s": 1.0, "trial_s": 3.0}}))
    p = load_paradigm(tmp_path / "p.json")
    assert p.classes == ("left_hand", "right_hand") and p.timing.trial_s == 3.0
    assert p.timing.iti_max_s == Timing().iti_max_s  # unspecified fields keep defaults
    (tmp_path / "p.toml").write_text(
        'kind = "ssvep"\ntrials_per_class = 5\n'
        '[[targets]]\nfreq = 9.0\ntext = "A"\n[[targets]]\nfreq = 11.0\nphase = 1.0\n'
        '[timing]\ntrial_s = 5.0\n')
    s = load_paradigm(tmp_path / "p.toml")
    assert isinstance(s, SSVEPParadigm) and s.classes == ("ssvep:9", "ssvep:11")
    assert s.targets[0].text == "A" and s.timing.trial_s == 5.0
    # CLI overrides win over the file
    q = build_paradigm(path=tmp_path / "p.json", classes="feet,rest", trials=7, seed=9)
    assert q.classes == ("feet", "rest") and q.trials_per_class == 7 and q.seed == 9


@pytest.mark.parametrize("kwargs, match", [
    ({"classes": ("left_hand",)}, "at least two classes"),
    ({"classes": ("feet", "feet")}, "repeat"),
    ({"classes": ("fixation", "feet")}, "reserved"),
    ({"trials_per_class": 0}, "trials per class"),
    ({"runs": 30, "trials_per_class": 10}, "runs must be"),
])
def test_bad_mi_settings(kwargs, match):
    with pytest.raises(ParadigmError, match=match):
        MIParadigm(**kwargs)


def test_bad_timing_and_files(tmp_path):
    with pytest.raises(ParadigmError, match="cue_s"):
        Timing(cue_s=5.0, trial_s=4.0)
    with pytest.raises(ParadigmError, match="fixation_s"):
        Timing(fixation_s=-1)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ParadigmError, match="not valid JSON"):
        load_paradigm(tmp_path / "bad.json")
    (tmp_path / "unk.json").write_text(json.dumps({"kind": "mi", "colour": "red"}))
    with pytest.raises(ParadigmError, match="Unknown paradigm setting"):
        load_paradigm(tmp_path / "unk.json")
    with pytest.raises(ParadigmError, match="No paradigm file"):
        load_paradigm(tmp_path / "missing.toml")
    with pytest.raises(ParadigmError, match="--freqs is for SSVEP"):
        build_paradigm("mi", freqs="8,10")
    with pytest.raises(ParadigmError, match="distinct"):
        build_paradigm("ssvep", freqs="8,8")
