"""Online tasks in the window (the instruction above the world, scored as headless) and
``yume replay --window`` (the re-rendered world at the session's pace beside its decisions).

A real offscreen window, the sandbox world, BrainFlow's synthetic board or a simulated
participant streamed over LSL, a decoder trained on its twin.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from PyQt6 import QtCore, QtTest

from bci.eventlog import read_event_log
from gui.app import RunOptions, build_window, make_engine
from gui.tasks.cued import CuedTask
from gui.tasks.navigation import NavigationTask


def _kinds(folder, kind):
    return [r for r in read_event_log(folder / "session.jsonl") if r["kind"] == kind]


@pytest.mark.slow  # the schedule itself lasts 6 s
def test_window_cued_task_cues_the_person_and_scores_the_keys(qapp, tmp_path, pump):
    # Two cues of left hand: the person answers the first with ← and ignores the second.
    # (A long lead: on a loaded machine the window's first tick may come a second late.)
    task = CuedTask(classes=["left_hand"], n_per_class=2, cue_s=1.0, rest_s=1.2, lead_s=1.5,
                    grace_s=0.5)
    window = build_window(RunOptions(resolution=(48, 48), source="synthetic", out=tmp_path),
                          task=task)
    assert window.runtime.task is task and window.task_label is not None
    window.show()
    window.start()
    try:
        assert pump(2.0, until=lambda: window.task_text.startswith("Rest"))
        assert "Rest" in window.task_label.text() and "cues done" in window.task_text
        assert pump(3.0, until=lambda: window.task_text.startswith("Imagine"))
        assert window.task_text.startswith("Imagine LEFT HAND ←")
        assert "cue 1 of 2" in window.task_text and "Imagine LEFT HAND" in \
            window.task_label.text()
        QtTest.QTest.keyPress(window, QtCore.Qt.Key.Key_Left)
        pump(0.3)
        QtTest.QTest.keyRelease(window, QtCore.Qt.Key.Key_Left)
        assert pump(2.0, until=lambda: window.task_text.startswith("Rest"))
        assert "1 of 2 cues done" in window.task_text
        assert pump(3.0, until=lambda: "cue 2 of 2" in window.task_text)
        assert pump(4.0, until=lambda: window.task_text.startswith("Done"))
        # The task is over and says so; the window stays open.
        assert window.task_text == ("Done\n1/2 cues hit · 0.0 false activations/min of rest")
        assert window.isVisible()
    finally:
        window.close()
    folder = window.session_folder
    summary = json.loads((folder / "task.json").read_text())
    assert summary["task"] == "cued" and summary["completed"]
    assert (summary["hits"], summary["misses"], summary["false_activations"]) == (1, 1, 0)
    rows = pd.read_csv(folder / "task.tsv", sep="\t")
    assert list(rows.outcome) == ["hit", "miss"]

    # The instruction changed at the cue boundaries (within a few control ticks).
    shown = _kinds(folder, "task_instruction")
    assert [r["text"] for r in shown] == ["Rest", "Imagine LEFT HAND ←", "Rest",
                                          "Imagine LEFT HAND ←", "Rest", "Done"]
    onsets = [task.t0 + b.onset for b in task.cues]
    cue_shown = [r["t"] for r in shown if r["text"].startswith("Imagine")]
    assert np.allclose(cue_shown, onsets, atol=0.25), (cue_shown, onsets)
    # The task only cued: its intent is logged (and is each key command's "intended"), but
    # every command is the person's, and nothing moved the world during the ignored cue.
    assert [r["action"] for r in _kinds(folder, "intent")] == ["·", "←", "·", "←", "·"]
    commands = _kinds(folder, "command")
    assert {r["origin"] for r in commands} == {"keyboard"}
    assert [(r["action"], r["intended"]) for r in commands] == [("←", "←"), ("·", "←")]
    route = pd.read_csv(folder / "route.tsv", sep="\t")
    second = route[(route.t >= onsets[1]) & (route.t < onsets[1] + task.cue_s)]
    assert len(second) > 5 and set(second.action) == {"·"}  # idle is stepped while a task runs


def test_window_navigation_shows_the_next_landmark(qapp, tmp_path, pump):
    window = build_window(RunOptions(resolution=(48, 48), source="none", out=tmp_path,
                                     task="navigation"))
    task = window.runtime.task
    assert isinstance(task, NavigationTask)
    window.show()
    window.start()
    try:
        assert pump(2.0, until=lambda: window.task_text.startswith("Go to the"))
        landmark = task.course[0]
        headline, detail = window.task_text.split("\n")
        assert headline.startswith(f"Go to the {landmark} ") and headline[-1] in "↑↗→↘↓↙←↖"
        assert "m away" in detail and "0 commands" in detail
        assert landmark in window.task_label.text()
        before = float(detail.split(" m away")[0])
        QtTest.QTest.keyPress(window, QtCore.Qt.Key.Key_W)
        assert pump(3.0, until=lambda: "1 command " in window.task_text)
        pump(1.0)
        QtTest.QTest.keyRelease(window, QtCore.Qt.Key.Key_W)
        pump(0.3)
    finally:
        window.close()
    summary = json.loads((window.session_folder / "task.json").read_text())
    assert summary["task"] == "navigation" and summary["course"] == [landmark]
    assert summary["n_commands"] == 1 and summary["walked_m"] > 0.3
    # The straight-line distance shown is the task's own (from where the walker started).
    leg = task.legs[0]
    assert before == pytest.approx(np.hypot(leg.centre[0] - leg.start[0],
                                            leg.centre[1] - leg.start[1]), abs=0.5)


def test_navigation_describe_says_done_with_time_and_path():
    """The task's end text, after a walk in which the task's intent steers the sandbox."""
    engine, _ = make_engine(RunOptions(resolution=(16, 16)))
    task = NavigationTask(n_landmarks=1, time_limit_s=120.0)
    t = 0.0
    try:
        task.start(engine, t)
        while not task.done:
            t += 1.0 / engine.frame_rate
            task.observe(t, engine.step(task.intent(t)))
    finally:
        engine.close()
    s = task.summary()
    assert s["completed"]
    text = task.describe(t)
    assert text.startswith("Done: course completed\n")
    assert f"{s['completion_time_s']:.1f} s" in text
    assert f"path {s['walked_m']:.1f} m vs shortest {s['shortest_m']:.1f} m" in text


@pytest.fixture(scope="module")
def decoder_source(tmp_path_factory):
    """A decoder for the easy simulated participant (seed 3) and a source file streaming it."""
    from bci.config import SimulatedSpec, spec_to_dict
    from bci.simulated import EASY_PRESET, ParticipantConfig, SimulatedParticipant
    from control.bundle import save_bundle
    from tests.control.ctrl_helpers import calibrate_participant

    tmp = tmp_path_factory.mktemp("decoder")
    twin = SimulatedParticipant(ParticipantConfig.easy(), seed=3)
    bundle = save_bundle(calibrate_participant(twin, classes=("rest", "left_hand",
                                                              "right_hand"), trials=6),
                         tmp / "decoder.zip")
    source = tmp / "participant.json"
    source.write_text(json.dumps({"source": [spec_to_dict(SimulatedSpec(
        seed=3, options=dict(EASY_PRESET)))]}), encoding="utf-8")
    return bundle, source


@pytest.mark.slow
def test_window_cued_task_drives_the_simulated_participant_and_replays_in_a_window(
        qapp, tmp_path, pump, decoder_source):
    from gui.cli import main
    from gui.replay_window import ReplayWindow

    bundle, source = decoder_source
    task = CuedTask(classes=["left_hand", "right_hand"], n_per_class=1, cue_s=2.0,
                    rest_s=1.5, lead_s=1.0)
    window = build_window(RunOptions(resolution=(48, 48), source=str(source), decoder=bundle,
                                     out=tmp_path / "runs"), task=task)
    person = window.acquisition.source.participant
    imagined = []
    window.show()
    window.start()
    try:
        for cls in ("left_hand", "right_hand"):
            name = cls.replace("_", " ").upper()
            assert pump(6.0, until=lambda n=name: window.task_text.startswith(f"Imagine {n}"))
            pump(0.1)
            imagined.append(person.intent)  # the task's cue is what the participant imagines
        assert pump(6.0, until=lambda: window.task_text.startswith("Done"))
    finally:
        window.close()
    assert imagined == ["left_hand", "right_hand"]
    folder = window.session_folder
    assert [(r["cls"], r["origin"]) for r in _kinds(folder, "intent")] == [
        ("rest", "task"), ("left_hand", "task"), ("rest", "task"), ("right_hand", "task"),
        ("rest", "task")]
    assert json.loads((folder / "task.json").read_text())["n_cues"] == 2
    d = pd.read_csv(folder / "decisions.tsv", sep="\t", keep_default_na=False)
    # Every decoded window is labelled with what the task meant then (the report's truth).
    # (Whether this decoder then got it right is not the point here: a 2 s cue is barely one
    # decoder window; the decoding itself is tested in tests/gui/test_runtime_replay.py.)
    assert set(d.intended) == {"·", "←", "→"}
    probs = d[["p_rest", "p_left_hand", "p_right_hand"]].to_numpy()
    assert len(d) > 10 and np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)

    # yume replay --window: the window replays it at the session's pace, beside its decisions.
    seen = {}

    def watch():
        for w in qapp.topLevelWidgets():
            if isinstance(w, ReplayWindow) and w.isVisible():
                seen.setdefault("window", w)
                if w.frames_shown:
                    seen.setdefault("first_frame", time.perf_counter())
                if w.finished:
                    seen["done"] = time.perf_counter()
                    w.close()

    timer = QtCore.QTimer()  # plays the person who watches the replay, then closes it
    timer.timeout.connect(watch)
    timer.start(50)
    try:
        code = main(["replay", str(folder), "--window", "--out", str(tmp_path / "replay")])
    finally:
        timer.stop()
    assert code == 0
    rw = seen["window"]
    c = rw.result.comparison
    assert c["identical"] and c["actions_identical"] and c["windows_identical"] == len(d)
    assert "decisions identical" in rw.verdict.text()
    ticks = pd.read_csv(folder / "ticks.tsv", sep="\t")
    span = float(ticks.now.iloc[-1] - ticks.now.iloc[0])
    # Paced by the session's tick times: never faster than the session (a loaded machine may
    # make it slower), showing frames all along.
    assert span - 0.5 < seen["done"] - seen["first_frame"] < span + 8.0
    assert rw.frames_shown > 8 * span and rw.world_view.image is not None
    assert rw.cursor_s == pytest.approx(span, abs=0.05)
    # The recorded commands are drawn, and the replay's fell at the same times.
    assert np.allclose(sorted(rw._commands_x), sorted(rw.recorded_commands), atol=0.5)
    assert set(rw.classes) == {"rest", "left_hand", "right_hand"}
