"""The world service over loopback: action-to-frame delay and cost per frame vs in-process.

Run: ``.venv/bin/python benchmarks/bench_world_service.py [--engines sandbox,mvdt]
[--sizes 64,256] [--trials 20]``

The service runs as its own process (``yume world serve --port 0``, as it would on a GPU
host), this script is the client (:class:`world.service_client.WorldClient`). For each engine
and square frame size it prints:

- *in-process ms/frame*: ``engine.step`` in this process (no service), frames / wall time;
- *service ms/frame* (raw and PNG frames): frames received / wall time by one client of an
  unpaced session (``"pace": false``: the service generates as fast as it can, one chunk
  ahead, and the client decodes every frame), and the ratio to the in-process figure
  (goal: under 1.10, i.e. under 10 % extra per frame at 64x64 and 256x256);
- *delay action -> first frame* (paced session, raw frames): from ``act()`` to the receipt of
  the first frame generated with that action, median and 90th percentile, from standstill and
  while moving (the previous action still being generated), with the median split into
  engine + queue (action -> chunk ready on the server) and transport (chunk ready -> received).

Torch uses one thread on both sides (``--threads``). Numbers depend on the load of the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from control.actions import parse_action  # noqa: E402
from world.registry import make_world  # noqa: E402
from world.service import encode_frame  # noqa: E402
from world.service_client import WorldClient  # noqa: E402

ACTIONS = ("W", "D", "S ←", "A")


def start_service(threads: int) -> tuple[subprocess.Popen, str]:
    """``yume world serve --port 0`` in a subprocess; returns it and its WebSocket URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gui.cli", "world", "serve", "--port", "0", "--threads",
         str(threads), "--max-side", "512"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    line = proc.stdout.readline()
    m = re.search(r"127\.0\.0\.1:(\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"the service did not start: {line!r}")
    return proc, f"ws://127.0.0.1:{m.group(1)}/ws"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_process(engine: str, size: int, frames: int, threads: int) -> tuple[float, float]:
    """Wall and CPU seconds per frame of ``engine.step`` in this process."""
    if engine == "mvdt":
        import torch

        torch.set_num_threads(threads)
    world = make_world(engine, height=size, width=size)
    world.reset(seed=3)
    world.step(parse_action("W"))  # warm-up
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    k = 0
    while n < frames:
        n += len(world.step(parse_action(ACTIONS[k % len(ACTIONS)])))
        k += 1
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    world.close()
    return dt / n, cpu / n


def over_service(url: str, pid: int, engine: str, size: int, frames: int,
                 fmt: str) -> tuple[float, float, int]:
    """Wall seconds per received frame of an unpaced session, the service's CPU seconds per
    frame, and the frames dropped meanwhile."""
    with WorldClient(url, timeout=60) as c:
        c.open(engine=engine, seed=3, height=size, width=size, fmt=fmt, pace=False)
        c.frame()
        c.act("W")
        for _ in range(12):  # warm-up: torch and the pipeline (3 MVDT chunks)
            c.frame()
        start_drop = c.frame().dropped
        t0, c0 = time.perf_counter(), cpu_seconds(pid)
        for i in range(frames):
            f = c.frame()
            if i % 8 == 7:
                c.act(ACTIONS[(i // 8) % len(ACTIONS)])
        dt, cpu = time.perf_counter() - t0, cpu_seconds(pid) - c0
        return dt / frames, cpu / (frames + f.dropped - start_drop), f.dropped - start_drop


def _drain(c: WorldClient, quiet: float) -> None:
    while True:
        try:
            c.frame(timeout=quiet)
        except TimeoutError:
            return


def delays(url: str, engine: str, size: int, trials: int) -> dict[str, list[float]]:
    """Action -> first frame delays (s) from standstill and while moving, with their parts."""
    quiet = 1.0 if engine == "mvdt" else 0.3
    out: dict[str, list[float]] = {"still": [], "still_engine": [], "moving": [],
                                   "moving_engine": []}
    rng = np.random.default_rng(0)
    with WorldClient(url, timeout=60) as c:
        c.open(engine=engine, seed=3, height=size, width=size, pace=True)
        c.frame()
        for k in range(trials):  # from standstill
            want = parse_action(ACTIONS[k % len(ACTIONS)])
            sent = c.act(want)
            while (f := c.frame()).action != want:
                pass
            out["still"].append(f.received - sent)
            out["still_engine"].append(f.header.generated - sent)
            c.act("·")
            _drain(c, quiet)
        c.act("W")
        for _ in range(3):
            c.frame()
        for k in range(trials):  # while moving: switch to the next action
            want = parse_action(ACTIONS[(k + 1) % len(ACTIONS)])
            sent = c.act(want)
            while (f := c.frame()).action != want:
                pass
            out["moving"].append(f.received - sent)
            out["moving_engine"].append(f.header.generated - sent)
            for _ in range(2):
                c.frame()
            time.sleep(rng.uniform(0, 1.0 / c.info["frame_rate"]))  # anywhere in a frame
    return out


def encode_cost(size: int, fmt: str, repeats: int = 50) -> float:
    """Seconds to encode one frame (header + pixels) in ``fmt``."""
    world = make_world("sandbox", height=size, width=size)
    image = world.reset(seed=3).frames[0]
    pose = np.eye(4)
    t0 = time.perf_counter()
    for i in range(repeats):
        encode_frame(image, pose, chunk=1, index=i, offset=0, action=parse_action("W"),
                     world_time=0.0, generated=0.0, fmt=fmt)
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engines", default="sandbox,mvdt")
    ap.add_argument("--sizes", default="64,256")
    ap.add_argument("--trials", type=int, default=20, help="delay measurements per case")
    ap.add_argument("--repeats", type=int, default=3, help="throughput runs per case (median)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (both sides)")
    args = ap.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    sizes = [int(s) for s in args.sizes.split(",")]

    print(f"# {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print("\n| frame | raw encode ms | PNG encode ms | raw bytes | PNG bytes |")
    print("|---|---|---|---|---|")
    for size in sizes:
        world = make_world("sandbox", height=size, width=size)
        img = world.reset(seed=3).frames[0]
        png = encode_frame(img, np.eye(4), chunk=0, index=0, offset=0,
                           action=parse_action("W"), world_time=0, generated=0, fmt="png")
        print(f"| {size}x{size} | {1e3 * encode_cost(size, 'raw'):.3f} | "
              f"{1e3 * encode_cost(size, 'png'):.2f} | {size * size * 3 + 178} | {len(png)} |")

    proc, url = start_service(args.threads)
    rows = []
    try:
        for engine in engines:
            for size in sizes:
                n = 40 if engine == "mvdt" else (600 if size <= 64 else 240)
                loc = [in_process(engine, size, n, args.threads) for _ in range(args.repeats)]
                local = tuple(float(np.median([r[i] for r in loc])) for i in range(2))
                remote = {}
                for fmt in ("raw", "png"):
                    runs = [over_service(url, proc.pid, engine, size, n, fmt)
                            for _ in range(args.repeats)]
                    remote[fmt] = (float(np.median([r[0] for r in runs])),
                                   float(np.median([r[1] for r in runs])),
                                   int(sum(r[2] for r in runs)))
                d = delays(url, engine, size, args.trials if engine == "sandbox"
                           else max(4, args.trials // 3))
                rows.append((engine, size, local, remote, d))
                print(f"# done {engine} {size}x{size}", file=sys.stderr, flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=20)

    print("\n| engine | frame | frames | in-process ms/frame: wall, CPU | service raw: wall "
          "ms/frame (ratio), CPU (ratio) | service PNG: wall (ratio), CPU (ratio) | "
          "dropped raw/PNG |")
    print("|---|---|---|---|---|---|---|")
    for engine, size, local, remote, _ in rows:
        n = 40 if engine == "mvdt" else (600 if size <= 64 else 240)
        lw, lc = local
        cells = []
        for fmt in ("raw", "png"):
            w, c, _ = remote[fmt]
            cells.append(f"{1e3 * w:.2f} ({w / lw:.2f}), {1e3 * c:.2f} ({c / lc:.2f})")
        print(f"| {engine} | {size}x{size} | {n} x {args.repeats} | {1e3 * lw:.2f}, "
              f"{1e3 * lc:.2f} | {cells[0]} | {cells[1]} | "
              f"{remote['raw'][2]}/{remote['png'][2]} |")

    print("\n| engine | frame | delay from standstill: median (p90) ms | of which engine + "
          "queue | delay while moving: median (p90) ms | of which engine + queue |")
    print("|---|---|---|---|---|---|")
    for engine, size, _, _, d in rows:
        def ms(xs: list[float], q: float = 50) -> str:
            return f"{1e3 * float(np.percentile(xs, q)):.1f}"
        print(f"| {engine} | {size}x{size} | {ms(d['still'])} ({ms(d['still'], 90)}) | "
              f"{ms(d['still_engine'])} | {ms(d['moving'])} ({ms(d['moving'], 90)}) | "
              f"{ms(d['moving_engine'])} |")


if __name__ == "__main__":
    main()
