"""Recording cost: how fast :class:`bci.recording.Recorder` appends samples, how much memory it
holds while a long run is recorded, and how long closing (BIDS copy) and crash recovery take.

Pushes ``--minutes`` of ``--channels`` x ``--sfreq`` float32 data in 40 ms chunks as fast as
possible (with one event a second), so "x real time" is the headroom over a live amplifier.

    .venv/bin/python benchmarks/bench_recording.py [--minutes 10] [--channels 64] [--sfreq 500]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bci.recording import Recorder
from bci.session_files import recover_session
from bci.stream import StreamInfo


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--sfreq", type=float, default=500.0)
    args = ap.parse_args()

    n_ch, sfreq = args.channels, args.sfreq
    chunk = int(0.04 * sfreq)
    n_chunks = int(args.minutes * 60 * sfreq / chunk)
    info = StreamInfo("bench", sfreq, tuple(f"E{i}" for i in range(n_ch)))
    data = np.random.default_rng(0).normal(0, 20, (n_ch, chunk)).astype(np.float32)
    tmp = Path(tempfile.mkdtemp(prefix="yume-bench-rec-"))
    try:
        rec = Recorder(tmp / "run", info, keep_raw=True)
        rss0 = rss_mb()
        peak = rss0
        t = time.perf_counter()
        for i in range(n_chunks):
            ts = (i * chunk + np.arange(chunk)) / sfreq
            rec.push(data, ts)
            if i % int(sfreq / chunk) == 0:
                rec.add_event(ts[0], 0.0, "tick")
            if i % 500 == 0:
                peak = max(peak, rss_mb())
        push_s = time.perf_counter() - t
        peak = max(peak, rss_mb())
        size_mb = rec.nbytes / 1e6
        t = time.perf_counter()
        rec.close()
        close_s = time.perf_counter() - t
        # Recovery of the same raw files (as after a crash) into a second BIDS copy.
        meta = tmp / "run" / "session.json"
        meta.write_text(meta.read_text().replace('"finished"', '"recording"'))
        shutil.rmtree(tmp / "run" / "bids")
        t = time.perf_counter()
        recover_session(tmp / "run", force=True)  # this process "crashed": force
        recover_s = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rec_s = n_chunks * chunk / sfreq
    rows = [
        ("recorded", f"{rec_s / 60:.1f} min, {n_ch} ch @ {sfreq:g} Hz ({size_mb:.0f} MB)"),
        ("push throughput", f"{rec_s / push_s:.0f}x real time ({push_s:.2f} s)"),
        ("RSS growth while recording", f"{peak - rss0:+.1f} MB (start {rss0:.0f} MB)"),
        ("close() incl. BIDS copy", f"{close_s:.2f} s"),
        ("recover_session()", f"{recover_s:.2f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
