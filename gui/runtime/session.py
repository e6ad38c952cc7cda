"""The session runtime: source -> decoder -> policy -> world -> log, in one object with no Qt.

:class:`SessionRuntime` is what a run *is*, whoever drives it: the headless ``yume run``, the
window (its timers call :meth:`SessionRuntime.tick` and its world thread steps
:attr:`SessionRuntime.world`), ``yume replay`` and the online tasks all go through it, so the
decisions, logs and latency figures of a session do not depend on how it was shown.

Per tick it

1. asks the online task (if any) what the participant means now and, when that changed, makes
   the simulated participant imagine it (or, without a decoder, steers with it);
2. decodes what is new in the ring buffer and runs the policy and the hybrid arbiter
   (:class:`gui.steering.Steering`): every decoded window is a row of ``decisions.tsv``, every
   command a ``command`` line in ``session.jsonl``, an event of the recording and a latency trace;
3. writes the tick (its LSL time and the buffer's sample count) to ``ticks.tsv``, which is what
   lets :func:`gui.runtime.replay.replay_session` reproduce the decisions exactly.

The world is stepped through :class:`TracedWorld`, a thin proxy of the engine that stamps the
world stages of each trace and writes ``route.tsv``. The session folder's files are listed in
:mod:`gui.runtime`.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pylsl import local_clock

from bci.acquisition import Acquisition
from bci.eventlog import EventLog
from bci.health import SourceWatch
from bci.quality_watch import QualityWatch
from control.actions import IDLE, Action
from gui.runtime.latency import LatencyTracer, format_table, plot_latency
from gui.runtime.tables import TsvTable
from gui.steering import Steering
from world.base import Chunk, WorldEngine

logger = logging.getLogger(__name__)

RECORDING_DIR = "recording"


def pose_angles(pose: np.ndarray) -> tuple[float, float]:
    """Yaw and pitch in degrees of a roll-free camera-to-world pose (``R_y(yaw) @ R_x(pitch)``)."""
    r = np.asarray(pose)[:3, :3]
    yaw = float(np.degrees(np.arctan2(r[0, 2], r[2, 2])))
    pitch = float(np.degrees(np.arcsin(np.clip(-r[1, 2], -1.0, 1.0))))
    return yaw, pitch


@dataclass
class TickResult:
    """What one tick decided: the action for the world and the commands that fired."""

    now: float
    action: Action
    origin: str
    commands: list[tuple[Action, str | None]]
    reason: str = ""
    policy: list = field(default_factory=list)  # the policy outputs (the window's panel shows them)


class TracedWorld:
    """The engine as the runtime's world: each :meth:`step` is stamped, logged and observed.

    Everything but :meth:`step` is forwarded to the engine, so a :class:`world.server.WorldServer`
    (the window's world thread) can run it like the engine itself.
    """

    def __init__(self, runtime: SessionRuntime, engine: WorldEngine) -> None:
        self._runtime = runtime
        self._engine = engine

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def step(self, action: Action) -> Chunk:
        return self._runtime._step_world(action)


class SessionRuntime:
    """One session: the loop and everything it writes (see the module docstring).

    Parameters
    ----------
    engine : WorldEngine
        A reset world engine (the runtime does not close it).
    folder : path
        The session folder (created).
    acquisition : Acquisition or None
        A started acquisition; its samples are recorded into ``recording/`` and decoded.
    steering : Steering or None
        Keyboard/decoder arbitration (keyboard only when None).
    task : object or None
        An online task (:mod:`gui.tasks`): it says what the participant intends and scores it.
    task_steers : bool
        Without a decoder, the task's intent steers the world (a headless run); False: the task
        only cues and scores, and a person steers (the window).
    record : bool
        Record the source into ``recording/`` (a BIDS session; needed for replay and for the
        report's signals).
    seed : int
        The scene seed (logged; the report draws its map).
    meta : dict or None
        More fields for ``run_started`` and the summary (decoder path, source name, options).
    report : bool
        Write ``report.html`` at :meth:`finish`.
    watch : bool
        Watch the source's health and signal quality (False for a replay's recorded feed).
    clock : callable
        The LSL clock (tests may pass another monotonic clock).
    """

    def __init__(self, engine: WorldEngine, folder: str | Path, *,
                 acquisition: Acquisition | None = None, steering: Steering | None = None,
                 task=None, record: bool = True, seed: int = 0, meta: dict | None = None,
                 report: bool = True, watch: bool = True, clock=local_clock,
                 task_steers: bool = True) -> None:
        self.engine = engine
        self.world = TracedWorld(self, engine)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.acquisition = acquisition
        self.steering = steering or Steering(acquisition)
        self.task = task
        self.task_steers = bool(task_steers)
        self.seed = int(seed)
        self.meta = dict(meta or {})
        self.record = bool(record)
        self.report = report
        self.clock = clock
        self.log = EventLog(self.folder / "session.jsonl")
        self.tracer = LatencyTracer()
        self._lock = threading.RLock()
        online = self.steering.online
        self.classes: tuple[str, ...] = tuple(online.policy.classes) if online else ()
        self.mapping = ({c: str(online.policy.mapping.action(c)) for c in self.classes}
                        if online else {})
        self.decisions = TsvTable(self.folder / "decisions.tsv", [
            "t", "tick", *(f"p_{c}" for c in self.classes), "state", "candidate", "command",
            "intended"])
        self.ticks = TsvTable(self.folder / "ticks.tsv",
                              ["tick", "now", "n_written", "action", "origin", "error"])
        self.route = TsvTable(self.folder / "route.tsv", [
            "frame", "step", "t", "world_time", "x", "y", "z", "yaw_deg", "pitch_deg", "action",
            "collided"])
        self.watches = ([SourceWatch(acquisition), QualityWatch(acquisition.buffer,
                                                                acquisition.info)]
                        if acquisition is not None and watch else [])
        self.recorder = None
        self._recorded_until = 0  # buffer sample count already handed to the recorder
        self._first_count: int | None = None
        self.intent: Action = IDLE
        self._intent_origin: str | None = None  # the first intent is always logged
        self.n_ticks = 0
        self.n_steps = 0
        self.n_frames = 0
        self.n_collisions = 0
        self.n_commands = 0
        self.generation_s = 0.0
        self._step_first_frame: dict[int, int] = {}  # frame index -> world step id
        self._last_action: Action | None = None
        self._t_start: float | None = None
        self.started = False
        self.finished = False
        self.summary: dict = {}

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Log ``run_started``, start recording and the task."""
        now = self.clock()
        self._t_start = now
        engine = self.engine
        buffer = self.acquisition.buffer if self.acquisition is not None else None
        policy = self.steering.online.policy if self.steering.online else None
        fields = dict(world=engine.name, seed=self.seed, frame_rate=engine.frame_rate,
                      resolution=[engine.height, engine.width],
                      source=self.acquisition.info.name if self.acquisition else None,
                      classes=list(self.classes), mapping=self.mapping,
                      threshold=policy.config.threshold if policy else None,
                      control_mode=policy.config.mode if policy else None,
                      buffer_capacity=buffer.capacity if buffer is not None else None,
                      task=getattr(self.task, "name", None))
        self.log.log("run_started", **{**self.meta, **fields})
        if self.acquisition is not None and self.record:
            self._start_recording()
        if self.task is not None:
            self.task.start(self.engine, now)
        self.started = True

    def _start_recording(self) -> None:
        from bci.recording import Recorder

        acq = self.acquisition
        self.recorder = Recorder(self.folder / RECORDING_DIR, acq.info, task="online",
                                 keep_raw=True, config={"session": str(self.folder)})
        with self._lock:
            # What the buffer holds already (the decoder's first window may reach back into
            # it), then every chunk as it arrives, without a sample twice or missing.
            acq.add_listener(self._on_samples)
            data, ts, count = acq.buffer.since(0)
            self._first_count = count - data.shape[1]
            if data.shape[1]:
                self.recorder.push(data, ts)
            self._recorded_until = count
        self.log.log("recording_started", folder=str(self.folder / RECORDING_DIR),
                     first_count=self._first_count)

    def _on_samples(self, data: np.ndarray, ts: np.ndarray) -> None:
        """Acquisition-thread listener: the buffer already holds this chunk."""
        with self._lock:
            if self.recorder is None or self.recorder.closed:
                return
            end = self.acquisition.buffer.n_written
            start = end - data.shape[1]
            skip = max(self._recorded_until - start, 0)
            if skip < data.shape[1]:
                self.recorder.push(data[:, skip:], ts[skip:])
                self._recorded_until = end

    # ------------------------------------------------------------------ control
    def set_intent(self, action: Action, origin: str = "route", now: float | None = None) -> None:
        """What the participant means now (a route step, a task, the keys playing the
        participant). With a decoder and a simulated participant this is what it imagines;
        without a decoder it is the command itself."""
        now = self.clock() if now is None else now
        with self._lock:
            if action == self.intent and origin == self._intent_origin:
                return
            self.intent, self._intent_origin = action, origin
            cls = self.steering.intent_for(action) if self.steering.online else None
            self.log.log("intent", t=now, tick=self.n_ticks, action=str(action), cls=cls,
                         origin=origin)
            if self.recorder is not None:
                self.recorder.add_event(now, 0.0, f"intent/{cls or action}")
            decoded = self.steering.online is not None
            if decoded and self.steering.keys_drive_intent:
                self.steering.keyboard(action, now)
            elif not decoded and (origin != "task" or self.task_steers):
                self._command(action, origin, now)
                self.steering.keyboard(action, now)

    def keyboard(self, action: Action, now: float | None = None) -> None:
        """The keys held now (the window's keyboard)."""
        now = self.clock() if now is None else now
        if self.steering.keys_drive_intent:
            self.set_intent(action, origin="keyboard", now=now)
            return
        with self._lock:
            self._command(action, "keyboard", now)
            self.steering.keyboard(action, now)

    def _command(self, action: Action, origin: str, now: float, *, cls: str | None = None,
                 sample: float | None = None, decoded: float | None = None) -> None:
        trace = self.tracer.issue(origin, str(action), now, sample=sample, decoded=decoded)
        self.n_commands += 1
        self.log.log("command", t=now, tick=self.n_ticks, id=trace.id, action=str(action),
                     cls=cls, origin=origin, intended=str(self.intent), t_window=sample)
        if self.recorder is not None:
            self.recorder.add_event(now, 0.0, f"command/{action}/{origin}")
        if self.task is not None:
            self.task.on_command(now, action, cls)

    def tick(self, now: float | None = None) -> TickResult:
        """One control tick (see the module docstring); never raises for a failing stream."""
        now = self.clock() if now is None else now
        with self._lock:
            if self.task is not None:
                self.set_intent(self.task.intent(now), origin="task", now=now)
            buffer = self.acquisition.buffer if self.acquisition is not None else None
            n_written = buffer.n_written if buffer is not None else 0
            tick = self.steering.tick(now)
            issued = self.clock()
            commands = []
            online = self.steering.online
            for out in tick.policy:
                command = "" if out.command is None else str(out.command)
                self.decisions.row(
                    t=out.timestamp, tick=self.n_ticks, state=out.state.value,
                    candidate=out.candidate, command=command, intended=str(self.intent),
                    **{f"p_{c}": float(p) for c, p in zip(self.classes, out.confidence,
                                                         strict=False)})
                if out.command is not None:
                    self._command(out.command, "decoder", issued, cls=out.candidate,
                                  sample=out.timestamp,
                                  decoded=online.decoded_at if online else None)
                    commands.append((out.command, out.candidate))
            error = self.acquisition.error if self.acquisition is not None else None
            self.ticks.row(tick=self.n_ticks, now=now, n_written=n_written,
                           action=str(tick.output.action), origin=tick.output.source,
                           error=error)
            self.n_ticks += 1
            if self.watches:
                for watch in self.watches:
                    for kind, fields in watch.poll(now):
                        self.log.log(kind, source=self.acquisition.info.name, **fields)
            return TickResult(now, tick.output.action, tick.output.source, commands,
                              tick.output.reason, list(tick.policy))

    # ------------------------------------------------------------------ world
    def _step_world(self, action: Action) -> Chunk:
        """Step the engine (from the caller's thread: the loop, or the world server's)."""
        with self._lock:
            step = self.n_steps
            self.n_steps += 1
            first_frame = self.n_frames
            self._step_first_frame[first_frame] = step
            t_req = self.clock()
            self.tracer.world_request(step, str(action), t_req)
            if action != self._last_action:
                self.log.log("action", action=str(action), index=action.index, step=step)
                self._last_action = action
        chunk = self.engine.step(action)  # outside the lock: the window's ticks go on meanwhile
        t_gen = self.clock()
        with self._lock:
            self.generation_s += t_gen - t_req
            self.tracer.frame_generated(step, t_gen)
            collided = np.asarray(chunk.info.get("collided_frames",
                                                 [chunk.info.get("collided", False)] *
                                                 len(chunk)), bool)
            self.n_collisions += int(bool(chunk.info.get("collided", False)))
            for i in range(len(chunk)):
                pose = chunk.poses[i]
                yaw, pitch = pose_angles(pose)
                x, y, z = (float(v) for v in pose[:3, 3])
                self.route.row(frame=self.n_frames, step=step, t=t_gen,
                               world_time=float(chunk.timestamps[i]), x=round(x, 4),
                               y=round(y, 4), z=round(z, 4), yaw_deg=round(yaw, 3),
                               pitch_deg=round(pitch, 3), action=str(action),
                               collided=int(collided[i]) if i < collided.size else 0)
                self.n_frames += 1
            if self.task is not None:
                for event in self.task.observe(t_gen, chunk, action, None) or []:
                    self.log.log("task_event", task=self.task.name, **event)
        return chunk

    def frame_shown(self, frame_index: int, t: float | None = None) -> list:
        """Frame ``frame_index`` (counted from the first generated) was shown at ``t``.

        Returns the traces (:class:`gui.runtime.latency.Trace`) this closed: the commands this
        frame is the first to show (the window's photodiode patch flips for them).
        """
        with self._lock:
            step = self._step_first_frame.pop(int(frame_index), None)
            if step is None:
                return []
            return self.tracer.frame_shown(step, self.clock() if t is None else t)

    def world_still(self, action: Action) -> None:
        """The world stands still with ``action`` without being stepped (a world server that
        does not step an idle world): logged as an ``action``, as a step with it would be."""
        with self._lock:
            if action != self._last_action and not self.finished:
                self.log.log("action", action=str(action), index=action.index, step=None,
                             still=True)
                self._last_action = action

    # ------------------------------------------------------------------ operator
    # The operator's controls are logged with the tick they came before, so that a replay
    # applies them where the session did (see gui.runtime.replay).
    def panic(self, origin: str = "key", now: float | None = None) -> None:
        """Latch the world still (the panic stop) until :meth:`release`."""
        now = self.clock() if now is None else now
        with self._lock:
            self.steering.hybrid.panic(f"panic stop ({origin})")
            self.log.log("panic", t=now, tick=self.n_ticks, origin=origin)

    def release(self, now: float | None = None) -> None:
        """Lift the panic stop."""
        now = self.clock() if now is None else now
        with self._lock:
            self.steering.hybrid.release()
            self.log.log("release", t=now, tick=self.n_ticks)

    def set_decoder_enabled(self, enabled: bool, now: float | None = None) -> None:
        """Start or stop decoder control (the operator's buttons)."""
        now = self.clock() if now is None else now
        with self._lock:
            self.steering.set_decoder_enabled(enabled, now)
            self.log.log("decoder_control", t=now, tick=self.n_ticks, enabled=bool(enabled))

    def set_mapping(self, mapping, now: float | None = None) -> None:
        """Change which class drives which action (an :class:`ActionMapping` or a dict)."""
        from control.mapping import ActionMapping

        now = self.clock() if now is None else now
        if not isinstance(mapping, ActionMapping):
            mapping = ActionMapping.from_dict(mapping)
        with self._lock:
            if self.steering.online is None:
                return
            self.steering.online.policy.mapping = mapping
            self.mapping = {c: str(mapping.action(c)) for c in self.classes}
            self.log.log("mapping_changed", t=now, tick=self.n_ticks, mapping=mapping.to_dict())

    def note(self, kind: str, **fields) -> None:
        """Log an entry of the caller's own (the window's) under the runtime's lock, so that
        it cannot interleave with what the world thread writes."""
        with self._lock:
            if not self.finished:
                self.log.log(kind, **fields)

    def step_shown(self, chunk_first_frame: int, t: float | None = None) -> None:
        """Alias of :meth:`frame_shown` for the first frame of a chunk."""
        self.frame_shown(chunk_first_frame, t)

    # ------------------------------------------------------------------ the end
    @property
    def done(self) -> bool:
        return self.task is not None and bool(self.task.done)

    def finish(self, interrupted: bool = False, **extra) -> dict:
        """Close everything and write ``latency.*``, ``task.*``, ``summary.json`` and the report.

        Safe to call twice; returns the summary.
        """
        if self.finished:
            return self.summary
        self.finished = True
        now = self.clock()
        with self._lock:
            rec = self.recorder
        bids = None
        if rec is not None:
            try:
                rec.close()
                bids = str(rec.bids_path) if rec.bids_path is not None else None
            except Exception as err:  # noqa: BLE001 - the rest of the session must still be saved
                logger.error("The recording could not be finished: %s", err)
                self.log.log("recording_failed", error=str(err))
        with self._lock:
            self.tracer.write(self.folder, world=self.engine.name)
            try:
                plot_latency(self.tracer, self.folder / "latency.png")
            except Exception as err:  # noqa: BLE001 - a plot never costs the data
                logger.warning("latency plot failed: %s", err)
            task_summary = None
            if self.task is not None:
                task_summary = {"task": self.task.name, **self.task.summary()}
                (self.folder / "task.json").write_text(
                    json.dumps(task_summary, indent=2, default=str), encoding="utf-8")
                _write_rows(self.folder / "task.tsv", self.task.rows())
            wall = now - (self._t_start if self._t_start is not None else now)
            self.summary = {
                "world": self.engine.name, "seed": self.seed, "frames": self.n_frames,
                "steps": self.n_steps, "ticks": self.n_ticks, "wall_seconds": round(wall, 3),
                "generation_fps": round(self.n_frames / max(self.generation_s, 1e-9), 1),
                "collisions": self.n_collisions,
                "resolution": [self.engine.height, self.engine.width],
                "classes": list(self.classes), "mapping": self.mapping,
                "commands": self.n_commands, "interrupted": bool(interrupted),
                "source": self.acquisition.info.name if self.acquisition else None,
                "sfreq": self.acquisition.info.sfreq if self.acquisition else None,
                "recording": bids, "latency": self.tracer.table(),
            }
            self.summary = {**self.meta, **self.summary, **extra}
            if task_summary:
                self.summary["task"] = task_summary
            self.log.log("run_finished", **{k: v for k, v in self.summary.items()
                                            if k != "latency"})
            for table in (self.decisions, self.ticks, self.route):
                table.close()
            self.log.close()
            (self.folder / "summary.json").write_text(
                json.dumps(self.summary, indent=2, default=str), encoding="utf-8")
        if self.report:
            self.write_report()
        return self.summary

    def write_report(self) -> Path | None:
        """``report.html`` from the session folder; a failure is logged, never raised."""
        try:
            from gui.session_report import write_report
        except ImportError:  # the report module is optional for the loop
            return None
        try:
            return write_report(self.folder)
        except Exception as err:  # noqa: BLE001 - the session's data is already safe
            logger.warning("The session report could not be written: %s", err)
            return None

    def latency_text(self) -> str:
        return format_table(self.tracer.table())


def _write_rows(path: Path, rows) -> None:
    import pandas as pd

    pd.DataFrame(list(rows or [])).to_csv(path, sep="\t", index=False)
