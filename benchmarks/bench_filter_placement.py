"""Why the project's TS+LR and the reference differ on S001: where the band-pass filter runs.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_filter_placement.py``

For the four train/test splits of BENCHMARKS.md ("Pseudo-online control on real EEG"), the
held-out cue-locked accuracy (0.5-2.5 s, n = 15) of the project's ``ts_lr`` filtering each
window (``BandPass`` in the pipeline, as the live decoder must), of the same pipeline without
its filter on trials cut from the whole recording filtered first (mne, 8-30 Hz), and of the
reference TS+LR (:func:`calibration.evaluation.reference_ts_lr`, which filters the whole
recording), and of the same pipeline on trials cut from the whole recording filtered
*causally* (4th-order Butterworth, state carried from the first sample: what a stream filter
in the live decoder, ``OnlineDecoder(causal_band=...)``, would give).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt, sosfilt_zi
from sklearn.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calibration.dataset import epoch_recordings, load_recording  # noqa: E402
from calibration.evaluation import EvaluationConfig, reference_ts_lr  # noqa: E402
from calibration.pipelines import make_pipeline  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "eeg" / "physionet_mi_S001"
EXEC = {"left_hand_exec": "left_hand", "right_hand_exec": "right_hand"}
SPLITS = {"A": ([4], 8, None), "B": ([3, 4, 7], 8, EXEC), "C": ([8], 4, None),
          "D": ([3, 7, 8], 4, EXEC)}


def _load(run: int):
    return load_recording(DATA / f"S001R{run:02d}.edf")


def _epochs(train, test, cfg):
    ep = epoch_recordings(train, classes=cfg.classes, tmin=cfg.tmin, tmax=cfg.tmax,
                          label_map=cfg.label_map)
    ept = epoch_recordings(test, classes=cfg.classes, tmin=cfg.tmin, tmax=cfg.tmax,
                           picks=list(ep.ch_names), label_map=cfg.label_map, min_trials=1)
    return ep, ept


def main() -> None:
    warnings.simplefilter("ignore")
    print("| split | n | per-window filter (project) | whole recording filtered first | "
          "whole recording, causal filter | reference TS+LR |")
    print("|---|---|---|---|---|---|")
    for name, (runs, held, label_map) in SPLITS.items():
        cfg = EvaluationConfig(classes=("left_hand", "right_hand"), label_map=label_map or {})
        train, test = [_load(r) for r in runs], [_load(held)]
        ep, ept = _epochs(train, test, cfg)
        per_window = make_pipeline("ts_lr", ep.sfreq, (8.0, 30.0)).fit(ep.X, ep.y)
        a = np.mean(per_window.predict(ept.X) == ept.y)
        for rec in train + test:
            rec.raw.load_data()
            rec.raw.filter(8.0, 30.0, picks="eeg", verbose="error")
        fp, fpt = _epochs(train, test, cfg)
        unfiltered = Pipeline(make_pipeline("ts_lr", fp.sfreq, (8.0, 30.0)).steps[1:])
        b = np.mean(unfiltered.fit(fp.X, fp.y).predict(fpt.X) == fpt.y)
        causal = [_load(r) for r in runs], [_load(held)]
        for rec in causal[0] + causal[1]:
            rec.raw.load_data()
            sos = butter(4, [8.0, 30.0], btype="bandpass", fs=rec.raw.info["sfreq"], output="sos")
            rec.raw.apply_function(lambda x, sos=sos: sosfilt(sos, x, zi=sosfilt_zi(sos) * x[0])[0],
                                   picks="eeg")
        cp, cpt = _epochs(*causal, cfg)
        d = np.mean(Pipeline(make_pipeline("ts_lr", cp.sfreq, (8.0, 30.0)).steps[1:])
                    .fit(cp.X, cp.y).predict(cpt.X) == cpt.y)
        ref = reference_ts_lr([_load(r) for r in runs], [_load(held)], cfg)
        c = np.mean(ref == ept.y)
        print(f"| {name} | {len(ept.y)} | {a:.2f} | {b:.2f} | {d:.2f} | {c:.2f} |", flush=True)


if __name__ == "__main__":
    main()
