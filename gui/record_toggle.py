"""A record button with the elapsed time and file size: starts and stops a
:class:`bci.recording.Recorder` fed by an :class:`bci.acquisition.Acquisition`."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from PyQt6 import QtCore, QtWidgets

from bci.acquisition import Acquisition
from bci.recording import Recorder, new_session_dir

logger = logging.getLogger(__name__)


def _size(nbytes: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return ""


class RecordToggle(QtWidgets.QWidget):
    """Record / Stop button, recorded time and size; one session folder per recording.

    Samples reach the recorder from the acquisition thread; closing (writing the BIDS copy)
    runs in a background thread so the window stays responsive. Errors (disk full, folder not
    writable) stop the recording, keep what was written and are shown, never raised.

    Parameters
    ----------
    acquisition : Acquisition or None
        The stream to record (see :meth:`set_acquisition`).
    out_dir : path-like
        Folder receiving one session folder per recording.
    subject, session, task : str
        BIDS entities of the recordings.
    config : dict or None
        Written to each session's ``config.json``.

    Signals
    -------
    started(str) : a recording began in this folder.
    stopped(str) : the folder's BIDS dataset is written.
    failed(str) : a one-sentence error.
    """

    started = QtCore.pyqtSignal(str)
    stopped = QtCore.pyqtSignal(str)
    failed = QtCore.pyqtSignal(str)

    def __init__(self, acquisition: Acquisition | None = None, out_dir: str | Path = "runs",
                 subject: str = "01", session: str = "01", task: str = "bci",
                 config: dict | None = None, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.out_dir = Path(out_dir)
        self.subject, self.session, self.task = subject, session, task
        self.config = config
        self.recorder: Recorder | None = None
        self.last_folder: Path | None = None
        self.error: str | None = None
        self._acq: Acquisition | None = None
        self._registered: set[int] = set()
        self._push_error: str | None = None
        self._closing: threading.Thread | None = None
        self._close_error: str | None = None

        self.button = QtWidgets.QPushButton("● Record")
        self.button.setCheckable(True)
        self.button.setToolTip("Record the stream to a BIDS session folder")
        self.button.clicked.connect(self._on_clicked)
        self.status = QtWidgets.QLabel("not recording")
        self.status.setMinimumWidth(150)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.button)
        layout.addWidget(self.status)
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(250)
        self._timer.timeout.connect(self._refresh)
        self.set_acquisition(acquisition)

    # -- wiring ----------------------------------------------------------------------------

    def set_acquisition(self, acquisition: Acquisition | None) -> None:
        """Record this acquisition from the next :meth:`start` on."""
        if self.is_recording:
            self.stop()
        self._acq = acquisition
        if acquisition is not None and id(acquisition) not in self._registered:
            # Acquisition has no remove_listener: register once, forward to the current one.
            acquisition.add_listener(lambda d, t, a=acquisition: self._forward(a, d, t))
            self._registered.add(id(acquisition))
        self.button.setEnabled(acquisition is not None)

    def _forward(self, acquisition, data, timestamps) -> None:  # acquisition thread
        rec = self.recorder
        if rec is None or acquisition is not self._acq or rec.closed:
            return
        try:
            rec.push(data, timestamps)
        except Exception as err:  # noqa: BLE001 - must not kill the acquisition thread
            self._push_error = f"Recording stopped: {err}"

    @property
    def is_recording(self) -> bool:
        return self.recorder is not None and not self.recorder.closed

    # -- actions ---------------------------------------------------------------------------

    def start(self) -> Path | None:
        """Start recording to a new session folder; returns it (None on error)."""
        if self.is_recording or self._closing is not None:
            return self.recorder.session_dir if self.recorder else None
        if self._acq is None:
            self._fail("There is no stream to record; start a source first.")
            return None
        folder = new_session_dir(self.out_dir, self.subject, self.session, self.task)
        try:
            self.recorder = Recorder(folder, self._acq.info, subject=self.subject,
                                     session=self.session, task=self.task, config=self.config)
        except (OSError, ValueError, RuntimeError) as err:
            self._fail(f"Could not start recording in {folder}: {err}")
            return None
        self.recorder.log_event("recording_started", source=self._acq.info.name)
        self._push_error = None
        self.error = None
        self.last_folder = folder
        self.button.setChecked(True)
        self.button.setText("■ Stop")
        self._timer.start()
        self._refresh()
        self.started.emit(str(folder))
        return folder

    def stop(self, wait: bool = False) -> None:
        """Stop recording; the BIDS copy is written in the background (``wait`` to block)."""
        rec = self.recorder
        if rec is None or rec.closed or self._closing is not None:
            if wait and self._closing is not None:
                self._closing.join()
                self._refresh()
            return
        rec.log_event("recording_stopped", n_samples=rec.n_samples)
        self.button.setEnabled(False)
        self.button.setText("Saving…")
        self._close_error = None

        def close():
            try:
                rec.close()
            except Exception as err:  # noqa: BLE001 - reported in the window
                self._close_error = (f"The recording in {rec.session_dir} was kept but its BIDS "
                                     f"copy failed: {err}")

        self._closing = threading.Thread(target=close, name="recorder-close", daemon=True)
        self._closing.start()
        if wait:
            self._closing.join()
            self._refresh()

    def add_event(self, onset_lsl: float, duration: float = 0.0, description: str = "") -> None:
        """Record an event if a recording is running (ignored otherwise)."""
        if self.is_recording:
            self.recorder.add_event(onset_lsl, duration, description)

    def log_event(self, kind: str, **fields) -> None:
        """Write to the running recording's log (ignored when not recording)."""
        if self.is_recording:
            self.recorder.log_event(kind, **fields)

    # -- display ---------------------------------------------------------------------------

    def _on_clicked(self, checked: bool) -> None:
        if checked:
            if self.start() is None:
                self.button.setChecked(False)
        else:
            self.stop()

    def _fail(self, message: str) -> None:
        self.error = message
        logger.error("%s", message)
        self.status.setText("error (see tooltip)")
        self.status.setToolTip(message)
        self.failed.emit(message)

    def _refresh(self) -> None:
        rec = self.recorder
        if self._push_error and rec is not None and not rec.closed:
            message, self._push_error = self._push_error, None
            self.stop()
            self._fail(message)
            return
        if self._closing is not None:
            if self._closing.is_alive():
                return
            self._closing = None
            self._timer.stop()
            self.button.setEnabled(self._acq is not None)
            self.button.setChecked(False)
            self.button.setText("● Record")
            if self._close_error:
                self._fail(self._close_error)
            else:
                self.status.setText(f"saved {rec.duration:.0f} s")
                self.status.setToolTip(str(rec.session_dir))
                self.stopped.emit(str(rec.session_dir))
            return
        if rec is not None and not rec.closed:
            secs = int(rec.duration)
            self.status.setText(f"● {secs // 60:02d}:{secs % 60:02d}  {_size(rec.nbytes)}")
            self.status.setToolTip(str(rec.session_dir))
