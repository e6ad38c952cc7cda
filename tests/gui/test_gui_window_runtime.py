"""The window drives the session runtime: its folder is the headless one, its latency traces
reach the painted frame, and the photodiode patch flips (pixels and an LSL marker) per command.

A real offscreen window, the sandbox world, BrainFlow's synthetic board, LSL on loopback.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pylsl
import pytest
from PyQt6 import QtCore, QtTest

from bci.eventlog import read_event_log
from bci.recording import read_session
from gui.app import RunOptions, build_window
from gui.main_window import PHOTODIODE_STREAM
from gui.runtime.latency import STAGES

WORLD_STAGES = ["command_issued", "world_request", "frame_generated", "frame_shown"]


def _press(window, pump, key: QtCore.Qt.Key, seconds: float) -> None:
    QtTest.QTest.keyPress(window, key)
    pump(seconds)
    QtTest.QTest.keyRelease(window, key)


def test_window_session_folder_is_the_runtime_one_with_keyboard_traces(qapp, tmp_path, pump):
    window = build_window(RunOptions(resolution=(64, 64), source="synthetic", out=tmp_path))
    window.show()
    window.start()
    try:
        pump(0.4)
        _press(window, pump, QtCore.Qt.Key.Key_W, 0.8)
        pump(0.3)
        _press(window, pump, QtCore.Qt.Key.Key_Left, 0.5)
        pump(0.3)
    finally:
        window.close()
    folder = window.session_folder
    for name in ("session.jsonl", "decisions.tsv", "ticks.tsv", "route.tsv", "latency.tsv",
                 "latency.json", "summary.json"):
        assert (folder / name).is_file(), name
    runtime = window.runtime
    assert runtime.finished and window.server.engine is runtime.world

    # Keyboard commands, traced from the key to the painted frame, in causal order.
    lat = pd.read_csv(folder / "latency.tsv", sep="\t")
    keys = lat[lat.origin == "keyboard"]
    assert list(keys.action) == ["W", "·", "←", "·"]
    moved = keys[keys.action != "·"]
    stamps = moved[WORLD_STAGES].to_numpy()
    assert np.isfinite(stamps).all(), moved  # both moves reached the screen
    assert (np.diff(stamps, axis=1) >= 0).all(), stamps
    assert ((stamps[:, -1] - stamps[:, 0]) < 1.0).all()  # key to picture well under a second
    # Standing still is not a world step (idle is not stepped): no world stage for it.
    assert keys[keys.action == "·"][WORLD_STAGES[1:]].isna().all().all()
    table = {r["stage"]: r for r in json.loads((folder / "latency.json").read_text())["stages"]}
    assert table["end_to_end (keyboard)"]["n"] == 2

    # route.tsv: one row per generated frame, numbered like the world server's frames.
    route = pd.read_csv(folder / "route.tsv", sep="\t")
    summary = json.loads((folder / "summary.json").read_text())
    assert len(route) == summary["frames"] == runtime.n_frames >= window.frames_shown > 5
    assert list(route.frame) == list(range(len(route)))
    walked = route[route.action == "W"]
    assert np.hypot(np.ptp(walked.x), np.ptp(walked.z)) > 0.1  # W moved the camera
    assert np.ptp(route[route.action == "←"].yaw_deg) > 1.0  # ← turned it
    assert summary["frames_shown"] == window.frames_shown and summary["mode"] == "window"
    ticks = pd.read_csv(folder / "ticks.tsv", sep="\t")
    assert len(ticks) >= 40 and ticks.n_written.is_monotonic_increasing
    assert ticks.n_written.iloc[-1] > 0

    # The log: the window's first and last lines around the runtime's.
    log = read_event_log(folder / "session.jsonl")
    kinds = [r["kind"] for r in log]
    assert kinds[0] == "window_started" and kinds[1] == "run_started"
    assert kinds[-2:] == ["run_finished", "window_closed"]
    assert [r["action"] for r in log if r["kind"] == "action"] == ["W", "·", "←", "·"]
    assert [r["action"] for r in log if r["kind"] == "command"] == ["W", "·", "←", "·"]

    # The source's samples and the commands, in the session's recording.
    raw, events = read_session(folder / "recording")
    assert raw.n_times > 200
    assert {"command/W/keyboard", "command/←/keyboard"} <= set(events["description"])


def _patch(grab, window) -> np.ndarray:
    px = window.world_view.patch_px
    return grab(window.world_view)[2:px - 2, 2:px - 2].astype(int)


def test_photodiode_patch_flips_per_command_and_each_flip_is_an_lsl_marker(qapp, tmp_path,
                                                                          pump, grab):
    window = build_window(RunOptions(resolution=(64, 64), source="none", out=tmp_path,
                                     photodiode=True))
    outlet = window.photodiode_outlet
    assert outlet.name == PHOTODIODE_STREAM
    found = pylsl.resolve_byprop("source_id", outlet.source_id, timeout=5.0)
    assert found, "the photodiode marker stream is not on the network"
    inlet = pylsl.StreamInlet(found[0])
    inlet.open_stream(timeout=5.0)  # markers are only delivered once the inlet is connected
    window.show()
    window.start()
    markers = []
    try:
        pump(0.4)
        assert (_patch(grab, window) == 0).all(), "the patch does not start black"
        QtTest.QTest.keyPress(window, QtCore.Qt.Key.Key_W)
        assert pump(2.0, until=lambda: window.world_view.patch_white)
        assert (_patch(grab, window) == 255).all(), "the patch did not turn white"
        pump(0.3)
        assert (_patch(grab, window) == 255).all(), "the patch flipped without a command"
        QtTest.QTest.keyRelease(window, QtCore.Qt.Key.Key_W)  # standing still shows no frame
        pump(0.3)
        assert window.world_view.patch_white
        QtTest.QTest.keyPress(window, QtCore.Qt.Key.Key_D)
        assert pump(2.0, until=lambda: not window.world_view.patch_white)
        assert (_patch(grab, window) == 0).all(), "the patch did not turn black again"
        QtTest.QTest.keyRelease(window, QtCore.Qt.Key.Key_D)
        for _ in range(2):
            sample, stamp = inlet.pull_sample(timeout=5.0)
            assert sample is not None, "a flip's marker did not arrive"
            markers.append((json.loads(sample[0]), stamp))
    finally:
        window.close()
        inlet.close_stream()
    assert [m["patch"] for m, _ in markers] == ["white", "black"]
    assert [m["actions"] for m, _ in markers] == [["W"], ["D"]]
    logged = [r for r in read_event_log(window.session_folder / "session.jsonl")
              if r["kind"] == "photodiode"]
    assert [r["ids"] for r in logged] == [m["ids"] for m, _ in markers]
    lat = pd.read_csv(window.session_folder / "latency.tsv", sep="\t").set_index("id")
    for (marker, stamp), record in zip(markers, logged, strict=True):
        # One time for the flip: the marker's stamp, the log line and the trace's frame_shown.
        (trace,) = marker["ids"]
        assert stamp == pytest.approx(record["t"], abs=1e-6)
        assert stamp == pytest.approx(lat.loc[trace, "frame_shown"], abs=1e-6)
        row = lat.loc[trace, list(STAGES[2:])].to_numpy(float)
        assert (np.diff(row) >= 0).all()


@pytest.mark.slow
def test_yume_run_window_photodiode_writes_the_session_and_its_report(qapp, tmp_path, capsys):
    from gui.cli import main

    code = main(["run", "--window", "--photodiode", "--source", "none", "--resolution", "64x64",
                 "--max-seconds", "1.5", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir() and p.name != "recordings"]
    assert f"session report: {folder / 'report.html'}" in out
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["photodiode"] is True and summary["mode"] == "window"
    assert (folder / "report.html").stat().st_size > 1000
    kinds = [r["kind"] for r in read_event_log(folder / "session.jsonl")]
    assert kinds[0] == "window_started" and kinds[-1] == "window_closed"


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    """A small decoder for the app's default simulated participant (seed 0), in about 1 s."""
    from bci.simulated import ParticipantConfig, SimulatedParticipant
    from control.bundle import save_bundle
    from tests.control.ctrl_helpers import calibrate_participant

    bundle = calibrate_participant(SimulatedParticipant(ParticipantConfig(), seed=0), trials=6)
    return save_bundle(bundle, tmp_path_factory.mktemp("decoder") / "decoder.zip")


@pytest.mark.slow
def test_window_decoder_session_replays_decision_for_decision(qapp, tmp_path, pump,
                                                              bundle_path):
    from gui.runtime.replay import replay_session

    window = build_window(RunOptions(resolution=(48, 48), decoder=bundle_path, out=tmp_path))
    window.show()
    window.start()
    try:
        assert window.steering.keys_drive_intent  # Left: the participant imagines left_hand
        pump(1.0)
        _press(window, pump, QtCore.Qt.Key.Key_Left, 3.0)
        pump(1.0)
        bars = {c: bar.value() for c, bar in window.control_panel.bars.items()}
    finally:
        window.close()
    folder = window.session_folder
    decisions = pd.read_csv(folder / "decisions.tsv", sep="\t")
    classes = list(window.runtime.classes)
    probs = decisions[[f"p_{c}" for c in classes]].to_numpy()
    assert len(decisions) > 10 and np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert "←" in set(decisions.intended)
    # The control panel showed the runtime's policy outputs: its bars are the last window's.
    assert all(abs(bars[c] - round(p * 1000)) <= 1 for c, p in zip(classes, probs[-1],
                                                                  strict=True))
    intents = [r["cls"] for r in read_event_log(folder / "session.jsonl")
               if r["kind"] == "intent"]
    assert intents == ["left_hand", "rest"]
    # The window's folder is a session folder like the headless one: it replays bit for bit.
    c = replay_session(folder, out=tmp_path / "replay", progress=False, report=False).comparison
    assert c["identical"] and c["actions_identical"], c
    assert c["windows_identical"] == len(decisions)
