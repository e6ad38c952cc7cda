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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bci.health import TimestampTracker
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
FILLED_STEM = "filled"  # raw/filled.*: the gap-filled copy that mne-bids copies, then removed
GAP_ANNOTATION = "BAD_ACQ_SKIP"  # MNE's name for samples the acquisition skipped
MAX_GAP_FILL_S = 3600.0  # longer holes are clock jumps more often than outages: not filled
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


def write_brainvision_header(raw_dir: Path, info: StreamInfo, stem: str = "recording") -> None:
    """Write the .vhdr and .vmrk of a float32 multiplexed BrainVision file ``stem.eeg`` in µV.

    The header carries no sample count (BrainVision readers take it from the size of the
    .eeg file), so it is written once, before any sample, and stays valid while samples are
    appended.
    """
    data_file, marker_file = f"{stem}.eeg", f"{stem}.vmrk"
    lines = [
        "Brain Vision Data Exchange Header File Version 1.0",
        "; Written incrementally by Yume BCI (bci.recording)",
        "",
        "[Common Infos]",
        "Codepage=UTF-8",
        f"DataFile={data_file}",
        f"MarkerFile={marker_file}",
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
    (raw_dir / f"{stem}.vhdr").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (raw_dir / marker_file).write_text(
        "Brain Vision Data Exchange Marker File, Version 1.0\n\n[Common Infos]\n"
        f"Codepage=UTF-8\nDataFile={data_file}\n\n[Marker Infos]\n", encoding="utf-8")


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


def lsl_to_seconds(onsets_lsl: np.ndarray, timestamps: np.ndarray, sfreq: float,
                   index: np.ndarray | None = None) -> np.ndarray:
    """Map LSL-clock times to seconds from the first sample of the file.

    Received sample ``i`` sits at ``index[i] / sfreq`` in the file (``i / sfreq`` when
    ``index`` is None, a recording without gaps); LSL times between two samples are
    interpolated, so events stay next to the samples they arrived with, and an event that
    happened while samples were missing lands where it happened inside the hole. Times outside
    the recording are extrapolated at the rate the samples arrived at (which differs from
    ``sfreq`` for a source replayed faster than real time).
    """
    onsets_lsl = np.asarray(onsets_lsl, dtype=float)
    if len(timestamps) == 0:
        return np.full(onsets_lsl.shape, np.nan)
    ts = np.maximum.accumulate(np.asarray(timestamps, dtype=float))  # interp needs monotone
    pos = (np.arange(len(ts), dtype=float) if index is None
           else np.asarray(index, dtype=float))
    span = ts[-1] - ts[0]
    rate = (pos[-1] - pos[0]) / span if len(ts) > 1 and span > 0 else sfreq
    idx = np.interp(onsets_lsl, ts, pos)
    idx = np.where(onsets_lsl < ts[0], pos[0] + (onsets_lsl - ts[0]) * rate, idx)
    idx = np.where(onsets_lsl > ts[-1], pos[-1] + (onsets_lsl - ts[-1]) * rate, idx)
    return idx / sfreq


@dataclass(frozen=True)
class SampleGrid:
    """Where each received sample belongs in the file, and the holes between them.

    Attributes
    ----------
    index : ndarray of int64, shape (n_received,)
        File sample index of each received sample (``i`` plus the samples missing before it).
    n_times : int
        Samples in the file: the received ones plus the filled holes.
    gaps : list of dict
        One per hole: ``onset`` (s from the first sample), ``duration`` (s), ``n_missing``,
        ``onset_lsl`` (when the first missing sample was due), ``after_sample`` (received
        samples before it) and ``filled`` (False for a hole longer than
        :data:`MAX_GAP_FILL_S`, spliced instead and marked as a boundary).
    """

    index: np.ndarray
    n_times: int
    gaps: list = field(default_factory=list)


def sample_grid(timestamps: np.ndarray, sfreq: float, stream: str = "",
                chunk: int = 100_000) -> SampleGrid:
    """Find the holes in a recording's timestamps and the file position of every sample.

    The same gap detector as the live inlets (:class:`bci.health.TimestampTracker`: a line
    through the timestamps that absorbs jitter and learns the real rate) runs over the stored
    timestamps, so a recovered session finds the same holes as a finished one.
    """
    n = len(timestamps)
    tracker = TimestampTracker(sfreq, stream, dejitter=False)
    add = np.zeros(n, dtype=np.int64)
    gaps = []
    for start in range(0, n, chunk):
        _, found = tracker.process(np.asarray(timestamps[start:start + chunk], dtype=float))
        for g in found:
            filled = g.duration <= MAX_GAP_FILL_S
            if filled:
                add[g.index] += g.n_missing
            gaps.append({"onset_lsl": g.start, "duration": g.duration,
                         "n_missing": g.n_missing, "after_sample": g.index, "filled": filled})
    index = np.arange(n, dtype=np.int64) + np.cumsum(add)
    for g in gaps:
        j = g["after_sample"]
        g["onset"] = float((index[j] - (g["n_missing"] if g["filled"] else 0)) / sfreq)
        if not g["filled"]:
            logger.warning("a %.0f s hole in %s is longer than %.0f s (a clock jump?); it is "
                           "spliced and marked as a boundary, not filled", g["duration"],
                           stream or "the recording", MAX_GAP_FILL_S)
    return SampleGrid(index, int(index[-1]) + 1 if n else 0, gaps)


def _write_filled_copy(raw_dir: Path, info: StreamInfo, n: int, grid: SampleGrid) -> Path:
    """Write ``filled.eeg`` (+ header): the raw samples with NaN frames in each filled hole.

    Streams in blocks, so memory stays flat however long the recording; returns the header.
    """
    n_ch = info.n_channels
    src = np.memmap(raw_dir / RAW_EEG, dtype="<f4", mode="r", shape=(n, n_ch))
    write_brainvision_header(raw_dir, info, stem=FILLED_STEM)
    holes = [(g["after_sample"], g["n_missing"]) for g in grid.gaps if g["filled"]]
    block = 1 << 16
    with open(raw_dir / f"{FILLED_STEM}.eeg", "wb") as out:
        pos = 0
        for j, missing in [*holes, (n, 0)]:
            for a in range(pos, j, block):
                out.write(np.ascontiguousarray(src[a:min(a + block, j)]).tobytes())
            for a in range(0, missing, block):
                out.write(np.full((min(block, missing - a), n_ch), np.nan, "<f4").tobytes())
            pos = j
    del src
    return raw_dir / f"{FILLED_STEM}.vhdr"


def _bids_path(session_dir: Path, meta: dict):
    from mne_bids import BIDSPath

    b = meta["bids"]
    return BIDSPath(root=session_dir / BIDS_DIR, subject=b["subject"], session=b["session"],
                    task=b["task"], run=b.get("run"), datatype="eeg", suffix="eeg")


def _session_grid(session_dir: Path, meta: dict, n: int) -> tuple[np.ndarray, SampleGrid]:
    """The first ``n`` stored timestamps and their :class:`SampleGrid`."""
    ts_path = session_dir / RAW_DIR / RAW_TIMES
    ts = np.memmap(ts_path, dtype="<f8", mode="r", shape=(n,)) if n else np.zeros(0)
    stream = meta["stream"]
    return ts, sample_grid(ts, float(stream["sfreq"]), stream.get("name", ""))


def _events_in_file(session_dir: Path, meta: dict, n: int,
                    ts_grid: tuple[np.ndarray, SampleGrid] | None = None) -> pd.DataFrame:
    """The session's events with ``onset`` in seconds from the first sample, in range only."""
    ev = _read_session_events(session_dir)
    sfreq = float(meta["stream"]["sfreq"])
    ts, grid = ts_grid or _session_grid(session_dir, meta, n)
    onset = lsl_to_seconds(ev["onset_lsl"].to_numpy(), ts, sfreq, grid.index)
    # Durations are LSL-clock seconds too (they differ from file seconds for sped-up sources).
    end = lsl_to_seconds((ev["onset_lsl"] + ev["duration"]).to_numpy(), ts, sfreq, grid.index)
    ev.insert(0, "onset", onset)
    ev["duration"] = np.maximum(end - onset, 0.0)
    length = grid.n_times / sfreq
    keep = (ev["onset"] >= 0) & (ev["onset"] < length)
    ev["duration"] = np.minimum(ev["duration"], length - ev["onset"]).clip(lower=0.0)
    if (~keep).any():
        logger.warning("%d event(s) fall outside the recorded samples and are left out of "
                       "the BIDS events (they stay in %s)", int((~keep).sum()), EVENTS_FILE)
    return ev[keep].reset_index(drop=True)


def _gap_annotations(grid: SampleGrid) -> pd.DataFrame:
    """One annotation per hole, in MNE's own vocabulary.

    A filled hole is ``BAD_ACQ_SKIP`` over its length: MNE filters each side of it apart
    (``skip_by_annotation``'s default) and drops epochs that touch it. A hole too long to fill
    is a zero-length ``BAD boundary`` + ``EDGE boundary``, what MNE writes where it
    concatenates recordings.
    """
    rows = []
    for g in grid.gaps:
        if g["filled"]:
            rows.append((g["onset"], g["duration"], GAP_ANNOTATION, g["onset_lsl"]))
        else:
            rows += [(g["onset"], 0.0, "BAD boundary", g["onset_lsl"]),
                     (g["onset"], 0.0, "EDGE boundary", g["onset_lsl"])]
    return pd.DataFrame(rows, columns=["onset", "duration", "description", "onset_lsl"])


def _update_sidecar(bids_path, meta: dict, grid: SampleGrid) -> None:
    """Fields mne-bids cannot know: whether the run has holes, and who made the amplifier."""
    sidecar = bids_path.copy().update(suffix="eeg", extension=".json").fpath
    d = read_json(sidecar)
    extras = meta["stream"].get("extras") or {}
    # mne-bids names the maker of the file format (BrainVision: "Brain Products"); the
    # stream knows its real maker, or nobody does.
    d["Manufacturer"] = extras.get("manufacturer") or "n/a"
    if extras.get("model"):
        d["ManufacturersModelName"] = extras["model"]
    d["RecordingType"] = "discontinuous" if grid.gaps else "continuous"
    write_json_atomic(sidecar, d)


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
    ts, grid = _session_grid(session_dir, meta, n)
    # Holes stay holes: the file keeps the true time axis, NaN where nothing arrived.
    vhdr = _write_filled_copy(raw_dir, info, n, grid) if grid.gaps else raw_dir / RAW_VHDR
    raw = mne.io.read_raw_brainvision(vhdr, preload=False, verbose="error")
    types = {name: typ for name, typ in zip(info.ch_names, info.ch_types, strict=True)
             if typ != "eeg"}
    if types:
        raw.set_channel_types(types, on_unit_change="ignore", verbose="error")
    if meta["bids"].get("line_freq"):
        raw.info["line_freq"] = float(meta["bids"]["line_freq"])
    if meta.get("first_sample_unix"):
        from datetime import UTC, datetime

        raw.set_meas_date(datetime.fromtimestamp(float(meta["first_sample_unix"]), tz=UTC))
    ev = _events_in_file(session_dir, meta, n, (ts, grid))
    notes = pd.concat([ev, _gap_annotations(grid)], ignore_index=True).sort_values(
        "onset", kind="stable")
    raw.set_annotations(mne.Annotations(notes["onset"].to_numpy(), notes["duration"].to_numpy(),
                                        notes["description"].astype(str).to_numpy()))
    fmt = meta["bids"].get("format", "BrainVision")
    if fmt == "EDF":
        # EDF has no NaN; a hole (annotated) or a non-finite sample becomes 0 there.
        raw.load_data(verbose="error")
        raw.apply_function(lambda x: np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0),
                           channel_wise=False, verbose="error")
    bids_path = _bids_path(session_dir, meta)
    with warnings.catch_warnings():
        # A run without cues (rest, free steering) is normal here, not worth a warning.
        warnings.filterwarnings("ignore", message="No events found or provided")
        mne_bids.write_raw_bids(
            raw, bids_path, overwrite=True, verbose=False,
            format="auto" if fmt == "BrainVision" else fmt,
            allow_preload=fmt != "BrainVision",
        )
    _update_sidecar(bids_path, meta, grid)
    desc = session_dir / BIDS_DIR / "dataset_description.json"
    if desc.exists():  # mne-bids writes a placeholder name
        d = read_json(desc)
        if d.get("Name") in (None, "", "[Unspecified]"):
            d["Name"] = f"Yume BCI recording {session_dir.name}"
            write_json_atomic(desc, d)
    meta.update(status=status, n_samples=int(n), n_times=grid.n_times,
                duration_s=grid.n_times / info.sfreq,
                n_missing=int(sum(g["n_missing"] for g in grid.gaps if g["filled"])),
                gaps=grid.gaps, bids_file=str(bids_path.fpath.relative_to(session_dir)))
    write_json_atomic(session_dir / SESSION_FILE, meta)
    del raw
    for name in (FILLED_STEM + ".eeg", FILLED_STEM + ".vhdr", FILLED_STEM + ".vmrk"):
        (raw_dir / name).unlink(missing_ok=True)
    if not keep_raw:
        for name in (RAW_EEG, RAW_VHDR, RAW_VMRK):
            (raw_dir / name).unlink(missing_ok=True)
    logger.info("session %s written to BIDS (%d samples, %d events, %d gaps)", session_dir, n,
                len(ev), len(grid.gaps))
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
