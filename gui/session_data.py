"""Read a session folder (see the session-folder contract) into one object for the report.

Every file is optional: a missing one reads as ``None``, and one that exists but cannot be
read is noted in :attr:`SessionData.problems` instead of stopping the report. Intents and
commands are taken from ``session.jsonl`` and, where the log does not hold them, from
``decisions.tsv``; actions are compared in their canonical key spelling
(:func:`control.actions.format_action`), so ``"W"`` and ``"W ·"`` are the same command.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bci.eventlog import read_event_log
from control.actions import ActionError, format_action, parse_action

logger = logging.getLogger(__name__)

LOG_FILE = "session.jsonl"
SUMMARY_FILE = "summary.json"
DECISIONS_FILE = "decisions.tsv"
LATENCY_TSV = "latency.tsv"
LATENCY_JSON = "latency.json"
TICKS_FILE = "ticks.tsv"
ROUTE_FILE = "route.tsv"
TASK_JSON = "task.json"
TASK_TSV = "task.tsv"
RECORDING_DIR = "recording"
SESSION_FILES = (LOG_FILE, SUMMARY_FILE, DECISIONS_FILE, LATENCY_TSV, LATENCY_JSON, TICKS_FILE,
                 ROUTE_FILE, TASK_JSON, TASK_TSV, RECORDING_DIR)
STAGES = ("sample_acquired", "window_decoded", "command_issued", "world_request",
          "frame_generated", "frame_shown")
# Columns of the contract that hold text (action strings, states) and numbers; a column of
# any other name (task.tsv is the task's own) is numeric when every value in it is a number.
_TEXT_COLUMNS = {"state", "candidate", "command", "intended", "action", "origin"}
_NUMERIC_COLUMNS = {"t", "tick", "now", "n_written", "frame", "world_time", "x", "y", "z",
                    "yaw_deg", "pitch_deg", "collided", "id", *STAGES}


class SessionReportError(ValueError):
    """A folder that holds no session to report on; the message says what to pass instead."""


def canonical_action(text) -> str | None:
    """The canonical key string of an action (``"W ←"``), None for an empty or missing one.

    A string that is not an action of the vocabulary is kept as it is, stripped: the report
    shows what was logged rather than dropping it.
    """
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return None
    text = str(text).strip()
    if not text:
        return None
    try:
        return format_action(parse_action(text))
    except (ActionError, ValueError):
        return text


@dataclass
class Command:
    """One command issued during the run.

    Attributes
    ----------
    t : float
        LSL time it was issued.
    t_signal : float
        LSL time of the last sample of the window it was decoded from (``t`` for commands that
        came from no window, e.g. the keyboard).
    action : str
        Canonical action string.
    label : str
        Decoder class it belongs to (or the action string when no class maps to it).
    intended : str or None
        What the participant meant at that moment; None when unknown.
    intended_label : str or None
        The class of ``intended`` (or its action string).
    origin : str
        Where it came from: ``decoder``, ``keyboard``, ``route``, ``task`` ('' if not logged).
    """

    t: float
    t_signal: float
    action: str
    label: str
    intended: str | None
    intended_label: str | None
    origin: str = ""

    @property
    def correct(self) -> bool | None:
        """Whether the command is what was intended (None when the intent is unknown)."""
        return None if self.intended is None else self.action == self.intended


@dataclass
class IntentBlock:
    """A stretch of time during which one action was intended."""

    start: float
    end: float
    action: str
    label: str


@dataclass
class SessionData:
    """Everything a session folder holds, read once; None for each file that is absent."""

    folder: Path
    log: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    started: dict = field(default_factory=dict)
    finished: dict = field(default_factory=dict)
    decisions: pd.DataFrame | None = None
    latency: pd.DataFrame | None = None
    latency_json: dict | None = None
    route: pd.DataFrame | None = None
    task_json: dict | None = None
    task_rows: pd.DataFrame | None = None
    problems: dict[str, str] = field(default_factory=dict)
    t0: float = 0.0
    t_end: float = 0.0

    # -- basic facts -----------------------------------------------------------------------

    def get(self, key: str, default=None):
        """A run fact from ``run_started``, else ``summary.json``, else ``run_finished``."""
        for source in (self.started, self.summary, self.finished.get("summary") or {},
                       self.finished):
            if isinstance(source, dict) and source.get(key) is not None:
                return source[key]
        return default

    def has(self, name: str) -> bool:
        return (self.folder / name).exists()

    @property
    def mapping(self) -> dict[str, str]:
        """Decoder class -> canonical action string ({} without a decoder)."""
        raw = self.get("mapping") or {}
        if not isinstance(raw, dict):
            return {}
        return {str(k): canonical_action(v) or "·" for k, v in raw.items()}

    @property
    def classes(self) -> list[str]:
        """Decoder classes in bundle order (from the run, else the ``p_`` columns)."""
        classes = self.get("classes")
        if isinstance(classes, (list, tuple)) and classes:
            return [str(c) for c in classes]
        if self.decisions is not None:
            return [c[2:] for c in self.decisions.columns if c.startswith("p_")]
        return list(self.mapping)

    def kinds(self, *kinds: str) -> list[dict]:
        """Log records of the given kinds, in file order."""
        return [r for r in self.log if r.get("kind") in kinds]

    def rel(self, t) -> np.ndarray:
        """LSL times as seconds from the start of the run."""
        return np.asarray(t, dtype=float) - self.t0

    def label_of(self, action: str | None, cls: str | None = None) -> str | None:
        """The row an action belongs to: its decoder class when one maps to it, else itself."""
        if cls is not None and str(cls) in self.classes:
            return str(cls)
        if action is None:
            return None
        for name, mapped in self.mapping.items():
            if mapped == action:
                return name
        return action

    # -- intents and commands --------------------------------------------------------------

    def intent_blocks(self) -> list[IntentBlock]:
        """What was intended when: from ``intent`` log records, else ``decisions.tsv``."""
        changes: list[tuple[float, str | None, str | None]] = []
        for r in self.kinds("intent"):
            if isinstance(r.get("t"), (int, float)):
                changes.append((float(r["t"]), canonical_action(r.get("action")), r.get("cls")))
        if not changes and self.decisions is not None and "intended" in self.decisions:
            last = object()
            for t, intended in zip(self.decisions["t"], self.decisions["intended"], strict=True):
                intended = canonical_action(intended)
                if intended != last and np.isfinite(t):
                    changes.append((float(t), intended, None))
                    last = intended
        changes.sort(key=lambda c: c[0])
        blocks = []
        for i, (t, action, cls) in enumerate(changes):
            end = changes[i + 1][0] if i + 1 < len(changes) else max(self.t_end, t)
            if action is not None and end > t:
                blocks.append(IntentBlock(t, end, action, self.label_of(action, cls)))
        return blocks

    def intended_at(self, t: float, blocks: list[IntentBlock]) -> str | None:
        for b in blocks:
            if b.start <= t < b.end:
                return b.action
        return None

    def commands(self) -> list[Command]:
        """Every command, from ``command`` log records, else from ``decisions.tsv``."""
        blocks = self.intent_blocks()
        found: list[tuple[float, float, str, str | None, object, str]] = []
        for r in self.kinds("command"):
            action = canonical_action(r.get("action"))
            if action is None or not isinstance(r.get("t"), (int, float)):
                continue
            t_win = r.get("t_window")
            t_signal = float(t_win) if isinstance(t_win, (int, float)) else float(r["t"])
            found.append((float(r["t"]), t_signal, action, r.get("cls"),
                          r["intended"] if "intended" in r else _UNSET,
                          str(r.get("origin") or "")))
        if not found and self.decisions is not None and "command" in self.decisions:
            d = self.decisions
            for i in np.flatnonzero(d["command"].map(canonical_action).notna().to_numpy()):
                row = d.iloc[i]
                found.append((float(row["t"]), float(row["t"]),
                              canonical_action(row["command"]),
                              row.get("candidate") or None,
                              row["intended"] if "intended" in d else _UNSET, "decoder"))
        out = []
        for t, t_signal, action, cls, intended, origin in sorted(found, key=lambda c: c[0]):
            if not blocks or t < blocks[0].start:
                # No intent was set yet: the runtime logs its default (idle) as "intended",
                # which says nothing about what the person meant.
                intended = None
            elif intended is _UNSET or canonical_action(intended) is None:
                intended = self.intended_at(t, blocks)
            else:
                intended = canonical_action(intended)
            out.append(Command(t, t_signal, action, self.label_of(action, cls), intended,
                               self.label_of(intended), origin))
        return out

    def rows(self, blocks: list[IntentBlock], commands: list[Command]) -> list[str]:
        """Row labels for plots: the decoder classes, then other labels as they appear."""
        rows = list(self.classes)
        for label in [b.label for b in blocks] + [c.label for c in commands]:
            if label not in rows:
                rows.append(label)
        return rows


_UNSET = object()


def _read_json(path: Path, problems: dict[str, str]) -> dict | None:
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        problems[path.name] = f"could not be read ({err})"
        return None
    if not isinstance(value, dict):
        problems[path.name] = "does not hold a JSON object"
        return None
    return value


def read_tsv(path: Path, problems: dict[str, str] | None = None) -> pd.DataFrame | None:
    """A TSV of the session as a DataFrame: text columns as str ('' when empty), others float.

    A half-written last line (the run was killed) is skipped; an unreadable file gives None
    and a note in ``problems``.
    """
    if not path.exists():
        return None
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False,
                         on_bad_lines="skip", encoding="utf-8")
    except (OSError, ValueError, pd.errors.ParserError) as err:
        if problems is not None:
            problems[path.name] = f"could not be read ({err})"
        return None
    for col in df.columns:
        if col in _TEXT_COLUMNS:
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        if (col in _NUMERIC_COLUMNS or col.startswith("p_")
                or values.notna().sum() == (df[col].str.strip() != "").sum()):
            df[col] = values
    return df


def load_session(folder) -> SessionData:
    """Read every file of a session folder.

    Raises
    ------
    SessionReportError
        When ``folder`` is not a folder or holds neither ``session.jsonl`` nor
        ``summary.json``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SessionReportError(
            f"{folder} is not a folder; pass the session folder that `yume run` printed.")
    if not (folder / LOG_FILE).exists() and not (folder / SUMMARY_FILE).exists():
        raise SessionReportError(
            f"{folder} is not a Yume session folder (it holds neither {LOG_FILE} nor "
            f"{SUMMARY_FILE}); pass the folder that `yume run` printed.")
    s = SessionData(folder=folder)
    if (folder / LOG_FILE).exists():
        try:
            s.log = [r for r in read_event_log(folder / LOG_FILE) if isinstance(r, dict)]
        except OSError as err:
            s.problems[LOG_FILE] = f"could not be read ({err})"
    s.summary = _read_json(folder / SUMMARY_FILE, s.problems) or {}
    started = s.kinds("run_started")
    s.started = started[0] if started else {}
    finished = s.kinds("run_finished")
    s.finished = finished[-1] if finished else {}
    s.decisions = read_tsv(folder / DECISIONS_FILE, s.problems)
    s.latency = read_tsv(folder / LATENCY_TSV, s.problems)
    s.latency_json = _read_json(folder / LATENCY_JSON, s.problems)
    s.route = read_tsv(folder / ROUTE_FILE, s.problems)
    s.task_json = _read_json(folder / TASK_JSON, s.problems)
    s.task_rows = read_tsv(folder / TASK_TSV, s.problems)
    if s.route is None:
        s.route = _route_from_frames(s.log)
    times = [float(r["t"]) for r in s.log if isinstance(r.get("t"), (int, float))]
    for df in (s.decisions, s.route):
        if df is not None and "t" in df and df["t"].notna().any():
            times += [float(df["t"].min()), float(df["t"].max())]
    if isinstance(s.started.get("t"), (int, float)):
        s.t0 = float(s.started["t"])
    elif times:
        s.t0 = min(times)
    s.t_end = max(times) if times else s.t0
    return s


def _route_from_frames(log: list[dict]) -> pd.DataFrame | None:
    """Earlier sessions logged a ``frame`` record per frame instead of writing route.tsv."""
    rows = [r for r in log if r.get("kind") == "frame" and isinstance(r.get("position"), list)
            and len(r["position"]) == 3]
    if not rows:
        return None
    return pd.DataFrame({
        "frame": [r.get("index", i) for i, r in enumerate(rows)],
        "t": [float(r["t"]) for r in rows],
        "world_time": [r.get("world_time", np.nan) for r in rows],
        "x": [float(r["position"][0]) for r in rows],
        "y": [float(r["position"][1]) for r in rows],
        "z": [float(r["position"][2]) for r in rows],
        "action": [str(r.get("action", "")) for r in rows],
        "collided": [float(bool(r.get("collided", False))) for r in rows],
    })
