"""Training report: one self-contained HTML page (figures embedded as base64 PNG) plus JSON.

Figures: pipeline comparison (k-fold and chronological accuracy), confusion matrix of the chosen
pipeline, per-class band-power (ERD/ERS) time course over C3/Cz/C4 for motor imagery or
spectra at the target frequencies for SSVEP, and spatial patterns (CSP patterns as topomaps
where channel positions are known, tangent-space weights for the Riemannian pipeline).

Matplotlib is used through :class:`matplotlib.figure.Figure` and the Agg canvas only, so the
report never touches a GUI backend or pyplot's global state.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import warnings
from pathlib import Path

import mne
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from threadpoolctl import threadpool_limits

from calibration.pipelines import make_pipeline
from calibration.training import TrainingResult

logger = logging.getLogger(__name__)

MOTOR_CHANNELS = ("C3", "Cz", "C4")
OCCIPITAL_CHANNELS = ("O1", "Oz", "O2", "POz", "PO3", "PO4")


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def fig_pipelines(result: TrainingResult) -> Figure:
    """Bar chart: k-fold and chronological accuracy of every candidate, chance level."""
    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot()
    names = [r.name for r in result.results]
    x = np.arange(len(names))
    cv = [r.cv["accuracy"] for r in result.results]
    sd = [np.std(r.fold_accuracies) for r in result.results]
    ch = [(r.chrono or {}).get("accuracy", np.nan) for r in result.results]
    ax.bar(x - 0.2, cv, 0.4, yerr=sd, label="stratified k-fold", color="#4C72B0")
    ax.bar(x + 0.2, ch, 0.4, label="chronological split", color="#DD8452")
    ax.axhline(1.0 / len(result.epochs.classes), color="k", ls="--", lw=1, label="chance")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Candidate pipelines")
    return fig


def fig_confusion(scores: dict, title: str) -> Figure:
    """Confusion matrix (rows: true class; counts and row percentages)."""
    cm = np.asarray(scores["confusion"], dtype=float)
    classes = scores["classes"]
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(1.2 * len(classes) + 2.2, 1.0 * len(classes) + 1.6))
    ax = fig.add_subplot()
    im = ax.imshow(frac, vmin=0, vmax=1, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(cm[i, j])}\n{100 * frac[i, j]:.0f}%", ha="center", va="center",
                    color="white" if frac[i, j] > 0.6 else "black", fontsize=8)
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def _find(ch_names, wanted) -> list[str]:
    lookup = {c.upper(): c for c in ch_names}
    return [lookup[w.upper()] for w in wanted if w.upper() in lookup]


def fig_erd(result: TrainingResult, band: tuple[float, float] | None = None) -> Figure | None:
    """Per-class band-power time course (ERD/ERS, % of the pre-cue baseline) over C3/Cz/C4."""
    band = band or result.config.band
    chans = _find(result.epochs.ch_names, MOTOR_CHANNELS)
    if not chans:
        return None
    classes = list(result.epochs.classes)
    # Cut 0.5 s wider on both sides and crop after smoothing: no filter or smoothing edges.
    show = (-1.0, result.config.tmax + 1.0)
    tmin, tmax = show[0] - 0.5, show[1] + 0.5
    curves: dict[str, list[np.ndarray]] = {c: [] for c in classes}
    times = None
    for rec in result.recordings:
        raw = rec.raw.copy().pick(chans).filter(band[0], band[1], verbose="error")
        sfreq = raw.info["sfreq"]
        power = raw.get_data(units="uV") ** 2
        n0, n1 = int(round(tmin * sfreq)), int(round(tmax * sfreq))
        times = np.arange(n0, n1) / sfreq
        ev = rec.events
        rename = result.config.label_map or {}
        for onset, label in zip(ev["onset"], ev["description"], strict=True):
            label = rename.get(label, label)
            if label in curves:
                s = int(round(onset * sfreq))
                if s + n0 >= 0 and s + n1 <= power.shape[1]:
                    curves[label].append(power[:, s + n0:s + n1])
    if times is None or not any(curves.values()):
        return None
    fig = Figure(figsize=(3.2 * len(chans), 3.0))
    axes = fig.subplots(1, len(chans), sharey=True, squeeze=False)[0]
    k = max(int(0.25 * (1 / (times[1] - times[0]))), 1)  # 250 ms smoothing
    kernel = np.ones(k) / k
    base = (times >= show[0]) & (times < -0.1)
    keep = (times >= show[0]) & (times <= show[1])
    for label, trials in curves.items():
        if not trials:
            continue
        mean = np.mean(trials, axis=0)
        for i, ax in enumerate(axes):
            smooth = np.convolve(mean[i], kernel, mode="same")
            ref = smooth[base].mean()
            ax.plot(times[keep], 100 * (smooth[keep] - ref) / ref, label=label, lw=1.2)
    for ax, ch in zip(axes, chans, strict=True):
        ax.axvline(0, color="k", lw=0.8)
        ax.axhline(0, color="gray", lw=0.5)
        ax.axvspan(result.config.tmin, result.config.tmax, color="0.9", zorder=0)
        ax.set_title(f"{ch} {band[0]:g}-{band[1]:g} Hz")
        ax.set_xlabel("time from cue (s)")
    axes[0].set_ylabel("band power change (%)")
    axes[-1].legend(fontsize=7)
    fig.suptitle("ERD/ERS (shaded: training window)", fontsize=9, y=1.03)
    return fig


def fig_ssvep_spectra(result: TrainingResult) -> Figure | None:
    """Mean spectrum of occipital channels per class, target frequencies marked."""
    from scipy.signal import welch

    ep = result.epochs
    chans = _find(ep.ch_names, OCCIPITAL_CHANNELS) or list(ep.ch_names)
    idx = [ep.ch_names.index(c) for c in chans]
    f, pxx = welch(ep.X[:, idx], fs=ep.sfreq, nperseg=min(ep.X.shape[-1], int(ep.sfreq * 2)),
                   axis=-1)
    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    keep = f <= min(45.0, ep.sfreq / 2)
    for cls in ep.classes:
        spec = pxx[ep.y == cls].mean(axis=(0, 1))
        line = ax.semilogy(f[keep], spec[keep], label=cls, lw=1)[0]
        try:
            from control.estimators import parse_frequency

            ax.axvline(parse_frequency(cls), color=line.get_color(), ls=":", lw=1)
        except ValueError:
            pass
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("PSD (µV²/Hz)")
    ax.set_title(f"Spectra over {', '.join(chans[:3])} (dotted: target frequencies)")
    ax.legend(fontsize=7, ncol=2)
    return fig


def _topo_or_bars(ax, values, info, ch_names, title):
    has_pos = info is not None and info.get_montage() is not None
    if has_pos:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mne.viz.plot_topomap(values, info, axes=ax, show=False, contours=0,
                                     sensors=True)
            ax.set_title(title, fontsize=8)
            return
        except (RuntimeError, ValueError) as err:  # positions missing for some channel
            logger.info("topomap unavailable: %s", err)
    ax.bar(np.arange(len(values)), values)
    ax.set_xticks(np.arange(len(values)), ch_names, rotation=90, fontsize=5)
    ax.set_title(title, fontsize=8)


def fig_patterns(result: TrainingResult, n: int = 4) -> Figure | None:
    """CSP spatial patterns (fitted on all trials), as topomaps where positions exist."""
    ep = result.epochs
    try:
        pipe = make_pipeline("csp_lda", ep.sfreq, result.config.band,
                             n_components=result.config.n_components)
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore")
            pipe.fit(ep.X, ep.y)
        patterns = pipe.named_steps["csp"].patterns_[:n]
    except Exception as err:  # a figure must not break training
        logger.warning("CSP patterns not drawn: %s", err)
        return None
    fig = Figure(figsize=(2.2 * len(patterns), 2.4))
    axes = fig.subplots(1, len(patterns), squeeze=False)[0]
    for i, (ax, pat) in enumerate(zip(axes, patterns, strict=True)):
        _topo_or_bars(ax, pat, ep.montage_info, ep.ch_names, f"CSP pattern {i + 1}")
    fig.suptitle("CSP patterns", fontsize=9)
    return fig


def fig_tangent_weights(result: TrainingResult) -> Figure | None:
    """Tangent-space + LR: per-channel weight (diagonal of the unvectorised coefficients)."""
    if result.bundle.name != "ts_lr":
        return None
    from pyriemann.utils.tangentspace import unupper

    lr = result.bundle.pipeline.named_steps["lr"]
    ep = result.epochs
    coefs = lr.coef_
    labels = list(lr.classes_) if coefs.shape[0] > 1 else [f"{lr.classes_[1]} vs {lr.classes_[0]}"]
    fig = Figure(figsize=(2.4 * len(coefs), 2.4))
    axes = fig.subplots(1, len(coefs), squeeze=False)[0]
    for ax, c, lab in zip(axes, coefs, labels, strict=True):
        w = np.abs(np.diag(unupper(c)))
        _topo_or_bars(ax, w, ep.montage_info, ep.ch_names, str(lab))
    fig.suptitle("Tangent-space weights per channel (|diagonal|)", fontsize=9)
    return fig


def _scores_table(result: TrainingResult) -> str:
    rows = []
    for r in result.results:
        ch = r.chrono or {}
        star = " ★" if r.name == result.best else ""
        rows.append(
            f"<tr><td>{html.escape(r.name)}{star}</td><td>{r.cv['accuracy']:.3f} ± "
            f"{np.std(r.fold_accuracies):.3f}</td><td>{r.cv['balanced_accuracy']:.3f}</td>"
            f"<td>{r.cv['kappa']:.2f}</td><td>{r.cv['itr_bits_per_min']:.2f}</td>"
            f"<td>{ch.get('accuracy', float('nan')):.3f}</td>"
            f"<td>{ch.get('balanced_accuracy', float('nan')):.3f}</td>"
            f"<td>{ch.get('kappa', float('nan')):.2f}</td><td>{r.fit_s:.2f}</td></tr>")
    return (
        "<table><tr><th>pipeline</th><th>k-fold acc</th><th>bal. acc</th><th>kappa</th>"
        "<th>ITR (bits/min)</th><th>chrono acc</th><th>chrono bal. acc</th>"
        "<th>chrono kappa</th><th>fit (s)</th></tr>" + "".join(rows) + "</table>")


def write_report(result: TrainingResult, out_dir: str | Path, name: str = "report") -> Path:
    """Write ``<name>.html`` (self-contained) and ``<name>.json`` into ``out_dir``.

    Returns
    -------
    Path
        The HTML file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    best = next(r for r in result.results if r.name == result.best)
    figs: list[tuple[str, Figure | None]] = [
        ("Candidate pipelines", fig_pipelines(result)),
        (f"Confusion matrix, {best.name}, k-fold", fig_confusion(best.cv, f"{best.name}, k-fold")),
    ]
    if best.chrono:
        figs.append((f"Confusion matrix, {best.name}, chronological split",
                     fig_confusion(best.chrono, f"{best.name}, chronological")))
    if result.config.paradigm == "ssvep":
        figs.append(("SSVEP spectra", fig_ssvep_spectra(result)))
    else:
        figs.append(("ERD/ERS over C3/Cz/C4", fig_erd(result)))
        figs.append(("CSP patterns", fig_patterns(result)))
        figs.append(("Tangent-space weights", fig_tangent_weights(result)))
    images = [(title, _png(fig)) for title, fig in figs if fig is not None]
    bundle = result.bundle
    cfg = result.config
    itr = best.cv["itr_bits_per_min"]
    body = [
        "<h1>Yume BCI: decoder training report</h1>",
        f"<p>Chosen pipeline: <b>{html.escape(result.best)}</b> — k-fold accuracy "
        f"<b>{best.cv['accuracy']:.3f}</b> (balanced {best.cv['balanced_accuracy']:.3f}, kappa "
        f"{best.cv['kappa']:.2f}, chance {best.cv['chance']:.2f}); Wolpaw ITR "
        f"<b>{itr:.2f} bits/min</b> at one decision every {best.cv['decision_s']:g} s.</p>",
        f"<p>{summary['n_trials']} trials {html.escape(str(summary['trials_per_class']))}, "
        f"{len(bundle.ch_names)} channels at {bundle.sfreq:g} Hz, band {cfg.band[0]:g}-"
        f"{cfg.band[1]:g} Hz, window {cfg.tmin:g}-{cfg.tmax:g} s after the cue, "
        f"{best.cv.get('n_folds', cfg.n_folds)}-fold stratified CV (seed {cfg.seed}) and a "
        f"chronological split holding out the last {100 * cfg.chrono_test:.0f} % of trials. "
        + (f"Training also used crops of each trial shifted by "
           f"{', '.join(f'+{o:g}' for o in result.crop_offsets)} s (scored on the "
           f"{cfg.tmin:g}-{cfg.tmax:g} s window only)." if result.crop_offsets else "")
        + "</p>",
        "<p>Recordings: " + ", ".join(html.escape(p) for p in summary["recordings"]) + "</p>",
        "<h2>Scores</h2>", _scores_table(result),
        "<h2>Class → action</h2><p>" + ", ".join(
            f"{html.escape(k)} → {html.escape(v)}" for k, v in bundle.actions.items()) + "</p>",
    ]
    for title, b64 in images:
        body.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
                    f"src='data:image/png;base64,{b64}'/>")
    body.append("<h2>Software</h2><p>" + ", ".join(
        f"{html.escape(k)} {html.escape(str(v))}" for k, v in bundle.versions.items()) + "</p>")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Yume decoder report</title>"
            "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
            "text-align:right}img{max-width:100%}</style></head><body>"
            + "\n".join(body) + "</body></html>")
    html_path = out_dir / f"{name}.html"
    html_path.write_text(page, encoding="utf-8")
    summary["figures"] = [t for t, _ in images]
    summary["versions"] = bundle.versions
    (out_dir / f"{name}.json").write_text(
        json.dumps(summary, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist")
                   else str(o)), encoding="utf-8")
    return html_path
