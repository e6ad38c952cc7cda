"""Adapt a decoder to a new session or a new person by unsupervised Riemannian re-centring.

A re-centred pipeline (``rc_ts_lr``, ``rc_mdm``, ``rc_csp_lda``: :class:`control.recentering.
Recenter` after the covariances) whitens every covariance by a reference mean. Trained, its
reference is the training session's mean; :func:`recenter_bundle` replaces it by the mean of a
new recording, computed without labels from

- ``"rest"``: the rest periods (events labelled ``rest`` or ``T0``), cut into sliding windows;
- ``"trials"``: the cue windows, labels unused;
- ``"all"``: sliding windows over the whole recording, events unused.

The reference of the new session must be the same kind of windows as the training reference
(:func:`fit_recentred_bundle`'s ``reference``): rest against rest, trials against trials.
Whitening task windows by a task mean and the new session by its rest mean would leave the
rest/task difference, the ERD the decoder looks for, as a shift.

:func:`cross_session_accuracy` measures what it buys (accuracy on a test recording before and
after), :func:`online_accuracy` the same with the reference updated while decoding, trial after
trial, as it would be online. :func:`simulated_recordings` makes sessions of the simulated
participant (with a channel mixing, to shift a session), and ``python -m calibration.adaptation``
prints the measured tables of BENCHMARKS-style figures.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path

import mne
import numpy as np
import pandas as pd
from scipy.linalg import expm
from threadpoolctl import threadpool_limits

from calibration.dataset import Recording, epoch_recordings, load_recording
from calibration.pipelines import make_pipeline
from control.bundle import DecoderBundle
from control.recentering import (
    Recenter,
    find_recenter,
    fit_with_reference,
    pipeline_covariances,
)

REST_LABELS = ("rest", "T0")
SOURCES = ("rest", "trials", "all")
# Event labels that mark bookkeeping, not cues (as in calibration.dataset).
_NOT_CUES = {"fixation", "iti", "break", "run_start", "run_end", "session_start", "session_end",
             "pause", "resume", *REST_LABELS}


class AdaptationError(ValueError):
    """A recording or bundle that cannot be re-centred; the message says what to do."""


# ------------------------------------------------------------------------------ windows
def _signal(recording: Recording, ch_names: Sequence[str], sfreq: float, units: str
            ) -> np.ndarray:
    raw = recording.raw
    missing = [c for c in ch_names if c not in raw.ch_names]
    if missing:
        raise AdaptationError(
            f"{recording.path.name} lacks {len(missing)} of the decoder's channels "
            f"({', '.join(missing[:6])}); re-centre with a recording of the decoder's montage.")
    if abs(float(raw.info["sfreq"]) - float(sfreq)) > 1e-6 * float(sfreq):
        raw = raw.copy().resample(float(sfreq), verbose="error")
    return raw.get_data(picks=list(ch_names), units="uV" if units.upper() != "V" else "V")


def _cut(data: np.ndarray, starts_s: Sequence[float], sfreq: float, n_times: int) -> np.ndarray:
    starts = [int(round(s * sfreq)) for s in starts_s]
    wins = [data[:, s:s + n_times] for s in starts if s >= 0 and s + n_times <= data.shape[1]]
    wins = [w for w in wins if np.all(np.isfinite(w))]  # outages are NaN in the BIDS copies
    return np.stack(wins) if wins else np.empty((0, data.shape[0], n_times))


def _labels(recording: Recording, label_map: dict | None) -> pd.Series:
    desc = recording.events["description"].astype(str)
    return desc.map(lambda d: label_map.get(d, d)) if label_map else desc


def recording_windows(recording: Recording, source: str, ch_names: Sequence[str], sfreq: float,
                      window_s: float, units: str = "uV", step_s: float = 0.5,
                      tmin: float = 0.5, label_map: dict | None = None) -> np.ndarray:
    """Unlabelled windows of a recording for re-centring (or for the training reference).

    Parameters
    ----------
    recording : Recording
        The recording.
    source : {"rest", "trials", "all"}
        ``"rest"``: sliding windows inside every rest period (events labelled ``rest`` or
        ``T0``), from ``tmin`` after its start; ``"trials"``: one window ``[tmin, tmin +
        window_s)`` after every cue that is not rest or bookkeeping; ``"all"``: sliding windows
        over the whole recording.
    ch_names, sfreq, units, window_s : as in the decoder bundle
        Channels (in order), rate (the recording is resampled to it), units and window length.
    step_s : float
        Hop of the sliding windows (s).
    tmin : float
        Delay after an event's onset before its first window (s): the first half second after a
        cue still holds the previous state and the response to the cue itself.
    label_map : dict or None
        Renames event labels first (e.g. ``{"T0": "rest"}``).

    Returns
    -------
    ndarray, shape (n_windows, n_channels, n_times)

    Raises
    ------
    AdaptationError
        Unknown source, missing channels, or no window at all (e.g. no rest period).
    """
    if source not in SOURCES:
        raise AdaptationError(f"Unknown re-centring source {source!r}; use one of "
                              f"{', '.join(SOURCES)}.")
    data = _signal(recording, ch_names, sfreq, units)
    n_times = int(round(window_s * sfreq))
    ev = recording.events
    labels = _labels(recording, label_map)
    if source == "all":
        starts = np.arange(0.0, data.shape[1] / sfreq - window_s + 1e-9, step_s)
    elif source == "rest":
        rest = ev[labels.isin(REST_LABELS).to_numpy()]
        if rest.empty:
            raise AdaptationError(
                f"{recording.path.name} has no rest period (no event labelled rest or T0), so it "
                "cannot be re-centred from rest; re-centre it from all its windows "
                "(source='all') or record rest periods between the cues.")
        starts = [s for on, dur in zip(rest["onset"], rest["duration"], strict=True)
                  for s in np.arange(on + tmin, on + dur - window_s + 1e-9, step_s)]
    else:
        cues = ev[(~labels.isin(_NOT_CUES)).to_numpy()]
        starts = list(cues["onset"].to_numpy(float) + tmin)
    X = _cut(data, starts, sfreq, n_times)
    if not len(X):
        raise AdaptationError(
            f"{recording.path.name} gives no {window_s:g} s window from source {source!r} "
            "(periods too short or outside the data); re-centre from source='all' or use "
            "shorter windows.")
    return X


# ------------------------------------------------------------------------------ bundles
def fit_recentred_bundle(recordings: Sequence[Recording], name: str = "rc_ts_lr",
                         classes: Sequence[str] | None = None, reference: str = "trials",
                         tmin: float = 0.5, tmax: float = 2.5,
                         band: tuple[float, float] = (8.0, 30.0),
                         label_map: dict | None = None, step_s: float = 0.5,
                         X: np.ndarray | None = None, y: np.ndarray | None = None
                         ) -> DecoderBundle:
    """Fit a (re-centred) pipeline on recordings, without cross-validation, into a bundle.

    Parameters
    ----------
    recordings : sequence of Recording
        Training recordings.
    name : str
        Pipeline (:func:`calibration.pipelines.make_pipeline`); a plain one ignores
        ``reference``.
    classes : sequence of str or None
        Classes (default: every cue label but rest and bookkeeping).
    reference : {"trials", "rest", "all"}
        Windows whose mean is the training reference; re-centre new sessions from the same
        kind (see the module docstring).
    tmin, tmax : float
        Trial window after each cue (s).
    band : (float, float)
        Pass band (Hz).
    label_map : dict or None
        Renames event labels.
    step_s : float
        Hop of the sliding reference windows and of online decisions (s).
    X, y : ndarray or None
        Use these labelled windows instead of epoching ``recordings`` (e.g. the first trials
        only, for a short calibration); the reference windows still come from ``recordings``.

    Returns
    -------
    DecoderBundle
        With ``figures["recentering"]`` saying which reference it was trained with.
    """
    if classes is None:  # every cue label; rest is the reference, not a class
        classes = sorted(set().union(*(set(_labels(r, label_map)) for r in recordings))
                         - _NOT_CUES)
    if X is None or y is None:
        ep = epoch_recordings(recordings, classes=classes, tmin=tmin, tmax=tmax,
                              label_map=label_map, min_trials=2)
        X, y, ch_names, sfreq, units = ep.X, ep.y, ep.ch_names, ep.sfreq, ep.units
    else:
        ep0 = recordings[0]
        ch_names = tuple(c for c, t in zip(ep0.raw.ch_names, ep0.raw.get_channel_types(),
                                           strict=True) if t == "eeg")
        sfreq, units = float(ep0.raw.info["sfreq"]), "uV"
    pipe = make_pipeline(name, sfreq, band)
    recentred = any(isinstance(s, Recenter) for _, s in pipe.steps)
    with warnings.catch_warnings(), threadpool_limits(1):
        # pyriemann warns about near-singular means on tiny sets; the figures below say enough.
        warnings.simplefilter("ignore", category=UserWarning)
        if recentred and reference != "trials":
            X_ref = np.concatenate([
                recording_windows(r, reference, ch_names, sfreq, tmax - tmin, units, step_s,
                                  tmin, label_map) for r in recordings])
            fit_with_reference(pipe, X, y, X_ref)
        else:
            pipe.fit(X, y)
    figures = {"n_trials": int(len(y))}
    if recentred:
        figures["recentering"] = {"reference": reference}
    return DecoderBundle(pipeline=pipe, ch_names=ch_names, sfreq=sfreq,
                         classes=tuple(str(c) for c in pipe.classes_), units=units, band=band,
                         window_s=tmax - tmin, step_s=step_s, name=name, figures=figures)


def recenter_bundle(bundle: DecoderBundle, data: Recording | np.ndarray,
                    source: str | None = None, step_s: float | None = None, tmin: float = 0.5,
                    label_map: dict | None = None) -> DecoderBundle:
    """A copy of a bundle re-centred on a new recording (unsupervised; the input is unchanged).

    Parameters
    ----------
    bundle : DecoderBundle
        A bundle of a re-centred pipeline.
    data : Recording or ndarray, shape (n_windows, n_channels, n_times)
        The new session: a recording (windows are cut from ``source``), or raw windows in the
        bundle's channel order and units.
    source : {"rest", "trials", "all"} or None
        Which windows of a recording; default: the kind the bundle's training reference was
        (``figures["recentering"]["reference"]``).
    step_s : float or None
        Hop of the sliding windows (default: the bundle's step).
    tmin : float
        Delay after each event before its first window (s).
    label_map : dict or None
        Renames event labels first.

    Returns
    -------
    DecoderBundle
        The same decoder with its reference set to the new session's mean;
        ``figures["recentering"]`` records the source and the number of windows.

    Raises
    ------
    AdaptationError
        A bundle without a re-centring step, or a recording without the windows asked for.
    """
    try:
        find_recenter(bundle.pipeline)
    except ValueError as err:
        raise AdaptationError(str(err)) from None
    trained = dict(bundle.figures.get("recentering", {}))
    source = source or trained.get("reference", "trials")
    if isinstance(data, Recording):
        X = recording_windows(data, source, bundle.ch_names, bundle.sfreq, bundle.window_s,
                              bundle.units, step_s or bundle.step_s, tmin, label_map)
        origin = str(data.path)
    else:
        X = np.asarray(data, dtype=np.float64)
        if X.ndim != 3 or X.shape[1:] != (len(bundle.ch_names), bundle.n_times):
            raise AdaptationError(
                f"Re-centring windows must have shape (n, {len(bundle.ch_names)}, "
                f"{bundle.n_times}) for this decoder, got {X.shape}.")
        origin = "windows"
    pipeline = copy.deepcopy(bundle.pipeline)
    _, rc = find_recenter(pipeline)
    with threadpool_limits(1):
        rc.adapt(pipeline_covariances(pipeline, X))
    trained.update({"source": source, "n_windows": int(len(X)), "recording": origin})
    return dataclasses.replace(bundle, pipeline=pipeline,
                               figures={**bundle.figures, "recentering": trained})


# ------------------------------------------------------------------------------ measuring
def _test_epochs(bundle: DecoderBundle, test: Recording, tmin: float,
                 label_map: dict | None):
    return epoch_recordings([test], classes=list(bundle.classes), tmin=tmin,
                            tmax=tmin + bundle.window_s, picks=list(bundle.ch_names),
                            label_map=label_map, min_trials=1)


def _accuracy(bundle: DecoderBundle, X: np.ndarray, y: np.ndarray) -> float:
    with threadpool_limits(1):
        pred = np.asarray(bundle.classes)[np.argmax(bundle.predict_proba(X), axis=1)]
    return float(np.mean(pred == y))


def cross_session_accuracy(bundle: DecoderBundle, test: Recording,
                           sources: Sequence[str] = SOURCES, tmin: float = 0.5,
                           label_map: dict | None = None) -> dict:
    """Accuracy of a bundle on a test recording before and after re-centring it.

    Parameters
    ----------
    bundle : DecoderBundle
        Trained on other recordings (a re-centred pipeline).
    test : Recording
        The new session, with labelled cues of the bundle's classes (labels score, they never
        re-centre).
    sources : sequence of str
        Re-centring sources to try.
    tmin : float
        Trial window start after the cue (s).
    label_map : dict or None
        Renames event labels of the test recording.

    Returns
    -------
    dict
        ``n_trials``, ``before`` and, per source, the accuracy after re-centring from it and
        ``n_windows_<source>``; a source the recording lacks is None.
    """
    ep = _test_epochs(bundle, test, tmin, label_map)
    out = {"n_trials": int(len(ep.y)), "before": _accuracy(bundle, ep.X, ep.y)}
    for src in sources:
        try:
            adapted = recenter_bundle(bundle, test, source=src, tmin=tmin, label_map=label_map)
        except AdaptationError:
            out[src], out[f"n_windows_{src}"] = None, 0
            continue
        out[src] = _accuracy(adapted, ep.X, ep.y)
        out[f"n_windows_{src}"] = adapted.figures["recentering"]["n_windows"]
    return out


def online_accuracy(bundle: DecoderBundle, test: Recording, source: str = "rest",
                    alpha: float | None = 0.1, tmin: float = 0.5,
                    label_map: dict | None = None) -> dict:
    """Accuracy when the reference is updated online, causally, while the session goes on.

    Every window of ``source`` updates the reference (:meth:`Recenter.partial_fit`) once it
    has ended; each trial is decoded with the reference as it stood when its window ended.
    The first trials therefore meet an almost unadapted decoder, as they would live.

    Parameters
    ----------
    bundle : DecoderBundle
        A re-centred bundle trained on other recordings.
    test : Recording
        The new session.
    source : {"rest", "all"}
        Windows that update the reference.
    alpha : float or None
        Geodesic step per window (None: running mean of the new session, from its first
        window on).
    tmin : float
        Trial window start after the cue (s).
    label_map : dict or None
        Renames event labels.

    Returns
    -------
    dict
        ``n_trials``, ``accuracy``, ``n_updates``.
    """
    ep = _test_epochs(bundle, test, tmin, label_map)
    step = bundle.step_s
    ends_trial = np.asarray(ep.onsets) + tmin + bundle.window_s
    win = recording_windows(test, source, bundle.ch_names, bundle.sfreq, bundle.window_s,
                            bundle.units, step, tmin, label_map)
    # The end time of each update window, recomputed the way recording_windows cut them.
    if source == "all":
        ends_upd = np.arange(len(win)) * step + bundle.window_s
    else:
        labels = _labels(test, label_map)
        rest = test.events[labels.isin(REST_LABELS).to_numpy()]
        ends_upd = np.array([s + bundle.window_s
                             for on, dur in zip(rest["onset"], rest["duration"], strict=True)
                             for s in np.arange(on + tmin, on + dur - bundle.window_s + 1e-9,
                                                step)])[:len(win)]
    pipeline = copy.deepcopy(bundle.pipeline)
    _, rc = find_recenter(pipeline)
    rc.set_params(alpha=alpha)
    if alpha is None:
        rc.reset(forget=True)
    correct, used = [], 0
    with threadpool_limits(1):
        covs = pipeline_covariances(pipeline, win)
        for i in np.argsort(ends_trial):
            new = np.flatnonzero(ends_upd <= ends_trial[i])
            new = new[new >= used]
            if len(new):
                rc.partial_fit(covs[new])
                used = int(new[-1]) + 1
            p = pipeline.predict_proba(ep.X[i:i + 1])[0]
            correct.append(bundle.classes[int(np.argmax(p))] == ep.y[i])
    return {"n_trials": int(len(ep.y)), "accuracy": float(np.mean(correct)), "n_updates": used}


# ------------------------------------------------------------------------------ simulation
def random_mixing(n_channels: int, strength: float = 0.5, seed: int = 0) -> np.ndarray:
    """A random SPD channel mixing ``expm(strength * S)``, S symmetric with unit-variance
    entries scaled by ``1/sqrt(n)`` (so ``strength`` is about the log-gain spread)."""
    rng = np.random.default_rng(seed)
    S = rng.standard_normal((n_channels, n_channels)) / np.sqrt(n_channels)
    return expm(strength * (S + S.T) / 2)


def simulated_recordings(seed: int = 0, n_trials: int = 20, n_sessions: int = 1,
                         classes: Sequence[str] = ("left_hand", "right_hand"),
                         rest_s: float = 4.0, cue_s: float = 4.0, config=None,
                         mixing: Sequence[np.ndarray | None] | None = None) -> list[Recording]:
    """Sessions of one simulated participant, as recordings with rest and cue events.

    One continuous run of the participant (alternating rest and a cue of a random class, as in
    EEGMMIDB) is cut into ``n_sessions`` consecutive recordings: the same person, fresh noise.

    Parameters
    ----------
    seed : int
        The participant (its traits) and its noise.
    n_trials : int
        Trials per class per session.
    n_sessions : int
        Consecutive sessions.
    classes : sequence of str
        Imagined classes.
    rest_s, cue_s : float
        Length of each rest period and each cue (s).
    config : bci.simulated.ParticipantConfig or None
        Signal settings (default montage standard_32 at 250 Hz).
    mixing : sequence of (ndarray or None) or None
        Per session, a matrix applied to its EEG channels (``A @ x``), e.g.
        :func:`random_mixing`; simulates a shifted session.

    Returns
    -------
    list of Recording
        Each with events ``rest`` and the class labels, volts in ``raw`` as MNE keeps them.
    """
    from bci.simulated import simulate_run

    rng = np.random.default_rng(seed + 7919)
    per = len(classes) * n_trials
    order = np.concatenate([rng.permutation(np.repeat(np.arange(len(classes)), n_trials))
                            for _ in range(n_sessions)])
    period = rest_s + cue_s
    cues = [(k * period + rest_s, cue_s, classes[c]) for k, c in enumerate(order)]
    data, info, _ = simulate_run(cues, len(order) * period, config, seed=seed)
    eeg = [i for i, t in enumerate(info.ch_types) if t == "eeg"]
    sf = float(info.sfreq)
    out = []
    for s in range(n_sessions):
        a, b = int(round(s * per * period * sf)), int(round((s + 1) * per * period * sf))
        x = data[eeg, a:b]
        A = mixing[s] if mixing is not None and s < len(mixing) else None
        if A is not None:
            x = np.asarray(A) @ x
        raw = mne.io.RawArray(x * 1e-6, mne.create_info([info.ch_names[i] for i in eeg], sf,
                                                        "eeg"), verbose="error")
        rows = []
        for k in range(per):
            rows.append((k * period, rest_s, "rest"))
            rows.append((k * period + rest_s, cue_s, classes[order[s * per + k]]))
        events = pd.DataFrame(rows, columns=["onset", "duration", "description"])
        raw.set_annotations(mne.Annotations(events["onset"], events["duration"],
                                            events["description"]))
        out.append(Recording(raw=raw, events=events,
                             path=Path(f"simulated-p{seed}-s{s + 1}")))
    return out


# ------------------------------------------------------------------------------ the tables
_PHYSIONET_LABELS = {"left_hand_exec": "left_hand", "right_hand_exec": "right_hand"}
_MEASURED = ("rc_ts_lr", "rc_mdm", "rc_csp_lda")


def _row(name: str, cells: Sequence) -> str:
    return f"{name:<34}" + "".join(f"{c:>8}" if isinstance(c, str) else f"{c:>8.2f}"
                                   for c in cells)


def measure_physionet(folder: str | Path, pipelines: Sequence[str] = _MEASURED) -> list[str]:
    """Cross-run accuracy on EEGMMIDB S001, left/right fist, before and after re-centring."""
    recs = {r: load_recording(Path(folder) / f"S001R{r:02d}.edf") for r in (3, 4, 7, 8)}
    splits = [((4,), 8), ((8,), 4), ((3,), 7), ((7,), 3), ((3, 4), 8), ((7, 8), 4)]
    lines = [_row("train -> test, pipeline", ("before", "rest", "trials", "all", "rest*",
                                              "online", "n"))]
    for name in pipelines:
        tot = np.zeros(6)
        n_all = 0
        for train, test in splits:
            kw = dict(classes=["left_hand", "right_hand"], label_map=_PHYSIONET_LABELS)
            b = fit_recentred_bundle([recs[r] for r in train], name, reference="trials", **kw)
            r = cross_session_accuracy(b, recs[test], label_map=_PHYSIONET_LABELS)
            br = fit_recentred_bundle([recs[r] for r in train], name, reference="rest", **kw)
            rr = cross_session_accuracy(br, recs[test], sources=("rest",),
                                        label_map=_PHYSIONET_LABELS)
            on = online_accuracy(b, recs[test], "all", 0.05, label_map=_PHYSIONET_LABELS)
            cells = [r["before"], r["rest"], r["trials"], r["all"], rr["rest"], on["accuracy"]]
            tot += np.array(cells) * r["n_trials"]
            n_all += r["n_trials"]
            tag = "+".join(f"R{t:02d}" for t in train) + f" -> R{test:02d}"
            lines.append(_row(f"{tag}, {name}", [*cells, str(r["n_trials"])]))
        lines.append(_row(f"all splits, {name}", [*(tot / n_all), str(n_all)]))
    return lines


def measure_shifted(strength: float = 1.0, pipelines: Sequence[str] = _MEASURED,
                    seed: int = 1, n_trials: int = 20) -> list[str]:
    """Simulated participant, session 2 of the same person with its channels mixed."""
    plain = simulated_recordings(seed, n_trials, n_sessions=2)
    n_ch = len(plain[0].raw.ch_names)
    shifted = simulated_recordings(seed, n_trials, n_sessions=2,
                                   mixing=[None, random_mixing(n_ch, strength, seed=3)])
    lines = [_row(f"session 2, mixing {strength:g}, pipeline",
                  ("before", "rest", "trials", "all", "online", "n"))]
    for name in pipelines:
        b = fit_recentred_bundle([plain[0]], name)
        for tag, test in (("unshifted", plain[1]), ("shifted", shifted[1])):
            r = cross_session_accuracy(b, test)
            on = online_accuracy(b, test, "rest", 0.05)
            lines.append(_row(f"{tag}, {name}", [r["before"], r["rest"], r["trials"], r["all"],
                                                 on["accuracy"], str(r["n_trials"])]))
    return lines


def measure_transfer(pipelines: Sequence[str] = _MEASURED, seed_a: int = 1, seed_b: int = 2,
                     n_trials: int = 20, few: Sequence[int] = (3, 5, 10),
                     mixing_b: float = 0.0) -> list[str]:
    """Person A's decoder on person B (two simulated participants), against B's own.

    The simulator puts the same sources under the same electrodes for everyone, so two seeds
    differ less than two people; ``mixing_b`` adds a random SPD mixing of B's channels (a
    different head and cap) to make the proxy harder.
    """
    a = simulated_recordings(seed_a, n_trials)[0]
    a_classes = sorted(set(a.events["description"]) - _NOT_CUES)
    # B1: a short calibration of B (max(few) trials per class); B2: B's test session.
    mix = None
    if mixing_b:
        A = random_mixing(len(a.raw.ch_names), mixing_b, seed=seed_b)
        mix = [A, A]
    b_cal, b_test = simulated_recordings(seed_b, n_trials, n_sessions=2, mixing=mix)
    lines = [_row("A -> B, pipeline", ("before", "rest B1", "rest B2", "all B2",
                                       *(f"own {k}" for k in few), "n"))]
    # B's own decoders take the first k trials per class of B1.
    ep = epoch_recordings([b_cal], classes=list(a_classes), min_trials=1)
    for name in pipelines:
        bundle = fit_recentred_bundle([a], name)
        r = cross_session_accuracy(bundle, b_test, sources=("rest", "all"))
        cal = recenter_bundle(bundle, b_cal, source="rest")
        te = _test_epochs(bundle, b_test, 0.5, None)
        own = []
        for k in few:
            idx = np.concatenate([np.flatnonzero(ep.y == c)[:k] for c in bundle.classes])
            mine = fit_recentred_bundle([b_cal], name, X=ep.X[idx], y=ep.y[idx])
            own.append(_accuracy(mine, te.X, te.y))
        lines.append(_row(name, [r["before"], _accuracy(cal, te.X, te.y), r["rest"], r["all"],
                                 *own, str(r["n_trials"])]))
    return lines


def main() -> None:
    """Print the measured tables (about 6 minutes on two cores)."""
    import sys

    warnings.simplefilter("ignore")
    folder = (sys.argv[1] if len(sys.argv) > 1
              else Path(__file__).resolve().parents[2] / "shared/data/eeg/physionet_mi_S001")
    for title, lines in (("shifted session (simulated)", measure_shifted()),
                         ("someone else's bundle (simulated A -> B)", measure_transfer()),
                         ("someone else's bundle, B's channels mixed (1.5)",
                          measure_transfer(mixing_b=1.5)),
                         ("EEGMMIDB S001 left/right fist, cross-run", measure_physionet(folder))):
        print(f"\n{title}\n" + "\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
