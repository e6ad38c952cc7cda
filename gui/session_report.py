"""The session report: one self-contained HTML page per session, and its data beside it.

:func:`write_report` reads a session folder (``session.jsonl``, ``decisions.tsv``,
``latency.tsv``/``.json``, ``route.tsv``, ``task.json``/``.tsv``, ``summary.json`` and the
``recording/``) and writes ``report.html`` with the figures embedded as base64 PNG, plus a
``report/`` folder holding the same figures as PNG files and the tables they were drawn from
(TSV and JSON, for scripts). Sections:

* the run: world, seed, source, decoder, classes and mapping, duration, frames, interruptions;
* intended beside issued commands: a timeline, counts, agreement against a chance baseline;
* decoder probabilities over time, with the threshold and the commands;
* the EEG around commands: 8-30 Hz band power per command class over the motor channels, and
  raw traces of a few commands;
* the route over a top-down map of the sandbox city (or the bare trajectory for other worlds);
* latency per stage (table and cumulative distributions);
* gaps, reconnects and signal-quality events; the online task's results.

Every section is optional: one whose files are missing says "not recorded in this session",
and one that fails to draw says why, so the report comes out of every run (the session
runtime calls :func:`write_report` at the end of each).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gui import session_plots as plots
from gui.session_data import (
    DECISIONS_FILE,
    LATENCY_JSON,
    LATENCY_TSV,
    LOG_FILE,
    RECORDING_DIR,
    ROUTE_FILE,
    SESSION_FILES,
    STAGES,
    SUMMARY_FILE,
    TASK_JSON,
    TASK_TSV,
    Command,
    SessionData,
    SessionReportError,
    canonical_action,
    load_session,
)

logger = logging.getLogger(__name__)

__all__ = ["SessionReportError", "write_report"]

REPORT_HTML = "report.html"
REPORT_DIR = "report"
MISSING = "Not recorded in this session"
MAX_TABLE_ROWS = 200
# Log kinds shown in the events table: acquisition health and signal quality.
HEALTH_KINDS = ("gap", "source_lost", "source_back", "source_failed", "source_ended",
                "run_interrupted", "quality", "signal_quality", "impedance",
                "nonfinite_samples", "artifact_index")
_CSS = """body{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;
font-size:13px;text-align:left;vertical-align:top}th{background:#f3f3f3}
img{max-width:100%}.missing{color:#777;font-style:italic}.failed{color:#b00}
.note{color:#555;font-size:13px}section{margin-bottom:2.2em}"""


@dataclass
class Section:
    """One part of the page: its HTML, whether it had data, and what it wrote."""

    key: str
    title: str
    parts: list[str] = field(default_factory=list)
    status: str = "ok"  # ok, missing, failed
    files: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)

    def add(self, text: str) -> None:
        self.parts.append(text)

    def missing(self, why: str) -> None:
        self.status = "missing"
        self.add(f"<p class='missing'>{MISSING} ({html.escape(why)}).</p>")

    def html(self) -> str:
        return (f"<section id='{self.key}'><h2>{html.escape(self.title)}</h2>\n"
                + "\n".join(self.parts) + "</section>")


class _Output:
    """Writes figures and tables into ``report/`` and gives the HTML that shows them."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder / REPORT_DIR
        self.dir.mkdir(exist_ok=True)
        self.files: list[str] = []

    def figure(self, section: Section, fig, name: str, caption: str) -> None:
        data = plots.png_bytes(fig)
        (self.dir / f"{name}.png").write_bytes(data)
        self._wrote(section, f"{name}.png")
        b64 = base64.b64encode(data).decode("ascii")
        section.add(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,"
                    f"{b64}'><figcaption class='note'>{html.escape(caption)}</figcaption>"
                    "</figure>")

    def table(self, section: Section, df: pd.DataFrame, name: str) -> None:
        df.to_csv(self.dir / f"{name}.tsv", sep="\t", index=False, float_format="%.6g")
        self._wrote(section, f"{name}.tsv")

    def json(self, section: Section, obj, name: str) -> None:
        (self.dir / f"{name}.json").write_text(json.dumps(obj, indent=2, default=_jsonable),
                                               encoding="utf-8")
        self._wrote(section, f"{name}.json")

    def _wrote(self, section: Section, name: str) -> None:
        section.files.append(f"{REPORT_DIR}/{name}")
        self.files.append(name)


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=_jsonable)
    return str(value)


def _kv_table(pairs) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
                   for k, v in pairs)
    return f"<table>{rows}</table>"


def _df_table(df: pd.DataFrame, max_rows: int = MAX_TABLE_ROWS) -> str:
    note = ""
    if len(df) > max_rows:
        note = (f"<p class='note'>First {max_rows} of {len(df)} rows; all are in the TSV "
                "file.</p>")
        df = df.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    return f"<table><tr>{head}</tr>{body}</table>{note}"


def _find_number(d: dict, key: str, depth: int = 2) -> float | None:
    """``d[key]`` or the same key in a nested dict (``run_started["policy"]["threshold"]``)."""
    if not isinstance(d, dict):
        return None
    value = d.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if depth:
        for v in d.values():
            found = _find_number(v, key, depth - 1) if isinstance(v, dict) else None
            if found is not None:
                return found
    return None


# ------------------------------------------------------------------------------ sections

def _header(s: SessionData, out: _Output, sec: Section) -> None:
    if not s.log and not s.summary:
        sec.missing(f"{LOG_FILE} and {SUMMARY_FILE} are empty")
        return
    gaps = s.kinds("gap")
    lost = s.kinds("source_lost", "source_failed")
    interrupted = bool(s.get("interrupted")) or bool(s.kinds("run_interrupted"))
    duration = s.get("wall_seconds")
    if duration is None and s.t_end > s.t0:
        duration = round(s.t_end - s.t0, 3)
    frames = s.get("frames")
    if frames is None and s.route is not None:
        frames = len(s.route)
    mapping = s.mapping
    facts = {
        "world": s.get("world"), "seed": s.get("seed"), "source": s.get("source"),
        "decoder": s.get("decoder") or "none (keyboard or route)",
        "classes": s.classes or None,
        "mapping": ", ".join(f"{k} → {v}" for k, v in mapping.items()) or None,
        "task": s.get("task"), "duration_s": duration, "frames": frames,
        "generation_fps": s.get("generation_fps"), "collisions": s.get("collisions"),
        "resolution": s.get("resolution"), "sfreq": s.get("sfreq"),
        "interrupted": "yes (stopped early)" if interrupted else "no",
        "source_losses": len(lost),
        "gaps": f"{len(gaps)} ({sum(float(g.get('duration_s') or 0) for g in gaps):.2f} s)",
        "finished": "yes" if s.finished else "no run_finished record (the run was killed?)",
    }
    sec.add(_kv_table(facts.items()))
    if s.problems:
        sec.add("<p class='failed'>Unreadable files: " + "; ".join(
            html.escape(f"{k}: {v}") for k, v in s.problems.items()) + "</p>")
    sec.data = {**facts, "mapping": mapping}


def _agreement(commands: list[Command]) -> dict:
    """Counts of issued commands per intended class and agreement with a chance baseline."""
    known = [c for c in commands if c.correct is not None]
    out: dict = {"commands": len(commands), "with_known_intent": len(known)}
    if not known:
        return out
    right = sum(bool(c.correct) for c in known)
    intended = pd.Series([c.intended for c in known])
    issued = pd.Series([c.action for c in known])
    # Chance: the agreement of the same commands shuffled against the same intents (the
    # expected agreement of Cohen's kappa).
    p_int = intended.value_counts(normalize=True)
    p_cmd = issued.value_counts(normalize=True)
    chance = float(sum(p_int.get(a, 0.0) * p for a, p in p_cmd.items()))
    agree = right / len(known)
    out.update(right=right, wrong=len(known) - right, agreement=round(agree, 4),
               chance_agreement=round(chance, 4),
               kappa=round((agree - chance) / (1 - chance), 4) if chance < 1 else None)
    return out


def _window_agreement(s: SessionData) -> dict | None:
    """Share of decoded windows whose most probable class is the intended one."""
    d = s.decisions
    pcols = [c for c in d.columns if c.startswith("p_")] if d is not None else []
    if not pcols or "intended" not in d:
        return None
    intended = d["intended"].map(canonical_action).map(
        lambda a: s.label_of(a) if a is not None else None)
    classes = [c[2:] for c in pcols]
    ok = intended.isin(classes) & d[pcols].notna().all(axis=1)
    if not ok.any():
        return None
    best = np.asarray(classes)[np.argmax(d.loc[ok, pcols].to_numpy(), axis=1)]
    truth = intended[ok].to_numpy()
    return {"windows": int(ok.sum()), "agreement": round(float(np.mean(best == truth)), 4),
            "majority_baseline": round(float(pd.Series(truth).value_counts(normalize=True)
                                              .iloc[0]), 4)}


def _commands(s: SessionData, out: _Output, sec: Section) -> None:
    blocks, commands = s.intent_blocks(), s.commands()
    if not blocks and not commands:
        sec.missing(f"no intent or command records in {LOG_FILE} and no {DECISIONS_FILE}")
        return
    rows = s.rows(blocks, commands)
    out.figure(sec, plots.fig_timeline(rows, blocks, commands, s.t0, s.t_end), "timeline",
               "Each row is a decoder class (or an action no class maps to). Shaded: what the "
               "participant or task intended; ▼: each decoded command, ■: each keyboard, "
               "route or task command; green when it matches the intent, red when not, grey "
               "when the intent is unknown.")
    table = pd.DataFrame([{
        "t_s": round(c.t - s.t0, 4), "t_window_s": round(c.t_signal - s.t0, 4),
        "origin": c.origin, "action": c.action, "class": c.label, "intended": c.intended or "",
        "intended_class": c.intended_label or "",
        "correct": "" if c.correct is None else int(c.correct)} for c in commands],
        columns=["t_s", "t_window_s", "origin", "action", "class", "intended",
                 "intended_class", "correct"])
    out.table(sec, table, "commands")
    # Only decoded commands can disagree with the intent in an interesting way: route, task
    # and keyboard commands are the intent itself (without a decoder) or a manual override.
    decoded = [c for c in commands if c.origin == "decoder"]
    undecoded = any(c.origin not in ("decoder", "") for c in commands)
    scored = decoded if decoded or undecoded else commands
    summary = _agreement(scored)
    summary["scored_origin"] = "decoder" if decoded else ("none" if undecoded else "all")
    minutes = max(s.t_end - s.t0, 1e-9) / 60
    summary["commands_per_minute"] = round(len(commands) / minutes, 3)
    windows = _window_agreement(s)
    if windows:
        summary["windows"] = windows
    origins = pd.Series([c.origin or "unknown" for c in commands]).value_counts()
    if not commands:
        sec.add("<p>No command was issued in this session.</p>")
    elif not scored:
        sec.add(f"<p>No decoder issued commands: the {len(commands)} commands came from "
                + html.escape(", ".join(f"{k} ({v})" for k, v in origins.items()))
                + ", which follow the intent by construction, so no agreement is "
                "computed.</p>")
    elif "agreement" in summary:
        sec.add(f"<p><b>{summary['right']}</b> of {summary['with_known_intent']} "
                f"{'decoded ' if decoded else ''}commands "
                f"with a known intent matched it: agreement <b>{summary['agreement']:.1%}</b> "
                f"against {summary['chance_agreement']:.1%} for the same commands shuffled "
                f"over the same intents (Cohen's κ = {_fmt(summary['kappa'])}); "
                f"{summary['commands_per_minute']:.1f} commands per minute.</p>")
    else:
        sec.add(f"<p>{len(commands)} commands; the intent behind them was not recorded.</p>")
    if len(origins) > 1:
        sec.add("<p class='note'>Commands per origin: " + html.escape(
            ", ".join(f"{k} {v}" for k, v in origins.items())) + "</p>")
    if windows:
        sec.add(f"<p>Per decoded window, the most probable class was the intended one in "
                f"{windows['agreement']:.1%} of {windows['windows']} windows (always naming "
                f"the most frequent intended class: {windows['majority_baseline']:.1%}).</p>")
    # Per intended class: time spent intending it, commands issued, how many matched.
    counted = decoded or commands
    kind = "decoded commands" if decoded else "commands"
    per = []
    for label in rows:
        seconds = sum(b.end - b.start for b in blocks if b.label == label)
        mine = [c for c in counted if c.intended_label == label]
        right = sum(bool(c.correct) for c in mine)
        if seconds or mine:
            per.append({"intended": label, "seconds": round(seconds, 2), "commands": len(mine),
                        "right": right, "wrong": len(mine) - right,
                        "per_minute": round(len(mine) / max(seconds / 60, 1e-9), 2)
                        if seconds else None})
    unknown = [c for c in counted if c.intended_label is None]
    if unknown:
        per.append({"intended": "(unknown)", "seconds": None, "commands": len(unknown),
                    "right": None, "wrong": None, "per_minute": None})
    if per:
        per_df = pd.DataFrame(per)
        sec.add(f"<h3>Per intended class ({kind})</h3>" + _df_table(per_df))
        out.table(sec, per_df, "commands_per_intent")
    known = [c for c in counted if c.intended_label is not None]
    if known:
        confusion = pd.crosstab(pd.Series([c.intended_label for c in known], name="intended"),
                                pd.Series([c.label for c in known], name="issued"))
        sec.add(f"<h3>Issued (columns) by intended (rows), {kind}</h3>"
                + _df_table(confusion.reset_index()))
        out.table(sec, confusion.reset_index(), "commands_confusion")
    out.json(sec, summary, "agreement")
    sec.data = summary


def _probabilities(s: SessionData, out: _Output, sec: Section) -> None:
    d = s.decisions
    if d is None:
        sec.missing(f"no {DECISIONS_FILE}")
        return
    pcols = [c for c in d.columns if c.startswith("p_")]
    if not pcols:
        sec.missing(f"no decoder ran: {DECISIONS_FILE} has no probability columns")
        return
    if "t" not in d or not len(d):
        sec.missing(f"{DECISIONS_FILE} holds no decoded window")
        return
    blocks, commands = s.intent_blocks(), s.commands()
    rows = s.rows(blocks, commands)
    for c in pcols:
        if c[2:] not in rows:
            rows.append(c[2:])
    threshold = _find_number(s.started, "threshold")
    if threshold is None:
        threshold = _find_number(s.summary, "threshold")
    probs = {c[2:]: d[c].to_numpy(float) for c in pcols}
    out.figure(sec, plots.fig_probabilities(d["t"].to_numpy(float), probs, rows, blocks,
                                            commands, s.t0, threshold), "probabilities",
               f"{len(d)} decoded windows. "
               + (f"Dashed: the policy's threshold {threshold:g}. " if threshold is not None
                  else "The threshold was not logged in run_started. ")
               + "Triangles on top: commands, filled with their class's colour.")
    stats = pd.DataFrame({"class": list(probs), "mean_p": [np.nanmean(p) for p in probs.values()],
                          "max_p": [np.nanmax(p) for p in probs.values()]})
    if threshold is not None:
        stats["share_above_threshold"] = [np.nanmean(p >= threshold) for p in probs.values()]
    sec.add(_df_table(stats.round(4)))
    if "state" in d:
        states = d["state"].replace("", np.nan).dropna().value_counts()
        if len(states):
            sec.add("<p class='note'>Policy states over the windows: " + ", ".join(
                f"{html.escape(str(k))} {v}" for k, v in states.items()) + "</p>")
    out.table(sec, stats, "probabilities_summary")
    sec.data = {"threshold": threshold, "windows": len(d)}


def _signals(s: SessionData, out: _Output, sec: Section, verbose) -> None:
    rec = s.folder / RECORDING_DIR
    if not (rec / "session.json").exists():
        sec.missing(f"no {RECORDING_DIR}/ folder (the run had no source, or ran with "
                    "--source none)")
        return
    meta = json.loads((rec / "session.json").read_text(encoding="utf-8"))
    if meta.get("status") == "empty":
        sec.missing(f"{RECORDING_DIR}/ holds no samples: the source sent nothing")
        return
    every = s.commands()
    if not every:
        sec.missing("the recording exists, but no command was issued to cut it around")
        return
    from gui import session_signals as signals

    # The EEG explains decoded commands; keyboard, route and task ones are only cut around
    # when no decoder issued any.
    commands = [c for c in every if c.origin == "decoder"] or every
    which = "decoded commands" if commands is not every else "commands"
    sig = signals.command_signals(rec, commands, verbose=verbose)
    rows = s.rows(s.intent_blocks(), every)
    where = ("motor channels" if sig.motor else "the first channels (the cap has no "
             "C3/Cz/C4)")
    sec.add(f"<p>{sig.n_kept} of {sig.n_commands} {which} have {signals.TMIN:g} s to "
            f"{signals.TMAX:+g} s of recording around them without a gap; shown on {where}: "
            f"{html.escape(', '.join(sig.channels))}. Time 0 is the last sample of the window "
            "each command was decoded from.</p>")
    if not sig.bandpower:
        sec.add("<p class='missing'>No command lies far enough inside the recording to cut "
                "an epoch around it.</p>")
        sec.data = {"n_commands": sig.n_commands, "n_kept": 0}
        return
    out.figure(sec, signals.fig_bandpower(sig, rows), "signals_bandpower",
               f"Mean {signals.BAND[0]:g}–{signals.BAND[1]:g} Hz power per command class, "
               f"smoothed over {signals.SMOOTH_S:g} s, as % change from the channel's mean "
               "band power over the whole recording (below 0: desynchronisation, ERD).")
    if sig.traces:
        out.figure(sec, signals.fig_traces(sig, rows, s.t0), "signals_traces",
                   f"{signals.TRACE_BAND[0]:g}–{signals.TRACE_BAND[1]:g} Hz traces around a "
                   "few commands spread over the run; the vertical line is the command.")
    long = pd.concat([pd.DataFrame({"class": label, "channel": ch, "time_s": sig.times,
                                    "power_change_pct": curve[i],
                                    "n_epochs": sig.n_epochs[label]})
                      for label, curve in sig.bandpower.items()
                      for i, ch in enumerate(sig.channels)], ignore_index=True)
    out.table(sec, long, "signals_bandpower")
    pre = (sig.times >= -1.5) & (sig.times <= 0)
    mean_pre = {label: {ch: round(float(curve[i, pre].mean()), 2)
                        for i, ch in enumerate(sig.channels)}
                for label, curve in sig.bandpower.items()}
    sec.add("<p class='note'>Mean change from −1.5 s to the command (%):</p>" + _df_table(
        pd.DataFrame(mean_pre).T.rename_axis("class").reset_index()))
    sec.data = {"channels": sig.channels, "n_commands": sig.n_commands, "n_kept": sig.n_kept,
                "n_epochs": sig.n_epochs, "mean_change_pct_before_command": mean_pre}
    out.json(sec, sec.data, "signals_summary")


def _scene_for(s: SessionData):
    if s.get("world") != "sandbox" or s.get("seed") is None:
        return None
    from world.sandbox import cached_scene

    size = int(s.get("map_size", 64))
    cell = float(s.get("cell_size", 3.0))
    return cached_scene(int(s.get("seed")), size, cell)


def _route(s: SessionData, out: _Output, sec: Section) -> None:
    r = s.route
    if r is None or not {"x", "z", "t"} <= set(r.columns):
        sec.missing(f"no {ROUTE_FILE}")
        return
    r = r[np.isfinite(r["x"]) & np.isfinite(r["z"]) & np.isfinite(r["t"])]
    if not len(r):
        sec.missing(f"{ROUTE_FILE} holds no positions")
        return
    x, z, t = r["x"].to_numpy(float), r["z"].to_numpy(float), r["t"].to_numpy(float)
    scene = _scene_for(s)
    cmd_xz = []
    for c in s.commands():
        if t[0] <= c.t <= t[-1]:
            colour = (plots.UNKNOWN if c.correct is None
                      else plots.RIGHT if c.correct else plots.WRONG)
            cmd_xz.append((float(np.interp(c.t, t, x)), float(np.interp(c.t, t, z)), colour,
                           c.label))
    collided = (r["collided"].fillna(0).to_numpy() > 0 if "collided" in r
                else np.zeros(len(r), bool))
    onsets = collided & ~np.concatenate([[False], collided[:-1]])  # first frame of each bump
    step = np.hypot(np.diff(x), np.diff(z))
    summary = {"frames": len(r), "path_length_m": round(float(step.sum()), 2),
               "duration_s": round(float(t[-1] - t[0]), 2),
               "collided_frames": int(collided.sum()), "collisions": int(onsets.sum()),
               "start_xz": [round(float(x[0]), 2), round(float(z[0]), 2)],
               "end_xz": [round(float(x[-1]), 2), round(float(z[-1]), 2)]}
    note = ""
    if scene is not None:
        ix = np.clip(np.floor(x / scene.cell).astype(int), 0, scene.size - 1)
        iz = np.clip(np.floor(z / scene.cell).astype(int), 0, scene.size - 1)
        inside = float(np.mean(scene.solid[ix, iz]))
        summary["share_inside_walls"] = round(inside, 4)
        if inside > 0.02:
            note = (f"<p class='failed'>{inside:.0%} of the positions lie inside walls of the "
                    f"map of seed {scene.seed}: the map drawn is probably not the one driven "
                    "(a start image derives its own seed).</p>")
        rows = []
        for name, (lx, lz) in scene.landmarks.items():
            dist = np.hypot(x - lx, z - lz)
            k = int(np.argmin(dist))
            rows.append({"landmark": name, "x": lx, "z": lz,
                         "closest_m": round(float(dist[k]), 2),
                         "at_s": round(float(t[k] - s.t0), 2)})
        landmarks = pd.DataFrame(rows)
        summary["landmarks"] = rows
    caption = ("Top-down view (x right, z up), the route coloured by time; "
               + ("grey: walls and buildings, ★ landmarks, ○ spawn; " if scene is not None
                  else "this world has no map, so only the trajectory is drawn; ")
               + "▼ commands (green = intent, red ≠ intent), × collisions.")
    out.figure(sec, plots.fig_route({"x": x, "z": z, "t": t}, s.t0, scene, cmd_xz,
                                    np.column_stack([x[onsets], z[onsets]])), "route", caption)
    sec.add(note + _kv_table((k, v) for k, v in summary.items() if k != "landmarks"))
    if scene is not None:
        sec.add("<h3>Closest approach to each landmark</h3>" + _df_table(landmarks))
        out.table(sec, landmarks, "route_landmarks")
    out.json(sec, summary, "route_summary")
    sec.data = summary


def _latency_deltas(df: pd.DataFrame) -> tuple[dict, dict]:
    """Per row, the delay between consecutive recorded stages, and first-to-last per origin."""
    stages = [c for c in STAGES if c in df.columns]
    deltas: dict[str, list[float]] = {}
    e2e: dict[str, list[float]] = {}
    origins = df["origin"] if "origin" in df else pd.Series([""] * len(df))
    values = df[stages].to_numpy(float) if stages else np.zeros((len(df), 0))
    for row, origin in zip(values, origins, strict=True):
        present = [(stage, v) for stage, v in zip(stages, row, strict=True) if np.isfinite(v)]
        for (a, va), (b, vb) in zip(present, present[1:], strict=False):
            deltas.setdefault(f"{a}→{b}", []).append(1000.0 * (vb - va))
        if len(present) > 1:
            e2e.setdefault(str(origin) or "unknown", []).append(
                1000.0 * (present[-1][1] - present[0][1]))
    order = {f"{a}→{b}": (STAGES.index(a), STAGES.index(b)) for a in stages for b in stages}
    deltas = dict(sorted(((k, np.asarray(v)) for k, v in deltas.items()),
                         key=lambda kv: order[kv[0]]))
    return deltas, {k: np.asarray(v) for k, v in e2e.items()}


def _stats(name: str, v: np.ndarray) -> dict:
    v = v[np.isfinite(v)]
    return {"stage": name, "n": len(v), "median_ms": round(float(np.median(v)), 3),
            "p95_ms": round(float(np.percentile(v, 95)), 3),
            "p99_ms": round(float(np.percentile(v, 99)), 3),
            "max_ms": round(float(np.max(v)), 3)}


def _latency(s: SessionData, out: _Output, sec: Section) -> None:
    if s.latency_json is None and s.latency is None:
        sec.missing(f"no {LATENCY_JSON} or {LATENCY_TSV}")
        return
    stages = (s.latency_json or {}).get("stages")
    if isinstance(stages, list) and stages:
        table = pd.DataFrame([st for st in stages if isinstance(st, dict)])
        sec.add(f"<p>From {LATENCY_JSON} (world: "
                f"{html.escape(_fmt(s.latency_json.get('world')))}):</p>" + _df_table(table))
        out.table(sec, table, "latency_stages")
    else:
        sec.add(f"<p class='missing'>{MISSING} ({LATENCY_JSON} absent or empty).</p>")
    df = s.latency
    if df is None or not len(df):
        sec.add(f"<p class='missing'>{MISSING} (no rows in {LATENCY_TSV}, so no "
                "distributions).</p>")
        sec.data = {"stages": stages}
        return
    deltas, e2e = _latency_deltas(df)
    if deltas:
        out.figure(sec, plots.fig_latency(deltas, e2e), "latency",
                   f"Cumulative distributions over the {len(df)} traced commands of "
                   f"{LATENCY_TSV}: left, each delay between consecutive recorded stages; "
                   "right, first to last recorded stage, per origin of the command.")
    own = pd.DataFrame([_stats(k, v) for k, v in deltas.items() if len(v)]
                       + [_stats(f"first→last ({k})", v) for k, v in e2e.items() if len(v)])
    if len(own):
        sec.add(f"<p>Recomputed from {LATENCY_TSV}:</p>" + _df_table(own))
        out.table(sec, own, "latency_from_tsv")
    counts = df["origin"].value_counts().to_dict() if "origin" in df else {}
    sec.add("<p class='note'>Traced commands per origin: " + html.escape(
        ", ".join(f"{k or 'unknown'} {v}" for k, v in counts.items())) + "</p>")
    sec.data = {"stages": stages, "traced": len(df), "origins": counts}


def _details(record: dict) -> str:
    rest = {k: v for k, v in record.items() if k not in ("t", "kind", "wall")}
    text = ", ".join(f"{k}={_fmt(v)}" for k, v in rest.items())
    return text if len(text) <= 240 else text[:237] + "..."


def _events(s: SessionData, out: _Output, sec: Section) -> None:
    if not s.log:
        sec.missing(f"no {LOG_FILE}")
        return
    if str(s.get("source")).lower() in ("none", "") and not (s.folder / RECORDING_DIR).exists():
        sec.missing("the run had no signal source to watch")
        return
    shown = [r for r in s.kinds(*HEALTH_KINDS)
             if r.get("kind") != "artifact_index" or r.get("artifact")]
    scores = s.kinds("artifact_index")
    if not shown:
        sec.add("<p>No gap, source loss, reconnect or quality event was logged: the "
                "source streamed without interruption.</p>"
                + (f"<p class='note'>{len(scores)} artifact-index checks, none flagged.</p>"
                   if scores else ""))
        sec.data = {"events": 0}
        return
    table = pd.DataFrame([{
        "t_s": round(float(r["t"]) - s.t0, 3) if isinstance(r.get("t"), (int, float)) else None,
        "kind": r.get("kind"), "details": _details(r)} for r in shown])
    counts = table["kind"].value_counts().to_dict()
    sec.add("<p>" + html.escape(", ".join(f"{v} × {k}" for k, v in counts.items()))
            + (f"; {sum(bool(r.get('artifact')) for r in scores)} of {len(scores)} "
               "artifact-index checks flagged an artifact" if scores else "") + ".</p>")
    sec.add(_df_table(table))
    out.table(sec, table, "events")
    sec.data = {"events": len(table), "counts": counts}


def _task(s: SessionData, out: _Output, sec: Section) -> None:
    events = s.kinds("task_event")
    named = s.get("task")
    if s.task_json is None and s.task_rows is None and not events:
        sec.missing(f"no {TASK_JSON}, {TASK_TSV} or task_event records"
                    + (f"; run_started names task {named!r}" if named else ""))
        return
    if s.task_json is not None:
        name = s.task_json.get("task", named)
        sec.add(f"<p>Task: <b>{html.escape(_fmt(name))}</b></p>"
                + _kv_table((k, v) for k, v in s.task_json.items() if k != "task"))
        out.json(sec, s.task_json, "task_summary")
    else:
        sec.add(f"<p class='missing'>{MISSING} (no {TASK_JSON}).</p>")
    if s.task_rows is not None and len(s.task_rows):
        sec.add(f"<h3>Per trial ({TASK_TSV})</h3>" + _df_table(s.task_rows))
    if events:
        counts = pd.Series([str(e.get("event")) for e in events]).value_counts()
        sec.add("<p class='note'>Task events logged: " + html.escape(
            ", ".join(f"{k} {v}" for k, v in counts.items())) + "</p>")
    sec.data = {"task": (s.task_json or {}).get("task", named), "events": len(events)}


def _files(s: SessionData, sec: Section, written: list[str]) -> None:
    rows = [(name, "present" if s.has(name) else "absent") for name in SESSION_FILES]
    sec.add(_kv_table(rows))
    sec.add("<p class='note'>Written with this report in report/: "
            + html.escape(", ".join(written) or "nothing") + "</p>")


# ------------------------------------------------------------------------------ the page

def _run(fn: Callable, sec: Section, *args) -> Section:
    try:
        fn(*args, sec)
    except Exception as err:  # one broken file must not cost the whole report
        logger.warning("session report: the %r section could not be drawn (%s: %s)", sec.key,
                       type(err).__name__, err, exc_info=logger.isEnabledFor(logging.DEBUG))
        sec.status = "failed"
        sec.add(f"<p class='failed'>This section could not be drawn: "
                f"{html.escape(type(err).__name__)}: {html.escape(str(err))}</p>")
    return sec


def _clear_previous(out_dir: Path) -> None:
    """Remove the files an earlier report listed, so none of them outlives its section."""
    index = out_dir / "report.json"
    try:
        old = json.loads(index.read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return
    for name in old:
        if isinstance(name, str) and "/" not in name and "\\" not in name:
            (out_dir / name).unlink(missing_ok=True)


def write_report(folder: str | os.PathLike, verbose=None) -> Path:
    """Write ``report.html`` and ``report/`` (figures as PNG, tables as TSV/JSON) for a session.

    Parameters
    ----------
    folder : path-like
        A session folder written by the session runtime (``yume run``).
    verbose : bool, str, int or None
        mne's log level while the recording is read, filtered and epoched (None: errors
        only, so the end of a run stays quiet).

    Returns
    -------
    path : Path
        The HTML page.

    Raises
    ------
    SessionReportError
        When ``folder`` is not a session folder. Anything wrong inside it (a missing,
        truncated or unreadable file) is reported on the page instead.
    """
    s = load_session(folder)
    out_dir = s.folder / REPORT_DIR
    out_dir.mkdir(exist_ok=True)
    _clear_previous(out_dir)
    out = _Output(s.folder)
    sections = [
        _run(_header, Section("run", "The run"), s, out),
        _run(_commands, Section("commands", "Intended and issued commands"), s, out),
        _run(_probabilities, Section("probabilities", "Decoder probabilities over time"),
             s, out),
        _run(lambda s_, o, sec: _signals(s_, o, sec, verbose),
             Section("signals", "Signals around commands"), s, out),
        _run(_route, Section("route", "Route"), s, out),
        _run(_latency, Section("latency", "Latency"), s, out),
        _run(_events, Section("events", "Gaps, reconnects and signal quality"), s, out),
        _run(_task, Section("task", "Task"), s, out),
    ]
    files = Section("files", "Files")
    _files(s, files, out.files + ["report.json"])
    index = {"session": str(s.folder), "files": [*out.files, "report.json"],
             "sections": {sec.key: {"title": sec.title, "status": sec.status,
                                    "files": sec.files, "data": sec.data}
                          for sec in sections}}
    (out_dir / "report.json").write_text(json.dumps(index, indent=2, default=_jsonable),
                                         encoding="utf-8")
    title = f"Yume session report — {s.folder.name}"
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class='note'>{html.escape(str(s.folder))}. "
            "Times are seconds from the start of the run; the figures and tables are also "
            "in report/.</p>\n"
            + "\n".join(sec.html() for sec in [*sections, files]) + "</body></html>")
    path = s.folder / REPORT_HTML
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)  # a report cut short never replaces a whole one
    return path
