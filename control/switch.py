"""Muscle and eye switches: a jaw clench (EMG) or a double blink (EOG) as "select" or "stop".

For people who cannot use their hands, a deliberate muscle or eye gesture is the most reliable
binary input there is. Both detectors are causal and stateful (they process chunks as they
arrive, with filter state carried over), so the result does not depend on chunk sizes.

* :class:`JawClenchDetector`: a jaw clench is a burst of broadband EMG power. The signal is
  high-passed (default 30-100 Hz, above most EEG), its RMS over ``rms_s`` compared with an
  adaptive baseline (slow running level of the same RMS, frozen during bursts); a burst lasting
  ``min_duration_s`` above ``factor`` x baseline is one clench.
* :class:`DoubleBlinkDetector`: a blink is a fast rise of the EOG (low-passed at 10 Hz); two
  blink onsets between ``min_interval_s`` and ``max_interval_s`` (0.6 s) apart
  form one double blink, so ordinary single blinks do nothing.

:class:`MuscleSwitch` finds the EMG/EOG channels of a stream, reads new samples from a ring
buffer and maps the detected gestures to commands (default: jaw clench = ``"stop"``,
double blink = ``"select"``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import butter, lfilter, lfilter_zi, sosfilt, sosfilt_zi

logger = logging.getLogger(__name__)

GESTURES = ("jaw_clench", "double_blink")
SWITCH_COMMANDS = ("select", "stop")


class SwitchError(ValueError):
    """A switch that cannot be set up on this stream; the message says what to do."""


@dataclass(frozen=True)
class SwitchEvent:
    """One detected gesture: when (time of the detecting sample) and what it means."""

    timestamp: float
    gesture: str
    command: str = ""


class JawClenchDetector:
    """Detect jaw clenches as bursts of high-frequency EMG power.

    Parameters
    ----------
    sfreq : float
        Sampling rate (Hz).
    band : (float, float)
        EMG band (Hz); the upper edge is clipped below Nyquist.
    rms_s : float
        Time constant of the RMS envelope (s).
    factor : float
        Burst threshold as a multiple of the baseline RMS.
    min_uv : float
        Absolute floor of the threshold (microvolts), so a silent channel cannot trigger.
    min_duration_s : float
        How long the envelope must stay above threshold.
    refractory_s : float
        Dead time after a detection.
    baseline_s : float
        Time constant of the adaptive baseline; the first ``warmup_s`` only learn it.
    warmup_s : float
        Initial period used only to learn the baseline.
    """

    gesture = "jaw_clench"

    def __init__(self, sfreq: float, band: tuple[float, float] = (30.0, 100.0),
                 rms_s: float = 0.05, factor: float = 12.0, min_uv: float = 10.0,
                 min_duration_s: float = 0.12, refractory_s: float = 1.0,
                 baseline_s: float = 10.0, warmup_s: float = 1.0) -> None:
        self.sfreq = float(sfreq)
        hi = min(band[1], 0.45 * self.sfreq)
        if band[0] >= hi:
            raise SwitchError(
                f"The EMG band {band} does not fit below Nyquist at {sfreq} Hz; use a sampling "
                "rate of at least 200 Hz for a jaw-clench switch.")
        self.sos = butter(4, [band[0], hi], btype="bandpass", fs=self.sfreq, output="sos")
        self.factor, self.min_uv = float(factor), float(min_uv)
        self.min_n = max(int(min_duration_s * self.sfreq), 1)
        self.refractory_s = float(refractory_s)
        self._env_a = 1.0 - np.exp(-1.0 / (rms_s * self.sfreq))
        self._base_a = 1.0 - np.exp(-1.0 / (baseline_s * self.sfreq))
        self._warm_n = int(warmup_s * self.sfreq)
        self.reset()

    def reset(self) -> None:
        self._zi = None
        self._env_zi = None
        self.baseline: float | None = None
        self._seen = 0
        self._above = 0
        self._dead_until = -np.inf

    def process(self, x: np.ndarray, timestamps: np.ndarray) -> list[SwitchEvent]:
        """Feed samples of one channel (microvolts) with their timestamps; returns detections."""
        x = np.asarray(x, dtype=np.float64).ravel()
        if x.size == 0:
            return []
        if self._zi is None:
            self._zi = sosfilt_zi(self.sos) * 0.0
            self._env_zi = np.zeros(1)
        y, self._zi = sosfilt(self.sos, x, zi=self._zi)
        # Mean-square envelope with a one-pole smoother (state kept across chunks).
        ms, self._env_zi = lfilter([self._env_a], [1.0, self._env_a - 1.0], y * y,
                                   zi=self._env_zi)
        rms = np.sqrt(np.maximum(ms, 0.0))
        events = []
        for i in range(rms.size):  # per-sample logic: short loops at EMG rates are cheap
            r = rms[i]
            self._seen += 1
            if self.baseline is None:
                self.baseline = max(r, 1e-9)
            threshold = max(self.factor * self.baseline, self.min_uv)
            if self._seen > self._warm_n and r > threshold:
                self._above += 1
                if self._above == self.min_n and timestamps[i] >= self._dead_until:
                    events.append(SwitchEvent(float(timestamps[i]), self.gesture))
                    self._dead_until = float(timestamps[i]) + self.refractory_s
                continue  # the baseline is frozen during a burst
            self._above = 0
            warm = self._seen > self._warm_n
            if warm and r > 3.0 * self.baseline:
                continue  # smaller bursts (talking, chewing) must not raise the baseline either
            a = self._base_a if warm else max(self._base_a, 1.0 / self._seen)
            # Geometric averaging: the baseline follows the typical level, not the outliers.
            self.baseline *= float(np.exp(a * (np.log(max(r, 1e-9)) - np.log(self.baseline))))
        return events


class DoubleBlinkDetector:
    """Detect two blinks in quick succession on a (vertical) EOG channel.

    A blink is a fast rise: the low-passed EOG (10 Hz) climbs more than ``threshold_uv`` above
    its minimum of the last ``rise_s`` seconds. Measuring the rise rather than the level makes
    the detector immune to slow drifts and to the dip after a first blink, which a high-pass
    filter would turn into a negative baseline under the second blink.

    Parameters
    ----------
    sfreq : float
        Sampling rate (Hz).
    threshold_uv : float
        Rise that counts as a blink, microvolts.
    rise_s : float
        Window over which the rise is measured.
    min_interval_s, max_interval_s : float
        Allowed time between the two blink onsets.
    refractory_s : float
        Dead time after a detected double blink.
    polarity : {1, -1}
        Sign of a blink on this channel (positive for an EOG above the eye referenced below).
    """

    gesture = "double_blink"

    def __init__(self, sfreq: float, threshold_uv: float = 80.0, rise_s: float = 0.3,
                 min_interval_s: float = 0.15, max_interval_s: float = 0.6,
                 refractory_s: float = 1.0, polarity: int = 1) -> None:
        self.sfreq = float(sfreq)
        self.b, self.a = butter(2, min(10.0, 0.45 * self.sfreq), btype="lowpass", fs=self.sfreq)
        self.threshold = float(threshold_uv)
        self.n_rise = max(int(rise_s * self.sfreq), 2)
        self.min_interval_s, self.max_interval_s = float(min_interval_s), float(max_interval_s)
        self.refractory_s = float(refractory_s)
        self.polarity = 1 if polarity >= 0 else -1
        self.reset()

    def reset(self) -> None:
        self._zi = None
        self._hist = None
        self._pos = 0
        self._in_blink = False
        self._peak = 0.0
        self._base = 0.0
        self._last_onset = -np.inf
        self._dead_until = -np.inf
        self.n_blinks = 0

    def process(self, x: np.ndarray, timestamps: np.ndarray) -> list[SwitchEvent]:
        """Feed samples of the EOG channel (microvolts); returns detected double blinks."""
        x = np.asarray(x, dtype=np.float64).ravel() * self.polarity
        if x.size == 0:
            return []
        if self._zi is None:
            self._zi = lfilter_zi(self.b, self.a) * x[0]
        y, self._zi = lfilter(self.b, self.a, x, zi=self._zi)
        if self._hist is None:
            self._hist = np.full(self.n_rise, y[0])
        events = []
        for i in range(y.size):
            v, t = y[i], float(timestamps[i])
            self._hist[self._pos] = v
            self._pos = (self._pos + 1) % self.n_rise
            if self._in_blink:
                self._peak = max(self._peak, v)
                # Re-arm once half of the rise is gone: slightly overlapping blinks stay two.
                if v < self._peak - 0.5 * (self._peak - self._base):
                    self._in_blink = False
                    self._hist[:] = v  # the next blink must rise from here, not from before
                continue
            base = float(self._hist.min())
            if v - base <= self.threshold:
                continue
            self._in_blink, self._peak, self._base = True, v, base
            self.n_blinks += 1
            gap = t - self._last_onset
            self._last_onset = t
            if self.min_interval_s <= gap <= self.max_interval_s and t >= self._dead_until:
                events.append(SwitchEvent(t, self.gesture))
                self._dead_until = t + self.refractory_s
                self._last_onset = -np.inf  # a third blink starts a new pair
        return events


def _find_channel(info, kind: str, names: Sequence[str] | None) -> int | None:
    ch_names = [str(c) for c in info.ch_names]
    upper = [c.upper() for c in ch_names]
    for name in names or ():
        if name.upper() in upper:
            return upper.index(name.upper())
    types = [str(t).lower() for t in info.ch_types]
    if kind in types:
        return types.index(kind)
    if kind.upper() in upper:
        return upper.index(kind.upper())
    return None


@dataclass(frozen=True)
class SwitchConfig:
    """Which gestures to use and what they mean.

    Parameters
    ----------
    commands : dict
        Gesture (``"jaw_clench"``, ``"double_blink"``) -> command (``"select"``, ``"stop"``).
    emg_channels, eog_channels : sequence of str
        Preferred channel names; otherwise the first channel of type ``emg`` / ``eog`` (or named
        ``EMG`` / ``EOG``) is used.
    jaw, blink : dict
        Extra keyword arguments for :class:`JawClenchDetector` / :class:`DoubleBlinkDetector`.
    """

    commands: Mapping[str, str] = field(
        default_factory=lambda: {"jaw_clench": "stop", "double_blink": "select"})
    emg_channels: tuple[str, ...] = ()
    eog_channels: tuple[str, ...] = ()
    jaw: Mapping[str, float] = field(default_factory=dict)
    blink: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for gesture, command in self.commands.items():
            if gesture not in GESTURES:
                raise SwitchError(
                    f"Unknown gesture {gesture!r}; use {' or '.join(GESTURES)}.")
            if command not in SWITCH_COMMANDS:
                raise SwitchError(
                    f"Gesture {gesture!r} maps to {command!r}; use 'select' or 'stop'.")


class MuscleSwitch:
    """Jaw-clench and double-blink switches on the EMG/EOG channels of a live stream.

    Parameters
    ----------
    info : bci.stream.StreamInfo
        The stream (channel names and types, sampling rate, units).
    config : SwitchConfig
        Gestures, their commands and detector settings.

    Raises
    ------
    SwitchError
        If a configured gesture has no suitable channel in the stream.
    """

    def __init__(self, info, config: SwitchConfig | None = None) -> None:
        self.config = config or SwitchConfig()
        self.info = info
        scale = {"V": 1e6, "MV": 1e3, "UV": 1.0}.get(str(info.units).upper(), 1.0)
        self._scale = scale  # detectors work in microvolts
        self.detectors: list[tuple[int, object]] = []
        for gesture in self.config.commands:
            kind = "emg" if gesture == "jaw_clench" else "eog"
            names = self.config.emg_channels if kind == "emg" else self.config.eog_channels
            idx = _find_channel(info, kind, names)
            if idx is None:
                raise SwitchError(
                    f"The stream {info.name!r} has no {kind.upper()} channel for the "
                    f"{gesture.replace('_', ' ')} switch; add one (channel type '{kind}') or "
                    "remove this gesture from the switch config.")
            det = (JawClenchDetector(info.sfreq, **self.config.jaw) if kind == "emg"
                   else DoubleBlinkDetector(info.sfreq, **self.config.blink))
            self.detectors.append((idx, det))
        if not self.detectors:
            raise SwitchError("The switch config names no gesture; map 'jaw_clench' or "
                              "'double_blink' to a command.")
        self._count: int | None = None

    def process(self, data: np.ndarray, timestamps: np.ndarray) -> list[SwitchEvent]:
        """Feed a chunk of the whole stream (n_channels, n); returns the gestures in it."""
        events: list[SwitchEvent] = []
        for idx, det in self.detectors:
            for ev in det.process(np.asarray(data[idx], dtype=np.float64) * self._scale,
                                  timestamps):
                events.append(SwitchEvent(ev.timestamp, ev.gesture,
                                          self.config.commands[ev.gesture]))
        events.sort(key=lambda e: e.timestamp)
        for ev in events:
            logger.info("Switch: %s -> %s at %.3f", ev.gesture, ev.command, ev.timestamp)
        return events

    def update(self, buffer) -> list[SwitchEvent]:
        """Process the samples pushed to ``buffer`` since the last call (starts at the newest)."""
        if self._count is None:
            self._count = buffer.n_written
            return []
        data, ts, self._count = buffer.since(self._count)
        return self.process(data, ts) if data.shape[1] else []
