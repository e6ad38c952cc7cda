"""Latency of online control: from the last sample of a window entering the ring buffer to the
action leaving the policy (online decoder + control policy), per decoding pipeline.

The simulated participant is calibrated (instant generation), then its signal is pushed into a
ring buffer in 20 ms chunks as an amplifier would deliver it; every chunk that completes a
window is timed through ``OnlineControl.step`` (decode the window, update the policy, stale
check), as wall-clock time (what the user waits) and as CPU time of the thread (the cost of
the work itself, which does not grow when other processes share the CPU). Goal: p99 < 15 ms.

A second table counts false activations at rest with the default policy over a long rest
period (signal time, generated offline).

Usage::

    .venv/bin/python benchmarks/bench_policy_latency.py [--seconds 60] [--rest-minutes 10]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

from bci.ringbuffer import RingBuffer
from bci.simulated import ParticipantConfig, SimulatedParticipant
from calibration.pipelines import make_pipeline
from control.bundle import DecoderBundle
from control.online import OnlineControl, OnlineDecoder
from control.policy import ControlPolicy, PolicyConfig

CLASSES = ("rest", "left_hand", "right_hand", "feet")


def calibrate(part: SimulatedParticipant, pipeline: str, window_s: float, step_s: float,
              trials: int = 10, seed: int = 0) -> DecoderBundle:
    sf = part.info.sfreq
    rng = np.random.default_rng(seed)
    n = int(round(window_s * sf))
    X, y = [], []
    for k in rng.permutation(np.repeat(np.arange(len(CLASSES)), trials)):
        part.set_intent("rest")
        part.generate(int(1.5 * sf))
        part.set_intent(CLASSES[k])
        X.append(part.generate(int(4.0 * sf))[:, int(0.5 * sf):int(0.5 * sf) + n])
        y.append(CLASSES[k])
    part.set_intent("rest")
    pipe = make_pipeline(pipeline, sf, (8.0, 30.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(np.stack(X), np.array(y))
    return DecoderBundle(pipeline=pipe, ch_names=part.info.ch_names, sfreq=sf,
                         classes=tuple(str(c) for c in pipe.classes_), units="uV",
                         window_s=window_s, step_s=step_s, name=pipeline)


def measure_latency(pipeline: str, seconds: float, chunk_s: float, window_s: float,
                    step_s: float, montage: str) -> dict:
    part = SimulatedParticipant(ParticipantConfig(sfreq=250.0, montage=montage), seed=1)
    bundle = calibrate(part, pipeline, window_s, step_s)
    decoder = OnlineDecoder.from_bundle(bundle)
    decoder.bind(part.info)
    policy = ControlPolicy(bundle.classes, bundle.actions, PolicyConfig(), step_s=step_s)
    loop = OnlineControl(decoder, policy, clock="samples")
    sf = part.info.sfreq
    chunk = int(round(chunk_s * sf))
    buf = RingBuffer(part.info.n_channels, int(10 * sf))
    # Pre-generate the signal so that generation is not timed; intents change every 4 s.
    intents = ["rest", "left_hand", "rest", "right_hand", "rest", "feet"]
    parts = []
    for i in range(int(np.ceil(seconds / 4.0))):
        part.set_intent(intents[i % len(intents)])
        parts.append(part.generate(int(4.0 * sf)).astype(np.float32))
    data = np.concatenate(parts, axis=1)[:, : int(seconds * sf)]
    lat, cpu = [], []
    n_cmd = 0
    for a in range(0, data.shape[1] - chunk + 1, chunk):
        buf.push(data[:, a:a + chunk], np.arange(a, a + chunk) / sf)
        t0, c0 = time.perf_counter(), time.thread_time()
        outs = loop.step(buf, now=(a + chunk) / sf)
        t1, c1 = time.perf_counter(), time.thread_time()
        if outs:
            lat.append((t1 - t0) * 1e3)
            cpu.append((c1 - c0) * 1e3)
            n_cmd += sum(o.command is not None for o in outs)
    lat, cpu = np.array(lat[5:]), np.array(cpu[5:])  # the first calls warm caches up
    return {"pipeline": pipeline, "channels": part.info.n_channels, "windows": lat.size,
            "p50": np.percentile(lat, 50), "p95": np.percentile(lat, 95),
            "p99": np.percentile(lat, 99), "max": lat.max(), "commands": n_cmd,
            "cpu50": np.percentile(cpu, 50), "cpu99": np.percentile(cpu, 99)}


def false_activations(rest_minutes: float, pipeline: str = "csp_lda") -> dict:
    part = SimulatedParticipant(ParticipantConfig(sfreq=250.0), seed=2)
    bundle = calibrate(part, pipeline, 2.0, 0.25)
    decoder = OnlineDecoder.from_bundle(bundle)
    decoder.bind(part.info)
    policy = ControlPolicy(bundle.classes, bundle.actions, PolicyConfig(), step_s=0.25)
    loop = OnlineControl(decoder, policy, clock="samples")
    sf = part.info.sfreq
    buf = RingBuffer(part.info.n_channels, int(10 * sf))
    part.set_intent("rest")
    part.generate(int(3 * sf))  # the first windows would still see the calibration's end
    n_cmd, chunk = 0, int(sf)
    total = int(rest_minutes * 60 * sf)
    for a in range(0, total, chunk):
        buf.push(part.generate(chunk), np.arange(a, a + chunk) / sf)
        n_cmd += sum(o.command is not None for o in loop.step(buf, now=(a + chunk) / sf))
    return {"pipeline": pipeline, "minutes": rest_minutes, "false": n_cmd,
            "per_min": n_cmd / rest_minutes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="signal per pipeline")
    parser.add_argument("--chunk-ms", type=float, default=20.0)
    parser.add_argument("--window-s", type=float, default=2.0)
    parser.add_argument("--step-s", type=float, default=0.1)
    parser.add_argument("--montage", default="standard_32")
    parser.add_argument("--pipelines", default="csp_lda,ts_lr,mdm,fbcsp_lda")
    parser.add_argument("--rest-minutes", type=float, default=10.0)
    args = parser.parse_args()
    print(f"window {args.window_s} s, step {args.step_s} s, chunks of {args.chunk_ms} ms, "
          f"{args.seconds:g} s of signal per pipeline, montage {args.montage}, 250 Hz")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs")
    print("| pipeline | channels | windows | p50 ms | p95 ms | p99 ms | max ms | CPU p50 ms "
          "| CPU p99 ms | goal p99 < 15 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.pipelines.split(","):
        r = measure_latency(name.strip(), args.seconds, args.chunk_ms / 1e3, args.window_s,
                            args.step_s, args.montage)
        ok = "yes" if r["p99"] < 15.0 else "NO"
        print(f"| {r['pipeline']} | {r['channels']} | {r['windows']} | {r['p50']:.2f} | "
              f"{r['p95']:.2f} | {r['p99']:.2f} | {r['max']:.2f} | {r['cpu50']:.2f} | "
              f"{r['cpu99']:.2f} | {ok} |", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.rest_minutes > 0:
        f = false_activations(args.rest_minutes)
        print()
        print("| false activations at rest (default policy, default SNR) | minutes | commands "
              "| per minute |")
        print("|---|---|---|---|")
        print(f"| {f['pipeline']}, 32 ch, window 2 s, step 0.25 s | {f['minutes']:g} | "
              f"{f['false']} | {f['per_min']:.2f} |")


if __name__ == "__main__":
    main()
