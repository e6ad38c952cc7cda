"""The files of a recorded session and how they become a BIDS dataset.

A session folder (one per run) holds::

    session.json            what was recorded (stream metadata, BIDS entities, status)
    config.json             the configuration the run used
    raw/recording.vhdr      crash-safe raw EEG: a BrainVision header written at start ...
    raw/recording.eeg       ... and float32 multiplexed samples (µV) appended as they arrive
    raw/timestamps.f64      one LSL-clock timestamp per sample (float64, appended)
    events.tsv              onset_lsl, duration, description: appended line by line
    log.jsonl               app events on the LSL clock, one JSON object per line
    bids/                   the BIDS dataset written by mne-bids when the run is closed
                            (or recovered): dataset_description.json, sub-XX/ses-YY/eeg/...

Everything under ``raw/`` and the two logs can be read at any moment, which is what lets
:func:`recover_session` rebuild the BIDS dataset of a process that was killed.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import socket
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bci.stream import StreamInfo

logger = logging.getLogger(__name__)

SESSION_FILE = "session.json"
CONFIG_FILE = "config.json"
EVENTS_FILE = "events.tsv"
LOG_FILE = "log.jsonl"
RAW_DIR = "raw"
RAW_VHDR = "recording.vhdr"
RAW_EEG = "recording.eeg"
RAW_VMRK = "recording.vmrk"
RAW_TIMES = "timestamps.f64"
BIDS_DIR = "bids"
EVENT_COLUMNS = ("onset_lsl", "duration", "description")

# Channel types whose samples are voltages: written in µV, read back by MNE in volts.
VOLTAGE_TYPES = frozenset({"eeg", "emg", "eog", "ecg", "seeg", "ecog", "dbs", "bio"})
_UNIT_TO_UV = {"uv": 1.0, "µv": 1.0, "μv": 1.0, "v": 1e6, "mv": 1e3, "nv": 1e-3}


class RecordingError(RuntimeError):
    """A session could not be written, recovered or read; the message says what to do."""


def uv_factor(units: str) -> float:
    """Factor that turns samples in ``units`` (``"uV"``, ``"V"``, ``"mV"``...) into µV."""
    try:
        return _UNIT_TO_UV[units.strip().lower()]
    except KeyError:
        raise RecordingError(
            f"Cannot record samples in unit {units!r}; give the stream's units as one of "
            "'V', 'mV', 'uV' or 'nV'."
        ) from None


def info_to_dict(info: StreamInfo) -> dict:
    """JSON-able form of a :class:`StreamInfo` (extras dropped unless JSON-able)."""
    out = {
        "name": info.name, "sfreq": info.sfreq, "ch_names": list(info.ch_names),
        "ch_types": list(info.ch_types), "units": info.units, "source_id": info.source_id,
        "stream_type": info.stream_type,
    }
    try:
        json.dumps(info.extras)
        out["extras"] = info.extras
    except (TypeError, ValueError):
        out["extras"] = {}
    return out


def info_from_dict(d: dict) -> StreamInfo:
    """Inverse of :func:`info_to_dict`."""
    return StreamInfo(
        name=d["name"], sfreq=float(d["sfreq"]), ch_names=tuple(d["ch_names"]),
        ch_types=tuple(d["ch_types"]), units=d.get("units", "uV"),
        source_id=d.get("source_id", ""), stream_type=d.get("stream_type", "EEG"),
        extras=d.get("extras", {}),
    )


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON so that a crash leaves either the old or the new file, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_brainvision_header(raw_dir: Path, info: StreamInfo) -> None:
    """Write the .vhdr and .vmrk of a float32 multiplexed BrainVision file in µV.

    The header carries no sample count (BrainVision readers take it from the size of the
    .eeg file), so it is written once, before any sample, and stays valid while samples are
    appended.
    """
    lines = [
        "Brain Vision Data Exchange Header File Version 1.0",
        "; Written incrementally by Yume BCI (bci.recording)",
        "",
        "[Common Infos]",
        "Codepage=UTF-8",
        f"DataFile={RAW_EEG}",
        f"MarkerFile={RAW_VMRK}",
        "DataFormat=BINARY",
        "DataOrientation=MULTIPLEXED",
        f"NumberOfChannels={info.n_channels}",
        f"SamplingInterval={1e6 / info.sfreq:.10g}",
        "",
        "[Binary Infos]",
        "BinaryFormat=IEEE_FLOAT_32",
        "",
        "[Channel Infos]",
    ]
    for i, (name, typ) in enumerate(zip(info.ch_names, info.ch_types, strict=True)):
        unit = "µV" if typ in VOLTAGE_TYPES else "ARU"  # ARU: arbitrary, read back unscaled
        lines.append(f"Ch{i + 1}={name.replace(',', chr(92) + '1')},,1,{unit}")
    (raw_dir / RAW_VHDR).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (raw_dir / RAW_VMRK).write_text(
        "Brain Vision Data Exchange Marker File, Version 1.0\n\n[Common Infos]\n"
        f"Codepage=UTF-8\nDataFile={RAW_EEG}\n\n[Marker Infos]\n", encoding="utf-8")


def read_events_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read an events table (CSV or TSV) into columns ``onset``, ``duration``, ``description``.

    Accepts the column spellings used by BIDS (``onset``, ``duration``, ``trial_type``/
    ``value``), by the PhysioNet sidecars (``onset_s``, ``duration_s``, ``label``) and by
    MNE (``description``). Missing durations are 0.

    Raises
    ------
    RecordingError
        If the file has no onset or label column.
    """
    path = Path(path)
    sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    try:
        df = pd.read_csv(path, sep=sep, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise RecordingError(f"Could not read the events table {path}: {err}.") from err
    cols = {c.lower().strip(): c for c in df.columns}

    def pick(*names):
        for n in names:
            if n in cols:
                return cols[n]
        return None

    onset = pick("onset", "onset_s", "onset_lsl", "latency", "time")
    label = pick("description", "label", "trial_type", "value", "event", "marker")
    dur = pick("duration", "duration_s")
    if onset is None or label is None:
        raise RecordingError(
            f"The events table {path} needs an onset column (onset or onset_s) and a label "
            f"column (description, label, trial_type or value); it has {list(df.columns)}."
        )
    durations = pd.to_numeric(df[dur], errors="coerce").fillna(0.0) if dur else 0.0
    return pd.DataFrame({
        "onset": pd.to_numeric(df[onset], errors="coerce").astype(float),
        "duration": np.asarray(durations, dtype=float) * np.ones(len(df)),
        "description": df[label].astype(str),
    }).dropna(subset=["onset"]).reset_index(drop=True)


def _read_session_events(session_dir: Path) -> pd.DataFrame:
    path = session_dir / EVENTS_FILE
    if not path.exists():
        return pd.DataFrame({c: [] for c in EVENT_COLUMNS})
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        next(reader, None)  # header
        for row in reader:
            if len(row) != 3:
                continue  # a line cut by a crash
            try:
                rows.append((float(row[0]), float(row[1]), row[2]))
            except ValueError:
                continue
    return pd.DataFrame(rows, columns=list(EVENT_COLUMNS))


def _pid_alive(meta: dict) -> bool:
    if meta.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(meta.get("pid", -1)), 0)  # signal 0: only asks whether it exists
    except (OSError, ValueError):
        return False
    return True


def _complete_samples(session_dir: Path, meta: dict) -> int:
    """Number of samples present in both the data and the timestamp files; trims the rest."""
    n_ch = len(meta["stream"]["ch_names"])
    eeg = session_dir / RAW_DIR / RAW_EEG
    ts = session_dir / RAW_DIR / RAW_TIMES
    n = min(eeg.stat().st_size // (4 * n_ch), ts.stat().st_size // 8)
    # A killed process may leave half a frame or timestamps for samples it never wrote.
    for path, size in ((eeg, n * 4 * n_ch), (ts, n * 8)):
        if path.stat().st_size != size:
            with open(path, "r+b") as f:
                f.truncate(size)
    return n


def lsl_to_seconds(onsets_lsl: np.ndarray, timestamps: np.ndarray, sfreq: float) -> np.ndarray:
    """Map LSL-clock times to seconds from the first sample of the file.

    Sample ``i`` sits at ``i / sfreq`` in the file; LSL times between two samples are
    interpolated, so events stay next to the samples they arrived with even after a dropout.
    Times outside the recording are extrapolated at the rate the samples arrived at (which
    differs from ``sfreq`` for a source replayed faster than real time).
    """
    onsets_lsl = np.asarray(onsets_lsl, dtype=float)
    if len(timestamps) == 0:
        return np.full(onsets_lsl.shape, np.nan)
    ts = np.maximum.accumulate(np.asarray(timestamps, dtype=float))  # interp needs monotone
    span = ts[-1] - ts[0]
    rate = (len(ts) - 1) / span if len(ts) > 1 and span > 0 else sfreq
    idx = np.interp(onsets_lsl, ts, np.arange(len(ts), dtype=float))
    idx = np.where(onsets_lsl < ts[0], (onsets_lsl - ts[0]) * rate, idx)
    idx = np.where(onsets_lsl > ts[-1], len(ts) - 1 + (onsets_lsl - ts[-1]) * rate, idx)
    return idx / sfreq


def _bids_path(session_dir: Path, meta: dict):
    from mne_bids import BIDSPath

    b = meta["bids"]
    return BIDSPath(root=session_dir / BIDS_DIR, subject=b["subject"], session=b["session"],
                    task=b["task"], run=b.get("run"), datatype="eeg", suffix="eeg")


def _events_in_file(session_dir: Path, meta: dict, n: int) -> pd.DataFrame:
    """The session's events with ``onset`` in seconds from the first sample, in range only."""
    ev = _read_session_events(session_dir)
    sfreq = float(meta["stream"]["sfreq"])
    ts_path = session_dir / RAW_DIR / RAW_TIMES
    ts = np.memmap(ts_path, dtype="<f8", mode="r", shape=(n,)) if n else np.zeros(0)
    onset = lsl_to_seconds(ev["onset_lsl"].to_numpy(), ts, sfreq)
    # Durations are LSL-clock seconds too (they differ from file seconds for sped-up sources).
    end = lsl_to_seconds((ev["onset_lsl"] + ev["duration"]).to_numpy(), ts, sfreq)
    ev.insert(0, "onset", onset)
    ev["duration"] = np.maximum(end - onset, 0.0)
    keep = (ev["onset"] >= 0) & (ev["onset"] < n / sfreq)
    ev["duration"] = np.minimum(ev["duration"], n / sfreq - ev["onset"]).clip(lower=0.0)
    if (~keep).any():
        logger.warning("%d event(s) fall outside the recorded samples and are left out of "
                       "the BIDS events (they stay in %s)", int((~keep).sum()), EVENTS_FILE)
    return ev[keep].reset_index(drop=True)


def finalise_session(session_dir: str | os.PathLike, status: str = "finished",
                     keep_raw: bool = False):
    """Turn a session's raw files and event table into its BIDS dataset (mne-bids).

    Parameters
    ----------
    session_dir : path-like
        The session folder.
    status : {"finished", "recovered"}
        Written to ``session.json``.
    keep_raw : bool
        Keep ``raw/recording.eeg`` after the BIDS copy is written (the timestamps are always
        kept, they map the BIDS samples back to the LSL clock).

    Returns
    -------
    bids_path : mne_bids.BIDSPath
        The written recording.
    """
    import mne
    import mne_bids

    session_dir = Path(session_dir)
    meta = read_json(session_dir / SESSION_FILE)
    raw_dir = session_dir / RAW_DIR
    n = _complete_samples(session_dir, meta)
    if n == 0:
        meta["status"] = "empty"
        write_json_atomic(session_dir / SESSION_FILE, meta)
        raise RecordingError(
            f"The session {session_dir} holds no samples, so there is nothing to write to BIDS; "
            "check that the source was streaming while recording."
        )
    info = info_from_dict(meta["stream"])
    raw = mne.io.read_raw_brainvision(raw_dir / RAW_VHDR, preload=False, verbose="error")
    types = {name: typ for name, typ in zip(info.ch_names, info.ch_types, strict=True)
             if typ != "eeg"}
    if types:
        raw.set_channel_types(types, on_unit_change="ignore", verbose="error")
    if meta["bids"].get("line_freq"):
        raw.info["line_freq"] = float(meta["bids"]["line_freq"])
    if meta.get("first_sample_unix"):
        from datetime import UTC, datetime

        raw.set_meas_date(datetime.fromtimestamp(float(meta["first_sample_unix"]), tz=UTC))
    ev = _events_in_file(session_dir, meta, n)
    raw.set_annotations(mne.Annotations(ev["onset"].to_numpy(), ev["duration"].to_numpy(),
                                        ev["description"].astype(str).to_numpy()))
    bids_path = _bids_path(session_dir, meta)
    fmt = meta["bids"].get("format", "BrainVision")
    with warnings.catch_warnings():
        # A run without cues (rest, free steering) is normal here, not worth a warning.
        warnings.filterwarnings("ignore", message="No events found or provided")
        mne_bids.write_raw_bids(
            raw, bids_path, overwrite=True, verbose=False,
            format="auto" if fmt == "BrainVision" else fmt,
            allow_preload=fmt != "BrainVision",
        )
    desc = session_dir / BIDS_DIR / "dataset_description.json"
    if desc.exists():  # mne-bids writes a placeholder name
        d = read_json(desc)
        if d.get("Name") in (None, "", "[Unspecified]"):
            d["Name"] = f"Yume BCI recording {session_dir.name}"
            write_json_atomic(desc, d)
    meta.update(status=status, n_samples=int(n), duration_s=n / info.sfreq,
                bids_file=str(bids_path.fpath.relative_to(session_dir)))
    write_json_atomic(session_dir / SESSION_FILE, meta)
    if not keep_raw:
        for name in (RAW_EEG, RAW_VHDR, RAW_VMRK):
            (raw_dir / name).unlink(missing_ok=True)
    logger.info("session %s written to BIDS (%d samples, %d events)", session_dir, n, len(ev))
    return bids_path


def _load_meta(session_dir: Path) -> dict:
    path = session_dir / SESSION_FILE
    if not path.exists():
        raise RecordingError(
            f"{session_dir} is not a Yume session folder (no {SESSION_FILE}); pass the folder "
            "that `yume record` printed."
        )
    return read_json(path)


def recover_session(session_dir: str | os.PathLike, force: bool = False):
    """Build the BIDS dataset of a session whose recording process died.

    Samples written before the crash (all but the last second or so) and every event line
    flushed before it are kept; a half-written last frame is dropped. A finished session is
    left as it is.

    Parameters
    ----------
    session_dir : path-like
        The session folder.
    force : bool
        Recover even if the recording process still seems alive.

    Returns
    -------
    bids_path : mne_bids.BIDSPath
    """
    session_dir = Path(session_dir)
    meta = _load_meta(session_dir)
    if meta.get("status") in ("finished", "recovered"):
        return _bids_path(session_dir, meta)
    if meta.get("status") == "recording" and _pid_alive(meta) and not force:
        raise RecordingError(
            f"The session {session_dir} is still being recorded by process {meta.get('pid')}; "
            "stop that recording first (or pass force=True if that process is not a recorder)."
        )
    if not (session_dir / RAW_DIR / RAW_EEG).exists():
        raise RecordingError(
            f"The session {session_dir} has no raw samples file to recover from; it may have "
            "been moved or deleted."
        )
    logger.warning("recovering session %s from its raw files", session_dir)
    return finalise_session(session_dir, status="recovered", keep_raw=True)


def read_session(session_dir: str | os.PathLike):
    """Read a finished or crashed session.

    A session that was never closed (the process was killed) is recovered first with
    :func:`recover_session`.

    Parameters
    ----------
    session_dir : path-like
        The session folder.

    Returns
    -------
    raw : mne.io.Raw
        The EEG in volts, with the events as annotations.
    events : pandas.DataFrame
        Columns ``onset`` (s from the first sample), ``duration``, ``description`` and
        ``onset_lsl`` (the LSL clock).
    """
    import mne_bids

    session_dir = Path(session_dir)
    meta = _load_meta(session_dir)
    if meta.get("status") not in ("finished", "recovered"):
        recover_session(session_dir)
        meta = _load_meta(session_dir)
    raw = mne_bids.read_raw_bids(_bids_path(session_dir, meta), verbose="error")
    events = _events_in_file(session_dir, meta, int(meta["n_samples"]))
    return raw, events[["onset", "duration", "description", "onset_lsl"]]
