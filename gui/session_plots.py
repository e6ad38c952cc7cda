"""Figures of the session report: command timeline, probabilities, route map and latency.

Each function takes plain arrays or :mod:`gui.session_data` objects and returns a
:class:`matplotlib.figure.Figure` drawn on the Agg canvas (never pyplot, so no GUI backend
and no global figure state in a process that also runs the Qt window).
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from gui.session_data import Command, IntentBlock

RIGHT, WRONG, UNKNOWN = "#2ca02c", "#d62728", "#7f7f7f"
_PALETTE = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
            "#7f7f7f", "#2ca02c", "#d62728")


def new_figure(width: float, height: float) -> Figure:
    """A figure with constrained layout: legends outside the axes fit without a second draw
    (``bbox_inches="tight"`` draws every figure twice, which doubles the report's time)."""
    return Figure(figsize=(width, height), layout="constrained")


def png_bytes(fig: Figure, dpi: int = 90) -> bytes:
    """The figure as PNG bytes."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def colours(rows: list[str]) -> dict[str, str]:
    """One fixed colour per row label (in row order)."""
    return {r: _PALETTE[i % len(_PALETTE)] for i, r in enumerate(rows)}


def _correct_colour(c: Command) -> str:
    return UNKNOWN if c.correct is None else (RIGHT if c.correct else WRONG)


def fig_timeline(rows: list[str], blocks: list[IntentBlock], commands: list[Command],
                 t0: float, t_end: float) -> Figure:
    """Intent as shaded blocks per class, each command a marker on its class's row."""
    col = colours(rows)
    fig = new_figure(10, 0.5 * len(rows) + 1.8)
    ax = fig.add_subplot()
    for b in blocks:
        y = rows.index(b.label)
        ax.broken_barh([(b.start - t0, b.end - b.start)], (y - 0.4, 0.8), color=col[b.label],
                       alpha=0.3, lw=0)
    for manual, marker in ((False, "v"), (True, "s")):
        mine = [c for c in commands if (c.origin not in ("decoder", "")) == manual]
        if mine:
            ax.scatter([c.t - t0 for c in mine], [rows.index(c.label) for c in mine],
                       c=[_correct_colour(c) for c in mine], marker=marker, s=46, zorder=3,
                       edgecolors="k", linewidths=0.4)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, max(t_end - t0, 1e-3))
    ax.set_xlabel("time from the start of the run (s)")
    ax.grid(axis="x", color="0.9")
    ax.legend(handles=[
        Patch(color="0.6", alpha=0.4, label="intended (shaded, per class)"),
        Line2D([], [], ls="", marker="v", color=RIGHT, label="command = intent"),
        Line2D([], [], ls="", marker="v", color=WRONG, label="command ≠ intent"),
        Line2D([], [], ls="", marker="v", color=UNKNOWN, label="intent unknown"),
        Line2D([], [], ls="", marker="s", color="w", mec="k",
               label="keyboard, route or task command"),
    ], fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Intended (shaded) and issued commands (▼ decoded)")
    return fig


def fig_probabilities(t: np.ndarray, probs: dict[str, np.ndarray], rows: list[str],
                      blocks: list[IntentBlock], commands: list[Command], t0: float,
                      threshold: float | None) -> Figure:
    """One probability line per class, the intended class shaded behind, commands on top."""
    col = colours(rows)
    fig = new_figure(10, 3.6)
    ax = fig.add_subplot()
    for b in blocks:
        if b.label in probs:
            ax.axvspan(b.start - t0, b.end - t0, color=col[b.label], alpha=0.12, lw=0)
    for cls, p in probs.items():
        ax.plot(t - t0, p, color=col.get(cls, "k"), lw=1.0, label=f"p({cls})")
    if threshold is not None:
        ax.axhline(threshold, color="k", ls="--", lw=0.8, label=f"threshold {threshold:g}")
    if commands:
        ax.scatter([c.t - t0 for c in commands], np.full(len(commands), 1.04),
                   c=[col.get(c.label, "k") for c in commands], marker="v", s=30,
                   clip_on=False, zorder=3, edgecolors=[_correct_colour(c) for c in commands],
                   linewidths=1.0)
    ax.set_ylim(0, 1.08)
    ax.set_xlim(0, max(float(np.nanmax(t)) - t0 if len(t) else 0.0, 1e-3))
    ax.set_xlabel("time from the start of the run (s)")
    ax.set_ylabel("decoder probability")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Probabilities per window (shaded: intended class; ▼ commands, "
                 "edge green = right, red = wrong)", fontsize=9)
    return fig


def _trajectory(ax, x, z, t, t0):
    pts = np.column_stack([x, z])
    segs = np.stack([pts[:-1], pts[1:]], axis=1) if len(pts) > 1 else np.zeros((0, 2, 2))
    lc = LineCollection(segs, cmap="viridis", lw=2.0, zorder=2)
    lc.set_array(np.asarray(t[:-1] if len(t) > 1 else t, float) - t0)
    ax.add_collection(lc)
    return lc


def fig_route(route: dict, t0: float, scene=None, cmd_xz: list | None = None,
              collisions_xz: np.ndarray | None = None) -> Figure:
    """The route over a top-down map (x right, z up: a true view from above).

    Parameters
    ----------
    route : dict
        ``x``, ``z``, ``t`` arrays of the frames.
    scene : world.sandbox_scene.SandboxScene or None
        Draws solid cells, landmarks (named) and the spawn point; None draws the route alone.
    cmd_xz : list of (x, z, colour, label)
        Where each command was issued.
    collisions_xz : ndarray, shape (n, 2)
        Where the camera ran into a wall.
    """
    x, z, t = (np.asarray(route[k], float) for k in ("x", "z", "t"))
    panels = 2 if scene is not None else 1
    fig = new_figure(5.2 * panels + 1.2, 5.2)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    lc = None
    for i, ax in enumerate(axes):
        if scene is not None:
            extent = (0, scene.size * scene.cell, 0, scene.size * scene.cell)
            # solid[ix, iz]: transposed so that rows are z and columns x, origin at the bottom.
            ax.imshow(np.asarray(scene.solid, float).T, origin="lower", extent=extent,
                      cmap="Greys", vmin=0, vmax=1.6, interpolation="nearest", zorder=0)
            for name, (lx, lz) in scene.landmarks.items():
                ax.plot(lx, lz, marker="*", color="#ff7f0e", ms=11, mec="k", mew=0.5, zorder=4)
                ax.annotate(name, (lx, lz), xytext=(4, 4), textcoords="offset points",
                            fontsize=7, zorder=5,
                            bbox=dict(boxstyle="round,pad=0.15", fc="w", alpha=0.8, lw=0))
            sp = scene.spawn
            ax.plot(sp.x, sp.z, marker="o", ms=8, mfc="none", mec="#1f77b4", mew=2, zorder=4)
            ax.annotate("spawn", (sp.x, sp.z), xytext=(4, -10), textcoords="offset points",
                        fontsize=7, color="#1f77b4", zorder=5)
        lc = _trajectory(ax, x, z, t, t0)
        if len(x):
            ax.plot(x[0], z[0], marker="s", color="k", ms=5, zorder=4)
        for cx, cz, colour, _ in cmd_xz or []:
            ax.plot(cx, cz, marker="v", color=colour, ms=6, mec="k", mew=0.4, zorder=5)
        if collisions_xz is not None and len(collisions_xz):
            ax.plot(collisions_xz[:, 0], collisions_xz[:, 1], ls="", marker="x",
                    color="#d62728", ms=8, mew=2, zorder=6)
        ax.set_aspect("equal")
        ax.set_xlabel("x (m)")
        ax.set_ylabel("z (m)")
        zoom = scene is None or i == 1
        if zoom and len(x):
            cx, cz = (x.min() + x.max()) / 2, (z.min() + z.max()) / 2
            half = max(x.max() - x.min(), z.max() - z.min()) / 2 + 6.0
            ax.set_xlim(cx - half, cx + half)
            ax.set_ylim(cz - half, cz + half)
        elif scene is not None:
            ax.set_xlim(0, scene.size * scene.cell)
            ax.set_ylim(0, scene.size * scene.cell)
        ax.set_title("whole map" if scene is not None and i == 0 else "the route")
    if lc is not None and len(x) > 1:
        fig.colorbar(lc, ax=axes[-1], fraction=0.046, label="time from start (s)")
    fig.legend(handles=[
        Line2D([], [], ls="", marker="s", color="k", label="start of the route"),
        Line2D([], [], ls="", marker="v", color=RIGHT, label="command = intent"),
        Line2D([], [], ls="", marker="v", color=WRONG, label="command ≠ intent"),
        Line2D([], [], ls="", marker="v", color=UNKNOWN, label="command, intent unknown"),
        Line2D([], [], ls="", marker="x", color="#d62728", label="collision"),
    ], fontsize=7, loc="outside lower center", ncol=5)
    return fig


def _cdf(ax, values_ms: np.ndarray, label: str, **kw) -> None:
    v = np.maximum(np.sort(values_ms[np.isfinite(values_ms)]), 1e-2)  # log axis: no zeros
    if len(v):
        med = float(np.median(v))
        ax.step(np.r_[v[0], v], np.arange(len(v) + 1) / len(v), where="post",
                label=f"{label} (n={len(v)}, median {med:.3g} ms)", **kw)


def _plain_log_ticks(ax) -> None:
    """Log axis labelled 1, 2, 5, 10, 20... instead of powers of ten."""
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(
        lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))


def fig_latency(deltas: dict[str, np.ndarray], end_to_end: dict[str, np.ndarray]) -> Figure:
    """Cumulative distributions: each stage-to-stage delay, and end to end per origin (ms)."""
    fig = new_figure(11, 3.8)
    a, b = fig.subplots(1, 2, sharey=True)
    for stage, v in deltas.items():
        _cdf(a, v, stage, lw=1.2)
    for origin, v in end_to_end.items():
        _cdf(b, v, origin, lw=1.5)
    for ax, title in ((a, "stage to stage"), (b, "first to last recorded stage, per origin")):
        ax.set_xscale("log")
        _plain_log_ticks(ax)
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylim(0, 1.02)
        ax.grid(color="0.9", which="both")
        ax.set_title(title, fontsize=10)
        if ax.lines:
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    a.set_ylabel("fraction of commands ≤ x")
    return fig
