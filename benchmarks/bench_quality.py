"""Cost and accuracy of the signal-quality tools on real EEG (PhysioNet S001R03, 64 ch, 160 Hz).

Times :meth:`bci.quality.SignalQuality.check` on 4 s windows and
:meth:`bci.quality.ArtifactMonitor.score` on 1 s windows (wall clock and CPU time of the
thread, which does not grow when other processes share the CPU), then prints the Potato's
false-alarm rate on the rest of the recording after a 30 s calibration and its detection rate
of blink-like bumps (300 ms, half a Hann window, on Fp1/Fpz/Fp2 and 0.6x on AF*) by amplitude.

Usage::

    .venv/bin/python benchmarks/bench_quality.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import mne
import numpy as np

from bci.quality import ArtifactMonitor, SignalQuality

EDF = Path(__file__).resolve().parents[2] / "shared/data/eeg/physionet_mi_S001/S001R03.edf"
FRONTAL = {"Fp1": 1.0, "Fpz": 1.0, "Fp2": 1.0,
           "Af7": 0.6, "Af3": 0.6, "Afz": 0.6, "Af4": 0.6, "Af8": 0.6}


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall and thread-CPU milliseconds of ``fn()``."""
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.thread_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.thread_time() - c0)
    return 1000 * float(np.median(wall)), 1000 * float(np.median(cpu))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()

    raw = mne.io.read_raw_edf(EDF, preload=True, verbose="error")
    x, sf = raw.get_data() * 1e6, float(raw.info["sfreq"])
    names = [n.strip(".") for n in raw.ch_names]

    sq = SignalQuality()
    w4 = x[:, int(10 * sf): int(14 * sf)]
    wall, cpu = timed(lambda: sq.check(w4, sf, names), args.repeats)
    print(f"SignalQuality.check, 64 ch x 4 s:   {wall:6.2f} ms wall, {cpu:6.2f} ms CPU")

    t0 = time.perf_counter()
    mon = ArtifactMonitor().fit(x[:, : int(30 * sf)], sf)
    print(f"ArtifactMonitor.fit, 30 s:           {1000 * (time.perf_counter() - t0):6.0f} ms")
    w1 = x[:, int(40 * sf): int(41 * sf)]
    wall, cpu = timed(lambda: mon.score(w1), args.repeats)
    print(f"ArtifactMonitor.score, 64 ch x 1 s: {wall:6.2f} ms wall, {cpu:6.2f} ms CPU")

    _, z = mon.scan(x[:, int(30 * sf):])
    print(f"false alarms after calibration: {np.mean(z > mon.threshold):.1%} of {len(z)} windows")
    n, blink = mon.n_window_, np.hanning(int(0.3 * sf))
    starts = np.arange(int(32 * sf), x.shape[1] - n, int(1.5 * sf))
    clean = np.stack([x[:, s: s + n] for s in starts])
    for amp in (200, 400, 600, 800):
        rng = np.random.default_rng(0)
        dirty = clean.copy()
        for k in range(len(starts)):
            off = rng.integers(0, n - blink.size)
            for ch, gain in FRONTAL.items():
                dirty[k, names.index(ch), off: off + blink.size] += amp * gain * blink
        rate = np.mean(mon.score_windows(dirty) > mon.threshold)
        print(f"blink {amp:4d} uV detected: {rate:.1%} of {len(starts)} windows")


if __name__ == "__main__":
    main()
