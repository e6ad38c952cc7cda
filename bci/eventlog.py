"""A JSON-lines log of application events, stamped on the LSL clock, written line by line."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from pylsl import local_clock


def jsonable(value: Any) -> Any:
    """``json.dumps(default=...)`` fallback for arrays, numpy scalars, dataclasses and paths."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__, **dataclasses.asdict(value)}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


class EventLog:
    """Append events as JSON lines ``{"t": <LSL clock>, "kind": ..., ...}``.

    Each line is flushed as it is written, so a killed process loses nothing already logged;
    ``fsync_every`` lines are also forced to disk. Load the file with
    ``pandas.read_json(path, lines=True)``.

    Parameters
    ----------
    path : str or Path
        File to append to (created with its parent folders).
    fsync_every : int
        Force to disk every this many lines.
    """

    def __init__(self, path: str | os.PathLike, fsync_every: int = 50) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        self._fsync_every = max(int(fsync_every), 1)
        self._count = 0

    def log(self, kind: str, t: float | None = None, **fields: Any) -> dict:
        """Write one event; ``t`` defaults to now on the LSL clock. Returns the record."""
        record = {"t": local_clock() if t is None else float(t), "kind": kind, **fields}
        self._file.write(json.dumps(record, default=jsonable, ensure_ascii=False) + "\n")
        self._file.flush()
        self._count += 1
        if self._count % self._fsync_every == 0:
            os.fsync(self._file.fileno())
        return record

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_event_log(path: str | os.PathLike) -> list[dict]:
    """Read an event log back; a truncated last line (killed writer) is skipped."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records
