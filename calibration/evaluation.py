"""Train on some recordings, test on others: offline held-out accuracy and pseudo-online control.

What ``yume evaluate`` runs. The test recordings are never used for training, tuning or
selection: pipelines and operating points are chosen on the training recordings alone.

- **Offline:** every pipeline trained on the training recordings' cue-locked windows and tested
  on the test recordings' windows, with n, chance (the majority class of the test set), an exact
  binomial 95 % interval and a one-sided binomial p-value against chance; beside them a reference
  TS+LR built directly from pyRiemann and scikit-learn (continuous 8-30 Hz filter, 0.5-2.5 s
  epochs, OAS covariances, tangent space, logistic regression), the published pipeline the
  project's own should at least match.
- **Pseudo-online:** (a) the cue-locked decoder ``yume train`` makes, with the default policy
  of ``yume run``; (b) the asynchronous decoder of :mod:`calibration.async_training` (rest as a
  class) at the operating point pseudo-online cross-validation chose on the training
  recordings. Each test recording is played through the live path and scored per cue and per
  minute of rest; the curve of hits against false activations over the threshold (at the
  chosen dwell and smoothing) is plotted.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from calibration.async_training import AsyncConfig, decode_for_scoring, score_grid, train_async
from calibration.dataset import DatasetError, Recording, epoch_recordings, load_recording
from calibration.metrics import binomial_summary
from calibration.pipelines import ASYNC_PIPELINES, make_pipeline, pipeline_names
from calibration.pseudo_online import (
    OperatingPoint,
    PseudoOnlineScore,
    mapped_events,
)
from calibration.training import TrainingConfig, train_decoder

logger = logging.getLogger(__name__)


@dataclass
class EvaluationConfig:
    """What to evaluate.

    Parameters
    ----------
    classes : sequence of str
        Movement classes.
    rest_label : str
        Label of rest periods (after ``label_map``).
    label_map : dict or None
        Renames event labels first.
    tmin, tmax : float
        Cue-locked window (offline figures and the cue-locked decoder).
    pipelines : sequence of str or None
        Candidates (default: the motor-imagery ones).
    target_fa_per_min : float
        False-activation target of the operating point.
    async_config : AsyncConfig or None
        Overrides for the asynchronous decoder (classes, rest and map are filled in).
    """

    classes: Sequence[str] = ("left_hand", "right_hand")
    rest_label: str = "rest"
    label_map: dict | None = None
    tmin: float = 0.5
    tmax: float = 2.5
    pipelines: Sequence[str] | None = None
    target_fa_per_min: float = 1.0
    async_config: AsyncConfig | None = None

    def cue_locked_pipelines(self) -> tuple[str, ...]:
        """The candidates that decode without a rest class (the asynchronous-only ones, such as
        ``gated_ts_lr``, are left to the asynchronous decoder)."""
        names = tuple(n for n in (self.pipelines or pipeline_names("mi"))
                      if n not in ASYNC_PIPELINES)
        return names or tuple(pipeline_names("mi"))

    def asynchronous(self) -> AsyncConfig:
        base = self.async_config or AsyncConfig()
        return replace(base, classes=tuple(self.classes), rest_label=self.rest_label,
                       label_map=self.label_map, target_fa_per_min=self.target_fa_per_min)


def reference_ts_lr(train: Sequence[Recording], test: Sequence[Recording],
                    config: EvaluationConfig) -> np.ndarray:
    """Predictions of the published TS+LR pipeline, written apart from the project's."""
    from pyriemann.estimation import Covariances
    from pyriemann.tangentspace import TangentSpace
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline as sk_pipeline

    def epochs(recs):
        Xs, ys = [], []
        for rec in recs:
            raw = rec.raw.copy().pick("eeg").filter(8.0, 30.0, verbose="error")
            ev = mapped_events(rec, config.label_map)
            ev = ev[ev["description"].isin(config.classes)]
            sfreq = raw.info["sfreq"]
            data = raw.get_data(units="uV")
            n = int(round((config.tmax - config.tmin) * sfreq))
            for onset, label in zip(ev["onset"], ev["description"], strict=True):
                a = int(round((onset + config.tmin) * sfreq))
                if a >= 0 and a + n <= data.shape[1]:
                    Xs.append(data[:, a:a + n])
                    ys.append(label)
        return np.stack(Xs), np.array(ys)

    X, y = epochs(train)
    Xt, _ = epochs(test)
    clf = sk_pipeline(Covariances("oas"), TangentSpace(), LogisticRegression(max_iter=1000))
    return clf.fit(X, y).predict(Xt)


def offline_heldout(train: Sequence[Recording], test: Sequence[Recording],
                    config: EvaluationConfig) -> dict[str, dict]:
    """Held-out accuracy of every pipeline and of the reference (see the module docstring)."""
    ep = epoch_recordings(train, classes=config.classes, tmin=config.tmin, tmax=config.tmax,
                          label_map=config.label_map)
    ept = epoch_recordings(test, classes=config.classes, tmin=config.tmin, tmax=config.tmax,
                           picks=list(ep.ch_names), label_map=config.label_map, min_trials=1)
    labels, counts = np.unique(ept.y, return_counts=True)
    chance = float(counts.max() / counts.sum())
    out = {}
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", category=UserWarning)
        for name in config.cue_locked_pipelines():
            pred = make_pipeline(name, ep.sfreq, (8.0, 30.0)).fit(ep.X, ep.y).predict(ept.X)
            out[name] = binomial_summary(int(np.sum(pred == ept.y)), len(ept.y), chance)
        pred = reference_ts_lr(train, test, config)
    out["reference_ts_lr"] = binomial_summary(int(np.sum(pred == ept.y)), len(ept.y), chance)
    return out


@dataclass
class EvaluationResult:
    """Everything ``yume evaluate`` reports (JSON-able through :meth:`to_dict`)."""

    offline: dict[str, dict]
    cue_locked: dict
    asynchronous: dict
    train: list[str]
    test: list[str]

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        lines = ["offline, held out (train on the training recordings, test on the others):",
                 f"  {'pipeline':<16} {'accuracy':>8} {'n':>4} {'95% CI':>13} {'chance':>6} "
                 f"{'p':>7}"]
        for name, r in self.offline.items():
            flag = "  within chance" if r["within_chance"] else ""
            lines.append(f"  {name:<16} {r['accuracy']:>8.3f} {r['n']:>4} "
                         f"{r['ci95'][0]:>6.2f}-{r['ci95'][1]:<6.2f} {r['chance']:>6.2f} "
                         f"{r['p_vs_chance']:>7.3f}{flag}")
        lines.append("pseudo-online (the live path: decoder, policy, dwell, refractory):")
        head = (f"  {'decoder':<40} {'cues':>4} {'hit':>5} {'wrong':>5} {'miss':>5} "
                f"{'FA/min':>6} {'rest min':>8} {'t hit s':>7} {'ITR b/min':>9}")
        lines.append(head)
        for label, block in (("cue-locked, default policy", self.cue_locked),
                             ("asynchronous, CV-chosen point", self.asynchronous)):
            s = block["score"]
            lat = s["median_latency_s"]
            lines.append(
                f"  {label + ' (' + block['pipeline'] + ')':<40} {s['n_cues']:>4} "
                f"{s['hit_rate']:>5.2f} {s['wrong_rate']:>5.2f} {s['miss_rate']:>5.2f} "
                f"{s['fa_per_min']:>6.2f} {s['rest_minutes']:>8.2f} "
                f"{'-' if lat is None else f'{lat:.2f}':>7} {s['itr_bits_per_min']:>9.2f}")
        p = self.asynchronous["point"]
        cv = self.asynchronous["cv"]
        lines.append(
            f"  operating point (chosen on the training recordings, {cv['folds']}): threshold "
            f"{p['threshold']:g}, dwell {p['dwell_s']:g} s, tau {p['tau_s']:g} s; in CV "
            f"{cv['hit_rate']:.2f} hits, {cv['wrong_rate']:.2f} wrong, {cv['fa_per_min']:.2f} "
            f"FA/min{'' if self.asynchronous['meets_target'] else ' (target NOT met in CV)'}")
        return "\n".join(lines)


def _pooled(bundle, test: Sequence[Recording], cfg: AsyncConfig,
            points: Sequence[OperatingPoint], windows: Sequence | None = None
            ) -> dict[OperatingPoint, PseudoOnlineScore]:
    per = [score_grid(bundle, rec, cfg, points, None if windows is None else windows[k])
           for k, rec in enumerate(test)]
    return {p: PseudoOnlineScore.pooled([g[p] for g in per]) for p in points}


def evaluate(train: Sequence[str | Path | Recording], test: Sequence[str | Path | Recording],
             config: EvaluationConfig | None = None, out: str | Path | None = None,
             progress: bool = True) -> EvaluationResult:
    """Offline and pseudo-online evaluation; writes ``evaluation.json`` and ``curve.png`` to
    ``out`` when given."""
    config = config or EvaluationConfig()
    train = [r if isinstance(r, Recording) else load_recording(r) for r in train]
    test = [r if isinstance(r, Recording) else load_recording(r) for r in test]
    if not train or not test:
        raise DatasetError("Give at least one training and one test recording.")
    offline = offline_heldout(train, test, config)

    acfg = config.asynchronous()
    sync = train_decoder(train, TrainingConfig(classes=list(config.classes), tmin=config.tmin,
                                               tmax=config.tmax, label_map=config.label_map,
                                               pipelines=config.cue_locked_pipelines(),
                                               step_s=acfg.step_s), progress=progress)
    default = OperatingPoint()  # what `yume run --decoder` uses without an operating point
    sync_score = _pooled(sync.bundle, test, acfg, [default])[default]

    asy = train_async(train, acfg, progress=progress)
    chosen = asy.chosen.point
    sweep = [replace(chosen, threshold=float(t)) for t in acfg.thresholds]
    decoded = [decode_for_scoring(asy.bundle, rec, acfg) for rec in test]  # once, for both
    scores = _pooled(asy.bundle, test, acfg, sorted(set(sweep) | {chosen},
                                                    key=lambda p: p.threshold), decoded)
    traces = cue_traces(asy.bundle, test, acfg, decoded)
    test_curve = [{"threshold": p.threshold, "hit_rate": s.hit_rate,
                   "wrong_rate": s.wrong_rate, "fa_per_min": s.fa_per_min}
                  for p, s in scores.items()]
    cv_curve = [c.to_dict() for c in asy.curves[asy.best]
                if c.point.dwell_s == chosen.dwell_s and c.point.tau_s == chosen.tau_s]
    result = EvaluationResult(
        offline=offline,
        cue_locked={"pipeline": sync.best, "point": asdict(default),
                    "score": sync_score.to_dict()},
        asynchronous={"pipeline": asy.best, "point": asdict(chosen),
                      "meets_target": asy.meets_target,
                      "cv": asy.chosen.to_dict() | {"folds": asy.folds},
                      "score": scores[chosen].to_dict(), "test_curve": test_curve,
                      "cv_curve": cv_curve, "training_windows": asy.n_windows,
                      "traces": traces},
        train=[str(r.path) for r in train], test=[str(r.path) for r in test])
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation.json").write_text(json.dumps(result.to_dict(), indent=2,
                                                        default=float))
        plot_curve(result, out / "curve.png")
        plot_traces(result, out / "traces.png")
    return result


def cue_traces(bundle, test: Sequence[Recording], cfg: AsyncConfig,
               decoded: Sequence | None = None, before_s: float = 1.0,
               after_s: float = 6.0) -> dict:
    """The decoder's probabilities around every test cue, by cue class (what a reviewer looks at
    before believing a hit rate).

    Each decoded window is placed at its end, relative to the onset of the cue it falls after;
    per cue class and decoder class the median and quartiles over cues are kept on a 0.25 s grid.
    ``decoded``: each test recording's windows (:func:`decode_for_scoring`), if already made.
    """
    grid = np.round(np.arange(-before_s, after_s + 1e-9, cfg.step_s), 6)
    per: dict[str, list[np.ndarray]] = {}
    for k, rec in enumerate(test):
        windows = (decoded[k] if decoded is not None
                   else decode_for_scoring(bundle, rec, cfg))
        t = np.array([w.end_count / bundle.sfreq for w in windows])
        P = np.array([w.probabilities for w in windows])
        ev = mapped_events(rec, cfg.label_map)
        for onset, label in zip(ev["onset"], ev["description"], strict=True):
            if label not in (*cfg.classes, cfg.rest_label):
                continue
            idx = np.searchsorted(t, onset + grid)
            if idx[-1] >= len(t) or onset - before_s < t[0]:
                continue  # too close to an end of the recording
            per.setdefault(str(label), []).append(P[idx])
    out = {"t_s": grid.tolist(), "classes": list(bundle.classes), "cues": {}}
    for label, rows in per.items():
        a = np.stack(rows)  # (cues, times, classes)
        q = np.percentile(a, [25, 50, 75], axis=0)
        out["cues"][label] = {"n": len(rows), "q25": q[0].T.tolist(),
                              "median": q[1].T.tolist(), "q75": q[2].T.tolist()}
    return out


def plot_traces(result: EvaluationResult, path: str | Path) -> Path:
    """Median (and quartiles) of each class's probability around the test cues, one panel per
    cue class, with the chosen threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = result.asynchronous
    tr = a["traces"]
    labels = list(tr["cues"])
    fig, axes = plt.subplots(1, max(len(labels), 1), figsize=(4.0 * max(len(labels), 1), 3.4),
                             dpi=100, sharey=True, squeeze=False)
    t = np.array(tr["t_s"])
    for ax, label in zip(axes[0], labels, strict=False):
        block = tr["cues"][label]
        for k, name in enumerate(tr["classes"]):
            line, = ax.plot(t, block["median"][k], label=name)
            ax.fill_between(t, block["q25"][k], block["q75"][k], color=line.get_color(),
                            alpha=0.15)
        ax.axvline(0.0, color="k", lw=0.6)
        ax.axhline(a["point"]["threshold"], color="grey", lw=0.8, ls=":")
        ax.set_title(f"cue {label} (n = {block['n']})", fontsize=9)
        ax.set_xlabel("s from cue onset (window end)")
    axes[0][0].set_ylabel("decoded probability (median, quartiles)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"asynchronous {a['pipeline']} on the test runs; dotted: chosen threshold",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_curve(result: EvaluationResult, path: str | Path) -> Path:
    """Hits against false activations per minute as the threshold moves (test and CV)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = result.asynchronous
    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=110)
    for curve, style, label in ((a["cv_curve"], "o--", "pseudo-online CV (training runs)"),
                                (a["test_curve"], "s-", "test runs")):
        ax.plot([c["fa_per_min"] for c in curve], [c["hit_rate"] for c in curve], style,
                label=label)
        for c in curve[:: max(len(curve) // 5, 1)]:
            ax.annotate(f"{c['threshold']:g}", (c["fa_per_min"], c["hit_rate"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    s = a["score"]
    ax.plot([s["fa_per_min"]], [s["hit_rate"]], "r*", ms=14, label="chosen point (test)")
    c = result.cue_locked["score"]
    ax.plot([c["fa_per_min"]], [c["hit_rate"]], "kx", ms=10, mew=2,
            label="cue-locked decoder, default policy")
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    ax.axhline(0.6, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("false activations per minute of rest")
    ax.set_ylabel("cues answered with the right first command")
    ax.set_title(f"asynchronous {a['pipeline']}, dwell {a['point']['dwell_s']:g} s "
                 "(labels: threshold)", fontsize=9)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
