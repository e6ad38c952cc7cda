"""End to end: headless calibration with the simulated participant -> recording -> training
(the function `yume train` calls) -> bundle on disk -> the bundle decodes a fresh run."""

from __future__ import annotations

import numpy as np
import pytest

from bci.recording import read_session
from bci.simulated import ParticipantConfig, SimulatedParticipant
from calibration.paradigm import MIParadigm, Timing
from calibration.session import CalibrationSession, run_headless, run_offline
from calibration.training import TrainingConfig, train_decoder
from control.bundle import load_bundle, save_bundle

CLASSES = ("left_hand", "right_hand", "feet")
FAST = Timing(fixation_s=1.0, cue_s=1.0, trial_s=3.0, iti_min_s=1.0, iti_max_s=1.5, break_s=2.0)


@pytest.mark.slow
def test_headless_calibration_to_bundle_decodes_fresh_run(tmp_path):
    paradigm = MIParadigm(classes=CLASSES, trials_per_class=15, runs=2, timing=FAST, seed=3)
    participant = SimulatedParticipant(ParticipantConfig(speed=40.0), seed=11)
    session = CalibrationSession(paradigm, participant, tmp_path / "calib", markers=True,
                                 marker_name=f"calib-{tmp_path.name}")
    result = run_headless(session, progress=False)
    assert not result.aborted

    # The recording holds every cue, labelled by class, at the right place in the signal.
    raw, events = read_session(tmp_path / "calib")
    cues = events[events["description"].isin(CLASSES)]
    assert cues["description"].value_counts().to_dict() == {c: 15 for c in CLASSES}
    # Onsets stamped on the LSL clock map onto the samples: signal time runs 40x the clock.
    assert np.allclose(np.diff(cues["onset"]), 40.0 * np.diff(cues["onset_lsl"]), atol=0.02)
    assert len(result.lateness_s) == len(session.cues)

    train = train_decoder([tmp_path / "calib"],
                          TrainingConfig(pipelines=["csp_lda", "mdm"], tmin=0.5, tmax=2.5),
                          progress=False)
    # Three classes (chance 1/3) from a participant about as hard as a person: well above
    # chance, not the near-perfect score of an easy simulation (0.82 measured).
    cv = train.results[0].cv["accuracy"]
    assert 0.6 <= cv < 0.95, cv
    path = save_bundle(train.bundle, tmp_path / "decoder.zip")
    bundle = load_bundle(path)
    assert bundle.classes == tuple(sorted(CLASSES))

    # A fresh run of the same participant (the generator continues: new noise, new trials).
    index = bundle.check_stream(participant.info)
    sfreq = participant.info.sfreq
    rng = np.random.default_rng(5)
    truth, predicted = [], []
    for label in rng.permutation(np.repeat(CLASSES, 10)):
        participant.set_intent("rest")
        participant.generate(int(1.5 * sfreq))
        participant.set_intent(str(label))
        trial = participant.generate(int(3.0 * sfreq))
        window = trial[:, int(0.5 * sfreq):int(2.5 * sfreq)]
        proba = bundle.predict_proba(bundle.prepare(window, participant.info, index))
        truth.append(label)
        predicted.append(bundle.classes[int(np.argmax(proba))])
    accuracy = np.mean(np.array(truth) == np.array(predicted))
    # 30 fresh trials, chance 1/3 (p < 0.05 from 15 right); 0.57 measured: a little below the
    # cross-validated figure, as the participant drifts between calibration and use
    assert accuracy >= 0.5, accuracy


def test_offline_session_writes_a_trainable_recording(tmp_path):
    paradigm = MIParadigm(classes=("left_hand", "right_hand"), trials_per_class=8, timing=FAST,
                          seed=1)
    result = run_offline(paradigm, tmp_path / "off", ParticipantConfig(), seed=2)
    raw, events = read_session(tmp_path / "off")
    assert result.n_samples == raw.n_times
    counts = events["description"].value_counts()
    assert counts["left_hand"] == counts["right_hand"] == 8
    assert counts["fixation"] == 16 and counts["session_end"] == 1
