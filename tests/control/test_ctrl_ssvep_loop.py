"""SSVEP grid menu in the loop: simulated participant gazing at flickering targets -> CCA
decoder -> policy in menu mode -> any of the 81 actions in two gazes."""

from __future__ import annotations

import numpy as np

from bci.ringbuffer import RingBuffer
from bci.simulated import ParticipantConfig, SimulatedParticipant
from calibration.pipelines import make_pipeline
from control.actions import Action
from control.bundle import DecoderBundle
from control.menu import LEVELS, GridMenu, ssvep_classes
from control.online import OnlineControl, OnlineDecoder
from control.policy import ControlPolicy, PolicyConfig

# Nine targets a 60 Hz display can show (below 30 Hz), kept above the alpha band: a resting
# occipital alpha near 10-13 Hz would otherwise look like a gaze at a low-frequency target.
FREQS = (14.0, 15.5, 17.0, 18.5, 20.0, 21.5, 23.0, 24.5, 26.0)
SF = 250.0


def test_ssvep_grid_selects_actions():
    part = SimulatedParticipant(ParticipantConfig(
        sfreq=SF, montage=("O1", "Oz", "O2", "POz", "PO3", "PO4", "Pz", "P3", "P4")), seed=3)
    targets = ssvep_classes(FREQS)
    X, y = [], []
    for _ in range(2):
        for c in targets:
            part.set_intent("rest")
            part.generate(int(1 * SF))
            part.set_intent(c)
            X.append(part.generate(int(3 * SF))[:, int(0.5 * SF):int(2.5 * SF)])
            y.append(c)
    part.set_intent("rest")
    pipe = make_pipeline("cca", SF, (6.0, 40.0)).fit(np.stack(X), np.array(y))
    bundle = DecoderBundle(pipeline=pipe, ch_names=part.info.ch_names, sfreq=SF,
                           classes=tuple(pipe.classes_), band=(6.0, 40.0), window_s=2.0,
                           step_s=0.25, paradigm="ssvep")
    decoder = OnlineDecoder.from_bundle(bundle)
    decoder.bind(part.info)
    menu = GridMenu(targets)
    policy = ControlPolicy(bundle.classes, config=PolicyConfig(mode="menu", dwell_s=0.5,
                                                               refractory_s=1.0),
                           menu=menu, step_s=0.25)
    loop = OnlineControl(decoder, policy, clock="samples")
    buf = RingBuffer(part.info.n_channels, int(10 * SF))
    chunk = int(0.05 * SF)

    def feed(seconds):
        got = []
        for _ in range(int(seconds / 0.05)):
            x = part.generate(chunk)
            n0 = part.n_generated - chunk
            buf.push(x, np.arange(n0, n0 + chunk) / SF)
            got += [o.command for o in loop.step(buf, now=part.n_generated / SF)
                    if o.command is not None]
        return got

    feed(3.0)
    wanted = [Action("W+A", "↑←"), Action("·", "→"), Action("S+D", "↓")]
    produced = []
    for action in wanted:
        for level, key in zip(LEVELS, (action.translation, action.rotation), strict=True):
            part.set_intent(targets[level.index(key)])  # gaze at the target showing the key
            produced += feed(2.4)
            part.set_intent("rest")  # look away while the menu relabels
            produced += feed(1.6)
    assert produced == wanted
