"""The session runtime's record of a decoder run, its latency traces, and `yume replay`.

(`yume run --decoder` headless: the scripted participant imagines, the decoder steers, the log
holds what was meant beside what happened.)

A real loop: a simulated participant streamed over LSL, a decoder trained on its twin, the
sandbox world. The replay must give the same decisions bit for bit and the same actions.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bci.eventlog import read_event_log
from bci.simulated import ParticipantConfig, SimulatedParticipant
from bci.simulated_lsl import PublishedParticipant
from control.bundle import save_bundle
from gui.app import RunOptions, make_engine, start_acquisition
from gui.cli import main
from gui.headless import decoder_route, run_headless
from gui.runtime.latency import STAGES
from gui.runtime.replay import ReplayError, replay_session
from gui.steering import Steering, decoder_control
from tests.control.ctrl_helpers import calibrate_participant


@pytest.fixture(scope="module")
def decoder_session(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runtime")
    person = SimulatedParticipant(ParticipantConfig.easy(), seed=3)
    twin = SimulatedParticipant(person.config, seed=person.seed)
    bundle = calibrate_participant(twin, classes=("rest", "left_hand", "right_hand"), trials=8,
                                   pipeline="rc_ts_lr")
    path = save_bundle(bundle, tmp / "decoder.zip")
    other = save_bundle(calibrate_participant(
        SimulatedParticipant(person.config, seed=11), classes=("rest", "left_hand", "right_hand"),
        trials=8), tmp / "other.zip")
    acq = start_acquisition(PublishedParticipant(person))
    engine, _ = make_engine(RunOptions(resolution=(48, 48)))
    try:
        online = decoder_control(path, acq, publish=False, adapt="all")
        route = decoder_route(online.policy.mapping, rest_s=2.0, intent_s=4.0, repeats=1)
        result = run_headless(engine, tmp / "run", route=route, acquisition=acq,
                              progress=False, steering=Steering(acq, online),
                              meta={"decoder": str(path), "adapt": "all"}, report=False)
    finally:
        acq.stop()
        engine.close()
    return result, path, other


@pytest.mark.slow
def test_headless_decoder_run_follows_the_imagined_route(decoder_session):
    result, _, _ = decoder_session
    log = read_event_log(result.log)
    intents = [e["action"] for e in log if e["kind"] == "intent"]
    assert intents == ["·", "←", "·", "→", "·"]
    commands = [e for e in log if e["kind"] == "command"]
    assert {c["cls"] for c in commands} >= {"left_hand", "right_hand"}, (commands, result.summary)
    assert all("intended" in c for c in commands)
    # Standing still all along would score 0 here; the decoder lags each change of intent by
    # its 2 s window and the policy's smoothing and dwell (about 2.5 s of each 4 s intent),
    # so at most ~0.4 of the moving frames can agree; 0.1 is a loop that steers.
    assert result.summary["decoder_agreement_moving"] > 0.1, result.summary


@pytest.mark.slow
def test_decoder_commands_are_traced_stage_by_stage(decoder_session):
    result, _, _ = decoder_session
    folder = result.folder
    lat = pd.read_csv(folder / "latency.tsv", sep="\t")
    dec = lat[lat.origin == "decoder"]
    assert len(dec) >= 2, lat
    done = dec[dec.frame_shown.notna()]
    assert len(done) >= 1
    # Every stage present and in causal order on one clock.
    stamps = done[list(STAGES)].to_numpy()
    assert np.isfinite(stamps).all() and (np.diff(stamps, axis=1) >= 0).all()
    # The window spans its decoder's length before the decision; end to end is under a second.
    e2e = stamps[:, -1] - stamps[:, 0]
    assert (e2e < 1.0).all(), e2e
    table = json.loads((folder / "latency.json").read_text())["stages"]
    assert {r["stage"] for r in table} >= {"sample_acquired→window_decoded", "end_to_end"}
    decisions = pd.read_csv(folder / "decisions.tsv", sep="\t")
    probs = decisions[["p_rest", "p_left_hand", "p_right_hand"]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-6) and len(decisions) > 50
    assert set(decisions.command.dropna()) <= {"←", "→"}


@pytest.mark.slow
def test_replay_reproduces_every_decision_and_action(decoder_session, tmp_path):
    result, _, _ = decoder_session
    replay = replay_session(result.folder, out=tmp_path / "replay", progress=False,
                            report=False)
    c = replay.comparison
    assert c["identical"], c
    assert c["windows_identical"] == c["windows_original"] > 50
    assert c["actions_identical"], c
    original = pd.read_csv(result.folder / "route.tsv", sep="\t")
    again = pd.read_csv(replay.folder / "route.tsv", sep="\t")
    assert np.allclose(original[["x", "z", "yaw_deg"]], again[["x", "z", "yaw_deg"]])


@pytest.mark.slow
def test_replay_with_another_decoder_compares_it(decoder_session, tmp_path, capsys):
    result, _, other = decoder_session
    code = main(["replay", str(result.folder), "--decoder", str(other),
                 "--out", str(tmp_path / "other")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "commands as intended" in printed and "other.zip" in printed
    c = json.loads((tmp_path / "other" / "comparison.json").read_text())
    assert not c["same_decoder"] and c["windows_replay"] == c["windows_original"]


def test_replay_refuses_a_folder_that_is_not_a_session(tmp_path, capsys):
    with pytest.raises(ReplayError, match="not a session folder"):
        replay_session(tmp_path)
    assert main(["replay", str(tmp_path)]) == 2
    assert "not a session folder" in capsys.readouterr().err


@pytest.mark.slow
def test_replay_applies_the_operators_panic_stop_and_mapping_change(tmp_path):
    """A session driven tick by tick through the runtime's own controls, as the window does."""
    import time

    from gui.runtime import SessionRuntime

    person = SimulatedParticipant(ParticipantConfig.easy(), seed=5)
    bundle = calibrate_participant(SimulatedParticipant(person.config, seed=5),
                                   classes=("rest", "left_hand", "right_hand"), trials=6)
    path = save_bundle(bundle, tmp_path / "decoder.zip")
    acq = start_acquisition(PublishedParticipant(person))
    engine, _ = make_engine(RunOptions(resolution=(32, 32)))
    try:
        online = decoder_control(path, acq, publish=False)
        runtime = SessionRuntime(engine, tmp_path / "run", acquisition=acq,
                                 steering=Steering(acq, online), report=False,
                                 meta={"decoder": str(path)})
        runtime.start()
        left = online.policy.mapping.action("left_hand")
        swapped = {"rest": "·", "left_hand": "→", "right_hand": "←"}
        t0 = time.perf_counter()
        for k in range(200):  # ~12.5 s at 16 ticks/s
            if k == 10:
                runtime.set_intent(left, origin="route")
            if k == 90:
                runtime.panic("test")
            if k == 120:
                runtime.release()
                runtime.set_mapping(swapped)
            if k == 150:
                runtime.set_decoder_enabled(False)
            if k == 170:
                runtime.set_decoder_enabled(True)
            tick = runtime.tick()
            first = runtime.n_frames
            runtime.world.step(tick.action)
            runtime.frame_shown(first)
            time.sleep(max(0.0, t0 + (k + 1) / 16 - time.perf_counter()))
        runtime.finish()
    finally:
        acq.stop()
        engine.close()
    ticks = pd.read_csv(tmp_path / "run" / "ticks.tsv", sep="\t", keep_default_na=False)
    assert set(ticks.origin[90:120]) == {"panic"}  # the stop held the world
    replay = replay_session(tmp_path / "run", out=tmp_path / "replay", progress=False,
                            report=False)
    c = replay.comparison
    assert c["identical"] and c["actions_identical"], c
    again = pd.read_csv(tmp_path / "replay" / "ticks.tsv", sep="\t", keep_default_na=False)
    assert (again.origin == ticks.origin).all()
