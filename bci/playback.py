"""Replay a recorded file as a live stream: EDF, BDF, FIF, BrainVision, EEGLAB (through MNE)
and XDF (through pyxdf), at real speed or faster, with its events.

BrainFlow's own playback board replays only files written by BrainFlow
(``BoardSpec(board="playback", file=..., master_board=...)``); :class:`FilePlayback` is for
every other format.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from pylsl import local_clock

from bci.stream import AcquisitionError, Source, SourceState, StreamInfo

logger = logging.getLogger(__name__)

MNE_EXTENSIONS = {".edf": "EDF", ".bdf": "BDF", ".fif": "FIF", ".vhdr": "BrainVision",
                  ".set": "EEGLAB"}
XDF_EXTENSIONS = {".xdf": "XDF", ".xdfz": "XDF"}
_V_TO_UV = 1e6
_FIFF_UNIT_V = 107
_MNE_TYPES = {"eeg", "emg", "eog", "ecg", "misc", "stim", "resp", "bio", "seeg", "ecog", "gsr",
              "temperature"}


def _file_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".fif.gz"):
        return "FIF"
    ext = path.suffix.lower()
    if ext in MNE_EXTENSIONS:
        return MNE_EXTENSIONS[ext]
    if ext in XDF_EXTENSIONS:
        return "XDF"
    known = ", ".join(sorted({*MNE_EXTENSIONS, *XDF_EXTENSIONS, ".fif.gz"}))
    raise AcquisitionError(
        f"Cannot replay {path.name}: unknown file type {ext or '(none)'}; use one of {known}."
    )


def _is_recording(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and (name.endswith(".fif.gz") or path.suffix.lower() in MNE_EXTENSIONS
                               or path.suffix.lower() in XDF_EXTENSIONS)


def folder_message(path: str | os.PathLike) -> str:
    """The sentence for a folder given where a recording file is expected.

    It names the accepted file types and, when the folder holds recordings (a Yume session
    folder holds its BIDS copy under ``bids/``), the first one as an example to pass instead.
    """
    from bci.session_files import BIDS_DIR, SESSION_FILE

    path = Path(path)
    known = ", ".join(sorted({*MNE_EXTENSIONS, *XDF_EXTENSIONS, ".fif.gz"}))
    if (path / SESSION_FILE).is_file():
        # Only the BIDS copy is a file MNE reads; raw/ is the session's own binary format.
        found = sorted(p for p in (path / BIDS_DIR).rglob("*_eeg.*") if _is_recording(p))
        if found:
            return (f"{path} is a Yume session folder, not a recording file; replay its BIDS "
                    f"copy with file:{found[0]}.")
        return (f"{path} is a Yume session folder without its BIDS copy; rebuild it with "
                f"`yume record --recover {path}`, then pass the file under {path / BIDS_DIR}.")
    found = sorted(p for p in path.iterdir() if _is_recording(p))  # not recursive: may be huge
    if found:
        return (f"{path} is a folder; pass one recording file in it ({known}), e.g. "
                f"file:{found[0]}.")
    return f"{path} is a folder with no recording in it; pass a recording file ({known})."


def check_edf_size(path: str | os.PathLike, kind: str = "EDF") -> None:
    """Raise if an EDF/BDF file is shorter than its header announces.

    MNE reads a truncated EDF without complaint (it silently drops the missing records), so
    playback checks the size itself.

    Raises
    ------
    AcquisitionError
        If the file is truncated or its header is not an EDF/BDF header.
    """
    path = Path(path)
    size = path.stat().st_size
    bps = 3 if kind == "BDF" else 2
    what = f"{path} is truncated or not an {kind} file"
    with open(path, "rb") as f:
        head = f.read(256)
        try:
            if len(head) < 256:
                raise ValueError("short header")
            header_bytes = int(head[184:192].decode("ascii").strip())
            n_records = int(head[236:244].decode("ascii").strip())
            n_signals = int(head[252:256].decode("ascii").strip())
            if n_signals <= 0 or header_bytes != 256 * (n_signals + 1):
                raise ValueError("inconsistent header")
            sig = f.read(256 * n_signals)
            if len(sig) < 256 * n_signals:
                raise ValueError("short signal header")
            off = 216 * n_signals  # samples-per-record field, after 8 other per-signal fields
            per_record = sum(int(sig[off + 8 * i:off + 8 * i + 8].decode("ascii").strip())
                             for i in range(n_signals))
        except (ValueError, UnicodeDecodeError):
            raise AcquisitionError(
                f"{what}; its header cannot be read ({size} bytes): copy it again from the "
                "original or export it again."
            ) from None
    expected = header_bytes + max(n_records, 0) * per_record * bps
    if n_records >= 0 and size < expected:  # -1 records: still being written, size unknown
        raise AcquisitionError(
            f"{what}; its header announces {expected} bytes but it holds {size}: copy it again "
            "from the original or export it again."
        )


def find_events_sidecar(path: str | os.PathLike) -> Path | None:
    """The events table beside a recording: ``<stem>_events.csv``/``.tsv`` or, for BIDS
    files named ``..._eeg.<ext>``, ``..._events.tsv``."""
    path = Path(path)
    stem = path.name[: -len(".fif.gz")] if path.name.lower().endswith(".fif.gz") else path.stem
    stems = [stem]
    if stem.endswith("_eeg"):
        stems.append(stem[: -len("_eeg")])
    for s in stems:
        for ext in (".csv", ".tsv"):
            cand = path.with_name(f"{s}_events{ext}")
            if cand.is_file():
                return cand
    return None


class _MNEReader:
    """Lazily read chunks of a file MNE opens (bounded memory: nothing preloaded)."""

    def __init__(self, path: Path, kind: str) -> None:
        import mne

        if kind in ("EDF", "BDF"):
            check_edf_size(path, kind)
        try:
            raw = mne.io.read_raw(path, preload=False, verbose="error")
        except Exception as err:  # readers raise many types; the user needs one message
            raise AcquisitionError(
                f"{path} is truncated or not a {kind} file; MNE could not read it ({err})."
            ) from err
        self.raw = raw
        self.sfreq = float(raw.info["sfreq"])
        self.n_times = int(raw.n_times)
        self.ch_names = tuple(raw.ch_names)
        self.ch_types = tuple(raw.get_channel_types())
        self._gain = np.array(
            [_V_TO_UV if ch["unit"] == _FIFF_UNIT_V else 1.0 for ch in raw.info["chs"]]
        )[:, None]
        ann = raw.annotations
        # Annotation onsets count from the measurement date; playback counts from sample 0.
        offset = raw.first_time if ann.orig_time is not None else 0.0
        self.events = pd.DataFrame({
            "onset": np.asarray(ann.onset, dtype=float) - offset,
            "duration": np.asarray(ann.duration, dtype=float),
            "description": [str(d) for d in ann.description],
        })

    def read(self, start: int, stop: int) -> np.ndarray:
        return (self.raw.get_data(start=start, stop=stop) * self._gain).astype(np.float32)


_XDF_UNITS = {"v": 1e6, "volt": 1e6, "volts": 1e6, "mv": 1e3, "millivolts": 1e3,
              "nv": 1e-3, "nanovolts": 1e-3}


def _xdf_text(d: dict, key: str, default: str = "") -> str:
    try:
        val = d[key][0]
    except (KeyError, IndexError, TypeError):
        return default
    return str(val) if val is not None else default


class _XDFReader:
    """An XDF file's EEG stream (in memory: pyxdf has no partial reader) and its markers."""

    def __init__(self, path: Path, stream: str | None) -> None:
        import pyxdf

        try:
            streams, _ = pyxdf.load_xdf(str(path), verbose=False)
        except Exception as err:  # pyxdf raises Exception, ValueError, EOFError...
            raise AcquisitionError(
                f"{path} is truncated or not an XDF file; pyxdf could not read it ({err})."
            ) from err
        found = []
        for s in streams:
            info = s["info"]
            found.append((_xdf_text(info, "name"), _xdf_text(info, "type"),
                          _xdf_text(info, "channel_format"), s))
        if stream is not None:
            chosen = [f for f in found if f[0] == stream]
        else:
            chosen = [f for f in found if f[1].lower() == "eeg" and f[2] != "string"]
        listing = ", ".join(f"{n!r} (type {t or '?'}, {fmt})" for n, t, fmt, _ in found) \
            or "none"
        if not chosen:
            want = f"stream named {stream!r}" if stream else "EEG stream"
            raise AcquisitionError(
                f"{path.name} has no {want}; it holds {listing}: pass stream=NAME to choose one."
            )
        if len(chosen) > 1:
            logger.warning("%s holds several EEG streams (%s); replaying %r", path.name,
                           listing, chosen[0][0])
        name, _, fmt, s = chosen[0]
        info = s["info"]
        ts = np.asarray(s["time_stamps"], dtype=float)
        data = np.asarray(s["time_series"], dtype=float)
        if fmt == "string" or data.ndim != 2 or len(ts) == 0:
            raise AcquisitionError(
                f"The stream {name!r} in {path.name} holds no numeric samples; it holds "
                f"{listing}: pass stream=NAME to choose a signal stream."
            )
        n_ch = data.shape[1]
        self.sfreq = float(_xdf_text(info, "nominal_srate", "0") or 0)
        if self.sfreq <= 0:
            self.sfreq = float(info.get("effective_srate", 0) or 0)
        if self.sfreq <= 0:
            raise AcquisitionError(
                f"The stream {name!r} in {path.name} has no sampling rate; only regularly "
                "sampled streams can be replayed."
            )
        names, types, gains = [], [], []
        try:
            chans = info["desc"][0]["channels"][0]["channel"]
        except (KeyError, IndexError, TypeError):
            chans = []
        for i in range(n_ch):
            ch = chans[i] if i < len(chans) and isinstance(chans[i], dict) else {}
            names.append(_xdf_text(ch, "label") or f"Ch{i + 1}")
            typ = (_xdf_text(ch, "type") or "eeg").lower()
            types.append(typ if typ in _MNE_TYPES else "misc")
            unit = _xdf_text(ch, "unit").lower()
            gains.append(_XDF_UNITS.get(unit, 1.0) if types[-1] != "stim" else 1.0)
        self.stream_name = name
        self.ch_names, self.ch_types = tuple(names), tuple(types)
        self._data = (data.T * np.asarray(gains)[:, None]).astype(np.float32)
        self.n_times = self._data.shape[1]
        t_first = ts[0]
        rows = []
        for _n, t, f, other in found:
            if other is s or not (f == "string" or t.lower() == "markers"):
                continue
            for stamp, value in zip(other["time_stamps"], other["time_series"], strict=False):
                label = value[0] if isinstance(value, list | tuple | np.ndarray) else value
                rows.append((float(stamp) - t_first, 0.0, str(label)))
        self.events = pd.DataFrame(rows, columns=["onset", "duration", "description"])

    def read(self, start: int, stop: int) -> np.ndarray:
        return self._data[:, start:stop]


class FilePlayback(Source):
    """Replay a recording as a live stream on the LSL clock.

    Sample ``i`` is released at ``t0 + i / (sfreq * speed)``, where ``t0`` is the LSL time of
    :meth:`start`, and stamped with that time; an event at ``onset`` seconds in the file is
    reported at ``t0 + onset / speed``. Voltages are given in µV.

    Parameters
    ----------
    path : path-like
        EDF, BDF, FIF, BrainVision (.vhdr), EEGLAB (.set) or XDF file.
    speed : float
        1 for real time, 10 for ten times faster.
    loop : bool
        Start again from the beginning at the end of the file (events repeat too).
    events : path-like or None or False
        An events table (CSV/TSV with onset, duration and label columns) that replaces the
        file's annotations. None looks for ``<stem>_events.csv``/``.tsv`` beside the file;
        False uses the file's own annotations / marker streams.
    stream : str or None
        For XDF: name of the stream to replay (default: the EEG stream).
    max_chunk : float
        Most seconds of file returned by one :meth:`poll` (bounds memory after a stall).

    Raises
    ------
    AcquisitionError
        If the file is missing, truncated, of an unknown type, or holds no EEG stream.
    """

    def __init__(self, path: str | os.PathLike, speed: float = 1.0, loop: bool = False,
                 events: str | os.PathLike | None | bool = None, stream: str | None = None,
                 max_chunk: float = 5.0) -> None:
        path = Path(path)
        if not (math.isfinite(float(speed)) and float(speed) > 0):
            raise AcquisitionError(
                f"Playback speed must be a positive number (1 = real time), got {speed!r}."
            )
        if path.is_dir():
            raise AcquisitionError(folder_message(path))
        if not path.is_file():
            raise AcquisitionError(f"The file {path} does not exist; check the path.")
        kind = _file_kind(path)
        self.path = path
        self.kind = kind
        self.speed = float(speed)
        self.loop = bool(loop)
        if kind == "XDF":
            self._reader = _XDFReader(path, stream)
        else:
            if stream is not None:
                raise AcquisitionError("stream= only applies to XDF files; leave it out.")
            self._reader = _MNEReader(path, kind)
        if self._reader.n_times == 0:
            raise AcquisitionError(f"{path} holds no samples; choose another recording.")
        sidecar = None
        if events is None:
            sidecar = find_events_sidecar(path)
        elif events is not False:
            sidecar = Path(events)
            if not sidecar.is_file():
                raise AcquisitionError(f"The events table {sidecar} does not exist.")
        if sidecar is not None:
            from bci.session_files import RecordingError, read_events_table

            try:
                table = read_events_table(sidecar)
            except RecordingError as err:
                raise AcquisitionError(str(err)) from err
            logger.info("events of %s from %s", path.name, sidecar.name)
            self.events_source = sidecar
        else:
            table = self._reader.events
            self.events_source = path
        self.events = table.sort_values("onset", kind="stable").reset_index(drop=True)
        self.sfreq = self._reader.sfreq
        self.n_times = self._reader.n_times
        self.max_chunk = max(int(max_chunk * self.sfreq), 1)
        self.info = StreamInfo(
            name=f"File {path.name}" + (f" ({self._reader.stream_name})" if kind == "XDF"
                                        else ""),
            sfreq=self.sfreq, ch_names=self._reader.ch_names, ch_types=self._reader.ch_types,
            units="uV", source_id=f"file-{path.name}", stream_type="EEG",
            extras={"path": str(path), "format": kind, "n_times": self.n_times,
                    "duration": self.n_times / self.sfreq, "speed": self.speed},
        )
        self._t0: float | None = None
        self._pos = 0  # samples released, counting across loops
        self._ev_pos = 0  # events released, counting across loops
        self.state = SourceState.IDLE

    @property
    def duration(self) -> float:
        """Length of the file in seconds."""
        return self.n_times / self.sfreq

    @property
    def finished(self) -> bool:
        """True once every sample was released (never when looping)."""
        return not self.loop and self._pos >= self.n_times

    @property
    def t0(self) -> float | None:
        """LSL time at which sample 0 was (or would have been) released."""
        return self._t0

    def start(self) -> None:
        self._t0 = local_clock()
        self._pos = 0
        self._ev_pos = 0
        self.state = SourceState.STREAMING
        logger.info("replaying %s (%.0f Hz, %d ch) at %gx", self.path.name, self.sfreq,
                    len(self.info.ch_names), self.speed)

    def poll(self) -> tuple[np.ndarray, np.ndarray]:
        if self._t0 is None:
            raise AcquisitionError(f"{self.info.name} is not started; call start() first.")
        rate = self.sfreq * self.speed
        due = int(math.floor((local_clock() - self._t0) * rate)) + 1
        if not self.loop:
            due = min(due, self.n_times)
        due = min(due, self._pos + self.max_chunk)
        if due <= self._pos:
            if self.finished:
                self.state = SourceState.STOPPED
            return (np.zeros((self.info.n_channels, 0), np.float32), np.zeros(0))
        parts, i = [], self._pos
        while i < due:  # split where a loop wraps around
            start = i % self.n_times
            stop = min(self.n_times, start + (due - i))
            parts.append(self._reader.read(start, stop))
            i += stop - start
        times = self._t0 + np.arange(self._pos, due) / rate
        self._pos = due
        data = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        return data, times

    def poll_events(self, durations: bool = False) -> list[tuple]:
        """Events whose onset has been played since the last call.

        Returns
        -------
        events : list of tuple
            ``(onset on the LSL clock, description)``, or ``(onset, duration, description)``
            with ``durations=True``.
        """
        n_ev = len(self.events)
        if self._t0 is None or n_ev == 0:
            return []
        played = self._pos / self.sfreq  # file seconds released so far, across loops
        out = []
        onsets = self.events["onset"].to_numpy()
        while True:
            cycle, k = divmod(self._ev_pos, n_ev)
            if cycle and not self.loop:
                break
            onset = cycle * self.duration + onsets[k]
            if onset >= played:
                break
            t = float(self._t0 + onset / self.speed)
            desc = str(self.events["description"].iat[k])
            out.append((t, float(self.events["duration"].iat[k]) / self.speed, desc)
                       if durations else (t, desc))
            self._ev_pos += 1
        return out

    def stop(self) -> None:
        self.state = SourceState.STOPPED

