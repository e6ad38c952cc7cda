"""Per-stage latency of the whole loop, from the EEG sample to the frame, with each world engine.

A simulated participant (the easy preset: every cue gets commands to trace) is calibrated
faster than real time, an asynchronous decoder is trained on it, and the same person streams
over real LSL on loopback while a cued online run (``gui.tasks.cued``) goes through
:class:`gui.runtime.SessionRuntime`, headless, once with the sandbox world and once with the
shipped MVDT. Every decoded command is traced on the LSL clock through six stages (sample
acquired, window decoded, command issued, world request, frame generated, frame shown; see
``gui/runtime/latency.py``); the tables give median, p95 and p99 per stage and end to end.

"Frame shown" is when the headless loop hands the frame out; in the window it is the paint, and
``yume run --photodiode`` lets a photodiode measure the screen itself.

Usage::

    .venv/bin/python benchmarks/bench_session_latency.py [--worlds sandbox,mvdt] [--cues 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from gui.runtime.latency import format_table


def run_world(world: str, bundle: Path, folder: Path, cues: int, resolution: int) -> dict:
    from bci.simulated import SimulatedParticipant
    from bci.simulated_lsl import PublishedParticipant
    from control.policy import PolicyConfig
    from gui.app import RunOptions, make_engine, start_acquisition
    from gui.headless import run_headless
    from gui.mission import participant_config
    from gui.steering import Steering, decoder_control
    from gui.tasks.cued import CuedTask

    person = SimulatedParticipant(participant_config("easy"), seed=7)
    acq = start_acquisition(PublishedParticipant(person))
    engine, _ = make_engine(RunOptions(world=world, resolution=(resolution, resolution)))
    try:
        online = decoder_control(bundle, acq, PolicyConfig(mode="discrete"), publish=False)
        steering = Steering(acq, online)
        task = CuedTask(online.policy.mapping, n_per_class=cues, cue_s=5.0, rest_s=4.0,
                        rest_jitter_s=1.0)
        result = run_headless(engine, folder / world, acquisition=acq, steering=steering,
                              task=task, progress=False, report=False,
                              meta={"decoder": str(bundle)})
    finally:
        acq.stop()
        engine.close()
    return result.summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", default="sandbox,mvdt")
    parser.add_argument("--cues", type=int, default=3, help="cues per class (3 classes)")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from gui.mission import MissionOptions, calibrate_and_train

    out = args.out or Path(tempfile.mkdtemp(prefix="yume-latency-"))
    t0 = time.perf_counter()
    bundle, training = calibrate_and_train(out / "calibration",
                                           MissionOptions(calibration_trials=8, progress=False))
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; decoder "
          f"{training['pipeline']} trained in {time.perf_counter() - t0:.0f} s; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for world in args.worlds.split(","):
        s = run_world(world.strip(), bundle, out, args.cues, args.resolution)
        task = s.get("task", {})
        print(f"\n{world} {args.resolution}x{args.resolution}: {task.get('hits')} of "
              f"{task.get('n_cues')} cues right, {s['frames']} frames, generation "
              f"{s['generation_fps']} frames/s (outputs in {out / world})")
        print(format_table(s["latency"]))
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
