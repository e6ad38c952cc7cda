"""Recordings in, labelled windows out: loading any supported recording and epoching it with MNE.

Supported inputs (:func:`load_recording`):

- a session folder written by :class:`bci.recording.Recorder` (``yume calibrate``);
- a BIDS EEG file (``sub-01_..._eeg.vhdr/.edf/.bdf/.set``) with its ``_events.tsv`` beside it;
- any file MNE reads (EDF, BDF, GDF, BrainVision, FIF, EEGLAB) with, optionally, an events
  table beside it: ``<stem>_events.csv`` or ``<stem>_events.tsv`` (columns ``onset_s`` or
  ``onset``, ``duration_s`` or ``duration``, ``label``/``description``/``trial_type``); without
  one, the file's own annotations are used.

PhysioNet EEGMMIDB runs (file names ``SxxxRyy``) get their run-dependent ``T0/T1/T2`` labels
translated to ``rest``, ``left_hand``, ``right_hand``, ``hands``, ``feet`` (and the ``_exec``
variants for executed runs), so classes have the same names as in the project's own sessions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mne
import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

RAW_SUFFIXES = (".edf", ".bdf", ".gdf", ".vhdr", ".fif", ".set", ".cnt")

# EEGMMIDB (Schalk et al. 2004): what T1/T2 mean in each run.
_PHYSIONET_RUNS = {
    **{r: ("left_hand_exec", "right_hand_exec") for r in (3, 7, 11)},
    **{r: ("left_hand", "right_hand") for r in (4, 8, 12)},
    **{r: ("hands_exec", "feet_exec") for r in (5, 9, 13)},
    **{r: ("hands", "feet") for r in (6, 10, 14)},
}


class DatasetError(ValueError):
    """A recording that cannot be used for training; the message says what to do."""


@dataclass
class Recording:
    """One loaded recording: continuous data (volts, as MNE keeps it) and its cue events.

    Attributes
    ----------
    raw : mne.io.BaseRaw
        The signal; annotations hold the events.
    events : pandas.DataFrame
        Columns ``onset`` (s from the first sample), ``duration``, ``description``.
    path : Path
        Where it came from.
    """

    raw: mne.io.BaseRaw
    events: pd.DataFrame
    path: Path
    notes: list[str] = field(default_factory=list)


@dataclass
class EpochSet:
    """Labelled windows ready for a pipeline.

    Attributes
    ----------
    X : ndarray, shape (n_trials, n_channels, n_times)
        Raw (unfiltered) windows in ``units``.
    y : ndarray of str
        Class label per trial.
    onsets : ndarray
        Cue time of each trial in seconds, counted across recordings in the order given
        (for the chronological split).
    groups : ndarray of int
        Recording index of each trial.
    """

    X: np.ndarray
    y: np.ndarray
    onsets: np.ndarray
    groups: np.ndarray
    ch_names: tuple[str, ...]
    sfreq: float
    units: str = "uV"
    tmin: float = 0.5
    tmax: float = 2.5
    montage_info: mne.Info | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(str(c) for c in np.unique(self.y))

    def counts(self) -> dict[str, int]:
        labels, n = np.unique(self.y, return_counts=True)
        return {str(k): int(v) for k, v in zip(labels, n, strict=True)}


def clean_channel_names(raw: mne.io.BaseRaw) -> None:
    """Rename channels to standard 10-05 spelling where possible (``"Fcz."`` -> ``"FCz"``) and
    set the standard montage, so decoders match live streams and topomaps can be drawn."""
    name = ("colin27_1005" if "colin27_1005" in mne.channels.get_builtin_montages()
            else "standard_1005")  # MNE 1.13 renamed the template
    montage = mne.channels.make_standard_montage(name)
    std = {n.upper(): n for n in montage.ch_names}
    mapping = {}
    for name in raw.ch_names:
        key = name.replace(".", "").replace(" ", "").strip().upper()
        if key in std and std[key] != name and std[key] not in raw.ch_names:
            mapping[name] = std[key]
    if mapping:
        raw.rename_channels(mapping)
    known = [c for c in raw.ch_names if c.upper() in std and
             raw.get_channel_types([c])[0] == "eeg"]
    if known:
        try:
            raw.set_montage(montage, on_missing="ignore", match_case=False, verbose="error")
        except (ValueError, RuntimeError) as err:  # duplicated positions and the like
            logger.info("no montage set: %s", err)


def _physionet_labels(path: Path, events: pd.DataFrame) -> pd.DataFrame:
    m = re.search(r"S\d{3}R(\d{2})", path.name)
    if not m or int(m.group(1)) not in _PHYSIONET_RUNS:
        return events
    if not set(events["description"]) <= {"T0", "T1", "T2"}:
        return events
    t1, t2 = _PHYSIONET_RUNS[int(m.group(1))]
    out = events.copy()
    out["description"] = out["description"].map({"T0": "rest", "T1": t1, "T2": t2})
    return out


def _sidecar_events(path: Path) -> Path | None:
    stem = path.name[: -len(path.suffix)]
    bids_stem = re.sub(r"_eeg$", "", stem)
    for cand in (f"{stem}_events.csv", f"{stem}_events.tsv", f"{bids_stem}_events.tsv",
                 f"{bids_stem}_events.csv"):
        if (path.parent / cand).is_file():
            return path.parent / cand
    return None


def _within(events: pd.DataFrame, raw: mne.io.BaseRaw) -> pd.DataFrame:
    """The events that start inside the data, their durations cut at the last sample.

    An events table may run past the end of the recording (a cue still on when it stopped, a
    sped-up session's durations, float noise at the end); MNE would cut or drop such
    annotations itself and say so in a RuntimeWarning on every load. Cutting at the last
    sample, one sample short of MNE's limit, stays inside it despite float rounding.
    """
    last = float(raw.times[-1])
    onset = events["onset"].to_numpy(float)
    keep = (onset >= 0) & (onset <= last)
    if not keep.all():
        logger.info("%d event(s) outside the recorded data left out", int((~keep).sum()))
    out = events[keep].reset_index(drop=True)
    out["duration"] = np.clip(np.minimum(out["duration"].to_numpy(float),
                                         last - out["onset"].to_numpy(float)), 0.0, None)
    return out


def load_recording(path: str | Path) -> Recording:
    """Load a recording and its events (see the module docstring for the formats).

    Raises
    ------
    DatasetError
        If the path does not exist, the format is unknown or the events cannot be found.
    """
    from bci.session_files import SESSION_FILE, read_events_table

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"No recording at {path}; check the path.")
    if path.is_dir():
        if (path / SESSION_FILE).is_file():
            from bci.recording import read_session

            raw, events = read_session(path)
            raw.load_data(verbose="error")
            events = events[["onset", "duration", "description"]].reset_index(drop=True)
        else:
            raise DatasetError(
                f"{path} is a folder but not a Yume session (no {SESSION_FILE}); pass the "
                "session folder written by `yume calibrate` or an EEG file.")
    else:
        if path.suffix.lower() not in RAW_SUFFIXES:
            raise DatasetError(
                f"Cannot read {path.name}: unknown format; use one of "
                f"{', '.join(RAW_SUFFIXES)} or a Yume session folder.")
        if path.suffix.lower() in (".edf", ".bdf"):
            from bci.playback import check_edf_size
            from bci.stream import AcquisitionError

            try:
                # MNE drops the missing records of a truncated EDF without a word; training on
                # the rest would look fine. Playback refuses such files with this same check.
                check_edf_size(path, path.suffix[1:].upper())
            except AcquisitionError as err:
                raise DatasetError(str(err)) from None
        try:
            raw = mne.io.read_raw(path, preload=True, verbose="error")
        except Exception as err:  # MNE raises many types for unreadable files
            raise DatasetError(f"MNE could not read {path}: {err}.") from err
        sidecar = _sidecar_events(path)
        if sidecar is not None:
            events = read_events_table(sidecar)
            events = events[events["onset"] < raw.times[-1]].reset_index(drop=True)
        else:
            ann = raw.annotations
            # Annotation onsets count from orig_time; the first sample may come later.
            first = raw.first_time if ann.orig_time is not None else 0.0
            events = pd.DataFrame({"onset": ann.onset - first,
                                   "duration": ann.duration,
                                   "description": [str(d) for d in ann.description]})
        events = _physionet_labels(path, events)
    events = _within(events, raw)
    raw.set_annotations(mne.Annotations(events["onset"].to_numpy(float),
                                        events["duration"].to_numpy(float),
                                        events["description"].astype(str).to_numpy(),
                                        orig_time=raw.annotations.orig_time))
    clean_channel_names(raw)
    return Recording(raw=raw, events=events, path=path)


def epoch_recordings(
    recordings: Sequence[Recording],
    classes: Sequence[str] | None = None,
    tmin: float = 0.5,
    tmax: float = 2.5,
    picks: Sequence[str] | None = None,
    resample: float | None = None,
    label_map: dict[str, str] | None = None,
    min_trials: int = 5,
) -> EpochSet:
    """Cut labelled windows ``[tmin, tmax)`` after each cue, in microvolts.

    Parameters
    ----------
    recordings : sequence of Recording
        One or more recordings of the same montage.
    classes : sequence of str or None
        Event labels to keep (default: every label that is not ``rest``-like bookkeeping, i.e.
        all labels of events with a duration, except ``fixation``, ``iti``, ``break``).
    tmin, tmax : float
        Window relative to the cue onset (s); ``tmax - tmin`` is the online window length.
    picks : sequence of str or None
        Channels to keep (default: every EEG channel), in this order.
    resample : float or None
        Resample to this rate first (Hz).
    label_map : dict or None
        Renames event labels before selection (``{"T1": "left_hand"}``).
    min_trials : int
        Fewest trials per class accepted.

    Raises
    ------
    DatasetError
        No events, unknown classes, too few trials per class, mismatched channels.
    """
    if not recordings:
        raise DatasetError("No recording given; pass at least one.")
    Xs, ys, onsets, groups = [], [], [], []
    ch_names: tuple[str, ...] | None = None
    sfreq = None
    offset = 0.0
    info = None
    n_times = None
    for k, rec in enumerate(recordings):
        raw = rec.raw
        if resample and abs(raw.info["sfreq"] - resample) > 1e-6:
            raw = raw.copy().resample(resample, verbose="error")
        ev = rec.events.copy()
        if label_map:
            ev["description"] = ev["description"].map(lambda d: label_map.get(d, d))
        if ev.empty:
            raise DatasetError(
                f"{rec.path} has no events, so there is nothing to train on; record with cues "
                "(`yume calibrate`) or put an events table (onset,duration,label) beside it.")
        wanted = list(classes) if classes else sorted(
            set(ev["description"]) - {"fixation", "iti", "break", "run_start", "run_end",
                                      "session_start", "session_end", "pause", "resume"})
        if picks:
            missing = [c for c in picks if c not in raw.ch_names]
            if missing:
                raise DatasetError(
                    f"{rec.path.name} lacks channel(s) {', '.join(missing)}; pick channels "
                    f"it has (e.g. {', '.join(raw.ch_names[:5])}).")
            sel = list(picks)
        else:
            sel = [raw.ch_names[i] for i in mne.pick_types(raw.info, eeg=True)]
            if not sel:
                raise DatasetError(f"{rec.path.name} has no EEG channel; pick channels by name.")
        if ch_names is None:
            ch_names, sfreq = tuple(sel), float(raw.info["sfreq"])
            info = mne.pick_info(raw.info, [raw.ch_names.index(c) for c in sel])
            n_times = int(round((tmax - tmin) * sfreq))
        elif tuple(sel) != ch_names or abs(float(raw.info["sfreq"]) - sfreq) > 1e-6:
            raise DatasetError(
                f"{rec.path.name} has other channels or another sampling rate than the first "
                "recording; train on recordings of one montage, or pick common channels and "
                "resample.")
        data = raw.get_data(picks=sel, units="uV")
        keep = ev[ev["description"].isin(wanted)]
        for onset, label in zip(keep["onset"], keep["description"], strict=True):
            start = int(round((onset + tmin) * sfreq))
            if start < 0 or start + n_times > data.shape[1]:
                continue  # the window runs off the recording
            Xs.append(data[:, start:start + n_times])
            ys.append(str(label))
            onsets.append(offset + float(onset))
            groups.append(k)
        offset += raw.times[-1] + 1.0 / sfreq
    if classes:
        absent = [c for c in classes if c not in ys]
        if absent:
            found = sorted(set().union(*(set(r.events["description"]) for r in recordings)))
            raise DatasetError(
                f"No trial of class(es) {', '.join(absent)} in the recording(s); they hold "
                f"events {', '.join(map(str, found[:12]))}. Choose classes among those.")
    if not ys:
        raise DatasetError("No usable trial (no class event with a full window); check the "
                           "classes and the window (tmin/tmax).")
    y = np.array(ys)
    labels, counts = np.unique(y, return_counts=True)
    if len(labels) < 2:
        raise DatasetError(
            f"Only one class ({labels[0]}) found; a decoder needs at least two classes.")
    few = [f"{lab} ({n})" for lab, n in zip(labels, counts, strict=True) if n < min_trials]
    if few:
        raise DatasetError(
            f"Too few trials for class(es) {', '.join(few)}; record at least {min_trials} "
            "trials per class (20 or more for a reliable decoder).")
    return EpochSet(X=np.stack(Xs), y=y, onsets=np.array(onsets), groups=np.array(groups),
                    ch_names=ch_names, sfreq=sfreq, units="uV", tmin=tmin, tmax=tmax,
                    montage_info=info)
