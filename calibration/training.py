"""Train a decoder from recordings: epoch, cross-validate every candidate pipeline, keep the best.

:func:`train_decoder` is what ``yume train`` calls. Each pipeline is scored two or three ways:

- stratified k-fold cross-validation (shuffled, seeded): the usual figure, comparable with
  MOABB-style benchmarks;
- a chronological split (train on the first trials, test on the last ones): closer to online
  use, where the decoder meets later data, electrode drift and fatigue included;
- with two recordings or more, leave-one-recording-out: trained on the other runs, tested on a
  whole run it never saw (what a decoder meets in the next session).

The pipeline with the best cross-run accuracy (k-fold with a single recording: within one run,
trials a few seconds apart share everything, and on EEGMMIDB S001 k-fold picked the pipeline
that was worst on the next run) is refitted on every trial and packed into a
:class:`control.bundle.DecoderBundle`; ties go to the best k-fold, then chronological accuracy,
then to the candidate named first. A chronological test part of fewer than
:data:`MIN_CHRONO_TRIALS` trials is not scored (one trial would move it by a fifth or more).
Every k-fold accuracy comes with its exact binomial 95 % interval, and the table marks those
that include chance.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from calibration.dataset import (
    DatasetError,
    EpochSet,
    Recording,
    epoch_recordings,
    load_recording,
)
from calibration.metrics import binomial_summary, score_predictions
from calibration.pipelines import make_pipeline, pipeline_names
from control.bundle import DecoderBundle

logger = logging.getLogger(__name__)

MIN_CHRONO_TRIALS = 10  # fewer held-out trials than this make no figure worth reporting


class TrainingError(ValueError):
    """Training could not run; the message says what to change."""


@dataclass
class TrainingConfig:
    """How to train (all of it ends up in the report and the bundle).

    Parameters
    ----------
    paradigm : {"mi", "ssvep"}
        Selects the candidate pipelines and the default band.
    classes : sequence of str or None
        Event labels to use as classes (default: every cue label found).
    band : (float, float) or None
        Pass band (Hz); default 8-30 Hz for MI, 6-40 Hz for SSVEP.
    tmin, tmax : float
        Window after the cue (s). The online window is ``tmax - tmin``.
    picks : sequence of str or None
        Channels (default: all EEG).
    resample : float or None
        Resample recordings to this rate (Hz) first.
    pipelines : sequence of str or None
        Candidates (default: all of the paradigm's).
    n_folds : int
        Folds of the stratified cross-validation.
    chrono_test : float
        Fraction of the trials, the latest ones, held out by the chronological split.
    seed : int
        Seed of the fold shuffling.
    step_s : float
        Time between online decisions (stored in the bundle).
    decision_s : float or None
        Time per independent decision used for the ITR (default: the window length).
    n_components : int
        CSP filters.
    label_map : dict or None
        Renames event labels before selecting classes (``{"T1": "left_hand"}``).
    actions : dict or None
        Class -> action string (default: :func:`control.bundle.default_actions`).
    min_trials : int
        Fewest trials per class accepted.
    crop_offsets : sequence of float
        Extra training windows per trial, shifted by these many seconds after ``tmin`` (kept
        only where the shifted window still ends within the cue's duration). The decoder sees
        sliding windows online, so training on several crops of each trial matches that use
        and multiplies the training data; scoring always uses the ``tmin``-``tmax`` window
        only, and crops of one trial stay in the same fold. Empty: no crops.
    """

    paradigm: str = "mi"
    classes: Sequence[str] | None = None
    band: tuple[float, float] | None = None
    tmin: float = 0.5
    tmax: float = 2.5
    picks: Sequence[str] | None = None
    resample: float | None = None
    pipelines: Sequence[str] | None = None
    n_folds: int = 5
    chrono_test: float = 0.2
    seed: int = 42
    step_s: float = 0.5
    decision_s: float | None = None
    n_components: int = 6
    label_map: dict | None = None
    actions: dict | None = None
    min_trials: int = 5
    crop_offsets: Sequence[float] = (0.5, 1.0, 1.5)

    def __post_init__(self) -> None:
        if self.paradigm not in ("mi", "ssvep"):
            raise TrainingError(f"Unknown paradigm {self.paradigm!r}; use 'mi' or 'ssvep'.")
        if self.band is None:
            self.band = (8.0, 30.0) if self.paradigm == "mi" else (6.0, 40.0)
        self.band = (float(self.band[0]), float(self.band[1]))
        if not 0 < self.band[0] < self.band[1]:
            raise TrainingError(f"Invalid band {self.band}; give low < high, both > 0 Hz.")
        if self.tmax <= self.tmin:
            raise TrainingError(f"tmax ({self.tmax}) must exceed tmin ({self.tmin}).")
        if not 0 < self.chrono_test < 1:
            raise TrainingError("chrono_test must be a fraction between 0 and 1.")
        if self.classes is not None:
            self.classes = [str(c) for c in self.classes]

    @property
    def window_s(self) -> float:
        return float(self.tmax - self.tmin)


@dataclass
class PipelineResult:
    """Scores of one candidate pipeline."""

    name: str
    cv: dict
    chrono: dict | None
    fold_accuracies: list[float]
    fit_s: float
    cross_run: dict | None = None

    @property
    def cv_accuracy(self) -> float:
        return float(self.cv["accuracy"])


@dataclass
class TrainingResult:
    """What :func:`train_decoder` produced.

    Attributes
    ----------
    bundle : DecoderBundle
        The best pipeline, refitted on all trials.
    results : list of PipelineResult
        Every candidate, in the order tried.
    best : str
        Name of the chosen pipeline.
    epochs : EpochSet
        The trials trained on.
    recordings : list of Recording
        The loaded recordings (for the report's figures).
    """

    bundle: DecoderBundle
    results: list[PipelineResult]
    best: str
    epochs: EpochSet
    config: TrainingConfig
    recordings: list[Recording] = field(default_factory=list)
    crop_offsets: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        """JSON-able summary (used by the report and the bundle's figures)."""
        cfg = asdict(self.config)
        return {
            "best": self.best,
            "config": cfg,
            "n_trials": int(len(self.epochs.y)),
            "trials_per_class": self.epochs.counts(),
            "ch_names": list(self.epochs.ch_names),
            "sfreq": self.epochs.sfreq,
            "recordings": [str(r.path) for r in self.recordings],
            "training_crop_offsets_s": list(self.crop_offsets),
            "pipelines": {
                r.name: {"cv": r.cv, "chrono": r.chrono, "cross_run": r.cross_run,
                         "fold_accuracies": r.fold_accuracies, "fit_s": r.fit_s}
                for r in self.results
            },
        }

    def table(self) -> str:
        """Plain-text table of the scores (what ``yume train`` prints)."""
        head = (f"{'pipeline':<10} {'cv acc':>7} {'n':>4} {'95% CI':>11} {'± sd':>5} "
                f"{'bal acc':>8} {'kappa':>6} {'ITR b/min':>9} {'chrono acc':>10} {'n':>3}"
                + (f" {'cross-run':>9}" if self.results and self.results[0].cross_run else ""))
        lines = [head, "-" * len(head)]
        counts = np.unique(self.epochs.y, return_counts=True)[1]
        chance = float(counts.max() / counts.sum())
        for r in self.results:
            ch = r.chrono or {}
            b = binomial_summary(int(round(r.cv["accuracy"] * r.cv["n"])), r.cv["n"], chance)
            flag = "  k-fold not above chance (p >= 0.05)" if b["within_chance"] else ""
            chrono = (f"{ch['accuracy']:>10.3f} {ch['n']:>3}" if ch
                      else f"{'not scored':>10} {'':>3}")
            if r.cross_run:
                chrono += f" {r.cross_run['accuracy']:>9.3f}"
            lines.append(
                f"{r.name + (' *' if r.name == self.best else ''):<10} "
                f"{r.cv['accuracy']:>7.3f} {r.cv['n']:>4} "
                f"{b['ci95'][0]:>5.2f}-{b['ci95'][1]:<5.2f} {np.std(r.fold_accuracies):>5.2f} "
                f"{r.cv['balanced_accuracy']:>8.3f} {r.cv['kappa']:>6.2f} "
                f"{r.cv['itr_bits_per_min']:>9.2f} {chrono}{flag}")
        rule = ("best cross-run accuracy (leave one recording out), ties to k-fold"
                if self.results and self.results[0].cross_run else "best k-fold accuracy, ties")
        lines.append(f"chance (the largest class): {chance:.3f}; * chosen: {rule} then "
                     "chronological accuracy, then the first named")
        return "\n".join(lines)


def _fit_predict(pipe, X_train, y_train, X_test) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return pipe.fit(X_train, y_train).predict(X_test)


def chronological_split(onsets: np.ndarray, y: np.ndarray, test_fraction: float
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """Indices of the earliest trials (train) and the latest ``test_fraction`` (test); None when
    a class would be missing from the training part."""
    order = np.argsort(onsets, kind="stable")
    n_test = max(1, int(round(len(order) * test_fraction)))
    if n_test < MIN_CHRONO_TRIALS:
        logger.warning("the chronological split would test %d trial(s); it is not scored "
                       "(at least %d are needed)", n_test, MIN_CHRONO_TRIALS)
        return None
    train, test = order[:-n_test], order[-n_test:]
    if set(np.unique(y[train])) != set(np.unique(y)):
        return None
    return train, test


@dataclass
class Crops:
    """Extra training windows of each trial: ``X[k][i]`` is trial ``i`` shifted by
    ``offsets[k]``, valid where ``valid[k][i]``."""

    offsets: list[float]
    X: list[np.ndarray]
    valid: list[np.ndarray]

    def training_set(self, epochs: EpochSet, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The windows of trials ``idx``: the scored window plus every valid crop."""
        Xs, ys = [epochs.X[idx]], [epochs.y[idx]]
        for Xk, ok in zip(self.X, self.valid, strict=True):
            keep = idx[ok[idx]]
            Xs.append(Xk[keep])
            ys.append(epochs.y[keep])
        return np.concatenate(Xs), np.concatenate(ys)


def make_crops(recordings: Sequence[Recording], epochs: EpochSet,
               config: TrainingConfig) -> Crops:
    """Cut the extra training windows of :attr:`TrainingConfig.crop_offsets`, aligned on the
    trials of ``epochs``; offsets whose window would outlast the shortest cue are dropped."""
    durations = np.concatenate([
        r.events.loc[r.events["description"].map(
            lambda d: (config.label_map or {}).get(d, d)).isin(epochs.classes),
            "duration"].to_numpy(float) for r in recordings])
    longest = float(durations.min()) if len(durations) else 0.0
    offsets = [float(o) for o in config.crop_offsets
               if o > 0 and config.tmax + o <= longest + 1e-6]
    key = {(int(g), round(float(t), 4)): i
           for i, (g, t) in enumerate(zip(epochs.groups, epochs.onsets, strict=True))}
    Xs, valid = [], []
    for o in list(offsets):
        try:
            c = epoch_recordings(recordings, classes=list(epochs.classes), tmin=config.tmin + o,
                                 tmax=config.tmax + o, picks=list(epochs.ch_names),
                                 resample=config.resample, label_map=config.label_map,
                                 min_trials=1)
        except DatasetError:  # windows run off the recording: no crops at this offset
            offsets.remove(o)
            continue
        Xk = np.zeros_like(epochs.X)
        ok = np.zeros(len(epochs.y), dtype=bool)
        for j, (g, t) in enumerate(zip(c.groups, c.onsets, strict=True)):
            i = key.get((int(g), round(float(t), 4)))
            if i is not None:
                Xk[i], ok[i] = c.X[j], True
        Xs.append(Xk)
        valid.append(ok)
    if offsets:
        logger.info("training on %d extra crop(s) per trial at +%s s", len(offsets),
                    ", +".join(f"{o:g}" for o in offsets))
    return Crops(offsets, Xs, valid)


def evaluate_pipeline(name: str, epochs: EpochSet, config: TrainingConfig,
                      progress=None, crops: Crops | None = None) -> PipelineResult:
    """Score one pipeline with stratified k-fold CV and the chronological split (training on
    the crops of the training trials when given, testing on the scored window only)."""
    crops = crops or Crops([], [], [])
    X, y = epochs.X, epochs.y
    classes = list(epochs.classes)
    proto = make_pipeline(name, epochs.sfreq, config.band, n_components=config.n_components)
    decision_s = config.decision_s or config.window_s
    n_folds = min(int(config.n_folds), int(min(epochs.counts().values())))
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=config.seed)
    pred = np.empty_like(y)
    fold_acc = []
    t0 = time.perf_counter()
    for train, test in skf.split(X, y):
        pred[test] = _fit_predict(clone(proto), *crops.training_set(epochs, train), X[test])
        fold_acc.append(float(np.mean(pred[test] == y[test])))
        if progress is not None:
            progress.update(1)
    fit_s = (time.perf_counter() - t0) / n_folds
    cv = score_predictions(y, pred, classes, decision_s)
    cv["n_folds"] = n_folds
    chrono = None
    split = chronological_split(epochs.onsets, y, config.chrono_test)
    if split is not None:
        train, test = split
        chrono = score_predictions(
            y[test], _fit_predict(clone(proto), *crops.training_set(epochs, train), X[test]),
            classes, decision_s)
    elif len(y) * config.chrono_test >= MIN_CHRONO_TRIALS:
        logger.warning("chronological split skipped: the earliest trials lack a class")
    cross_run = None
    runs = np.unique(epochs.groups)
    if len(runs) >= 2:
        pred = np.empty_like(y)
        for g in runs:
            test, train = np.nonzero(epochs.groups == g)[0], np.nonzero(epochs.groups != g)[0]
            pred[test] = _fit_predict(clone(proto), *crops.training_set(epochs, train), X[test])
        cross_run = score_predictions(y, pred, classes, decision_s)
        cross_run["n_runs"] = int(len(runs))
    if progress is not None:
        progress.update(1)
    return PipelineResult(name=name, cv=cv, chrono=chrono, fold_accuracies=fold_acc, fit_s=fit_s,
                          cross_run=cross_run)


def train_decoder(recordings: Sequence[str | Path | Recording],
                  config: TrainingConfig | None = None, progress: bool = True) -> TrainingResult:
    """Train a decoder on one or more recordings and pick the best pipeline by CV.

    Parameters
    ----------
    recordings : sequence of path or Recording
        Session folders, EEG files with events, or loaded :class:`Recording` objects.
    config : TrainingConfig or None
        Classes, band, window, channels, candidates (defaults: see :class:`TrainingConfig`).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    TrainingResult
        Scores of every candidate and the bundle of the best one.

    Raises
    ------
    DatasetError, TrainingError
        Unusable recordings (no events, too few trials, ...) or settings.
    """
    from tqdm import tqdm

    config = config or TrainingConfig()
    recs = [r if isinstance(r, Recording) else load_recording(r) for r in recordings]
    epochs = epoch_recordings(recs, classes=config.classes, tmin=config.tmin, tmax=config.tmax,
                              picks=config.picks, resample=config.resample,
                              label_map=config.label_map, min_trials=config.min_trials)
    crops = make_crops(recs, epochs, config)
    names = list(config.pipelines or pipeline_names(config.paradigm))
    if not names:
        raise TrainingError("No pipeline to try; name at least one.")
    n_folds = min(int(config.n_folds), int(min(epochs.counts().values())))
    logger.info("training on %d trials %s, %d channels at %g Hz", len(epochs.y), epochs.counts(),
                len(epochs.ch_names), epochs.sfreq)
    results = []
    # Single-threaded BLAS: these are many small matrices, where BLAS threads only contend (10-25x
    # slower on a busy 2-core machine, measured) and CV folds could run in parallel instead.
    bar = tqdm(total=len(names) * (n_folds + 1), desc="cross-validating", unit="fit",
               disable=not progress)
    with threadpool_limits(1), bar:
        for name in names:
            bar.set_postfix_str(name)
            results.append(evaluate_pipeline(name, epochs, config, progress=bar, crops=crops))
    best = max(results, key=lambda r: ((r.cross_run or {}).get("accuracy", 0), r.cv["accuracy"],
                                       (r.chrono or {}).get("accuracy", 0)))
    final = make_pipeline(best.name, epochs.sfreq, config.band, n_components=config.n_components)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", category=UserWarning)
        final.fit(*crops.training_set(epochs, np.arange(len(epochs.y))))
    result = TrainingResult(bundle=None, results=results, best=best.name,  # type: ignore
                            epochs=epochs, config=config, recordings=recs,
                            crop_offsets=crops.offsets)
    summary = result.summary()
    figures = {"cv": best.cv, "chrono": best.chrono, "candidates": {
        r.name: {"cv_accuracy": r.cv["accuracy"],
                 "chrono_accuracy": (r.chrono or {}).get("accuracy")} for r in results},
        "n_trials": summary["n_trials"], "trials_per_class": summary["trials_per_class"],
        "recordings": summary["recordings"]}
    result.bundle = DecoderBundle(
        pipeline=final, ch_names=epochs.ch_names, sfreq=epochs.sfreq,
        classes=tuple(str(c) for c in final.classes_), units=epochs.units, band=config.band,
        window_s=config.window_s, step_s=config.step_s, actions=dict(config.actions or {}),
        paradigm=config.paradigm, name=best.name, figures=figures)
    return result
