"""Signal quality at a glance: per-channel traffic lights, an online artifact index, impedance.

Three independent tools, all on microvolts:

* :class:`SignalQuality` checks a window of samples channel by channel (flat, railing, line
  noise, high variance, gaps) and gives each channel a traffic light, ``"good"``, ``"warn"`` or
  ``"bad"``, with the reasons (:class:`ChannelQuality`, :class:`QualityReport`).
* :class:`ArtifactMonitor` is an online artifact index over all channels at once: the z-score of
  a window's covariance matrix from the centroid of calibration covariances, with pyRiemann's
  Riemannian Potato (Barachant et al. 2013).
* :func:`board_impedance` reads the electrode impedances (kOhm) that some BrainFlow boards
  report in their "resistance" rows, and gives None for boards that report none.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from brainflow.board_shim import BoardShim, BrainFlowError, BrainFlowPresets
from scipy import signal

logger = logging.getLogger(__name__)

STATUSES = ("good", "warn", "bad")
_RANK = {s: i for i, s in enumerate(STATUSES)}

__all__ = [
    "STATUSES", "ChannelQuality", "QualityReport", "SignalQuality", "ArtifactMonitor",
    "board_reports_impedance", "board_impedance", "read_impedance",
]


# --------------------------------------------------------------------------- per-channel check
@dataclass(frozen=True)
class ChannelQuality:
    """The traffic light of one channel.

    Attributes
    ----------
    name : str
        Channel name.
    status : str
        ``"good"``, ``"warn"`` or ``"bad"``.
    reasons : tuple of str
        Why the channel is not good: ``"no data"``, ``"gaps"``, ``"flat"``, ``"railing"``,
        ``"line noise"``, ``"high variance"`` (empty when good).
    std_uv : float
        Standard deviation of the linearly detrended channel in microvolts (NaN without data).
    line_ratio : float
        Power within +-1 Hz of the line frequency over the 1-40 Hz power (NaN when not
        measurable: no data, or the line frequency above Nyquist).
    nan_fraction : float
        Fraction of the window's samples that are NaN.
    rail_fraction : float
        Fraction of the samples at the window's extremes or beyond the rail.
    """

    name: str
    status: str
    reasons: tuple[str, ...]
    std_uv: float
    line_ratio: float
    nan_fraction: float = 0.0
    rail_fraction: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN becomes None)."""
        def num(v: float) -> float | None:
            return None if not np.isfinite(v) else round(float(v), 4)

        return {"name": self.name, "status": self.status, "reasons": list(self.reasons),
                "std_uv": num(self.std_uv), "line_ratio": num(self.line_ratio),
                "nan_fraction": num(self.nan_fraction), "rail_fraction": num(self.rail_fraction)}


@dataclass(frozen=True)
class QualityReport:
    """The traffic lights of all channels of one window.

    Attributes
    ----------
    channels : tuple of ChannelQuality
        One entry per channel, in the order of the data.
    sfreq : float
        Sampling rate of the window (Hz).
    n_times : int
        Samples in the window.
    line_freq : float or None
        The line frequency used (given or auto-detected); None when it could not be measured.
    """

    channels: tuple[ChannelQuality, ...]
    sfreq: float
    n_times: int
    line_freq: float | None

    def __getitem__(self, name: str) -> ChannelQuality:
        for ch in self.channels:
            if ch.name == name:
                return ch
        raise KeyError(name)

    def __len__(self) -> int:
        return len(self.channels)

    @property
    def status(self) -> dict[str, str]:
        """Channel name -> status."""
        return {ch.name: ch.status for ch in self.channels}

    def names(self, status: str) -> list[str]:
        """Names of the channels with ``status`` (``"good"``, ``"warn"`` or ``"bad"``)."""
        if status not in _RANK:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}.")
        return [ch.name for ch in self.channels if ch.status == status]

    @property
    def worst(self) -> str:
        """The worst status over all channels (``"good"`` when there are none)."""
        return max((ch.status for ch in self.channels), key=_RANK.__getitem__, default="good")

    def summary(self, max_listed: int = 6) -> str:
        """One line, e.g. ``"64 ch: 61 good, 1 warn (T7 line noise), 2 bad (Fp1 flat, ...)"``."""
        parts = [f"{len(self.names('good'))} good"]
        for status in ("warn", "bad"):
            chans = [ch for ch in self.channels if ch.status == status]
            if not chans:
                continue
            listed = ", ".join(f"{ch.name} {'+'.join(ch.reasons)}" for ch in chans[:max_listed])
            more = f", +{len(chans) - max_listed} more" if len(chans) > max_listed else ""
            parts.append(f"{len(chans)} {status} ({listed}{more})")
        line = f", line {self.line_freq:g} Hz" if self.line_freq else ""
        return f"{len(self.channels)} ch: " + ", ".join(parts) + line

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict:
        """JSON-ready dict for a session log."""
        return {"sfreq": self.sfreq, "n_times": self.n_times, "line_freq": self.line_freq,
                "worst": self.worst, "channels": [ch.to_dict() for ch in self.channels]}


def _fill_nans(x: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN runs (a spectrum needs evenly spaced samples)."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    idx = np.arange(x.size)
    out = x.copy()
    out[bad] = np.interp(idx[bad], idx[~bad], x[~bad])
    return out


class SignalQuality:
    """Per-channel signal-quality check of a window of EEG samples.

    Parameters
    ----------
    flat_uv : float
        A channel whose detrended standard deviation is below this is ``"flat"`` (bad).
        0.5 uV is below any live scalp EEG (several uV even in a quiet band) but above a
        disconnected or shorted input of a modern 24-bit amplifier (a few tenths of a uV).
    flat_fraction : float
        A channel whose consecutive samples are identical for more than this fraction of the
        window is ``"flat"`` too (a stuck ADC or a repeated-sample fill). Real EEG quantized at
        1 uV (EDF) repeats < 5 % of the time.
    rail_uv : float
        Excursion from the channel's median beyond which a sample counts as railing. Cortical
        EEG stays below ~100 uV and blinks ~100-300 uV; 1000 uV is only reached when the input
        saturates or an electrode pops, and measuring from the median keeps the large DC
        offsets of DC-coupled boards (Cyton: tens of mV) from counting.
    amplifier_range_uv : float or None
        The amplifier's absolute input range (e.g. 187500 uV for an ADS1299 at gain 24):
        samples at 99 % of it or beyond count as railing. None skips this test.
    rail_fraction : float
        A channel with more than this fraction of railing samples, or of samples sitting exactly
        at the window's minimum or maximum (clipping), is ``"railing"`` (bad). In real EEG the
        extremes occur 1-3 times per window, far below 2 %.
    line_freq : float or None
        Mains frequency, 50 or 60 Hz; None auto-detects it per window: whichever of the two
        has the larger line ratio on average over channels.
    line_ratio_warn, line_ratio_bad : float
        Thresholds on the power within +-1 Hz of the line frequency over the 1-40 Hz power.
        Clean real EEG (PhysioNet, US) gives < 0.04; 0.1 means the mains already holds a tenth
        of the EEG band's power (visible in the trace), 0.5 that it rivals the EEG.
    std_warn_ratio, std_bad_ratio : float
        A channel whose standard deviation exceeds this multiple of the median channel's is
        ``"high variance"`` (warn, bad). On real 64-channel EEG the ratio spans 0.5-2 (frontal
        and temporal channels are the high end), so 2.5 leaves headroom; 5 is 25x the variance.
    std_bad_uv : float
        Absolute bound: a detrended std above this is ``"high variance"`` (bad) whatever the
        other channels do (so it still fires when every electrode is bad). Sustained 200 uV RMS
        over a window is beyond EEG and blinks.
    max_nan_fraction : float
        Any NaN sample is a ``"gaps"`` warning; more than this fraction makes it bad.

    Notes
    -----
    The standard deviation is taken after removing a straight line from each channel: a DC
    offset or a slow electrode drift within the window then does not count as variance, while
    anything that moves at EEG frequencies does.
    """

    def __init__(self, flat_uv: float = 0.5, flat_fraction: float = 0.5,
                 rail_uv: float = 1000.0, amplifier_range_uv: float | None = None,
                 rail_fraction: float = 0.02, line_freq: float | None = None,
                 line_ratio_warn: float = 0.1, line_ratio_bad: float = 0.5,
                 std_warn_ratio: float = 2.5, std_bad_ratio: float = 5.0,
                 std_bad_uv: float = 200.0, max_nan_fraction: float = 0.5) -> None:
        self.flat_uv = flat_uv
        self.flat_fraction = flat_fraction
        self.rail_uv = rail_uv
        self.amplifier_range_uv = amplifier_range_uv
        self.rail_fraction = rail_fraction
        self.line_freq = line_freq
        self.line_ratio_warn = line_ratio_warn
        self.line_ratio_bad = line_ratio_bad
        self.std_warn_ratio = std_warn_ratio
        self.std_bad_ratio = std_bad_ratio
        self.std_bad_uv = std_bad_uv
        self.max_nan_fraction = max_nan_fraction

    # ------------------------------------------------------------------ pieces
    @staticmethod
    def _spectrum(data: np.ndarray, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
        # 2 s segments give 0.5 Hz bins, fine enough for a +-1 Hz line band; shorter windows
        # fall back to one segment of the whole window.
        nperseg = int(min(data.shape[1], round(2 * sfreq)))
        return signal.welch(data, fs=sfreq, nperseg=nperseg, axis=-1)

    @staticmethod
    def _band(f: np.ndarray, psd: np.ndarray, lo: float, hi: float) -> np.ndarray:
        sel = (f >= lo) & (f <= hi)
        return psd[:, sel].sum(axis=1)

    def _line_ratio(self, f: np.ndarray, psd: np.ndarray, line_freq: float) -> np.ndarray:
        """Power within +-1 Hz (at least one bin) of ``line_freq`` over the 1-40 Hz power."""
        half = max(1.0, f[1] - f[0]) if len(f) > 1 else 1.0
        eeg = self._band(f, psd, 1.0, 40.0)
        line = self._band(f, psd, line_freq - half, line_freq + half)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(eeg > 0, line / eeg, np.nan)

    def _measurable(self, f: np.ndarray, line_freq: float) -> bool:
        half = max(1.0, f[1] - f[0]) if len(f) > 1 else 1.0
        return line_freq + half < f[-1]

    # ------------------------------------------------------------------ the check
    def check(self, data: np.ndarray, sfreq: float,
              ch_names: Sequence[str] | None = None) -> QualityReport:
        """Traffic lights for every channel of ``data``.

        Parameters
        ----------
        data : ndarray, shape (n_channels, n_times)
            Samples in microvolts; NaN marks missing samples.
        sfreq : float
            Sampling rate in Hz.
        ch_names : sequence of str or None
            Channel names (``"ch0"``, ``"ch1"``, ... when None).

        Returns
        -------
        QualityReport
            One :class:`ChannelQuality` per channel.
        """
        x = np.asarray(data, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"data must be (n_channels, n_times), got shape {x.shape}.")
        n_ch, n_t = x.shape
        names = list(ch_names) if ch_names is not None else [f"ch{i}" for i in range(n_ch)]
        if len(names) != n_ch:
            raise ValueError(f"{len(names)} names for {n_ch} channels.")
        if n_t < 4:
            raise ValueError(f"need at least 4 samples per channel, got {n_t}.")
        sfreq = float(sfreq)

        finite = np.isfinite(x)
        n_finite = finite.sum(axis=1)
        nan_frac = 1.0 - n_finite / n_t
        # a channel needs a handful of samples for any statistic to mean something
        has_data = n_finite >= 4

        std = np.full(n_ch, np.nan)
        rail = np.zeros(n_ch)
        repeat = np.zeros(n_ch)
        filled = np.zeros_like(x)
        t = np.arange(n_t, dtype=np.float64)
        for i in np.flatnonzero(has_data):
            xi, ok = x[i], finite[i]
            vals = xi[ok]
            slope, icpt = np.polyfit(t[ok], vals, 1)
            std[i] = float(np.std(vals - (slope * t[ok] + icpt)))
            d = np.diff(vals)
            repeat[i] = float(np.mean(d == 0)) if d.size else 0.0
            lo, hi = vals.min(), vals.max()
            # exact plateaus at the extremes: a clipped ADC repeats its limit code exactly;
            # the small tolerance only absorbs float32 round-off
            tol = 1e-6 * max(abs(lo), abs(hi), 1.0)
            at_edge = (vals <= lo + tol) | (vals >= hi - tol)
            beyond = np.abs(vals - np.median(vals)) >= self.rail_uv
            if self.amplifier_range_uv is not None:
                beyond |= np.abs(vals) >= 0.99 * self.amplifier_range_uv
            rail[i] = float(np.mean(at_edge | beyond)) if hi > lo else 0.0
            filled[i] = _fill_nans(xi)

        line_ratio = np.full(n_ch, np.nan)
        line_freq = self.line_freq
        if has_data.any():
            f, psd = self._spectrum(filled[has_data], sfreq)
            candidates = (50.0, 60.0) if line_freq is None else (float(line_freq),)
            ratios = {lf: self._line_ratio(f, psd, lf) for lf in candidates
                      if self._measurable(f, lf)}
            # auto-detection: the mains is whichever of 50/60 Hz carries more power on average
            # over channels. The mean, not the median, so that one electrode picking up the
            # mains decides it; on clean data both ratios are tiny and the choice is moot.
            line_freq = max(ratios, key=lambda lf: float(np.nanmean(ratios[lf])), default=None)
            if line_freq is not None:
                line_ratio[has_data] = ratios[line_freq]
        else:
            line_freq = None
        flat = has_data & ((std < self.flat_uv) | (repeat > self.flat_fraction))
        ref = std[has_data & ~flat]
        # the median channel is the yardstick only when there are enough channels to have one
        median_std = float(np.median(ref)) if ref.size >= 3 else np.nan

        out = []
        for i in range(n_ch):
            reasons: list[tuple[str, str]] = []  # (reason, status)
            if not has_data[i]:
                reasons.append(("no data", "bad"))
            else:
                if nan_frac[i] > 0:
                    bad_gap = nan_frac[i] > self.max_nan_fraction
                    reasons.append(("gaps", "bad" if bad_gap else "warn"))
                if flat[i]:
                    reasons.append(("flat", "bad"))
                if rail[i] > self.rail_fraction:
                    reasons.append(("railing", "bad"))
                lr = line_ratio[i]
                if np.isfinite(lr) and lr > self.line_ratio_warn and not flat[i]:
                    reasons.append(("line noise", "bad" if lr > self.line_ratio_bad else "warn"))
                level = "good"
                if std[i] > self.std_bad_uv:
                    level = "bad"
                elif np.isfinite(median_std) and median_std > 0:
                    ratio = std[i] / median_std
                    if ratio > self.std_bad_ratio:
                        level = "bad"
                    elif ratio > self.std_warn_ratio:
                        level = "warn"
                if level != "good":
                    reasons.append(("high variance", level))
            status = max((s for _, s in reasons), key=_RANK.__getitem__, default="good")
            out.append(ChannelQuality(
                name=str(names[i]), status=status, reasons=tuple(r for r, _ in reasons),
                std_uv=float(std[i]), line_ratio=float(line_ratio[i]),
                nan_fraction=float(nan_frac[i]), rail_fraction=float(rail[i])))
        return QualityReport(channels=tuple(out), sfreq=sfreq, n_times=n_t, line_freq=line_freq)


# --------------------------------------------------------------------------- artifact index
class ArtifactMonitor:
    """Online artifact index: the Riemannian Potato z-score of each window's covariance.

    Parameters
    ----------
    window_s : float
        Length of one window in seconds. 1 s holds a blink (~300 ms) whole and gives, at
        160-250 Hz, more samples than the 64 channels of a full cap.
    step_s : float
        Hop between windows of the calibration data and of :meth:`scan`.
    threshold : float
        z-score above which a window is an artifact (Potato's own default, 3 standard
        deviations of the log-distance).
    l_freq, h_freq : float or None
        Band-pass (Hz) applied to each window before its covariance. Below 1 Hz, electrode
        drift dominates the covariance and changes slowly over a session, which would push
        clean windows away from the calibration centroid; above 40 Hz sit line noise and
        muscle. None on either side skips that side.
    estimator : str
        Covariance estimator of :class:`pyriemann.estimation.Covariances`. ``"oas"``
        shrinkage keeps the matrices well-conditioned (SPD) when a 1 s window has few samples
        per channel, where the plain sample covariance is near singular.
    metric : str, dict or None
        Metric of the Potato, as pyRiemann takes it. None (the default) takes the log-Euclidean mean
        (closed form, one matrix logarithm per window) with the affine-invariant Riemannian
        distance: for clean windows, which lie close together, that mean is close to the
        Riemannian one, while the iterative Riemannian mean of 64x64 matrices takes seconds
        per Potato iteration on a laptop CPU.
    n_iter_max : int
        Iterations of the Potato's outlier rejection while fitting (so a few artifacts in the
        calibration data do not shift the centroid).

    Attributes
    ----------
    potato_ : pyriemann.artifact_detection.Potato
        The fitted Potato.
    sfreq_ : float
        Sampling rate seen by :meth:`fit`.
    n_channels_ : int
        Channels seen by :meth:`fit`.
    n_window_ : int
        Samples per window.
    calibration_scores_ : ndarray, shape (n_windows,)
        z-scores of the calibration windows.

    Notes
    -----
    Each window is filtered on its own (zero-phase, with padding) both in :meth:`fit` and in
    :meth:`score`: an online window cannot see past samples, so calibration windows are
    processed the same way for their z-scores to be comparable.
    """

    def __init__(self, window_s: float = 1.0, step_s: float = 0.25, threshold: float = 3.0,
                 l_freq: float | None = 1.0, h_freq: float | None = 40.0,
                 estimator: str = "oas", metric: str | dict | None = None,
                 n_iter_max: int = 100) -> None:
        self.window_s = window_s
        self.step_s = step_s
        self.threshold = threshold
        self.l_freq = l_freq
        self.h_freq = h_freq
        self.estimator = estimator
        self.metric = metric
        self.n_iter_max = n_iter_max

    # ------------------------------------------------------------------ helpers
    def _check_fitted(self) -> None:
        if not hasattr(self, "potato_"):
            raise RuntimeError("ArtifactMonitor is not fitted; call fit() first.")

    def _sos(self, sfreq: float) -> np.ndarray | None:
        nyq = sfreq / 2
        lo = self.l_freq if self.l_freq is not None and self.l_freq > 0 else None
        hi = self.h_freq if self.h_freq is not None and self.h_freq < nyq else None
        if lo is None and hi is None:
            return None
        if lo is not None and hi is not None:
            return signal.butter(4, [lo, hi], btype="bandpass", fs=sfreq, output="sos")
        if lo is not None:
            return signal.butter(4, lo, btype="highpass", fs=sfreq, output="sos")
        return signal.butter(4, hi, btype="lowpass", fs=sfreq, output="sos")

    def _windows(self, data: np.ndarray, n_window: int, step: int) -> np.ndarray:
        n_t = data.shape[1]
        starts = np.arange(0, n_t - n_window + 1, step)
        idx = starts[:, None] + np.arange(n_window)[None, :]
        return np.ascontiguousarray(data[:, idx].transpose(1, 0, 2))  # (n_win, n_ch, n_window)

    def _covariances(self, windows: np.ndarray) -> np.ndarray:
        x = windows - windows.mean(axis=-1, keepdims=True)
        if self._sos_ is not None:
            x = signal.sosfiltfilt(self._sos_, x, axis=-1)
        from pyriemann.estimation import Covariances  # pyRiemann imports torch: ~3 s, lazily

        return Covariances(estimator=self.estimator).transform(x)

    # ------------------------------------------------------------------ API
    def fit(self, data: np.ndarray, sfreq: float) -> ArtifactMonitor:
        """Fit the Potato on (mostly) clean calibration data, e.g. the first 30 s of rest.

        Parameters
        ----------
        data : ndarray, shape (n_channels, n_times)
            Calibration samples in microvolts; windows holding NaN are skipped.
        sfreq : float
            Sampling rate in Hz.

        Returns
        -------
        self : ArtifactMonitor
        """
        x = np.asarray(data, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"data must be (n_channels, n_times), got shape {x.shape}.")
        self.sfreq_ = float(sfreq)
        self.n_window_ = max(2, round(self.window_s * self.sfreq_))
        step = max(1, round(self.step_s * self.sfreq_))
        self._sos_ = self._sos(self.sfreq_)
        wins = self._windows(x, self.n_window_, step) if x.shape[1] >= self.n_window_ else None
        if wins is not None:
            wins = wins[np.isfinite(wins).all(axis=(1, 2))]
        # the z-score needs a spread of distances; fewer windows give a meaningless std
        if wins is None or len(wins) < 10:
            n = 0 if wins is None else len(wins)
            raise ValueError(f"calibration data gives {n} complete windows of {self.window_s} s; "
                             "need at least 10 (about "
                             f"{self.window_s + 9 * self.step_s:g} s without gaps).")
        covs = self._covariances(wins)
        metric = (self.metric if self.metric is not None
                  else {"mean": "logeuclid", "distance": "riemann"})
        from pyriemann.artifact_detection import Potato

        self.potato_ = Potato(metric=metric, threshold=self.threshold,
                              n_iter_max=self.n_iter_max).fit(covs)
        self.n_channels_ = x.shape[0]
        self.calibration_scores_ = self.potato_.transform(covs)
        return self

    def _prepare(self, window: np.ndarray) -> np.ndarray:
        self._check_fitted()
        w = np.asarray(window, dtype=np.float64)
        if w.ndim != 2 or w.shape[0] != self.n_channels_:
            raise ValueError(f"window must be ({self.n_channels_}, n_times), got {w.shape}.")
        if w.shape[1] < self.n_window_:
            raise ValueError(f"window has {w.shape[1]} samples, needs {self.n_window_} "
                             f"({self.window_s} s at {self.sfreq_:g} Hz).")
        return w[:, -self.n_window_:]  # the latest window_s: the same length as calibration

    def score(self, window: np.ndarray) -> float:
        """Potato z-score of the latest ``window_s`` of ``window`` (NaN if it holds NaN).

        Parameters
        ----------
        window : ndarray, shape (n_channels, n_times)
            Samples in microvolts, at least ``window_s`` long.

        Returns
        -------
        float
            Standardized log-distance to the calibration centroid; above ``threshold`` is an
            artifact.
        """
        w = self._prepare(window)
        if not np.isfinite(w).all():
            return float("nan")
        return float(self.potato_.transform(self._covariances(w[None]))[0])

    def is_artifact(self, window: np.ndarray) -> bool:
        """Whether the window is an artifact (a window with gaps counts as one: unverifiable)."""
        z = self.score(window)
        return not (z <= self.threshold)  # NaN compares False, so it is an artifact

    def scan(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """z-scores of consecutive windows of a recording, ``step_s`` apart (for a session log).

        Parameters
        ----------
        data : ndarray, shape (n_channels, n_times)
            Samples in microvolts at ``sfreq_``.

        Returns
        -------
        times : ndarray, shape (n_windows,)
            End of each window in seconds from the start of ``data``.
        scores : ndarray, shape (n_windows,)
            z-score per window (NaN for windows holding NaN).
        """
        self._check_fitted()
        x = np.asarray(data, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != self.n_channels_:
            raise ValueError(f"data must be ({self.n_channels_}, n_times), got {x.shape}.")
        if x.shape[1] < self.n_window_:
            return np.zeros(0), np.zeros(0)
        step = max(1, round(self.step_s * self.sfreq_))
        wins = self._windows(x, self.n_window_, step)
        times = (np.arange(len(wins)) * step + self.n_window_) / self.sfreq_
        return times, self.score_windows(wins)

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        """z-scores of a batch of windows at once (one covariance and distance each).

        Parameters
        ----------
        windows : ndarray, shape (n_windows, n_channels, n_times)
            Samples in microvolts, ``n_times >= n_window_`` (the latest ``window_s`` is used).

        Returns
        -------
        ndarray, shape (n_windows,)
            z-score per window (NaN for windows holding NaN).
        """
        self._check_fitted()
        w = np.asarray(windows, dtype=np.float64)
        if w.ndim != 3 or w.shape[1] != self.n_channels_ or w.shape[2] < self.n_window_:
            raise ValueError(f"windows must be (n_windows, {self.n_channels_}, >= "
                             f"{self.n_window_}), got {w.shape}.")
        w = w[:, :, -self.n_window_:]
        scores = np.full(len(w), np.nan)
        ok = np.isfinite(w).all(axis=(1, 2))
        if ok.any():
            scores[ok] = self.potato_.transform(self._covariances(w[ok]))
        return scores

    def partial_fit(self, window: np.ndarray, alpha: float = 0.05) -> bool:
        """Let the Potato follow slow drifts: update it with ``window`` if it is clean.

        Parameters
        ----------
        window : ndarray, shape (n_channels, n_times)
            Samples in microvolts, at least ``window_s`` long.
        alpha : float
            Update rate in [0, 1] of the centroid and of the distance statistics.

        Returns
        -------
        bool
            Whether the window was clean and so used (artifacts never teach the Potato).
        """
        w = self._prepare(window)
        if not np.isfinite(w).all():
            return False
        cov = self._covariances(w[None])
        if not self.potato_.transform(cov)[0] <= self.threshold:
            return False
        self.potato_.partial_fit(cov, alpha=alpha)
        return True


# --------------------------------------------------------------------------- impedance
# BrainFlow gives the resistance rows as the board's SDK delivers them and does not document
# a unit. BrainBit's and ANT Neuro's eego SDKs document ohms; the synthetic board fills
# ~1000 +- 50. Everything is therefore read as ohms unless overridden here or by the caller.
_UNIT_OHM: dict[int, float] = {}


def board_reports_impedance(board_id: int,
                            preset: int = BrainFlowPresets.DEFAULT_PRESET) -> bool:
    """Whether BrainFlow's description of ``board_id`` has resistance (impedance) rows.

    In BrainFlow 5.23 these are the synthetic board, Ganglion (BLE, native, WiFi; values only
    while impedance mode is on: ``config_board("z")``), BrainBit and the ANT Neuro eego amplifiers
    (impedance mode via ``config_board``). Cyton, Cyton-Daisy and most others report none:
    their lead-off measurement has to be computed from the EEG itself.
    """
    return bool(_resistance_rows(int(board_id), preset))


def _resistance_rows(board_id: int, preset: int) -> list[int]:
    # read from the description: get_resistance_channels logs an error for boards without any
    try:
        return list(BoardShim.get_board_descr(board_id, preset).get("resistance_channels", []))
    except BrainFlowError:
        return []  # unknown board id or a preset the board lacks


def _resistance_names(board_id: int, n_res: int, preset: int) -> list[str]:
    # the description, not get_eeg_names: the latter logs an error for boards without names
    descr = BoardShim.get_board_descr(board_id, preset)
    names = [n for n in str(descr.get("eeg_names") or "").split(",") if n]
    n_eeg = len(descr.get("eeg_channels", []))
    eeg = names if len(names) == n_eeg else [f"EEG{i + 1}" for i in range(n_eeg)]
    # Ganglion adds the reference, ANT Neuro the reference and ground after the EEG channels
    extra = {0: [], 1: ["REF"], 2: ["REF", "GND"]}.get(n_res - n_eeg)
    if eeg and extra is not None:
        return eeg + extra
    return [f"R{i + 1}" for i in range(n_res)]  # no known mapping (synthetic: 2 rows, 16 EEG)


def board_impedance(board_id: int, data: np.ndarray,
                    preset: int = BrainFlowPresets.DEFAULT_PRESET,
                    unit_ohm: float | None = None) -> dict[str, float] | None:
    """Per-electrode impedance in kOhm from a BrainFlow data table, where the board reports it.

    Parameters
    ----------
    board_id : int
        BrainFlow board id.
    data : ndarray, shape (n_rows, n_samples)
        BrainFlow's data table (``get_board_data`` / ``get_current_board_data``).
    preset : int
        BrainFlow preset the table comes from.
    unit_ohm : float or None
        Ohms per unit of the board's resistance rows (1.0 = ohms, 1000.0 = kOhm); None uses
        the built-in assumption, ohms.

    Returns
    -------
    dict of str to float, or None
        Electrode name -> median impedance (kOhm) over the samples that carry one; None when
        the board has no resistance rows or none of the samples carries a value (e.g. a Ganglion
        outside impedance mode fills them with zeros).
    """
    board_id = int(board_id)
    rows = _resistance_rows(board_id, preset)
    if not rows:
        return None
    table = np.asarray(data, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] <= max(rows):
        raise ValueError(f"data must be BrainFlow's table with > {max(rows)} rows, "
                         f"got shape {table.shape}.")
    scale = (unit_ohm if unit_ohm is not None else _UNIT_OHM.get(board_id, 1.0)) / 1000.0
    names = _resistance_names(board_id, len(rows), preset)
    out: dict[str, float] = {}
    for name, row in zip(names, rows, strict=True):
        vals = table[row]
        # boards interleave impedance frames with EEG frames and zero-fill the rest
        vals = vals[np.isfinite(vals) & (vals != 0)]
        if vals.size:
            out[name] = float(np.median(vals)) * scale
    return out or None


def read_impedance(board: BoardShim, n_samples: int = 256,
                   unit_ohm: float | None = None) -> Mapping[str, float] | None:
    """Impedances (kOhm) from the latest samples of a streaming BrainFlow session.

    Uses ``get_current_board_data``, which leaves the samples in BrainFlow's buffer for the
    acquisition that reads them.

    Parameters
    ----------
    board : brainflow.board_shim.BoardShim
        A prepared, streaming board.
    n_samples : int
        How many of the latest samples to summarise.
    unit_ohm : float or None
        See :func:`board_impedance`.

    Returns
    -------
    dict of str to float, or None
        As :func:`board_impedance`.
    """
    board_id = board.get_board_id()
    if not board_reports_impedance(board_id):
        return None
    return board_impedance(board_id, board.get_current_board_data(int(n_samples)),
                           unit_ohm=unit_ohm)
