"""A fixed-size, thread-safe ring buffer of multichannel samples with timestamps."""

from __future__ import annotations

import threading

import numpy as np


class RingBuffer:
    """Keeps the newest ``capacity`` samples of ``n_channels`` channels and their timestamps.

    Memory is allocated once, so it stays bounded however long a session runs. Writers call
    :meth:`push` (any chunk size, even larger than the capacity); readers take copies with
    :meth:`latest` or :meth:`since`, so they never see a half-written chunk.

    Parameters
    ----------
    n_channels : int
        Number of channels (rows).
    capacity : int
        Number of samples kept.
    dtype : numpy dtype
        Sample type (default float32).
    """

    def __init__(self, n_channels: int, capacity: int, dtype=np.float32) -> None:
        if n_channels <= 0 or capacity <= 0:
            raise ValueError(
                f"A ring buffer needs at least one channel and one sample, got "
                f"{n_channels} channels x {capacity} samples."
            )
        self.n_channels = int(n_channels)
        self.capacity = int(capacity)
        self._data = np.zeros((self.n_channels, self.capacity), dtype=dtype)
        self._times = np.zeros(self.capacity, dtype=np.float64)
        self._written = 0  # total samples ever pushed
        self._lock = threading.Lock()

    @property
    def n_written(self) -> int:
        """Total number of samples pushed since creation (keeps counting past wrap-around)."""
        return self._written

    def __len__(self) -> int:
        return min(self._written, self.capacity)

    def push(self, data: np.ndarray, timestamps: np.ndarray) -> None:
        """Append samples ``data`` (n_channels, n) with ``timestamps`` (n,)."""
        data = np.asarray(data)
        timestamps = np.asarray(timestamps, dtype=np.float64).ravel()
        if data.ndim != 2 or data.shape[0] != self.n_channels:
            raise ValueError(
                f"Expected data of shape ({self.n_channels}, n), got {data.shape}: the stream's "
                "channel count does not match the buffer."
            )
        n = data.shape[1]
        if timestamps.shape[0] != n:
            raise ValueError(f"{n} samples but {timestamps.shape[0]} timestamps.")
        if n == 0:
            return
        skipped = max(n - self.capacity, 0)  # only the newest samples can be kept
        if skipped:
            data, timestamps, n = data[:, skipped:], timestamps[skipped:], self.capacity
        with self._lock:
            start = (self._written + skipped) % self.capacity
            first = min(n, self.capacity - start)
            self._data[:, start:start + first] = data[:, :first]
            self._times[start:start + first] = timestamps[:first]
            if first < n:
                self._data[:, : n - first] = data[:, first:]
                self._times[: n - first] = timestamps[first:]
            self._written += n + skipped

    def advance(self, n: int) -> None:
        """Count ``n`` samples as written without storing any (an empty buffer only).

        A replay that starts mid-stream uses it so that absolute sample counts (which decoders
        key their windows to) are those of the live session.
        """
        with self._lock:
            if self._written:
                raise ValueError("advance() is for an empty buffer; it already holds samples.")
            self._written = max(int(n), 0)

    def _indices(self, n: int) -> np.ndarray:
        end = self._written
        return np.arange(end - n, end) % self.capacity

    def latest(self, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the newest ``n`` samples (all kept samples if None), oldest first."""
        with self._lock:
            avail = min(self._written, self.capacity)
            n = avail if n is None else min(int(n), avail)
            idx = self._indices(n)
            return self._data[:, idx].copy(), self._times[idx].copy()

    def since(self, count: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Samples pushed after the first ``count`` ever pushed.

        Returns the data, timestamps and the new count to pass next time. Samples that were
        overwritten before being read are lost; compare ``new_count - count`` with the number
        returned to detect that.
        """
        with self._lock:
            n = min(self._written - int(count), self.capacity)
            n = max(n, 0)
            idx = self._indices(n)
            return self._data[:, idx].copy(), self._times[idx].copy(), self._written

    def clear(self) -> None:
        """Forget every sample (the allocation is kept)."""
        with self._lock:
            self._written = 0
