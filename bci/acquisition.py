"""A background thread that polls a :class:`Source` into a :class:`RingBuffer`."""

from __future__ import annotations

import logging
import threading
import time

from bci.ringbuffer import RingBuffer
from bci.stream import AcquisitionError, Source, SourceState

logger = logging.getLogger(__name__)


class Acquisition:
    """Keep the last ``seconds`` of a source in a ring buffer, polled every ``interval`` s.

    The thread never raises: a failing source sets :attr:`error` and :attr:`state`, which the
    window and the log show, and the samples already buffered stay readable.

    Parameters
    ----------
    source : Source
        Where the samples come from.
    seconds : float
        How much history the buffer keeps.
    interval : float
        Polling period in seconds.
    """

    def __init__(self, source: Source, seconds: float = 30.0, interval: float = 0.005) -> None:
        self.source = source
        sfreq = source.info.sfreq or 1.0
        self.buffer = RingBuffer(source.info.n_channels, max(int(seconds * sfreq), 1))
        self.interval = float(interval)
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._listeners: list = []

    @property
    def info(self):
        return self.source.info

    @property
    def state(self) -> SourceState:
        return self.source.state

    def add_listener(self, callback) -> None:
        """Call ``callback(data, timestamps)`` from the acquisition thread for each new chunk."""
        self._listeners.append(callback)

    def start(self) -> None:
        """Start the source and the polling thread (raises if the source cannot start)."""
        self.source.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="acquisition", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, ts = self.source.poll()
            except AcquisitionError as err:
                self.error = str(err)
                logger.error("%s", err)
                self.source.state = SourceState.FAILED
                return
            if data.shape[1]:
                self.buffer.push(data, ts)
                for cb in self._listeners:
                    cb(data, ts)
            time.sleep(self.interval)

    def stop(self) -> None:
        """Stop polling and release the source."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self.source.stop()
