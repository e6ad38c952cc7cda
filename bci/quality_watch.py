"""Signal quality of a live stream: traffic lights per channel and an artifact index, over time.

:class:`QualityWatch` reads the newest seconds of a :class:`~bci.ringbuffer.RingBuffer`, checks
them with :class:`~bci.quality.SignalQuality` every few seconds, fits an
:class:`~bci.quality.ArtifactMonitor` (pyRiemann's Potato) on the first clean half minute in a
background thread, then scores each new second. It returns log entries for what changed; the
window shows the lights, and every run logs the same entries.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

import numpy as np

from bci.quality import ArtifactMonitor, QualityReport, SignalQuality
from bci.ringbuffer import RingBuffer
from bci.stream import StreamInfo

logger = logging.getLogger(__name__)

# Channel types whose quality is judged (EEG-like voltages); counters, markers, gaze are not.
JUDGED_TYPES = frozenset({"eeg", "emg", "eog", "ecg", "seeg", "ecog"})


class QualityWatch:
    """Judge the newest samples of a live stream now and then; say what changed.

    Parameters
    ----------
    buffer : RingBuffer
        The acquisition's buffer (samples in ``info.units``, µV for EEG).
    info : StreamInfo
        The stream; only EEG-like channels are judged.
    window_s : float
        Seconds judged by the traffic lights.
    check_every_s : float
        Seconds between two traffic-light checks.
    calibration_s : float
        Seconds of signal the artifact index is fitted on (the first ones of the session).
    quality : SignalQuality or None
        Thresholds of the traffic lights (defaults otherwise).
    artifacts : ArtifactMonitor or None
        The artifact index (defaults otherwise); None disables it when ``artifact=False``.
    artifact : bool
        Compute the artifact index at all.
    impedance : callable or None
        Returns electrode impedances in kΩ (e.g. a BrainFlow source's ``impedance``), or None
        where the board reports none; read at each check.

    Attributes
    ----------
    report : QualityReport or None
        The latest traffic lights.
    artifact_z : float or None
        The latest artifact z-score (None until the index is fitted).
    impedance_kohm : dict or None
        The latest impedances.
    """

    def __init__(self, buffer: RingBuffer, info: StreamInfo, window_s: float = 4.0,
                 check_every_s: float = 2.0, calibration_s: float = 30.0,
                 quality: SignalQuality | None = None,
                 artifacts: ArtifactMonitor | None = None, artifact: bool = True,
                 impedance: Callable[[], Mapping[str, float] | None] | None = None) -> None:
        self.buffer, self.info = buffer, info
        self.window_s, self.check_every_s = float(window_s), float(check_every_s)
        self.calibration_s = float(calibration_s)
        self.quality = quality or SignalQuality()
        self.artifacts = (artifacts or ArtifactMonitor()) if artifact else None
        self.picks = np.array([i for i, t in enumerate(info.ch_types) if t in JUDGED_TYPES],
                              dtype=int)
        self.names = [info.ch_names[i] for i in self.picks]
        self.report: QualityReport | None = None
        self.artifact_z: float | None = None
        self.impedance = impedance
        self.impedance_kohm: dict[str, float] | None = None
        self._last_check = -np.inf
        self._last_score = -np.inf
        self._fitting: threading.Thread | None = None
        self._fitted = False
        self._status: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        return self.picks.size > 0 and (self.info.sfreq or 0) > 0

    def _latest(self, seconds: float) -> np.ndarray:
        data, _ = self.buffer.latest(int(seconds * self.info.sfreq))
        return np.asarray(data[self.picks], dtype=np.float64)

    def poll(self, now: float) -> list[tuple[str, dict]]:
        """Check when due (``now``: any clock in seconds); log entries ``(kind, fields)``.

        ``signal_quality`` when a channel's light changes (the whole report), ``impedance``
        when the impedances change (0.1 kΩ steps), and ``artifact_index`` once a second once
        the index is fitted (z-score, flagged or not).
        """
        if not self.enabled:
            return []
        out: list[tuple[str, dict]] = []
        sfreq = self.info.sfreq
        if now - self._last_check >= self.check_every_s and len(self.buffer) >= sfreq:
            self._last_check = now
            self.report = self.quality.check(self._latest(self.window_s), sfreq, self.names)
            imp = self.impedance() if self.impedance is not None else None
            imp = {k: round(float(v), 1) for k, v in imp.items()} if imp else None
            if imp != self.impedance_kohm:
                self.impedance_kohm = imp
                out.append(("impedance", {"kohm": imp}))
            if self.report.status != self._status:
                self._status = dict(self.report.status)
                out.append(("signal_quality", {"summary": self.report.summary(),
                                               "channels": self.report.to_dict()["channels"]}))
        if self.artifacts is None:
            return out
        if not self._fitted:
            self._maybe_fit()
        elif now - self._last_score >= 1.0:
            self._last_score = now
            window = self._latest(self.artifacts.window_s)
            if window.shape[1] == self.artifacts.n_window_ and np.isfinite(window).all():
                self.artifact_z = float(self.artifacts.score(window))
                out.append(("artifact_index", {
                    "z": round(self.artifact_z, 3),
                    "artifact": bool(self.artifact_z > self.artifacts.threshold)}))
        return out

    def _maybe_fit(self) -> None:
        """Fit the artifact index once enough signal is in, off the caller's thread."""
        if self._fitting is not None:
            if not self._fitting.is_alive():
                self._fitting = None
                self._fitted = getattr(self.artifacts, "potato_", None) is not None
            return
        if len(self.buffer) < self.calibration_s * self.info.sfreq:
            return
        data = self._latest(self.calibration_s)
        if not np.isfinite(data).all():
            return  # a gap in the calibration half minute: wait for a clean one

        def fit() -> None:
            try:
                self.artifacts.fit(data, self.info.sfreq)
            except (ValueError, np.linalg.LinAlgError) as err:
                logger.warning("the artifact index could not be fitted (%s); it stays off", err)
                self.artifacts = None

        self._fitting = threading.Thread(target=fit, name="artifact-fit", daemon=True)
        self._fitting.start()
