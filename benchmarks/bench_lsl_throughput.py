"""LSL throughput and latency on loopback: a sender process -> LSL -> LSLInlet -> RingBuffer.

A separate process plays the amplifier: it pushes ``n_ch`` float32 channels at ``sfreq`` in small
chunks (every ``--push-ms``), writing into each sample its index and the LSL-clock time at which
it was pushed. The app side is the real path: :class:`bci.acquisition.Acquisition` polling a
:class:`bci.lsl.LSLInlet` into its :class:`bci.ringbuffer.RingBuffer`; a listener notes when each
sample became available in the buffer.

Reported per configuration: samples sent/received/lost (from the embedded counter), gaps the
inlet reported, delay from push to availability in the buffer (median/p99/max over every
sample), RSS at start and end (and the peak in between), CPU use of the app process.

Usage::

    python benchmarks/bench_lsl_throughput.py                 # 60 s per configuration
    python benchmarks/bench_lsl_throughput.py --minutes 10    # the full run
    python benchmarks/bench_lsl_throughput.py --seconds 20 --configs 64x1000
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pylsl import local_clock  # noqa: E402

from bci.acquisition import Acquisition  # noqa: E402
from bci.lsl import EEGOutlet, LSLInlet  # noqa: E402
from bci.stream import StreamInfo  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def sender(name: str, n_ch: int, sfreq: float, seconds: float, push_s: float, ready, go) -> None:
    """The 'amplifier': push what is due every push_s, stamping index and push time."""
    info = StreamInfo(name=name, sfreq=sfreq, ch_names=tuple(f"ch{i}" for i in range(n_ch)))
    out = EEGOutlet(info)
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 10, (n_ch, int(sfreq))).astype(np.float32)
    ready.set()
    go.wait()
    t_start = local_clock()
    sent, total = 0, int(seconds * sfreq)
    while sent < total:
        now = local_clock()
        due = min(int((now - t_start) * sfreq), total) - sent
        if due > 0:
            idx = np.arange(sent, sent + due)
            chunk = noise[:, idx % noise.shape[1]].copy()
            push_t = local_clock()
            chunk[0] = idx  # exact in float32 up to 16.7 M samples
            chunk[1] = np.floor(push_t)  # push time split in two float32 for precision
            chunk[2] = push_t - np.floor(push_t)
            out.push(chunk, t_start + idx / sfreq)
            sent += due
        time.sleep(push_s)
    time.sleep(1.0)  # let the last chunk drain before the outlet disappears
    out.close()


def _episodes(delays_ms: np.ndarray, above_ms: float) -> int:
    """How many separate stretches of samples waited longer than ``above_ms``."""
    late = np.nonzero(delays_ms > above_ms)[0]
    return int(late.size and 1 + np.sum(np.diff(late) > 1))


def run_config(n_ch: int, sfreq: float, seconds: float, interval: float, push_s: float) -> dict:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    ctx = mp.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=sender, args=(name, n_ch, sfreq, seconds, push_s, ready, go),
                       daemon=True)
    proc.start()
    ready.wait(30)
    total = int(seconds * sfreq)
    delays = np.full(total, np.nan)  # preallocated: the measurement itself must not grow
    state = {"received": 0, "bad_order": 0, "last": -1}
    lock = threading.Lock()

    def on_chunk(data: np.ndarray, ts: np.ndarray) -> None:
        now = local_clock()
        idx = data[0].astype(np.int64)
        push_t = data[1].astype(np.float64) + data[2].astype(np.float64)
        with lock:
            ok = (idx >= 0) & (idx < total)
            delays[idx[ok]] = now - push_t[ok]
            state["received"] += data.shape[1]
            if idx[0] != state["last"] + 1:
                state["bad_order"] += 1
            state["last"] = int(idx[-1])

    acq = Acquisition(LSLInlet(name=name, timeout=10.0), seconds=10.0, interval=interval)
    acq.add_listener(on_chunk)
    acq.start()
    time.sleep(0.5)
    rss_start, rss_peak, rss_full = rss_mb(), 0.0, float("nan")
    cpu0, wall0 = os.times(), time.monotonic()
    go.set()
    # the ring buffer's pages are committed as it fills: "after fill" is the fair baseline
    fill_at = wall0 + min(12.0, seconds)
    end = wall0 + seconds + 5.0
    while state["received"] < total and time.monotonic() < end:
        time.sleep(0.25)
        rss_peak = max(rss_peak, rss_mb())
        if np.isnan(rss_full) and time.monotonic() >= fill_at:
            rss_full = rss_mb()
    cpu1, wall1 = os.times(), time.monotonic()
    rss_end = rss_mb()
    inlet = acq.source
    acq.stop()
    proc.join(10)
    got = delays[~np.isnan(delays)] * 1000.0
    cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (wall1 - wall0) * 100
    return {
        "config": f"{n_ch} ch @ {sfreq:g} Hz", "seconds": seconds, "sent": total,
        "received": state["received"], "lost": total - int(np.sum(~np.isnan(delays))),
        "gaps": inlet.gaps.n_gaps, "backlog_warn": inlet.n_backlog_warnings,
        "median_ms": float(np.median(got)) if got.size else float("nan"),
        "p99_ms": float(np.percentile(got, 99)) if got.size else float("nan"),
        "max_ms": float(got.max()) if got.size else float("nan"),
        "stalls": _episodes(delays * 1000.0, 20.0),
        "rss_start": rss_start, "rss_full": rss_full, "rss_peak": rss_peak, "rss_end": rss_end,
        "cpu_pct": cpu,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="duration per config")
    parser.add_argument("--minutes", type=float, default=None, help="duration per config")
    parser.add_argument("--configs", default="64x1000,256x2048",
                        help="comma-separated CHANNELSxRATE list")
    parser.add_argument("--interval", type=float, default=0.0005,
                        help="Acquisition polling interval in s (default 0.5 ms)")
    parser.add_argument("--push-ms", type=float, default=1.0, help="sender chunk period (ms)")
    args = parser.parse_args(argv)
    seconds = args.minutes * 60 if args.minutes else args.seconds
    rows = []
    for spec in args.configs.split(","):
        n_ch, sfreq = spec.lower().split("x")
        print(f"running {spec} for {seconds:g} s ...", flush=True)
        rows.append(run_config(int(n_ch), float(sfreq), seconds, args.interval,
                               args.push_ms / 1000.0))
    head = ("config", "s", "sent", "lost", "gaps", "median ms", "p99 ms", "max ms", "stalls>20ms",
            "RSS start MB", "RSS buffer full MB", "RSS end MB", "RSS peak MB", "CPU %")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(f"| {r['config']} | {r['seconds']:g} | {r['sent']} | {r['lost']} | {r['gaps']} | "
              f"{r['median_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} | {r['stalls']} | "
              f"{r['rss_start']:.0f} | {r['rss_full']:.0f} | {r['rss_end']:.0f} | "
              f"{r['rss_peak']:.0f} | "
              f"{r['cpu_pct']:.0f} |")
    print(f"(poll interval {args.interval * 1000:g} ms, sender chunk every {args.push_ms:g} ms, "
          "loopback; delay = sample pushed -> readable in the RingBuffer; RSS of the app "
          "process, whose 10 s ring buffer fills during the first 10 s)")
    return 0 if all(r["lost"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
