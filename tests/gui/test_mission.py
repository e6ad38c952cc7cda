"""The whole mission headless: calibration -> training -> cued online run -> navigation, with
the reports, and a replay that reproduces the online decisions exactly (issue 19)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bci.config import make_source, parse_source
from bci.simulated import ParticipantConfig
from gui.mission import MissionOptions, participant_source_file, run_mission
from gui.runtime.replay import replay_session


@pytest.mark.slow
def test_mission_runs_the_whole_loop_and_replays_exactly(tmp_path):
    opts = MissionOptions(out=tmp_path, resolution=(32, 32), calibration_trials=6,
                          cued_per_class=2, cue_s=4.0, rest_s=3.0, navigation_limit_s=150.0,
                          progress=False)
    result = run_mission(opts)
    f = result.figures
    assert f["training"]["meets_target"], f["training"]
    cued = f["cued"]
    # Chance is one in three classes for the first command of a cue.
    assert cued["n_cues"] == 6 and cued["hit_rate"] >= 4 / 6, cued
    assert cued["fa_per_min"] <= 2.5, cued
    nav = f["navigation"]
    assert nav["completed"], nav
    assert nav["walked_m"] >= nav["shortest_m"] * 0.95 and nav["path_ratio"] < 1.6, nav
    assert nav["wrong_commands"] <= nav["n_commands"] / 4, nav
    for folder in (result.cued, result.navigation):
        html = (folder / "report.html").read_text(encoding="utf-8")
        assert "data:image/png;base64" in html and "Latency" in html
        table = {r["stage"]: r for r in json.loads((folder / "latency.json").read_text())["stages"]}
        assert table["end_to_end (decoder)"]["n"] >= 3
        assert table["end_to_end (decoder)"]["median_ms"] < 500, table
    mission = json.loads((result.folder / "mission.json").read_text())
    assert mission["navigation"]["completed"]
    # The cued run again, from its recording: the same decisions bit for bit.
    replay = replay_session(result.cued, out=tmp_path / "replay", progress=False, report=False)
    assert replay.comparison["identical"], replay.comparison
    assert replay.comparison["actions_identical"]
    original = pd.read_csv(result.cued / "decisions.tsv", sep="\t")
    assert replay.comparison["windows_identical"] == len(original) > 100


def test_the_window_mission_streams_the_participant_it_calibrated(tmp_path):
    opts = MissionOptions(participant="easy", participant_seed=7)
    path = participant_source_file(tmp_path / "participant.json", opts)
    source = make_source(parse_source(str(path)))
    person = getattr(source, "participant", source)
    assert person.config == ParticipantConfig.easy() and person.seed == 7
