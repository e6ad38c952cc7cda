"""The Qt cue screen (offscreen): it draws the right cue and drives a real session."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pylsl import local_clock
from PyQt6.QtWidgets import QApplication

from bci.recording import read_session
from bci.simulated import ParticipantConfig, SimulatedParticipant
from calibration.paradigm import Cue, MIParadigm, SSVEPParadigm, Timing
from calibration.session import CalibrationSession
from gui.cue_screen import CueRunner, CueScreen


@pytest.fixture(scope="module")
def app():
    return QApplication.instance() or QApplication([])


def _red_centroid(screen: CueScreen):
    img = screen.canvas.grab().toImage()
    w, h = img.width(), img.height()
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    arr = np.frombuffer(ptr, np.uint8).reshape(h, img.bytesPerLine() // 4, 4)[:, :w]
    b, g, r = arr[..., 0].astype(int), arr[..., 1].astype(int), arr[..., 2].astype(int)
    red = (r > 180) & (g < 100) & (b < 100)
    if not red.any():
        return None
    ys, xs = np.nonzero(red)
    return xs.mean() / w - 0.5, ys.mean() / h - 0.5


def test_mi_cues_draw_arrows_in_the_right_direction(app):
    screen = CueScreen(MIParadigm(classes=("left_hand", "right_hand", "feet")))
    screen.resize(400, 360)
    screen.show()
    app.processEvents()
    before = local_clock()
    onset = screen.show_cue(Cue(0.0, 2.0, "fixation", "fixation", trial=0))
    assert screen.cue_text() == "+" and before <= onset <= local_clock()
    assert _red_centroid(screen) is None  # fixation: white cross only
    for label, (sx, sy) in {"left_hand": (-1, 0), "right_hand": (1, 0), "feet": (0, 1)}.items():
        screen.show_cue(Cue(2.0, 4.0, "cue", label, label, trial=0))
        cx, cy = _red_centroid(screen)
        assert np.sign(round(cx, 1)) == sx and np.sign(round(cy, 1)) == sy, (label, cx, cy)
    assert screen.cue_text() == "feet"
    screen.show_cue(Cue(6.0, 2.0, "iti", "iti", trial=0))
    assert _red_centroid(screen) is None and screen.progress.value() == 1
    screen.close()


def test_ssvep_screen_highlights_the_cued_target(app):
    p = SSVEPParadigm()
    screen = CueScreen(p)
    screen.resize(400, 400)
    screen.show()
    app.processEvents()
    screen.show_cue(Cue(0.0, 1.0, "fixation", "fixation", trial=0))
    screen.show_cue(Cue(1.0, 4.0, "cue", p.targets[2].label, p.targets[2].label, trial=0))
    rect = screen.target_rects(screen.canvas.rect().toRectF())[2]
    cx, cy = _red_centroid(screen)  # the red frame surrounds target 2
    w, h = screen.canvas.width(), screen.canvas.height()
    assert abs((cx + 0.5) * w - rect.center().x()) < 5 and abs((cy + 0.5) * h -
                                                                rect.center().y()) < 5
    assert screen._flicker.isActive()
    screen.close()


def test_runner_records_a_session_with_pause(app, tmp_path):
    timing = Timing(fixation_s=0.5, cue_s=0.5, trial_s=1.0, iti_min_s=0.5, iti_max_s=0.5,
                    break_s=0.0)
    paradigm = MIParadigm(classes=("left_hand", "right_hand"), trials_per_class=2, timing=timing)
    source = SimulatedParticipant(ParticipantConfig(speed=4.0), seed=1)
    session = CalibrationSession(paradigm, source, tmp_path / "s",
                                 marker_name=f"cue-test-{tmp_path.name}")
    screen = CueScreen(paradigm)
    screen.show()
    runner = CueRunner(session, screen)
    shown = []
    screen.cue_shown.connect(lambda cue, t: shown.append((cue.label, t)))
    runner.start()
    deadline = time.monotonic() + 20
    paused = False
    while runner.result is None and time.monotonic() < deadline:
        app.processEvents()
        if not paused and len(shown) >= 3:
            screen.pause_button.click()  # pause ...
            t = time.monotonic()
            while time.monotonic() - t < 0.3:
                app.processEvents()
            n = len(shown)
            screen.pause_button.click()  # ... and resume: nothing was shown meanwhile
            assert len(shown) == n
            paused = True
        time.sleep(0.002)
    assert runner.result is not None and not runner.result.aborted
    assert [label for label, _ in shown] == [c.label for c in session.cues]
    raw, events = read_session(tmp_path / "s")
    labels = list(events["description"])
    assert labels.count("left_hand") == 2 and "pause" in labels and "resume" in labels
    # The recorded onset of each cue is the stamp taken after the repaint.
    stamped = [t for label, t in shown if label in ("left_hand", "right_hand")]
    rec = events[events["description"].isin(["left_hand", "right_hand"])]["onset_lsl"]
    assert np.allclose(rec.to_numpy(), stamped)
    screen.close()


def test_abort_keeps_the_recording(app, tmp_path):
    paradigm = MIParadigm(classes=("left_hand", "right_hand"), trials_per_class=5)
    source = SimulatedParticipant(ParticipantConfig(speed=2.0), seed=2)
    session = CalibrationSession(paradigm, source, tmp_path / "a", markers=False)
    screen = CueScreen(paradigm)
    runner = CueRunner(session, screen)
    runner.start()
    t = time.monotonic()
    while time.monotonic() - t < 0.5:
        app.processEvents()
        time.sleep(0.005)
    screen.abort_button.click()
    assert runner.result is not None and runner.result.aborted
    raw, events = read_session(tmp_path / "a")
    assert raw.n_times > 0 and "abort" in list(events["description"])
