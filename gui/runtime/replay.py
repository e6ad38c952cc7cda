"""Replay a recorded session: the same samples through the same (or another) decoder.

:func:`replay_session` reads a session folder written by :class:`gui.runtime.SessionRuntime`
(``ticks.tsv``, ``session.jsonl`` and the raw samples under ``recording/raw``) and runs a new
runtime over it: before each recorded tick the ring buffer is filled to exactly the sample
count the live decoder saw at that tick, the intents, key presses and operator controls (panic
stop and release, decoder start/stop, mapping changes) logged before that tick are applied, and
the tick runs with its recorded LSL time. With the same bundle the decoder
therefore sees the same windows, in the same batches, and the policy the same timestamps: the
decisions match bit for bit (``comparison.json`` says whether they did, and where they first
differ if not). The world re-renders the resulting actions, one step per tick as in a headless
run. Another bundle (``decoder=``) decodes the same data, to compare decoders on one session.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from bci.eventlog import read_event_log
from bci.ringbuffer import RingBuffer
from bci.session_files import (
    RAW_DIR,
    RAW_EEG,
    RAW_TIMES,
    SESSION_FILE,
    VOLTAGE_TYPES,
    info_from_dict,
    uv_factor,
)
from control.actions import parse_action
from gui.runtime.session import RECORDING_DIR, SessionRuntime

logger = logging.getLogger(__name__)


class ReplayError(ValueError):
    """A folder that cannot be replayed; the message says why and what to pass."""


@dataclass
class RecordedFeed:
    """What a replay's runtime reads instead of a live acquisition: a buffer it fills itself."""

    info: object
    buffer: RingBuffer
    data: np.ndarray  # (n_channels, n) float32, in the stream's units
    timestamps: np.ndarray
    first_count: int
    error: str | None = None
    source: object = None  # no simulated participant: intents are only logged
    _pushed: int = 0

    def fill_to(self, n_written: int) -> None:
        """Push recorded samples until the buffer has seen ``n_written`` samples in all."""
        if self.buffer.n_written == 0 and self.first_count > 0:
            self.buffer.advance(self.first_count)  # the samples from before the recording
        stop = min(int(n_written) - self.first_count, self.data.shape[1])
        if stop > self._pushed:
            self.buffer.push(self.data[:, self._pushed:stop], self.timestamps[self._pushed:stop])
            self._pushed = stop


@dataclass
class ReplayResult:
    """Where a replay wrote its outputs and how its decisions compare with the original."""

    folder: Path
    comparison: dict = field(default_factory=dict)
    runtime: SessionRuntime | None = None


def _session_parts(folder: Path) -> tuple[dict, dict, pd.DataFrame, list[dict]]:
    log_path = folder / "session.jsonl"
    ticks_path = folder / "ticks.tsv"
    if not log_path.exists() or not ticks_path.exists():
        raise ReplayError(
            f"{folder} is not a session folder written by `yume run` (no session.jsonl and "
            "ticks.tsv); pass the folder a run printed, e.g. runs/20261201-101500.")
    log = read_event_log(log_path)
    started = next((e for e in log if e["kind"] == "run_started"), None)
    if started is None:
        raise ReplayError(f"{log_path} has no run_started line; the session is not complete.")
    rec = next((e for e in log if e["kind"] == "recording_started"), None)
    if rec is None:
        raise ReplayError(
            f"The session in {folder} recorded no signals (it ran with --source none), so "
            "there is nothing to decode again.")
    ticks = pd.read_csv(ticks_path, sep="\t", keep_default_na=False)
    return started, rec, ticks, log


def load_feed(folder: Path, rec: dict, capacity: int) -> RecordedFeed:
    """The recorded samples (float32, the stream's own units) and the feed that plays them."""
    session = folder / RECORDING_DIR
    meta_path = session / SESSION_FILE
    raw = session / RAW_DIR / RAW_EEG
    if not meta_path.exists() or not raw.exists():
        raise ReplayError(
            f"{session} holds no raw samples ({RAW_DIR}/{RAW_EEG}); only sessions recorded by "
            "the session runtime (which keeps them) can be replayed.")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    info = info_from_dict(meta["stream"])
    n_ch = info.n_channels
    stored = np.fromfile(raw, dtype="<f4")
    ts = np.fromfile(session / RAW_DIR / RAW_TIMES, dtype="<f8")
    n = min(stored.size // n_ch, ts.size)
    # The recorder stores voltages in µV; undo exactly the gain it applied.
    factor = uv_factor(info.units)
    gain = np.array([factor if t in VOLTAGE_TYPES else 1.0 for t in info.ch_types])[:, None]
    data = stored[: n * n_ch].reshape(n, n_ch).T
    if np.any(gain != 1.0):
        data = (data.astype(np.float64) / gain).astype(np.float32)
    return RecordedFeed(info, RingBuffer(n_ch, capacity), np.ascontiguousarray(data), ts[:n],
                        int(rec.get("first_count") or 0))


# The operator's controls a replay applies where the session did.
OPERATOR_KINDS = ("panic", "release", "decoder_control", "mapping_changed")


def _apply(runtime: SessionRuntime, e: dict, same_decoder: bool) -> None:
    """Apply one logged intent, key press or operator control to the replay's runtime."""
    kind = e["kind"]
    if kind == "intent":
        runtime.set_intent(parse_action(e["action"]), origin=e.get("origin", "route"), now=e["t"])
    elif kind == "command":
        runtime.keyboard(parse_action(e["action"]), now=e["t"])
    elif kind == "panic":
        runtime.panic(e.get("origin", "key"), now=e["t"])
    elif kind == "release":
        runtime.release(now=e["t"])
    elif kind == "decoder_control":
        runtime.set_decoder_enabled(bool(e.get("enabled")), now=e["t"])
    elif kind == "mapping_changed" and same_decoder and isinstance(e.get("mapping"), dict):
        runtime.set_mapping(e["mapping"], now=e["t"])  # another bundle keeps its own classes


def _events_by_tick(log: list[dict]) -> dict[int, list[dict]]:
    """Intents, key presses and operator controls, by the tick they came before."""
    out: dict[int, list[dict]] = {}
    for e in log:
        if "tick" not in e:
            continue
        if e["kind"] == "intent":
            out.setdefault(int(e["tick"]), []).append(e)
        elif e["kind"] == "command" and e.get("origin") == "keyboard":
            out.setdefault(int(e["tick"]), []).append(e)
        elif e["kind"] in OPERATOR_KINDS:
            out.setdefault(int(e["tick"]), []).append(e)
    return out


def compare_decisions(original: Path, replay: Path) -> dict:
    """Row-by-row comparison of two ``decisions.tsv`` files (as written, bit for bit)."""
    a = pd.read_csv(original, sep="\t", dtype=str, keep_default_na=False)
    b = pd.read_csv(replay, sep="\t", dtype=str, keep_default_na=False)
    cols = [c for c in a.columns if c in b.columns and c not in ("tick", "intended")]
    n = min(len(a), len(b))
    same = (a[cols].iloc[:n].to_numpy() == b[cols].iloc[:n].to_numpy()).all(axis=1)
    first = int(np.argmin(same)) if n and not same.all() else (n if len(a) != len(b) else None)
    cmd_a = [c for c in a["command"] if c]
    cmd_b = [c for c in b["command"] if c]
    return {"windows_original": int(len(a)), "windows_replay": int(len(b)),
            "windows_identical": int(same.sum()),
            "commands_original": len(cmd_a), "commands_replay": len(cmd_b),
            "identical": bool(len(a) == len(b) and same.all()),
            "first_difference_row": first}


def replay_session(folder: str | Path, decoder: str | Path | None = None,
                   out: str | Path | None = None, engine=None, realtime: bool = False,
                   progress: bool = True, report: bool = True,
                   on_tick: Callable | None = None) -> ReplayResult:
    """Re-run the session in ``folder`` (see the module docstring).

    Parameters
    ----------
    folder : path
        A session folder written by ``yume run`` (headless or window).
    decoder : path or None
        A decoder bundle to use instead of the session's own.
    out : path or None
        Where the replay writes (default: ``folder/replays/<time>``).
    engine : WorldEngine or None
        The world to re-render into (default: a new engine like the session's, reset to its
        seed).
    realtime : bool
        Wait between ticks as the session did; False runs as fast as possible.
    progress : bool
        Show a progress bar.
    report : bool
        Write the replay's report.
    on_tick : callable or None
        ``on_tick(index, now, tick, chunk)`` after each replayed tick: its row in ``ticks.tsv``,
        its recorded LSL time, the :class:`~gui.runtime.session.TickResult` and the world's
        :class:`~world.base.Chunk` (what ``yume replay --window`` shows). It runs in the
        replay's thread; an exception it raises stops the replay (the runtime is finished
        all the same) and propagates.

    Returns
    -------
    ReplayResult
    """
    from control.online import DecoderError
    from control.policy import PolicyConfig
    from gui.steering import Steering, decoder_control

    folder = Path(folder)
    started, rec, ticks, log = _session_parts(folder)
    bundle = Path(decoder) if decoder is not None else (
        Path(started["decoder"]) if started.get("decoder") else None)
    if bundle is None:
        raise ReplayError(
            f"The session in {folder} ran without a decoder; give one to decode its signals "
            "with --decoder BUNDLE.")
    if not bundle.exists():
        raise ReplayError(f"The decoder bundle {bundle} does not exist; pass one with --decoder.")
    feed = load_feed(folder, rec, int(started.get("buffer_capacity") or 7500))
    config = PolicyConfig(mode=started.get("control_mode") or "direct")
    adapt = started.get("adapt")
    try:
        online = decoder_control(bundle, feed, config, publish=False, adapt=adapt)
    except DecoderError:
        if decoder is None or adapt is None:
            raise
        # Another bundle without a re-centring step: it decodes the data as it was trained.
        logger.warning("%s cannot re-centre online; replaying it without adaptation", bundle)
        adapt = None
        online = decoder_control(bundle, feed, config, publish=False)
    steering = Steering(feed, online)
    own_engine = engine is None
    if own_engine:
        from world.registry import make_world

        h, w = started.get("resolution") or (256, 256)
        engine = make_world(started["world"], height=int(h), width=int(w),
                            checkpoint=started.get("checkpoint"))
        engine.reset(seed=int(started.get("seed", 0)))
    dest = Path(out) if out is not None else folder / "replays" / time.strftime("%Y%m%d-%H%M%S")
    runtime = SessionRuntime(engine, dest, acquisition=feed, steering=steering, record=False,
                             seed=int(started.get("seed", 0)), watch=False, report=False,
                             meta={"replay_of": str(folder), "decoder": str(bundle),
                                   "same_decoder": decoder is None,
                                   "control_mode": config.mode, "adapt": adapt})
    events = _events_by_tick(log)
    bar = tqdm(total=len(ticks), desc="replay", unit="tick", disable=not progress)
    runtime.start()
    t0_wall, t0 = time.perf_counter(), None
    try:
        for row in ticks.itertuples(index=False):
            k, now = int(row.tick), float(row.now)
            for e in events.get(k, []):
                _apply(runtime, e, decoder is None)
            feed.error = row.error or None
            feed.fill_to(int(row.n_written))
            if realtime:
                t0 = now if t0 is None else t0
                time.sleep(max(0.0, (now - t0) - (time.perf_counter() - t0_wall)))
            tick = runtime.tick(now=now)
            first = runtime.n_frames
            chunk = runtime.world.step(tick.action)
            runtime.frame_shown(first, now)
            if on_tick is not None:
                on_tick(k, now, tick, chunk)
            bar.update()
    finally:
        bar.close()
        summary = runtime.finish()
        if own_engine:
            engine.close()
    comparison = compare_decisions(folder / "decisions.tsv", dest / "decisions.tsv")
    replayed = pd.read_csv(dest / "ticks.tsv", sep="\t", keep_default_na=False)
    comparison["actions_identical"] = bool(
        len(replayed) == len(ticks) and (replayed["action"] == ticks["action"]).all())
    comparison["ticks"] = int(len(ticks))
    comparison["decoder"] = str(bundle)
    comparison["same_decoder"] = decoder is None
    comparison.update(_agreement(folder / "decisions.tsv", "original"))
    comparison.update(_agreement(dest / "decisions.tsv", "replay"))
    (dest / "comparison.json").write_text(json.dumps(comparison, indent=2), encoding="utf-8")
    summary["comparison"] = comparison
    if report:
        runtime.write_report()
    return ReplayResult(dest, comparison, runtime)


def _agreement(decisions: Path, label: str) -> dict:
    """How many of a decoder's commands were what the participant intended."""
    d = pd.read_csv(decisions, sep="\t", dtype=str, keep_default_na=False)
    fired = d[d["command"] != ""]
    right = int((fired["command"] == fired["intended"]).sum())
    return {f"{label}_commands_as_intended": right,
            f"{label}_commands_other": int(len(fired) - right)}
