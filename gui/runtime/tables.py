"""Append-only TSV tables of a session (decisions, ticks, route), flushed line by line.

A killed run keeps every row written before it died, like :class:`bci.eventlog.EventLog`.
Floats are written with ``repr`` so that a replay can compare them bit for bit.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


class TsvTable:
    """One TSV file with a fixed header.

    Parameters
    ----------
    path : path
        File to create (an existing one is replaced).
    columns : sequence of str
        The header.
    """

    def __init__(self, path: str | Path, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = tuple(columns)
        self._fh = open(self.path, "w", newline="", encoding="utf-8")
        self._w = csv.writer(self._fh, delimiter="\t", lineterminator="\n")
        self._w.writerow(self.columns)
        self._fh.flush()
        self.n_rows = 0

    def row(self, **values) -> None:
        """Write one row; missing columns are empty."""
        if self._fh.closed:
            return
        self._w.writerow([_cell(values.get(c)) for c in self.columns])
        self._fh.flush()
        self.n_rows += 1

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
