"""The window at lab scale: it fits 1280x720, shows a lost or ended source, ignores key
auto-repeat, shows start-up errors in a dialog and closes cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PyQt6 import QtCore, QtGui, QtWidgets

from bci.eventlog import read_event_log
from bci.lsl import EEGOutlet
from bci.simulated import ParticipantConfig, SimulatedParticipant
from bci.stream import AcquisitionError, StreamInfo
from control.bundle import save_bundle
from gui.app import RunOptions, build_window, startup_error_box
from gui.cli import main
from gui.traces import LOST_PEN
from tests.control.ctrl_helpers import calibrate_participant

ROOT = Path(__file__).resolve().parents[2]
CONTROLS = (QtWidgets.QAbstractButton, QtWidgets.QComboBox, QtWidgets.QAbstractSpinBox,
            QtWidgets.QTableWidget, QtWidgets.QProgressBar)


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    """A small decoder for the app's default simulated participant (seed 0), in ~1 s."""
    part = SimulatedParticipant(ParticipantConfig(), seed=0)
    bundle = calibrate_participant(part, trials=6)
    return save_bundle(bundle, tmp_path_factory.mktemp("decoder") / "decoder.zip")


def _kinds(window) -> list[dict]:
    return read_event_log(window.session_folder / "session.jsonl")


def test_every_control_fits_1280x720_without_scrolling(qapp, tmp_path, pump, grab, bundle_path):
    window = build_window(RunOptions(resolution=(64, 64), decoder=bundle_path, out=tmp_path))
    window.resize(1280, 720)
    window.show()
    window.start()
    try:
        pump(0.6)
        assert (window.width(), window.height()) == (1280, 720)
        assert not window.findChildren(QtWidgets.QScrollArea), "a panel scrolls inside the window"
        inside = window.rect()
        visible = [w for w in window.findChildren(QtWidgets.QWidget)
                   if isinstance(w, CONTROLS) and w.isVisible()]
        for w in visible:
            rect = QtCore.QRect(w.mapTo(window, QtCore.QPoint(0, 0)), w.size())
            assert inside.contains(rect), f"{type(w).__name__} {w.objectName()} at {rect} clipped"
        panel = window.control_panel
        expected = [panel.start_button, panel.stop_button, panel.panic_button,
                    panel.release_button, panel.table, *panel.bars.values(),
                    window.record.button, window.stop_button, window.traces.scale,
                    window.traces.window]
        assert all(w in visible for w in expected)
        # The whole mapping table is readable: its rows need no scrolling either.
        assert not panel.table.verticalScrollBar().isVisible()
        # The decoder steers from the start: only "Stop control" is offered, then the reverse.
        assert window.steering.decoder_enabled
        assert not panel.start_button.isEnabled() and panel.stop_button.isEnabled()
        panel.stop_button.click()
        assert not window.steering.decoder_enabled
        assert panel.start_button.isEnabled() and panel.start_button.text() == "Start control"
        panel.start_button.click()
        assert window.steering.decoder_enabled and not panel.start_button.isEnabled()
        # The status bar explains its numbers.
        assert "frames per second" in window.status["fps"].toolTip()
        assert "shown" in window.status["fps"].text()

        shot = tmp_path / "window_1280x720.png"
        assert window.grab().save(str(shot))
        image = grab(window)
        assert shot.stat().st_size > 20_000 and image.shape[:2] == (720, 1280)
        assert image.std() > 30, "the screenshot is blank"
    finally:
        window.close()


def _key(window, kind: QtCore.QEvent.Type, key: QtCore.Qt.Key, repeat: bool) -> None:
    event = QtGui.QKeyEvent(kind, key, QtCore.Qt.KeyboardModifier.NoModifier, "", repeat)
    QtWidgets.QApplication.sendEvent(window, event)


def _hold(window, pump, key: QtCore.Qt.Key, flagged: bool, held, repeats: int = 8) -> None:
    """Press ``key``, send X-style auto-repeat release+press pairs every 40 ms (flagged as
    auto-repeat or not, as Qt on X11 often fails to), check ``held()`` after each, release."""
    press, release = QtCore.QEvent.Type.KeyPress, QtCore.QEvent.Type.KeyRelease
    _key(window, press, key, False)
    for _ in range(repeats):
        pump(0.04)
        _key(window, release, key, flagged)
        _key(window, press, key, flagged)
        assert held()
    pump(0.04)
    assert held()
    _key(window, release, key, False)


@pytest.mark.parametrize("flagged", [True, False], ids=["flagged", "unflagged-x11-pairs"])
def test_a_held_key_is_one_action_until_its_release(qapp, tmp_path, pump, flagged):
    window = build_window(RunOptions(resolution=(64, 64), source="none", out=tmp_path))
    window.release_grace_ms = 40  # what X11 gets; offscreen has no auto-repeat of its own
    window.show()
    window.start()
    try:
        _hold(window, pump, QtCore.Qt.Key.Key_W, flagged,
              held=lambda: str(window.server.action) == "W" and window.keys.lit == {"W"})
        assert pump(1.0, until=lambda: window.server.action.is_idle)
    finally:
        window.close()
    actions = [r["action"] for r in _kinds(window) if r["kind"] == "action"]
    assert actions == ["W", "·"]


def test_held_key_keeps_one_simulated_intent_in_decoder_mode(qapp, tmp_path, pump, bundle_path):
    window = build_window(RunOptions(resolution=(64, 64), decoder=bundle_path, out=tmp_path))
    window.release_grace_ms = 40
    window.show()
    window.start()
    try:
        assert window.steering.keys_drive_intent
        participant = window.acquisition.source.participant
        _hold(window, pump, QtCore.Qt.Key.Key_Left, flagged=False,
              held=lambda: participant.intent == "left_hand")
        assert pump(1.0, until=lambda: participant.intent == "rest")
    finally:
        window.close()
    logged = [r["cls"] for r in _kinds(window) if r["kind"] == "intent"]
    assert logged == ["left_hand", "rest"]


def _pusher(outlet_box: list, stop: threading.Event) -> threading.Thread:
    """Push 10 samples of 4 channels every 40 ms (250 Hz) into whichever outlet is current."""
    def run() -> None:
        while not stop.is_set():
            out = outlet_box[0]
            if out is not None:
                out.push(np.random.default_rng().normal(0, 20, (4, 10)).astype(np.float32))
            time.sleep(0.04)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _colours(traces) -> set[str]:
    return {curve.opts["pen"].color().name() for curve in traces.curves}


def test_lost_lsl_stream_shows_banner_and_grey_traces_until_it_is_back(qapp, tmp_path, pump):
    name = f"yume-faults-{uuid.uuid4().hex[:8]}"
    info = StreamInfo(name=name, sfreq=250.0, ch_names=("C3", "Cz", "C4", "Pz"),
                      source_id=f"sid-{name}")
    box, stop = [EEGOutlet(info)], threading.Event()
    _pusher(box, stop)
    window = build_window(RunOptions(resolution=(64, 64), source=f"lsl:{name}", out=tmp_path))
    window.show()
    window.start()
    try:
        assert pump(3.0, until=lambda: window.traces.refresh() > 100)
        assert window.banner.isHidden() and not window.traces.greyed
        dead, box[0] = box[0], None
        dead.close()  # the sender crashes
        assert pump(4.0, until=window.banner.isVisible), "no banner for a lost stream"
        assert window.banner.text().startswith("Signal lost at ")
        assert "reconnecting" in window.banner.text()
        assert window.traces.greyed
        assert _colours(window.traces) == {LOST_PEN.color().name()}
        box[0] = EEGOutlet(info)  # ...and comes back with the same source id
        assert pump(10.0, until=window.banner.isHidden), "the banner stayed after recovery"
        assert not window.traces.greyed
        assert _colours(window.traces) == {p.color().name() for p in window.traces.pens}
        assert len(_colours(window.traces)) == 4  # one colour per channel again
    finally:
        window.close()
        stop.set()
        if box[0] is not None:
            box[0].close()
    records = _kinds(window)
    lost = [r for r in records if r["kind"] == "source_lost"]
    back = [r for r in records if r["kind"] == "source_back"]
    assert len(lost) == 1 and lost[0]["state"] == "reconnecting" and lost[0]["source"] == name
    assert len(back) == 1 and back[0]["outage_s"] > 0.3
    assert back[0]["t"] - lost[0]["t"] == pytest.approx(back[0]["outage_s"], abs=0.2)


def test_file_playback_that_ended_says_so(qapp, tmp_path, pump):
    import mne

    path = tmp_path / "short_raw.fif"
    info = mne.create_info(["C3", "Cz", "C4"], 100.0, "eeg")
    rng = np.random.default_rng(0)
    mne.io.RawArray(rng.normal(0, 1e-5, (3, 60)), info, verbose="error").save(
        path, verbose="error")
    window = build_window(RunOptions(resolution=(64, 64), source=f"file:{path}", out=tmp_path))
    window.show()
    window.start()
    try:
        assert pump(4.0, until=window.banner.isVisible)
        assert window.banner.text().startswith("The file ended")
        assert window.traces.greyed and window.acquisition.source.finished
    finally:
        window.close()
    kinds = [r["kind"] for r in _kinds(window)]
    assert kinds.count("source_ended") == 1 and "source_lost" not in kinds


def test_startup_error_box_holds_the_one_sentence(qapp):
    error = AcquisitionError("No LSL stream named 'Nope' was found within 5 s.")
    box = startup_error_box(error)
    assert box.icon() == QtWidgets.QMessageBox.Icon.Critical
    assert box.text() == str(error) and "could not start" in box.windowTitle()
    assert box.standardButtons() == QtWidgets.QMessageBox.StandardButton.Close


def test_startup_error_is_shown_in_a_dialog_and_exits_2(qapp, tmp_path, monkeypatch, capsys):
    # run_window shows the dialog when has_display() says a desktop is there; the Qt
    # application of this process stays offscreen.
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    shown = []

    def read_dialog() -> None:
        dialog = QtWidgets.QApplication.activeModalWidget()
        shown.append(dialog.text() if isinstance(dialog, QtWidgets.QMessageBox) else None)

    QtCore.QTimer.singleShot(300, read_dialog)
    missing = tmp_path / "missing.edf"
    code = main(["run", "--window", "--source", f"file:{missing}", "--max-seconds", "0.8",
                 "--out", str(tmp_path)])
    assert code == 2
    assert shown and shown[0] is not None and "does not exist" in shown[0]
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_sigterm_closes_the_window_with_its_summary(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gui.cli", "run", "--window", "--source", "none",
         "--resolution", "64x64", "--max-seconds", "120", "--out", str(tmp_path)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        log = None
        while time.monotonic() < deadline and proc.poll() is None:
            logs = list(tmp_path.glob("*/session.jsonl"))
            if logs and "window_started" in logs[0].read_text():
                log = logs[0]
                break
            time.sleep(0.1)
        assert log is not None, proc.stderr.read() if proc.poll() is not None else "no start"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert f"session log: {log}" in out
    records = read_event_log(log)
    assert records[-1]["kind"] == "window_closed" and "frames_shown" in records[-1]
