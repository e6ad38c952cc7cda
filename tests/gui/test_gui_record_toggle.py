"""The record toggle, offscreen: a real button recording the simulated participant."""

from __future__ import annotations

import time

from bci.acquisition import Acquisition
from bci.recording import read_session
from bci.simulated import ParticipantConfig, SimulatedParticipant
from gui.record_toggle import RecordToggle


def test_record_toggle_records_a_session(qapp, tmp_path, pump):
    src = SimulatedParticipant(ParticipantConfig(sfreq=250.0, speed=4.0), seed=4)
    acq = Acquisition(src, seconds=5.0)
    widget = RecordToggle(acq, tmp_path, task="steer", config={"ui": True})
    started, stopped = [], []
    widget.started.connect(started.append)
    widget.stopped.connect(stopped.append)
    widget.show()
    acq.start()
    try:
        assert widget.status.text() == "not recording"
        widget.button.click()  # a real click starts the recording
        assert widget.is_recording and widget.button.text() == "■ Stop"
        pump(0.6)
        text = widget.status.text()
        assert text.startswith("● 00:0") and ("kB" in text or "MB" in text), text
        widget.add_event(widget.recorder.last_timestamp, 0.0, "cue")
        widget.button.click()
        deadline = time.monotonic() + 20
        while not stopped and time.monotonic() < deadline:
            pump(0.05)
    finally:
        acq.stop()
    assert stopped == started and len(stopped) == 1
    assert widget.button.text() == "● Record" and not widget.button.isChecked()
    assert widget.status.text().startswith("saved")
    raw, events = read_session(stopped[0])
    assert raw.n_times >= 250  # at least a second of signal at 4x
    assert list(events["description"]) == ["cue"]
    assert widget.error is None


def test_record_toggle_reports_errors_and_stays_up(qapp, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    src = SimulatedParticipant(ParticipantConfig(sfreq=100.0), seed=0)
    widget = RecordToggle(Acquisition(src), out_dir=blocker)
    errors = []
    widget.failed.connect(errors.append)
    widget.button.click()
    assert not widget.is_recording and not widget.button.isChecked()
    assert len(errors) == 1 and "Could not start recording" in errors[0]
    empty = RecordToggle(None, tmp_path)
    assert not empty.button.isEnabled()
    assert empty.start() is None and "no stream" in empty.error
