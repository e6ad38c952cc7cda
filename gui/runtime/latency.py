"""Per-stage latency of every command, from the sample that caused it to the frame that showed it.

Each command the session issues (a decoder detection, a key, a scripted route or task step) opens
a :class:`Trace` with an id. The session runtime stamps its stages on the LSL clock as they
happen::

    sample_acquired   the LSL time of the last sample of the decoded window (decoder only)
    window_decoded    the decoder returned that window's probabilities
    command_issued    the policy (or the keyboard, route or task) issued the command
    world_request     the world engine was asked for the first chunk with the new action
    frame_generated   that chunk came back from the engine (or the world server queued it)
    frame_shown       its first frame was painted (window) or handed out (headless)

:meth:`LatencyTracer.table` gives the median, p95 and p99 of each stage and of the whole path;
:meth:`LatencyTracer.write` saves ``latency.tsv`` (one row per trace) and ``latency.json``
(the table); :func:`plot_latency` draws the distributions.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

STAGES = ("sample_acquired", "window_decoded", "command_issued", "world_request",
          "frame_generated", "frame_shown")


@dataclass
class Trace:
    """One command's way through the loop; stage -> LSL time (absent: not applicable/not yet)."""

    id: int
    origin: str
    action: str
    stamps: dict[str, float] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return "frame_shown" in self.stamps


class LatencyTracer:
    """Collects :class:`Trace` objects and summarises them.

    The world side is matched by action: the first world request whose action is the traced
    command's action closes that trace's ``world_request`` stage, and so on down the stages.
    A command overridden before the world took it (a key pressed over the decoder) never gets a
    world stage and is left out of the stages it did not reach.

    Parameters
    ----------
    keep : int
        Traces kept in memory (the oldest are written and forgotten beyond this).
    """

    def __init__(self, keep: int = 100_000) -> None:
        self.keep = int(keep)
        self.traces: list[Trace] = []
        self._next_id = 1
        self._pending_request: list[Trace] = []  # issued, waiting for the world to be asked
        self._pending_frame: dict[int, list[Trace]] = {}  # world step id -> traces

    def issue(self, origin: str, action: str, t: float, *, sample: float | None = None,
              decoded: float | None = None) -> Trace:
        """A command was issued at ``t``; returns its trace (with a fresh id)."""
        trace = Trace(self._next_id, origin, str(action))
        self._next_id += 1
        if sample is not None:
            trace.stamps["sample_acquired"] = float(sample)
        if decoded is not None:
            trace.stamps["window_decoded"] = float(decoded)
        trace.stamps["command_issued"] = float(t)
        # A newer command supersedes older ones the world has not taken yet.
        self._pending_request = [p for p in self._pending_request if p.action == trace.action]
        self._pending_request.append(trace)
        self.traces.append(trace)
        if len(self.traces) > self.keep:
            del self.traces[: len(self.traces) - self.keep]
        return trace

    def world_request(self, step: int, action: str, t: float) -> None:
        """World step ``step`` was requested at ``t`` with ``action``."""
        hit = [p for p in self._pending_request if p.action == str(action)]
        if not hit:
            return
        self._pending_request = [p for p in self._pending_request if p.action != str(action)]
        for p in hit:
            p.stamps["world_request"] = float(t)
        self._pending_frame.setdefault(int(step), []).extend(hit)

    def frame_generated(self, step: int, t: float) -> None:
        for p in self._pending_frame.get(int(step), []):
            p.stamps["frame_generated"] = float(t)

    def frame_shown(self, step: int, t: float) -> list[Trace]:
        """The first frame of world step ``step`` was shown at ``t``; returns the traces this
        closed."""
        closed = self._pending_frame.pop(int(step), [])
        for p in closed:
            p.stamps.setdefault("frame_generated", float(t))
            p.stamps["frame_shown"] = float(t)
        return closed

    # ---------------------------------------------------------------- summaries
    def intervals(self) -> dict[str, np.ndarray]:
        """Milliseconds spent in each stage (and end to end), over traces that reached both ends.

        End to end runs from the earliest stage a trace has (the sample for decoder commands,
        the issue for keys and scripts) to ``frame_shown``.
        """
        out: dict[str, list[float]] = {}
        for a, b in zip(STAGES[:-1], STAGES[1:], strict=True):
            key = f"{a}→{b}"
            out[key] = [1e3 * (tr.stamps[b] - tr.stamps[a]) for tr in self.traces
                        if a in tr.stamps and b in tr.stamps]
        ends = []
        for tr in self.traces:
            if tr.complete:
                first = next(tr.stamps[s] for s in STAGES if s in tr.stamps)
                ends.append(1e3 * (tr.stamps["frame_shown"] - first))
        out["end_to_end"] = ends
        return {k: np.asarray(v, dtype=float) for k, v in out.items()}

    def table(self, by_origin: bool = True) -> list[dict]:
        """Rows ``{stage, n, median_ms, p95_ms, p99_ms}``, plus end to end per origin."""
        rows = [_row(stage, ms) for stage, ms in self.intervals().items()]
        if by_origin:
            for origin in sorted({t.origin for t in self.traces}):
                sub = LatencyTracer()
                sub.traces = [t for t in self.traces if t.origin == origin]
                rows.append(_row(f"end_to_end ({origin})", sub.intervals()["end_to_end"]))
        return rows

    def write(self, folder: str | Path, world: str = "") -> tuple[Path, Path]:
        """Write ``latency.tsv`` and ``latency.json`` into ``folder``."""
        folder = Path(folder)
        tsv = folder / "latency.tsv"
        with open(tsv, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, delimiter="\t", lineterminator="\n")
            w.writerow(["id", "origin", "action", *STAGES])
            for tr in self.traces:
                w.writerow([tr.id, tr.origin, tr.action,
                            *(repr(tr.stamps[s]) if s in tr.stamps else "" for s in STAGES)])
        js = folder / "latency.json"
        js.write_text(json.dumps({"world": world, "stages": self.table()}, indent=2),
                      encoding="utf-8")
        return tsv, js


def _row(stage: str, ms: np.ndarray) -> dict:
    if not ms.size:
        return {"stage": stage, "n": 0, "median_ms": None, "p95_ms": None, "p99_ms": None}
    q = np.percentile(ms, [50, 95, 99])
    return {"stage": stage, "n": int(ms.size), "median_ms": round(float(q[0]), 2),
            "p95_ms": round(float(q[1]), 2), "p99_ms": round(float(q[2]), 2)}


def format_table(rows: Sequence[dict]) -> str:
    """The latency table as aligned text (for the terminal and BENCHMARKS.md)."""
    def f(v):
        return "—" if v is None else f"{v:.1f}"

    width = max(len(r["stage"]) for r in rows)
    lines = [f"{'stage':<{width}}  {'n':>5}  {'median ms':>9}  {'p95 ms':>8}  {'p99 ms':>8}"]
    lines += [f"{r['stage']:<{width}}  {r['n']:>5}  {f(r['median_ms']):>9}  "
              f"{f(r['p95_ms']):>8}  {f(r['p99_ms']):>8}" for r in rows]
    return "\n".join(lines)


def plot_latency(tracer: LatencyTracer, path: str | Path) -> Path:
    """Box plots of each stage's milliseconds (log scale), n under each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {k: v for k, v in tracer.intervals().items() if v.size}
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
    if data:
        labels = [f"{k} (n={v.size})" for k, v in data.items()]
        ax.boxplot([np.maximum(v, 1e-3) for v in data.values()], whis=(1, 99),
                   orientation="horizontal", tick_labels=labels)
        ax.set_xscale("log")
    ax.set_xlabel("milliseconds (whiskers: p1-p99)")
    ax.set_title("Latency per stage")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
