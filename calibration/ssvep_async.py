"""Asynchronous SSVEP: a learned no-control state and the operating point that meets a
false-activation target, both chosen pseudo-online, as :mod:`calibration.async_training` does
for motor imagery.

A CCA decoder trained on target windows only calls every window some target, and its softmax is
confident (the fitted temperature sharpens it), so a person who rests or looks away while the
grid menu is armed still picks items. Here:

1. :func:`sliding_windows` (the motor-imagery one) cuts training windows across every cue and
   rest period; rest periods are the recording's ``rest`` events or, in a ``yume calibrate``
   session, its fixation / inter-trial / break events merged (:func:`with_rest_periods`).
2. The decoder is :class:`control.estimators.CCAClassifier` or :class:`~control.estimators.
   FilterBankCCA` with ``rest_label``: a logistic gate on the best correlation and its margin
   over the second gives p(control), and ``rest`` is a class that the policy never fires on.
3. :func:`pseudo_online_cv` plays each held-out recording (leave one out) through the live path
   (:func:`calibration.async_training.score_grid`: :class:`~control.online.OnlineDecoder`,
   :class:`~control.policy.ControlPolicy`, the scorer of :mod:`calibration.pseudo_online`) at
   every operating point of a grid; :func:`choose_point` keeps the point that meets the
   false-activation target (default 1 per minute of rest) with the most hits, ties to fewer
   wrong picks, then fewer false activations, then the faster pick.
4. :func:`train_ssvep_async` refits the chosen pipeline on every window; the bundle carries the
   operating point in ``figures["operating_point"]`` (what ``gui.steering.decoder_control``
   applies) and the whole curve in ``figures["asynchronous"]``.

The refractory period of every point is at least the window (a menu pick waits that long
anyway, see :class:`control.policy.ControlPolicy`), so points scored here in discrete mode give
the same detections as the grid menu.

``no_control=False`` trains and tunes the same decoder without the rest state (threshold and
dwell alone), the baseline that shows what the learned state adds.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from calibration.async_training import (
    AsyncConfig,
    AsyncResult,
    CurvePoint,
    choose_operating_point,
    curve,
    score_grid,
    sliding_windows,
)
from calibration.async_training import pseudo_online_cv as mi_pseudo_online_cv
from calibration.dataset import DatasetError, Recording, load_recording
from calibration.paradigm import BOOKKEEPING
from calibration.pipelines import SSVEP_PIPELINES, make_pipeline
from calibration.pseudo_online import OperatingPoint, PseudoOnlineScore, mapped_events
from control.bundle import DecoderBundle

logger = logging.getLogger(__name__)

# Non-idle actions for the targets in discrete mode (the grid menu ignores them): a target that
# mapped to "·" would be a rest class and never fire.
_TARGET_ACTIONS = ("W", "A", "S", "D", "W+A", "W+D", "S+A", "S+D", "←", "→", "↑", "↓", "↑→",
                   "↑←", "↓→", "↓←")
# Bookkeeping events of a calibration session during which the participant does not attend.
REST_EVENTS = ("fixation", "iti", "break")


@dataclass
class SSVEPAsyncConfig(AsyncConfig):
    """How to train and tune an asynchronous SSVEP decoder (fields of
    :class:`calibration.async_training.AsyncConfig`, with SSVEP defaults, and these).

    Parameters
    ----------
    classes : sequence of str
        Target labels (``ssvep:12``...); empty: every ``ssvep:`` cue label found.
    no_control : bool
        Learn the no-control (rest) state; False tunes threshold and dwell alone (baseline).
    picks : sequence of str, "posterior" or None
        Channels to decode: ``"posterior"`` (default) keeps the parietal and occipital ones
        (names starting with P, PO, O or I, as in Chen et al. 2015's nine) when at least three
        are present, else every EEG channel; None: every EEG channel. CCA over 32 channels
        finds a chance correlation of about 0.4 in rest windows of 2 s, over the eight
        posterior ones of standard_32 about 0.13, so rest and gaze separate far better.
    rest_events : sequence of str
        Event labels merged into rest periods when a recording has no ``rest_label`` events.
    """

    classes: Sequence[str] = ()
    band: tuple[float, float] = (6.0, 40.0)
    stride_s: float = 0.25
    balance: bool = False  # the gate is class-balanced itself and learns from all rest
    pipelines: Sequence[str] = SSVEP_PIPELINES
    windows: Sequence[float] | None = None  # one window (window_s): the CCA gate is fitted to it
    # p(control) is referenced to rest (uniform over rest windows), so the useful thresholds
    # lie in its upper tail.
    thresholds: Sequence[float] = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
    dwells: Sequence[float] = (0.25, 0.5, 1.0, 1.5)
    taus: Sequence[float] = (0.25, 0.5, 1.0)
    no_control: bool = True
    picks: Sequence[str] | str | None = "posterior"
    rest_events: Sequence[str] = REST_EVENTS

    @property
    def refractory(self) -> float:
        """Refractory period of every point: at least one window (as a menu pick)."""
        return max(float(self.refractory_s), float(self.window_s))

    def points(self) -> list[OperatingPoint]:
        return [OperatingPoint(float(t), float(d), float(tau), self.refractory)
                for t, d, tau in itertools.product(self.thresholds, self.dwells, self.taus)]


def with_rest_periods(recording: Recording, config: SSVEPAsyncConfig) -> Recording:
    """``recording`` with its events renamed by ``label_map`` and, when it has no
    ``rest_label`` event, rest periods made of its merged fixation / inter-trial / break events
    (consecutive ones, as ``yume calibrate`` writes them, become one period); channels picked
    by ``config.picks``."""
    ev = mapped_events(recording, config.label_map).sort_values("onset", kind="stable")
    rest = config.rest_label
    if not (ev["description"] == rest).any():
        rows, current = [], None
        for onset, dur, label in zip(ev["onset"], ev["duration"], ev["description"],
                                     strict=True):
            if label in config.rest_events and dur > 0:
                if current is not None and onset <= current[0] + current[1] + 0.05:
                    current[1] = onset + dur - current[0]
                else:
                    current = [float(onset), float(dur)]
                    rows.append(current)
            elif label not in BOOKKEEPING or dur > 0:
                current = None
        merged = pd.DataFrame([(o, d, rest) for o, d in rows],
                              columns=["onset", "duration", "description"])
        ev = pd.concat([ev[~ev["description"].isin(config.rest_events)], merged])
        ev = ev.sort_values("onset", kind="stable")
    raw = recording.raw
    picks = config.picks
    if picks == "posterior":
        picks = posterior_channels(raw.ch_names)
    if picks:
        missing = [c for c in picks if c not in raw.ch_names]
        if missing:
            raise DatasetError(f"{recording.path.name} lacks channels {missing}; pick channels "
                               "that every recording has.")
        raw = raw.copy().pick(list(picks))
    return Recording(raw, ev.reset_index(drop=True), recording.path, list(recording.notes))


def posterior_channels(ch_names: Sequence[str]) -> list[str] | None:
    """The parietal and occipital channels of ``ch_names`` (P*, PO*, O*, I*; not Fp*), or None
    when fewer than three are."""
    found = [c for c in ch_names
             if c[:1].upper() in ("P", "O", "I") and not c.upper().startswith("FP")]
    return found if len(found) >= 3 else None


def _targets(recordings: Sequence[Recording], config: SSVEPAsyncConfig) -> tuple[str, ...]:
    if config.classes:
        return tuple(str(c) for c in config.classes)
    found = sorted({str(d) for r in recordings for d in r.events["description"]
                    if str(d).lower().startswith("ssvep:")})
    if len(found) < 2:
        raise DatasetError("Fewer than two SSVEP targets (cues labelled like 'ssvep:12') in the "
                           "recordings; name the targets with --classes or map them with --map.")
    return tuple(found)


def _check_rest(recordings: Sequence[Recording], config: SSVEPAsyncConfig) -> None:
    """One sentence when no rest period can give a training window."""
    longest = max((float(d) for r in recordings
                   for d, lab in zip(r.events["duration"], r.events["description"], strict=True)
                   if lab == config.rest_label), default=0.0)
    need = config.latency_s + config.window_s
    if longest <= need + 1e-6:
        where = (f"its longest rest period lasts {longest:.2f} s" if longest
                 else f"it has no rest period (label {config.rest_label!r}, or fixation/iti/"
                      "break events)")
        raise DatasetError(
            f"A no-control state needs rest periods longer than {need:g} s, but {where}; "
            "record rest (e.g. `yume calibrate --timing iti_min=3,iti_max=5`) or map a rest "
            "label with --map.")


def fit_ssvep_bundle(name: str, X: np.ndarray, y: np.ndarray, ch_names: Sequence[str],
                     sfreq: float, config: SSVEPAsyncConfig) -> DecoderBundle:
    """Fit pipeline ``name`` (``"cca"`` or ``"fbcca"``) on windows, with the no-control state
    when ``config.no_control`` (else on the target windows only), and pack it as a bundle."""
    pipe = make_pipeline(name, sfreq, config.band)
    if config.no_control:
        pipe.set_params(cca__rest_label=config.rest_label)
    else:
        keep = y != config.rest_label
        X, y = X[keep], y[keep]
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", category=UserWarning)
        pipe.fit(X, y)
    classes = tuple(str(c) for c in pipe.classes_)
    targets = [c for c in classes if c != config.rest_label]
    actions = {c: a for c, a in zip(targets, itertools.cycle(_TARGET_ACTIONS), strict=False)}
    if config.rest_label in classes:
        actions[config.rest_label] = "·"
    return DecoderBundle(pipeline=pipe, ch_names=tuple(ch_names), sfreq=sfreq, classes=classes,
                         band=config.band, window_s=config.window_s, step_s=config.step_s,
                         actions=actions, paradigm="ssvep", name=name)


def prepare(recordings: Sequence[str | Path | Recording], config: SSVEPAsyncConfig
            ) -> tuple[list[Recording], SSVEPAsyncConfig]:
    """Load and prepare the recordings (rest periods, picks) and fill in the targets."""
    from dataclasses import replace

    recs = [with_rest_periods(r if isinstance(r, Recording) else load_recording(r), config)
            for r in recordings]
    if not recs:
        raise DatasetError("No recording given; pass at least one SSVEP calibration.")
    config = replace(config, classes=_targets(recs, config), label_map=None)
    _check_rest(recs, config)
    return recs, config


def pseudo_online_cv(recordings: Sequence[Recording], config: SSVEPAsyncConfig,
                     progress: bool = False) -> tuple[dict[str, list[CurvePoint]], str]:
    """Leave-one-recording-out pseudo-online curves of every candidate pipeline (prepared
    recordings, see :func:`prepare`); one recording is cut in its two halves. The folds and the
    scoring are motor imagery's (:func:`calibration.async_training.pseudo_online_cv`)."""
    return mi_pseudo_online_cv(
        recordings, config, progress, fit=fit_ssvep_bundle, make_curve=_curve,
        missing="a target or rest has no training window; every recording needs cues of "
                "every target and rest.")


@dataclass
class SSVEPCurvePoint(CurvePoint):
    """:class:`~calibration.async_training.CurvePoint` with the median time to a hit."""

    median_latency_s: float | None = None

    def to_dict(self) -> dict:
        return super().to_dict() | {"median_latency_s": self.median_latency_s}


def _curve(scores: dict[OperatingPoint, list[PseudoOnlineScore]]) -> list[SSVEPCurvePoint]:
    return [SSVEPCurvePoint(**{f: getattr(c, f) for f in CurvePoint.__dataclass_fields__},
                            median_latency_s=PseudoOnlineScore.pooled(scores[c.point])
                            .median_latency_s)
            for c in curve(scores)]


@dataclass
class SSVEPAsyncResult(AsyncResult):
    """What :func:`train_ssvep_async` produced (as :class:`~calibration.async_training.
    AsyncResult`, with the prepared recordings)."""

    recordings: list[Recording] = field(default_factory=list, repr=False)

    def summary(self) -> dict:
        out = super().summary()
        # Each candidate's point by the rule that chose the shipped one (:func:`choose_point`).
        out["candidates"] = {name: choose_point(c, self.config.target_fa_per_min)[0].to_dict()
                             for name, c in self.curves.items()}
        return out | {"no_control": bool(self.config.no_control),
                      "targets": list(self.config.classes)}


def choose_point(points: Sequence[CurvePoint], target_fa_per_min: float
                 ) -> tuple[CurvePoint, bool]:
    """The operating point that meets the target with the most hits; ties go to fewer wrong
    picks, then to fewer false activations, then to the shorter median time to a hit, then to
    the higher threshold and the longer dwell.

    :func:`calibration.async_training.choose_operating_point` breaks ties by the threshold
    alone. SSVEP calibrations are easy for the decoder, so many points reach every hit in
    cross-validation; that rule took one at 0.8/min over one at 0/min with the same hits, and
    the most conservative of the 0/min points answers just before each calibration gaze ends,
    with no margin for a weaker response in the next session (both measured on the simulated
    participant). Fewer false activations, then the fastest answer, keep a margin on both
    sides. When no point meets the target, the one with the fewest false activations (the
    same fallback as for motor imagery).
    """
    ok = [c for c in points if c.fa_per_min <= target_fa_per_min + 1e-9]
    if ok:
        def latency(c: CurvePoint) -> float:
            lat = getattr(c, "median_latency_s", None)
            return float("inf") if lat is None else float(lat)

        return max(ok, key=lambda c: (c.hit_rate, -c.wrong_rate, -c.fa_per_min, -latency(c),
                                      c.point.threshold, c.point.dwell_s)), True
    return choose_operating_point(points, target_fa_per_min)


def train_ssvep_async(recordings: Sequence[str | Path | Recording],
                      config: SSVEPAsyncConfig | None = None,
                      progress: bool = False) -> SSVEPAsyncResult:
    """Train an asynchronous SSVEP decoder and choose its operating point pseudo-online.

    Raises
    ------
    DatasetError
        Fewer than two targets, or no rest period long enough for a training window.
    """
    recs, config = prepare(recordings, config or SSVEPAsyncConfig())
    curves, folds = pseudo_online_cv(recs, config, progress)
    picked = {name: choose_point(c, config.target_fa_per_min) for name, c in curves.items()}
    # As for motor imagery: meeting the target first, then hits, fewer wrong, fewer false.
    best = max(picked, key=lambda n: (picked[n][1], picked[n][0].hit_rate,
                                      -picked[n][0].wrong_rate, -picked[n][0].fa_per_min))
    chosen, meets = picked[best]
    X, y, _, ch_names, sfreq = sliding_windows(recs, config)
    bundle = fit_ssvep_bundle(best, X, y, ch_names, sfreq, config)
    counts = {str(k): int(v) for k, v in zip(*np.unique(y, return_counts=True), strict=True)}
    result = SSVEPAsyncResult(bundle, best, chosen, meets, curves, config, counts, folds, recs)
    bundle.figures = {"asynchronous": result.summary(),
                      "operating_point": asdict(chosen.point)}
    if not meets:
        logger.warning("no operating point meets %.2g false activations per minute in "
                       "pseudo-online CV; the most conservative one is shipped (%.2f/min)",
                       config.target_fa_per_min, chosen.fa_per_min)
    return result


def evaluate(bundle: DecoderBundle, recordings: Sequence[Recording], point: OperatingPoint,
             config: SSVEPAsyncConfig) -> PseudoOnlineScore:
    """Pooled pseudo-online score of ``bundle`` at ``point`` on (prepared) held-out recordings."""
    return PseudoOnlineScore.pooled([score_grid(bundle, r, config, [point])[point]
                                     for r in recordings])


# --------------------------------------------------------------------- simulated sessions

def simulated_ssvep_runs(freqs: Sequence[float], n_per_target: int = 3, n_runs: int = 1,
                         seed: int = 0, session: int = 1, schedule_seed: int | None = None,
                         cue_s: float = 4.0, rest_s: tuple[float, float] = (3.0, 7.0),
                         lead_rest_s: float = 20.0, participant=None) -> list[Recording]:
    """Runs of one simulated session: a participant gazing at SSVEP targets in random order,
    resting between gazes.

    In each run, cues of ``cue_s`` (label ``ssvep:<Hz>``, every target ``n_per_target`` times)
    are separated by rests drawn from ``rest_s``, with ``lead_rest_s`` of rest (the menu armed,
    the person looking away) at its start and its end. The runs are one continuous simulation
    cut in pieces, so they share the person and the session but no noise.

    Parameters
    ----------
    freqs : sequence of float
        Target frequencies (Hz).
    n_per_target : int
        Gazes at each target per run.
    n_runs : int
        Runs.
    seed : int
        The person (and the noise).
    session : int
        Recording session of that person (drift from session 1, see
        :class:`bci.simulated.ParticipantConfig`).
    schedule_seed : int or None
        Seed of the cue order and rest lengths (default: from ``seed`` and ``session``).
    cue_s : float
        Length of each gaze.
    rest_s : (float, float)
        Range of the rest between gazes.
    lead_rest_s : float
        Rest at the start and at the end of each run.
    participant : bci.simulated.ParticipantConfig or None
        Signal settings (``session`` is set from the argument).
    """
    from dataclasses import replace

    import mne

    from bci.simulated import ParticipantConfig, simulate_run

    rng = np.random.default_rng(schedule_seed if schedule_seed is not None
                                else [seed, session, 0x55E7])
    runs, cues, t = [], [], 0.0
    for _ in range(int(n_runs)):
        start, rows = t, []
        order = rng.permutation(np.repeat(np.asarray(freqs, dtype=float), int(n_per_target)))
        for i, f in enumerate(order):
            gap = lead_rest_s if i == 0 else float(rng.uniform(*rest_s))
            rows.append((t - start, gap, "rest"))
            t += gap
            label = f"ssvep:{f:g}"
            cues.append((t, cue_s, label))
            rows.append((t - start, cue_s, label))
            t += cue_s
        rows.append((t - start, lead_rest_s, "rest"))
        t += lead_rest_s
        runs.append((start, t, rows))
    config = replace(participant or ParticipantConfig(), session=int(session))
    data, info, _ = simulate_run(cues, t, config, seed=seed)
    eeg = [i for i, kind in enumerate(info.ch_types) if kind == "eeg"]
    names = [info.ch_names[i] for i in eeg]
    out = []
    for k, (a, b, rows) in enumerate(runs):
        x = data[eeg, int(round(a * info.sfreq)):int(round(b * info.sfreq))]
        raw = mne.io.RawArray(x * 1e-6, mne.create_info(names, info.sfreq, "eeg"),
                              verbose="error")
        events = pd.DataFrame(rows, columns=["onset", "duration", "description"])
        out.append(Recording(raw, events, Path(f"simulated-ssvep-p{seed}-s{session}-r{k + 1}")))
    return out
