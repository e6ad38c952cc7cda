"""The world service over loopback: action-to-frame delay and cost per frame vs in-process.

Run: ``.venv/bin/python benchmarks/bench_world_service.py [--engines sandbox,mvdt]
[--sizes 64,256] [--trials 20] [--repeats 3] [--formats raw,png] [--roots DIR,DIR]``

``--engine-process`` serves with each engine in a process of its own. ``--trials 0`` leaves
the delays out, ``--paced 0`` the paced cost. ``--roots`` serves from each of several
checkouts of the project at once (e.g. the code before and after a change), one service
process each, and measures them in turn within every repeat, so that they share the machine's
load; ``.`` is this checkout.

The service runs as its own process (``yume world serve --port 0``, as it would on a GPU
host), this script is the client (:class:`world.service_client.WorldClient`). For each engine
and square frame size it prints:

- *in-process ms/frame*: ``engine.step`` in this process (no service), wall and CPU time per
  frame;
- *service ms/frame* (raw and PNG frames): one client of an unpaced session (``"pace":
  false``: the service generates as fast as it can and the client decodes every frame), wall
  time per received frame and the service process's CPU time per frame it generated; the
  ratio to the in-process figure (goal: under 1.10, i.e. under 10 % extra per frame at 64x64
  and 256x256);
- *paced CPU*: the same for a paced session (frames at the world's rate, 16 frames/s), the
  way a window uses the service, against ``engine.step`` paced the same way in-process (a
  step per frame period, sleeping in between: an engine woken 16 times a second runs slower
  than one stepped back to back); each service frame also costs the thread wake-ups of
  pacing and the service's idle work;
- *delay action -> first frame* (paced session, raw frames): from ``act()`` to the receipt of
  the first frame generated with that action, median and 90th percentile, from standstill and
  while moving (the previous action still being generated), with the median split into
  engine + queue (action -> chunk ready on the server) and transport (chunk ready -> received).

How the cost is measured, so that the ratio is fair on a shared, noisy machine: one repeat
alternates short blocks of in-process steps and of service frames (a few hundred ms each),
with the service session standing still (idle action, so it takes no CPU) during the
in-process blocks; each service block starts and ends with the session standing still, its
CPU time is read with the kernel's nanosecond process clock (``clock_getcpuclockid``; the
clock-tick counters of ``/proc`` round to 10 ms) and divided by the frames the service
reports having generated in it (``stats``), frames still queued at the end included. The
ratio of a repeat is service CPU per frame over in-process CPU per frame summed over its
blocks; the tables give the median and the range over the repeats.

Torch uses one thread on both sides (``--threads``). Numbers depend on the load of the machine.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from control.actions import parse_action  # noqa: E402
from world.protocol import HEADER, encode_frame  # noqa: E402
from world.registry import make_world  # noqa: E402
from world.service_client import WorldClient  # noqa: E402

ACTIONS = ("W", "D", "S ←", "A")


def start_service(threads: int, root: Path = ROOT,
                  extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """``yume world serve --port 0 [extra]`` of the checkout ``root`` in a subprocess; returns
    it and its WebSocket URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gui.cli", "world", "serve", "--port", "0", "--threads",
         str(threads), "--max-side", "512", *extra],
        cwd=root, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(root)))
    line = proc.stdout.readline()
    m = re.search(r"127\.0\.0\.1:(\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"the service did not start: {line!r}")
    return proc, f"ws://127.0.0.1:{m.group(1)}/ws"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` and its living descendants
    (the service's engine processes and their fork server), all threads.

    Read at the start and the end of a block, the difference is the CPU the service spent in
    it, wherever it ran (a process that ended within the block would be missed: none does).
    """
    return sum(_process_cpu(p) for p in [pid, *descendants(pid)])


def descendants(pid: int) -> list[int]:
    """Process ids of the living children of ``pid``, their children, and so on."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def _process_cpu(pid: int) -> float:
    """CPU seconds of one process: the kernel's CPU-time clock of the process (nanoseconds)
    where it can be read, else the clock-tick counters of ``/proc/PID/stat`` (10 ms steps)."""
    try:
        clock = _process_clock(pid)
        if clock is not None:
            return time.clock_gettime(clock)
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # it has just ended
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _process_clock(pid: int) -> int | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        clock = ctypes.c_int()
        if libc.clock_getcpuclockid(int(pid), ctypes.byref(clock)) != 0:
            return None
        time.clock_gettime(clock.value)
        return clock.value
    except (AttributeError, OSError):
        return None


@dataclass
class Cost:
    """Wall and CPU seconds and frames, summed over the blocks of one repeat."""

    wall: float = 0.0
    cpu: float = 0.0
    frames: int = 0
    received: int = 0
    dropped: int = 0
    engine: float = 0.0  # service: CPU seconds inside engine.step (the session's stats)

    def per_frame(self) -> tuple[float, float]:
        """(wall seconds per received frame, CPU seconds per generated frame)."""
        return self.wall / max(self.received, 1), self.cpu / max(self.frames, 1)


@dataclass
class Served:
    """One case served, over the repeats: medians (seconds per frame), the per-repeat ratios
    to in-process, the service's own CPU per frame and its engine's step over the in-process
    step."""

    wall: float
    cpu: float
    dropped: int
    wall_ratios: list[float]
    cpu_ratios: list[float]
    own: list[float]
    engine_ratios: list[float]


def paired_cost(url: str, pid: int, engine: str, size: int, frames: int, fmt: str = "raw",
                pace: bool = False, blocks: int = 6, threads: int = 1) -> tuple[Cost, Cost]:
    """In-process and service cost of ``frames`` frames, measured in alternating blocks."""
    if engine == "mvdt":
        import torch

        torch.set_num_threads(threads)
    world = make_world(engine, height=size, width=size)
    world.reset(seed=3)
    world.step(parse_action("W"))  # warm-up
    per = max(frames // blocks, int(world.frames_per_step))
    quiet = 1.0 if engine == "mvdt" else 0.2
    local, remote = Cost(), Cost()
    k = 0
    with WorldClient(url, timeout=60) as c:
        c.open(engine=engine, seed=3, height=size, width=size, fmt=fmt, pace=pace)
        c.frame()
        c.act("W")
        for _ in range(12):  # warm-up: torch and the pipeline (3 MVDT chunks)
            c.frame()
        for b in range(blocks):
            c.act("·")  # the session stands still (no CPU) while the engine runs here
            _drain(c, quiet)
            n, t0, c0 = 0, time.perf_counter(), time.process_time()
            while n < per:
                n += len(world.step(parse_action(ACTIONS[k % len(ACTIONS)])))
                k += 1
                if pace:  # paced in-process too: a step every frame period, as a window does
                    time.sleep(max(0.0, t0 + n / world.frame_rate - time.perf_counter()))
            local.wall += time.perf_counter() - t0
            local.cpu += time.process_time() - c0
            local.frames += n
            local.received += n
            s0, c0 = c.stats(), cpu_seconds(pid)
            c.act(ACTIONS[b % len(ACTIONS)])
            f = c.frame()
            t0, first = time.perf_counter(), f.dropped
            for i in range(per):
                f = c.frame()
                if i % 8 == 7:
                    c.act(ACTIONS[(b + i // 8) % len(ACTIONS)])
            remote.wall += time.perf_counter() - t0
            remote.received += per
            remote.dropped += f.dropped - first
            c.act("·")
            _drain(c, quiet)  # every frame of the block is made and sent: then count
            cpu, s1 = cpu_seconds(pid) - c0, c.stats()
            remote.cpu += cpu
            remote.frames += s1["generated"] - s0["generated"]
            remote.engine += s1.get("engine_cpu_s", 0.0) - s0.get("engine_cpu_s", 0.0)
    world.close()
    return local, remote


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
    ap.add_argument("--engine-process", action="store_true",
                    help="serve with each engine in a process of its own (CPU of the engine "
                         "processes included)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (both sides)")
    ap.add_argument("--paced", type=int, default=48,
                    help="frames of the paced CPU measure per repeat (0: leave it out)")
    ap.add_argument("--formats", default="raw,png", help="frame formats of the unpaced cost")
    ap.add_argument("--roots", default=".",
                    help="checkouts to serve from, measured in turn (comma-separated)")
    args = ap.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    sizes = [int(s) for s in args.sizes.split(",")]
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    roots = [(ROOT / r).resolve() for r in args.roots.split(",") if r.strip()]

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
              f"{1e3 * encode_cost(size, 'png'):.2f} | {size * size * 3 + HEADER.size} | "
              f"{len(png)} |")

    extra = ("--engine-process",) if args.engine_process else ()
    services = [start_service(args.threads, root, extra) for root in roots]
    labels = ["this" if root == ROOT else str(root) for root in roots]
    rows = []
    try:
        for engine in engines:
            for size in sizes:
                n = 40 if engine == "mvdt" else (600 if size <= 64 else 240)
                runs: list[dict[str, list[tuple[Cost, Cost]]]] = [
                    {f: [] for f in (*formats, "paced")} for _ in services]
                for _ in range(args.repeats):
                    for (proc, url), run in zip(services, runs, strict=True):
                        for fmt in formats:
                            run[fmt].append(paired_cost(url, proc.pid, engine, size, n, fmt,
                                                        threads=args.threads))
                        if args.paced:
                            run["paced"].append(paired_cost(url, proc.pid, engine, size,
                                                            args.paced, "raw", pace=True,
                                                            blocks=3, threads=args.threads))
                d = (delays(services[0][1], engine, size, args.trials if engine == "sandbox"
                            else max(4, args.trials // 3)) if args.trials else None)
                for label, run in zip(labels, runs, strict=True):
                    loc = [lo.per_frame() for f in formats for lo, _ in run[f]]
                    local = tuple(float(np.median([r[i] for r in loc])) for i in range(2))
                    remote = {}
                    for fmt, rs in run.items():
                        if not rs:
                            continue
                        mine = [(lo.per_frame(), sv.per_frame()) for lo, sv in rs]
                        remote[fmt] = Served(
                            wall=float(np.median([m[1][0] for m in mine])),
                            cpu=float(np.median([m[1][1] for m in mine])),
                            dropped=int(sum(sv.dropped for _, sv in rs)),
                            wall_ratios=[m[1][0] / m[0][0] for m in mine],
                            cpu_ratios=[m[1][1] / m[0][1] for m in mine],
                            own=[(sv.cpu - sv.engine) / max(sv.frames, 1) for _, sv in rs],
                            engine_ratios=[sv.engine / max(sv.frames, 1) / lo.per_frame()[1]
                                           for lo, sv in rs])
                    rows.append((label, engine, size, local, remote, d))
                print(f"# done {engine} {size}x{size}", file=sys.stderr, flush=True)
    finally:
        for proc, _ in services:
            proc.terminate()
            proc.wait(timeout=20)

    def ratio(xs: list[float]) -> str:
        return f"{np.median(xs):.2f} [{min(xs):.2f}-{max(xs):.2f}]"

    print("\nRatios: service / in-process per repeat (alternating blocks), median [range] "
          f"over {args.repeats} repeats.")
    print("\n| code | engine | frame | frames | in-process ms/frame: wall, CPU | "
          + " | ".join(f"service {f}: wall ms/frame (ratio), CPU (ratio)" for f in formats)
          + " | paced raw: CPU ms/frame (ratio) | dropped " + "/".join(formats) + " |")
    print("|---|---|---|---|---|" + "---|" * len(formats) + "---|---|")
    for label, engine, size, local, remote, _ in rows:
        n = 40 if engine == "mvdt" else (600 if size <= 64 else 240)
        lw, lc = local
        cells = []
        for fmt in formats:
            r = remote[fmt]
            w, c, wr, cr = r.wall, r.cpu, r.wall_ratios, r.cpu_ratios
            bold = "**" if fmt == "raw" else ""
            cells.append(f"{1e3 * w:.2f} ({ratio(wr)}), {1e3 * c:.2f} ({bold}{ratio(cr)}{bold})")
        paced = (f"{1e3 * remote['paced'].cpu:.2f} ({ratio(remote['paced'].cpu_ratios)})"
                 if "paced" in remote else "-")
        print(f"| {label} | {engine} | {size}x{size} | {n} x {args.repeats} | {1e3 * lw:.2f}, "
              f"{1e3 * lc:.2f} | {' | '.join(cells)} | {paced} | "
              f"{'/'.join(str(remote[f].dropped) for f in formats)} |")

    print("\nThe service's CPU split (raw, unpaced): its own CPU per frame is the service "
          "process's CPU less the CPU its engine thread spent inside engine.step (the "
          "session's engine_cpu_s); the step itself runs slower or faster beside the event "
          "loop than alone by the second ratio. Median [range] over the repeats.")
    print("\n| code | engine | frame | service's own CPU us/frame | own / in-process step "
          "| engine.step CPU in the service / in-process |")
    print("|---|---|---|---|---|---|")
    for label, engine, size, local, remote, _ in rows:
        own, slow = remote["raw"].own, remote["raw"].engine_ratios
        print(f"| {label} | {engine} | {size}x{size} | {1e6 * np.median(own):.0f} "
              f"[{1e6 * min(own):.0f}-{1e6 * max(own):.0f}] | "
              f"{np.median(own) / local[1]:.3f} | {ratio(slow)} |")
    if not args.trials:
        return

    print("\n| engine | frame | delay from standstill: median (p90) ms | of which engine + "
          "queue | delay while moving: median (p90) ms | of which engine + queue |")
    print("|---|---|---|---|---|---|")
    for label, engine, size, _, _, d in rows:
        if label != labels[0]:
            continue
        def ms(xs: list[float], q: float = 50) -> str:
            return f"{1e3 * float(np.percentile(xs, q)):.1f}"
        print(f"| {engine} | {size}x{size} | {ms(d['still'])} ({ms(d['still'], 90)}) | "
              f"{ms(d['still_engine'])} | {ms(d['moving'])} ({ms(d['moving'], 90)}) | "
              f"{ms(d['moving_engine'])} |")


if __name__ == "__main__":
    main()
