"""The status bar says when generation falls behind: the pace monitor, and the window with a
world that generates below its frame rate."""

from __future__ import annotations

import json
import time

from PyQt6 import QtCore, QtTest

from gui.app import RunOptions, build_window
from gui.runtime.pace import FramePace


def _run(pace: FramePace, seconds: float, every: int | None, moving: bool = True,
         start: float = 0.0) -> float:
    """Ticks at the frame rate for ``seconds``; a frame every ``every``-th tick (None: none)."""
    n = int(seconds * pace.frame_rate)
    for i in range(n):
        pace.tick(start + i / pace.frame_rate, every is not None and i % every == 0, moving)
    return start + n / pace.frame_rate


def test_pace_keeps_up_falls_behind_and_ignores_a_still_world():
    pace = FramePace(16.0)
    t = _run(pace, 3.0, every=1)
    assert not pace.state().behind and abs(pace.state().shown_fps - 16.0) < 0.1
    t = _run(pace, 3.0, every=2, start=t)  # a model at half the frame rate
    s = pace.state()
    assert s.behind and abs(s.shown_fps - 8.0) < 0.6 and abs(s.starved - 0.5) < 0.05
    assert pace.episodes == 1
    # Standing still generates nothing on purpose: not falling behind, and the old ticks age out.
    t = _run(pace, 3.0, every=None, moving=False, start=t)
    assert not pace.state().behind and pace.episodes == 1
    # Starting from standstill waits for the first chunk: a few starved ticks are no verdict.
    t = _run(pace, 0.25, every=None, start=t)
    assert not pace.state().behind
    _run(pace, 3.0, every=4, start=t)
    assert pace.state().behind and pace.episodes == 2


def test_window_status_says_generation_falls_behind(qapp, tmp_path, pump):
    window = build_window(RunOptions(resolution=(64, 64), source="synthetic", out=tmp_path,
                                     task="route"))
    world = window.server.engine
    step = world.step

    def slow_step(action):  # the sandbox slowed to about a 128x128 MVDT's pace on this CPU
        time.sleep(0.5)
        return step(action)

    world.step = slow_step
    window.show()
    window.start()
    try:
        pump(0.5)
        assert not window.pace.state().behind
        QtTest.QTest.keyPress(window, QtCore.Qt.Key.Key_W)
        assert pump(6.0, until=lambda: window.pace.state().behind)
        pump(0.6)  # the status timer's next refresh
        text = window.status["fps"].text()
        assert "generation falls behind" in text and f"of {world.frame_rate:g} fps" in text
        QtTest.QTest.keyRelease(window, QtCore.Qt.Key.Key_W)
        assert pump(6.0, until=lambda: not window.pace.state().behind)
    finally:
        window.close()
    lines = [json.loads(x) for x in (window.session_folder / "session.jsonl").read_text()
             .splitlines()]
    behind = [x for x in lines if x["kind"] == "generation_behind"]
    assert behind and behind[0]["shown_fps"] < behind[0]["target_fps"]
    closed = [x for x in lines if x["kind"] == "window_closed"][-1]
    assert closed["generation_behind_episodes"] >= 1
