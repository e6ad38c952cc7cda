"""The window, offscreen: a real Qt window, the sandbox world, BrainFlow's synthetic board."""


import numpy as np
import pytest
from PyQt6 import QtCore, QtTest

from gui.app import RunOptions, build_window


def test_window_shows_world_that_moves_on_key_press_and_live_traces(qapp, tmp_path, pump, grab):
    window = build_window(RunOptions(resolution=(128, 128), source="synthetic", out=tmp_path))
    window.resize(1000, 600)
    window.show()
    window.start()
    try:
        pump(0.8)
        before = grab(window.world_view)
        assert before.std() > 10, "the world view is blank"

        QtTest.QTest.keyPress(window, QtCore.Qt.Key.Key_W)
        QtTest.QTest.keyPress(window, QtCore.Qt.Key.Key_Right)
        assert str(window.server.action) == "W →"
        assert window.keys.lit == {"W", "Right"}
        pump(1.0)
        QtTest.QTest.keyRelease(window, QtCore.Qt.Key.Key_W)
        QtTest.QTest.keyRelease(window, QtCore.Qt.Key.Key_Right)
        assert window.server.action.is_idle
        after = grab(window.world_view)
        assert np.abs(after.astype(int) - before.astype(int)).mean() > 5, "frame did not change"
        for _ in range(15):  # frames keep coming (a loaded machine shows them more slowly)
            if window.frames_shown > 5:
                break
            pump(0.2)
        assert window.frames_shown > 5

        # The traces show data: curves with samples spanning the channels' offsets.
        n = window.traces.refresh()
        assert n > 100
        ys = [c.getData()[1] for c in window.traces.curves]
        assert all(y is not None and np.std(y) > 0 for y in ys)
        assert window.monitor.lags, "the loop monitor measured nothing"
    finally:
        window.close()
    log = (window.session_folder / "session.jsonl").read_text()
    assert '"kind": "action"' in log and "W →" in log


def test_unknown_source_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="Unknown source"):
        build_window(RunOptions(source="telepathy", out=tmp_path))


def test_record_button_records_session_with_action_events(qapp, tmp_path, pump):
    from bci.recording import read_session

    window = build_window(RunOptions(resolution=(64, 64), source="synthetic", out=tmp_path))
    window.show()
    window.start()
    try:
        window.record.button.click()
        assert window.record.is_recording
        pump(0.5)
        QtTest.QTest.keyPress(window, QtCore.Qt.Key.Key_A)
        pump(0.7)
        QtTest.QTest.keyRelease(window, QtCore.Qt.Key.Key_A)
        pump(0.3)
    finally:
        window.close()  # stops the recording and waits for its BIDS copy
    folder = window.record.last_folder
    raw, events = read_session(folder)
    assert raw.n_times > 200 and len(raw.ch_names) == window.acquisition.info.n_channels
    assert any("action/A/keyboard" in d for d in events["description"])
