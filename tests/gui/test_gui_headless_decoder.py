"""`yume run --decoder` headless: the scripted participant imagines, the decoder steers, the
log holds what was meant beside what happened."""

from __future__ import annotations

import pytest

from bci.eventlog import read_event_log
from bci.simulated import ParticipantConfig, SimulatedParticipant
from bci.simulated_lsl import PublishedParticipant
from control.bundle import save_bundle
from gui.app import RunOptions, make_engine, start_acquisition
from gui.headless import decoder_route, run_headless
from gui.steering import Steering, decoder_control
from tests.control.ctrl_helpers import calibrate_participant


@pytest.mark.slow
def test_headless_decoder_run_follows_the_imagined_route(tmp_path):
    opts = RunOptions(resolution=(64, 64), control_mode="direct", out=tmp_path)
    # This checks the plumbing (intents set, commands logged, agreement counted), so the easy
    # participant; how well a realistic person steers is measured pseudo-online (issue 17).
    person = SimulatedParticipant(ParticipantConfig.easy(), seed=0)
    source = PublishedParticipant(person)  # over LSL, as the app takes it
    # Calibrated on the same person (a twin with the same traits, so the stream is untouched).
    twin = SimulatedParticipant(person.config, seed=person.seed)
    bundle = calibrate_participant(twin, classes=("rest", "left_hand", "right_hand"), trials=10)
    path = save_bundle(bundle, tmp_path / "decoder.zip")
    acq = start_acquisition(source)
    engine, _ = make_engine(opts)
    try:
        online = decoder_control(path, acq, publish=False)
        route = decoder_route(online.policy.mapping, rest_s=2.0, intent_s=6.0, repeats=1)
        result = run_headless(engine, tmp_path / "run", route=route, acquisition=acq,
                              progress=False, steering=Steering(acq, online))
    finally:
        acq.stop()
        engine.close()
    log = read_event_log(result.log)
    intents = [e["action"] for e in log if e["kind"] == "intent"]
    assert intents == ["·", "←", "·", "→", "·"]
    commands = [e for e in log if e["kind"] == "command"]
    assert {c["cls"] for c in commands} >= {"left_hand", "right_hand"}, (commands, result.summary)
    assert all("intended" in c for c in commands)
    # Standing still all along would score 0 here; the decoder lags each change of intent by
    # its 2 s window and the policy's smoothing and dwell (about 2.5 s of each 6 s intent), and
    # each release costs a 1 s refractory pause, so 0.2 of the moving frames (0.3 measured)
    # is a loop that steers.
    assert result.summary["decoder_agreement_moving"] > 0.2, result.summary
