"""Shared helpers of the control tests: a decoder bundle trained on the simulated participant."""

from __future__ import annotations

import warnings

import numpy as np

from calibration.pipelines import make_pipeline
from control.bundle import DecoderBundle

MOTOR_MONTAGE = ("FC3", "FCz", "FC4", "C5", "C3", "C1", "Cz", "C2", "C4", "C6", "CP3", "CPz",
                 "CP4", "Pz")
MI_CLASSES = ("rest", "left_hand", "right_hand", "feet")


def calibrate_participant(part, classes=MI_CLASSES, trials: int = 12, window_s: float = 2.0,
                          step_s: float = 0.25, pipeline: str = "csp_lda",
                          seed: int = 0) -> DecoderBundle:
    """Calibrate on ``part`` itself (instant ``generate``), as a session would before control.

    The same simulated person then streams live with fresh noise: calibration and online use
    share the subject, not the samples.
    """
    sf = part.info.sfreq
    eeg = [i for i, t in enumerate(part.info.ch_types) if t == "eeg"]
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.repeat(np.arange(len(classes)), trials))
    n = int(round(window_s * sf))
    X, y = [], []
    for k in order:
        part.set_intent("rest")
        part.generate(int(1.5 * sf))
        part.set_intent(classes[k])
        x = part.generate(int(4.0 * sf))[eeg]
        X.append(x[:, int(0.5 * sf):int(0.5 * sf) + n])
        y.append(classes[k])
    part.set_intent("rest")
    pipe = make_pipeline(pipeline, sf, (8.0, 30.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(np.stack(X), np.array(y))
    return DecoderBundle(pipeline=pipe, ch_names=[part.info.ch_names[i] for i in eeg],
                         sfreq=sf, classes=tuple(str(c) for c in pipe.classes_),
                         units=part.info.units, band=(8.0, 30.0), window_s=window_s,
                         step_s=step_s, name=pipeline)
