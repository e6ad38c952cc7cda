"""Fault injection: what the user sees and what the files hold when acquisition goes wrong.

Each scenario runs the real recording path (a real LSL outlet on loopback, `bci.recording`,
`yume record` in a subprocess) with one fault and returns a :class:`Fault` row; `main()` prints
them as the Markdown table of BENCHMARKS.md's reliability section. ``tests/bci/test_bci_faults.py``
runs the same scenarios and checks the rows.

    .venv/bin/python benchmarks/bench_faults.py        # about a minute; disk-full needs root
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pylsl import local_clock

from bci.lsl import EEGOutlet, LSLInlet, MarkerInlet, MarkerOutlet
from bci.recording import Recorder, RecordingError, read_session, record
from bci.session_files import GAP_ANNOTATION, recover_session
from bci.stream import AcquisitionError, StreamInfo

SFREQ = 250.0


@dataclass
class Fault:
    """One row of the fault table.

    ``lost`` counts samples that reached this machine (the inlet, or the recorder) but are
    not in the files; ``recovery_s`` is how long after the fault ended acquisition was back
    (None where it is not back by design).
    """

    fault: str
    user_saw: str
    files_hold: str
    lost: int
    recovery_s: float | None = None
    details: dict | None = None


class LoopbackSender(threading.Thread):
    """A live LSL EEG outlet on the true clock: 250 Hz in 20 ms chunks, markers every 0.4 s.

    Channel 0 is each sample's LSL time minus ``t_ref`` (float32 keeps microseconds over
    minutes), channel 1 a 3 Hz sine of it; more channels repeat channel 1. :meth:`down` kills
    the outlet (the samples due meanwhile are never sent), :meth:`up` starts a new one, with
    another layout or rate if asked. ``corrupt`` maps a sample index to a value written into
    channel 1 (NaN, inf...).
    """

    def __init__(self, n_channels: int = 2, sfreq: float = SFREQ, markers: bool = True) -> None:
        super().__init__(daemon=True)
        tag = uuid.uuid4().hex[:8]
        self.info = self._info(tag, n_channels, sfreq)
        self.tag = tag
        self.cues = MarkerOutlet(f"fault-cues-{tag}") if markers else None
        self.t_ref = local_clock()
        self.outlet: EEGOutlet | None = EEGOutlet(self.info)
        self.stop_flag = threading.Event()
        self.markers: list[tuple[float, str]] = []
        self.corrupt: dict[int, float] = {}
        self._sent = 0
        self._lock = threading.Lock()

    @staticmethod
    def _info(tag: str, n_channels: int, sfreq: float) -> StreamInfo:
        names = ("lsltime", *(f"C{i}" for i in range(n_channels - 1)))
        return StreamInfo(f"fault-eeg-{tag}", sfreq, names, ("misc",) + ("eeg",) * (n_channels - 1),
                          source_id=f"fault-eeg-{tag}")

    def down(self) -> None:
        with self._lock:
            outlet, self.outlet = self.outlet, None
        outlet.close()

    def up(self, n_channels: int | None = None, sfreq: float | None = None) -> None:
        n_channels = n_channels or self.info.n_channels
        sfreq = sfreq or self.info.sfreq
        info = self._info(self.tag, n_channels, sfreq)
        with self._lock:
            self.info, self.outlet = info, EEGOutlet(info)

    def close(self) -> None:
        self.stop_flag.set()
        self.join()
        if self.outlet is not None:
            self.outlet.close()
        if self.cues is not None:
            self.cues.close()

    def run(self) -> None:
        k, m = 0, 0
        while not self.stop_flag.is_set():
            with self._lock:
                sfreq, outlet, n_ch = self.info.sfreq, self.outlet, self.info.n_channels
                due = int((local_clock() - self.t_ref) * sfreq)
                if due > k and outlet is not None:  # while down, these samples are lost
                    idx = np.arange(k, due)
                    rel = idx / sfreq
                    sine = np.sin(2 * np.pi * 3 * rel)
                    for i, value in self.corrupt.items():
                        sine[idx == i] = value
                    outlet.push(np.vstack([rel, *([sine] * (n_ch - 1))]), self.t_ref + rel)
                k = max(k, due)
            while self.cues is not None and self.t_ref + 0.2 + 0.4 * m < local_clock():
                stamp = self.t_ref + 0.2 + 0.4 * m
                self.cues.push(f"cue{m}", stamp)
                self.markers.append((stamp, f"cue{m}"))
                m += 1
            time.sleep(0.02)


def _record_lsl(eeg: str, cues: str | None, folder: Path, seconds: float,
                script: Callable[[], None]) -> tuple[LSLInlet, str | None]:
    """Record stream ``eeg`` (and marker stream ``cues``) while ``script`` runs in a thread.

    Returns the inlet and the one-sentence error that ended the recording, if any.
    """
    inlet = LSLInlet(name=eeg, timeout=3.0, stall_timeout=0.3)
    markers = [MarkerInlet(name=cues, timeout=3.0)] if cues else []
    thread = threading.Thread(target=script, daemon=True)
    thread.start()
    error = None
    try:
        record(inlet, folder, seconds, progress=False, markers=markers)
    except (AcquisitionError, RecordingError) as err:
        error = str(err)
    thread.join()
    return inlet, error


def _record_sender(sender: LoopbackSender, folder: Path, seconds: float,
                   script: Callable[[], None]) -> tuple[LSLInlet, str | None]:
    return _record_lsl(sender.info.name, sender.cues.info.name if sender.cues else None,
                       folder, seconds, script)


def _log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


def outlet_restart(tmp: Path, down_s: float = 1.5) -> Fault:
    """The EEG outlet dies mid-recording and a new one starts ``down_s`` later."""
    sender = LoopbackSender()
    sender.start()

    def script():
        time.sleep(1.5)
        sender.down()
        time.sleep(down_s)
        sender.up()

    try:
        inlet, _ = _record_sender(sender, tmp / "restart", 5.5, script)
    finally:
        sender.close()
    meta = json.loads((tmp / "restart" / "session.json").read_text())
    raw, events = read_session(tmp / "restart")
    back = next(e for e in _log(tmp / "restart") if e["kind"] == "source_back")
    first = sender.t_ref + float(np.nanmin(raw.get_data(picks="lsltime")[0]))
    errors = [abs(got - (stamp - first)) for stamp, desc in sender.markers
              for got in events["onset"][events["description"] == desc]]
    hole = meta["gaps"][0] if meta["gaps"] else {"duration": 0.0}
    return Fault(
        f"EEG outlet killed, restarted after {down_s:.1f} s",
        "log: 'LSL stream ... lost', then a gap warning when it is back",
        f"NaN + {GAP_ANNOTATION} of {hole['duration']:.2f} s at its true time; "
        f"{len(errors)} markers within {max(errors) * 1000:.1f} ms of their true time",
        inlet.n_received - int(meta["n_samples"]), back["outage_s"] - down_s,
        {"gaps": meta["gaps"], "marker_error_s": max(errors)},
    )


def _layout_change(tmp: Path, name: str, **new) -> Fault:
    sender = LoopbackSender(markers=False)
    sender.start()

    def script():
        time.sleep(1.0)
        sender.down()
        time.sleep(0.5)
        sender.up(**new)

    try:
        inlet, error = _record_sender(sender, tmp / name, 4.0, script)
    finally:
        sender.close()
    meta = json.loads((tmp / name / "session.json").read_text())
    what = ", ".join(f"{k}={v}" for k, v in new.items())
    return Fault(
        f"stream comes back with {what}", f"one sentence (`yume record` exits 2): {error!r}",
        f"BIDS copy of the {meta['duration_s']:.1f} s before (status {meta['status']})",
        inlet.n_received - int(meta["n_samples"]), None, {"error": error},
    )


def rate_change(tmp: Path) -> Fault:
    return _layout_change(tmp, "rate", sfreq=500.0)


def channel_change(tmp: Path) -> Fault:
    return _layout_change(tmp, "channels", n_channels=3)


def nonfinite_samples(tmp: Path) -> Fault:
    """NaN, +inf and -inf in the EEG."""
    sender = LoopbackSender(markers=False)
    sender.corrupt = {300: np.nan, 301: np.inf, 302: -np.inf}
    sender.start()
    try:
        inlet, _ = _record_sender(sender, tmp / "nonfinite", 2.5, lambda: None)
    finally:
        sender.close()
    raw, _ = read_session(tmp / "nonfinite")
    x = raw.get_data(picks="C0")[0]
    logged = sum(e["n_values"] for e in _log(tmp / "nonfinite")
                 if e["kind"] == "nonfinite_samples")
    return Fault(
        "NaN / +inf / -inf samples", f"log.jsonl: nonfinite_samples ({logged} values)",
        f"kept as sent in the BrainVision copy ({int(np.isnan(x).sum())} NaN, "
        f"{int(np.isinf(x).sum())} inf); EDF copies write 0",
        inlet.n_received - raw.n_times, None, {"logged": logged},
    )


def clock_jump(tmp: Path) -> Fault:
    """The sender's clock jumps two hours ahead (samples keep coming)."""
    info = StreamInfo("jump", SFREQ, ("C3",))
    rec = Recorder(tmp / "jump", info)
    ts = np.r_[np.arange(500), 7200 * SFREQ + np.arange(500, 1000)] / SFREQ + 1000.0
    for a in range(0, 1000, 50):
        rec.push(np.ones((1, 50)), ts[a:a + 50])
    rec.close()
    raw, _ = read_session(tmp / "jump")
    notes = sorted(set(raw.annotations.description))
    return Fault(
        "sender clock jumps +2 h", "log: a 7200 s gap warning and 'spliced ... not filled'",
        f"{raw.n_times} samples (no 2 h of NaN), annotated {notes}", 1000 - raw.n_times, None,
    )


def huge_chunk(tmp: Path, n: int = 100_000) -> Fault:
    """10^5 samples pushed at once (400 s at 250 Hz), stamped as if just acquired."""
    tag = uuid.uuid4().hex[:8]
    info = StreamInfo(f"chunk-{tag}", SFREQ, ("C3", "C4"), source_id=f"chunk-{tag}")
    outlet = EEGOutlet(info, max_buffered=600)
    inlet = LSLInlet(name=info.name, timeout=3.0, max_buffer_s=600.0)
    folder = tmp / "chunk"

    def script():
        time.sleep(0.5)
        now = local_clock()
        outlet.push(np.tile(np.arange(n, dtype=np.float32) % 1000, (2, 1)),
                    now - (n - 1 - np.arange(n)) / SFREQ)

    thread = threading.Thread(target=script, daemon=True)
    thread.start()
    t0 = time.monotonic()
    try:
        record(inlet, folder, 4.0, progress=False)
    finally:
        thread.join()
        outlet.close()
    meta = json.loads((folder / "session.json").read_text())
    return Fault(
        f"one chunk of {n} samples", f"log: 'the reader is ... s behind' "
        f"({inlet.n_backlog_warnings} backlog polls)",
        f"{meta['n_samples']} of {n} samples", n - int(meta["n_samples"]),
        time.monotonic() - t0 - 4.0 if meta["n_samples"] == n else None,
        {"backlog_warnings": inlet.n_backlog_warnings},
    )


GARBAGE = ["", "\t\n\r", "x" * 10_000, "ünïcødé ✓", "a|b;c,d", "\x01\x02\x7f", "{\"json\": ["]


def garbage_markers(tmp: Path) -> Fault:
    """A marker stream of empty, huge, binary-looking and tab/newline strings."""
    tag = uuid.uuid4().hex[:8]
    info = StreamInfo(f"gm-eeg-{tag}", SFREQ, ("C3",), source_id=f"gm-eeg-{tag}")
    eeg, cues = EEGOutlet(info), MarkerOutlet(f"gm-cues-{tag}")
    stop = threading.Event()

    def send():
        t0, k = local_clock(), 0
        while not stop.is_set():
            due = int((local_clock() - t0) * SFREQ)
            if due > k:
                eeg.push(np.zeros((1, due - k), np.float32), t0 + np.arange(k, due) / SFREQ)
                k = due
            time.sleep(0.02)

    def script():
        time.sleep(1.0)
        for g in GARBAGE:
            cues.push(g)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        _, error = _record_lsl(info.name, cues.info.name, tmp / "garbage", 2.5, script)
    finally:
        stop.set()
        thread.join()
        eeg.close()
        cues.close()
    _, events = read_session(tmp / "garbage")
    return Fault(
        "marker stream of garbage strings", "nothing (each kept as an event)" if error is None
        else error, f"{len(events)} of {len(GARBAGE)} events, tabs/newlines turned to spaces",
        0, None, {"events": list(events["description"])},
    )


def disk_full(tmp: Path, size_kb: int = 256) -> Fault | None:
    """The disk fills up mid-recording (a small tmpfs); None where mounting is not allowed."""
    mount = tmp / "tmpfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        return None
    try:
        info = StreamInfo("full", SFREQ, tuple(f"E{i}" for i in range(8)))
        rec = Recorder(mount / "s", info)
        pushed, error, t = 0, None, 1000.0
        while error is None and pushed < 10**6:
            try:
                rec.push(np.ones((8, 25)), t + np.arange(25) / SFREQ)
                pushed += 25
                t += 0.1
            except RecordingError as err:
                error = str(err)
        rec.close()
        copy = tmp / "copied"
        subprocess.run(["cp", "-r", str(mount / "s"), str(copy)], check=True)
    finally:
        subprocess.run(["umount", str(mount)], check=False)
    recover_session(copy, force=True)  # force: this process wrote it and is still alive
    raw, _ = read_session(copy)
    # lost: the samples of the chunk being written when the disk filled, minus what of it
    # reached the file anyway
    return Fault(
        "disk full during a recording", f"one sentence: {error!r}",
        f"{raw.n_times} samples recovered with `yume record --recover` after moving the folder",
        max(pushed + 25 - raw.n_times, 0), None, {"error": error, "pushed": pushed + 25},
    )


def _yume(*args: str) -> list[str]:
    return [sys.executable, "-m", "gui.cli", *args]


def signal_record(tmp: Path, sig: int) -> Fault:
    """`yume record` from the simulated participant, killed with ``sig`` after 3 s."""
    out = tmp / f"sig{sig}"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(_yume("record", "--duration", "60", "--out", str(out),
                                  "--no-progress"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(out.glob("*/raw/timestamps.f64")):
        time.sleep(0.1)
    time.sleep(3.0)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    folder = next(out.iterdir())
    printed = str(folder) in stdout
    meta = json.loads((folder / "session.json").read_text())
    status = meta["status"]
    if status == "recording":
        recover_session(folder)
    raw, _ = read_session(folder)
    name = {signal.SIGKILL: "kill -9", signal.SIGTERM: "SIGTERM"}[sig]
    saw = (f"exit {proc.returncode}; folder printed {'at the start' if printed else 'never'}"
           + ("" if status == "recording" else f"; session {status}"))
    return Fault(
        f"{name} of `yume record` after 3 s", saw,
        f"{raw.n_times / raw.info['sfreq']:.1f} s of EEG"
        + (" after `yume record --recover`" if status == "recording" else " in BIDS"),
        0, None, {"status": status, "returncode": proc.returncode, "printed": printed},
    )


def signal_command(tmp: Path, sig: int, name: str, args: list[str], wait_for: str) -> Fault:
    """A long-running ``yume`` command killed with ``sig`` once ``wait_for`` (a glob) exists."""
    out = tmp / f"cmd{sig}"
    proc = subprocess.Popen(_yume(*args, "--out", str(out)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"),
                            cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not any(out.glob(wait_for)):
        time.sleep(0.1)
    time.sleep(2.0)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=90)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    sessions = [p.parent for p in out.rglob("session.json")]
    status = [json.loads(p.joinpath("session.json").read_text())["status"] for p in sessions]
    kind = {signal.SIGKILL: "kill -9", signal.SIGTERM: "SIGTERM"}[sig]
    last = (stderr.strip().splitlines() or [""])[-1][:120]
    return Fault(
        f"{kind} of `{name}`", f"exit {proc.returncode}; last line: {last!r}",
        f"{len(files)} files; recordings: {status or 'none'}", 0, None,
        {"returncode": proc.returncode, "files": files, "status": status},
    )


def signal_world_train(tmp: Path, sig: int = signal.SIGTERM) -> Fault:
    """`yume world train` (the tiny config, in ``tmp``) stopped mid-run, then run again."""
    root = Path(__file__).resolve().parents[1]
    cfg = json.loads((root / "world" / "configs" / "tiny.json").read_text())
    cfg.update(run_dir=str(tmp / "run"), max_steps=100_000, max_minutes=10)
    cfg["data"].update(train_dir=str(tmp / "train"), heldout_dir=str(tmp / "heldout"))
    path = tmp / "tiny.json"
    path.write_text(json.dumps(cfg))
    log = tmp / "run" / "log.jsonl"
    env = dict(os.environ, PYTHONUNBUFFERED="1")

    def steps() -> int:
        rows = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
        return max((r["step"] for r in rows if "loss" in r), default=0)

    proc = subprocess.Popen(_yume("world", "train", "--config", str(path)), env=env, cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and steps() < 20:
        time.sleep(0.2)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    done = steps()
    state = tmp / "run" / "last" / "state.json"
    saved = json.loads(state.read_text())["step"] if state.exists() else 0
    again = subprocess.run(_yume("world", "train", "--config", str(path), "--max-steps",
                                 str(saved + 2)), env=env, cwd=root, capture_output=True,
                           text=True, timeout=120)
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    resumed = again.returncode == 0 and any(r.get("resume") for r in rows)
    kind = {signal.SIGKILL: "kill -9", signal.SIGTERM: "SIGTERM"}[sig]
    return Fault(
        f"{kind} of `yume world train` after {done} steps", f"exit {proc.returncode}; "
        f"{'interrupted at step' if 'interrupted at step' in stderr else 'no message'}",
        f"checkpoint at step {saved} ({done - saved} training steps lost; it is written every "
        f"{cfg['save_every_minutes']:g} min and on Ctrl+C/SIGTERM); the next call "
        f"{'resumed from it' if resumed else 'started over'}",
        0, None, {"steps_done": done, "saved": saved, "resumed": resumed,
                  "returncode": proc.returncode},
    )


SCENARIOS = [outlet_restart, rate_change, channel_change, nonfinite_samples, clock_jump,
             huge_chunk, garbage_markers, disk_full,
             lambda tmp: signal_record(tmp, signal.SIGKILL),
             lambda tmp: signal_record(tmp, signal.SIGTERM)]
CALIBRATE = ["calibrate", "--headless", "--speed", "1", "--trials", "10"]
RUN = ["run", "--headless", "--task", "route"]  # the scripted route, not the mission
SCENARIOS += [
    lambda tmp, sig=sig, cmd=cmd, name=name, wait=wait: signal_command(tmp, sig, name, cmd, wait)
    for name, cmd, wait in (("yume calibrate --headless", CALIBRATE, "*/raw/timestamps.f64"),
                            ("yume run --headless", RUN, "*/session.jsonl"))
    for sig in (signal.SIGKILL, signal.SIGTERM)]
SCENARIOS += [lambda tmp, sig=sig: signal_world_train(tmp, sig)
              for sig in (signal.SIGKILL, signal.SIGTERM)]


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, scenario in enumerate(SCENARIOS):
            (Path(tmp) / str(i)).mkdir()
            row = scenario(Path(tmp) / str(i))
            if row is not None:
                rows.append(row)
                print(f"done: {row.fault}", file=sys.stderr)
    print(f"Fault injection, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores")
    print("| fault | what the user saw | what the files hold | samples lost that reached "
          "the machine | recovery (s) |")
    print("|---|---|---|---|---|")
    for r in rows:
        rec = "—" if r.recovery_s is None else f"{r.recovery_s:.2f}"
        row = f"| {r.fault} | {r.user_saw} | {r.files_hold} | {r.lost} | {rec} |"
        print(row.replace(tmp, "TMP"))


if __name__ == "__main__":
    main()
