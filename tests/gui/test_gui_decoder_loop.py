"""The whole loop in the window: simulated imagery -> EEG -> LSL -> decoder -> policy -> world."""


import pytest
from PyQt6 import QtCore, QtTest

from bci.simulated import ParticipantConfig
from calibration.paradigm import MIParadigm, Timing
from calibration.session import run_offline
from calibration.training import TrainingConfig, train_decoder
from control.bundle import save_bundle
from gui.app import RunOptions, build_window

FAST = Timing(fixation_s=1.0, cue_s=1.0, trial_s=3.0, iti_min_s=1.0, iti_max_s=1.5, break_s=2.0)


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calib")
    paradigm = MIParadigm(classes=("rest", "left_hand", "right_hand", "feet"), trials_per_class=15,
                          timing=FAST, seed=1)
    # The app's default simulated participant is seed 0: calibrate the same "person".
    run_offline(paradigm, folder / "session", ParticipantConfig(), seed=0)
    result = train_decoder([folder / "session"], TrainingConfig(pipelines=["csp_lda"]),
                           progress=False)
    return save_bundle(result.bundle, folder / "decoder.zip")


@pytest.mark.slow
def test_imagined_left_hand_turns_the_world_left_and_panic_stops_it(bundle_path, tmp_path, pump):
    window = build_window(RunOptions(resolution=(64, 64), source="simulated",
                                     decoder=bundle_path, out=tmp_path))
    window.show()
    window.start()
    try:
        assert window.control_panel is not None and window.steering.keys_drive_intent
        # At rest nothing moves.
        assert not pump(3.0, until=lambda: not window.server.action.is_idle)
        # Holding Left makes the simulated participant imagine the left hand.
        QtTest.QTest.keyPress(window, QtCore.Qt.Key.Key_Left)
        assert window.steering.acquisition.source.participant.intent == "left_hand"
        turned = pump(12.0, until=lambda: str(window.server.action) == "←")
        assert turned, "the decoder never turned the world left"
        # Panic stop latches the world still whatever the decoder says.
        QtTest.QTest.keyPress(window, QtCore.Qt.Key.Key_Escape)
        assert window.server.action.is_idle
        assert not pump(1.5, until=lambda: not window.server.action.is_idle)
        QtTest.QTest.keyRelease(window, QtCore.Qt.Key.Key_Left)
    finally:
        window.close()
    log = (window.session_folder / "session.jsonl").read_text()
    assert '"origin": "decoder"' in log and '"kind": "intent"' in log


def test_bundle_from_another_montage_is_refused_clearly(bundle_path, tmp_path):
    with pytest.raises(ValueError) as err:
        build_window(RunOptions(resolution=(64, 64), source="synthetic", decoder=bundle_path,
                                out=tmp_path))
    assert "channel" in str(err.value).lower() or "Hz" in str(err.value)
