"""Online decoding: sliding windows over a live ring buffer -> class probabilities every step.

:class:`OnlineDecoder` works with any fitted scikit-learn estimator that has ``predict_proba``
on windows ``(n_windows, n_channels, n_times)`` — a :class:`control.bundle.DecoderBundle`'s
pipeline or one you pass with its metadata. It keeps track of the absolute sample count of the
next window's end, so each window is decoded exactly once however irregularly
:meth:`OnlineDecoder.update` is called, and several pending windows are decoded in one batch.

Filtering: the project's pipelines band-pass each window themselves (zero-phase, as in
training), so by default the decoder feeds raw windows. For pipelines trained on continuously
filtered data, ``causal_band=(lo, hi)`` filters incoming samples once, causally, with filter
state carried across chunks.

:class:`ProbabilityOutlet` publishes the probabilities on LSL (one float channel per class), and
:class:`OnlineControl` ties buffer, decoder and :class:`control.policy.ControlPolicy` together.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pylsl import local_clock
from scipy.signal import butter, sosfilt, sosfilt_zi

from bci.lsl_outlet import ValueOutlet
from control.policy import ControlPolicy, PolicyOutput

logger = logging.getLogger(__name__)

_UNIT_SCALE = {"V": 1.0, "MV": 1e-3, "UV": 1e-6, "µV": 1e-6, "NV": 1e-9}


class DecoderError(ValueError):
    """A decoder that cannot run on this stream; the message says what to do."""


def unit_scale(units: str) -> float:
    """Volts per unit for ``"V"``, ``"mV"``, ``"uV"``/``"µV"``, ``"nV"``."""
    key = str(units).strip()
    scale = _UNIT_SCALE.get(key) or _UNIT_SCALE.get(key.upper().replace("Μ", "U"))
    if scale is None:
        raise DecoderError(f"Unknown signal unit {units!r}; use 'V', 'mV', 'uV' or 'nV'.")
    return scale


@dataclass(frozen=True)
class DecodedWindow:
    """Class probabilities of one window, stamped with the time of its last sample."""

    timestamp: float
    probabilities: np.ndarray
    end_count: int  # absolute sample count at the window's end (for bookkeeping)


def _normalise(name: str) -> str:
    return name.strip().strip(".").upper()


class OnlineDecoder:
    """Decode sliding windows of a live :class:`bci.ringbuffer.RingBuffer`.

    Parameters
    ----------
    pipeline : estimator
        Fitted, with ``predict_proba(X)`` for ``X`` of shape (n_windows, n_channels, n_times).
    classes : sequence of str
        Class names in the order of ``predict_proba``'s columns.
    ch_names : sequence of str
        Channels the pipeline expects, in order.
    sfreq : float
        Sampling rate the pipeline was trained at (Hz).
    window_s, step_s : float
        Window length and hop (seconds).
    units : str
        Units the pipeline expects (``"uV"`` or ``"V"``); stream samples are rescaled to them.
    causal_band : (float, float) | None
        Band-pass incoming samples causally (stateful) before windowing; None (default) when
        the pipeline filters each window itself.
    blas_threads : int | None
        BLAS threads while decoding (default 1): for one window's small matrices, thread
        start-up and contention cost more than they save (tangent space: ~10 ms with 2
        threads on a busy 2-core machine, ~1.5 ms with one). None leaves BLAS alone.
    adapt : {None, "all", "rest"}
        Unsupervised re-centering while decoding, for pipelines with a
        :class:`control.recentering.Recenter` step (the ``rc_*`` pipelines): after each batch
        is decoded, its windows ("all") or those decoded as rest ("rest", a class named
        ``rest``) move the reference one geodesic step of ``adapt_alpha``. A window never
        adapts its own decision.
    adapt_alpha : float
        Step of each update (about 1/alpha windows of memory).
    """

    def __init__(self, pipeline, classes: Sequence[str], ch_names: Sequence[str], sfreq: float,
                 window_s: float, step_s: float, units: str = "uV",
                 causal_band: tuple[float, float] | None = None, bundle=None,
                 blas_threads: int | None = 1, adapt: str | None = None,
                 adapt_alpha: float = 0.02) -> None:
        if not hasattr(pipeline, "predict_proba"):
            raise DecoderError(
                f"The decoder {type(pipeline).__name__} has no predict_proba; use a classifier "
                "that outputs probabilities (e.g. LDA, logistic regression).")
        self.pipeline = pipeline
        self.classes = tuple(str(c) for c in classes)
        self.ch_names = tuple(ch_names)
        self.sfreq = float(sfreq)
        self.units = units
        self.window_n = int(round(window_s * self.sfreq))
        self.step_n = max(int(round(step_s * self.sfreq)), 1)
        if self.window_n < 2:
            raise DecoderError(f"A {window_s} s window at {sfreq} Hz has fewer than 2 samples.")
        if adapt not in (None, "all", "rest"):
            raise DecoderError(f"Unknown adaptation {adapt!r}; use None, 'all' or 'rest'.")
        if adapt is not None:
            from control.recentering import find_recenter

            try:
                find_recenter(pipeline)
            except ValueError as err:
                raise DecoderError(str(err)) from None
            if adapt == "rest" and "rest" not in [str(c) for c in classes]:
                raise DecoderError("Adapting from rest needs a decoder with a rest class "
                                   "(`yume train --asynchronous`); use adapt='all'.")
        self.adapt, self.adapt_alpha = adapt, float(adapt_alpha)
        self.n_adapted = 0
        self.causal_band = causal_band
        self.bundle = bundle
        self.blas_threads = blas_threads
        self._blas = None
        self.picks: np.ndarray | None = None
        self.scale = 1.0
        self.n_decoded = 0
        self.n_skipped = 0
        self._next_end: int | None = None
        self._buffer_id: int | None = None
        self._sos = None
        self._zi = None
        self._filtered = None
        self._raw_count = 0

    @classmethod
    def from_bundle(cls, bundle, causal_band: tuple[float, float] | None = None,
                    blas_threads: int | None = 1, adapt: str | None = None,
                    adapt_alpha: float = 0.02) -> OnlineDecoder:
        """A decoder for a :class:`control.bundle.DecoderBundle` (window, step, units...)."""
        return cls(bundle.pipeline, bundle.classes, bundle.ch_names, bundle.sfreq,
                   bundle.window_s, bundle.step_s, getattr(bundle, "units", "uV"),
                   causal_band=causal_band, bundle=bundle, blas_threads=blas_threads,
                   adapt=adapt, adapt_alpha=adapt_alpha)

    @property
    def window_s(self) -> float:
        return self.window_n / self.sfreq

    @property
    def step_s(self) -> float:
        return self.step_n / self.sfreq

    # ---------------------------------------------------------------- binding
    def bind(self, info) -> None:
        """Check a stream (:class:`bci.stream.StreamInfo`) and work out channel picks and scale.

        Raises :class:`DecoderError` (or the bundle's own error) when the sampling rate differs
        or a channel the decoder needs is missing.
        """
        if abs(float(info.sfreq) - self.sfreq) > 1e-6 * self.sfreq:
            raise DecoderError(
                f"The stream {info.name!r} runs at {info.sfreq} Hz but the decoder was trained "
                f"at {self.sfreq} Hz; record a calibration at this rate or resample the stream.")
        if self.bundle is not None and hasattr(self.bundle, "check_stream"):
            picks = self.bundle.check_stream(info)
            if isinstance(picks, dict):
                picks = [picks[name] for name in self.ch_names]
        else:
            index = {_normalise(n): i for i, n in enumerate(info.ch_names)}
            missing = [n for n in self.ch_names if _normalise(n) not in index]
            if missing:
                raise DecoderError(
                    f"The stream {info.name!r} lacks channels {missing} that the decoder needs; "
                    "check the montage or recalibrate with this cap.")
            picks = [index[_normalise(n)] for n in self.ch_names]
        self.picks = np.asarray(picks, dtype=int)
        self.scale = unit_scale(info.units) / unit_scale(self.units)
        self.n_stream_channels = info.n_channels
        if self.causal_band is not None:
            lo, hi = self.causal_band
            self._sos = butter(4, [lo, hi], btype="bandpass", fs=self.sfreq, output="sos")
        self.reset()

    def reset(self) -> None:
        """Forget the position in the stream (the next update starts at the newest window)."""
        self._next_end = None
        self._zi = None
        self._filtered = None
        self._raw_count = 0

    # ---------------------------------------------------------------- decoding
    def _source(self, buffer):
        """The buffer windows are cut from: the live buffer, or its causally filtered copy."""
        if self._sos is None:
            return buffer
        if self._filtered is None:
            from bci.ringbuffer import RingBuffer  # only the type; bci imports nothing of ours

            self._filtered = RingBuffer(len(self.picks), buffer.capacity, dtype=np.float64)
            self._raw_count = max(buffer.n_written - buffer.capacity, 0)
        data, ts, count = buffer.since(self._raw_count)
        lost = count - self._raw_count - data.shape[1]
        if lost > 0:
            logger.warning("Causal filter lost %d samples; restarting its state.", lost)
            self._zi = None
        self._raw_count = count
        if data.shape[1]:
            x = data[self.picks].astype(np.float64) * self.scale
            if self._zi is None:
                self._zi = sosfilt_zi(self._sos)[:, None, :] * x[None, :, :1]
            y, self._zi = sosfilt(self._sos, x, axis=-1, zi=self._zi)
            self._filtered.push(y, ts)
        return self._filtered

    def update(self, buffer) -> list[DecodedWindow]:
        """Decode every window completed since the last call; each window exactly once.

        Parameters
        ----------
        buffer : bci.ringbuffer.RingBuffer
            The live buffer of the bound stream (all its channels).

        Returns
        -------
        list of DecodedWindow
            Oldest first; empty if no new window is complete.
        """
        if self.picks is None:
            raise DecoderError("Bind the decoder to a stream first: decoder.bind(stream_info).")
        if buffer.n_channels != self.n_stream_channels:
            raise DecoderError(
                f"The buffer has {buffer.n_channels} channels but the bound stream has "
                f"{self.n_stream_channels}; bind the decoder to this stream.")
        if self._buffer_id != id(buffer):
            self._buffer_id = id(buffer)
            self.reset()
        src = self._source(buffer)
        written = src.n_written
        if self._next_end is None:
            # Start with the newest complete window; older history is not control input.
            self._next_end = max(self.window_n, written)
        if written < self._next_end:
            return []
        oldest = written - len(src)
        ends = np.arange(self._next_end, written + 1, self.step_n)
        ok = ends - self.window_n >= oldest
        if not ok.all():
            self.n_skipped += int((~ok).sum())
            logger.warning("Decoder fell behind: %d windows were overwritten unread.",
                           int((~ok).sum()))
            ends = ends[ok]
        self._next_end = (int(ends[-1]) if ends.size else self._next_end) + self.step_n
        if not ends.size:
            return []
        first = int(ends[0]) - self.window_n
        data, ts, _ = src.since(first)
        span = np.arange(self.window_n)
        idx = (ends - first - self.window_n)[:, None] + span[None, :]
        if self._sos is None:
            data = data[self.picks]
            if self.scale != 1.0:
                data = data * self.scale
        X = np.ascontiguousarray(np.transpose(data[:, idx], (1, 0, 2)))
        proba = np.asarray(self._predict(X), dtype=np.float64)
        if proba.shape != (len(ends), len(self.classes)):
            raise DecoderError(
                f"The pipeline returned probabilities of shape {proba.shape} for "
                f"{len(ends)} windows and {len(self.classes)} classes; the bundle's classes do "
                "not match its pipeline.")
        self.n_decoded += len(ends)
        if self.adapt is not None:
            self._adapt(X, proba)
        stamps = ts[idx[:, -1]]
        return [DecodedWindow(float(t), p, int(e)) for t, p, e in zip(stamps, proba, ends,
                                                                       strict=True)]


    def _adapt(self, X: np.ndarray, proba: np.ndarray) -> None:
        from control.recentering import update_pipeline

        if self.adapt == "rest":
            X = X[np.argmax(proba, axis=1) == self.classes.index("rest")]
        if len(X):
            update_pipeline(self.pipeline, X, alpha=self.adapt_alpha)
            self.n_adapted += len(X)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        if self.blas_threads is None:
            return self.pipeline.predict_proba(X)
        if self._blas is None:
            try:
                from threadpoolctl import ThreadpoolController  # installed with scikit-learn
            except ImportError:  # pragma: no cover
                self.blas_threads = None
                return self.pipeline.predict_proba(X)
            self._blas = ThreadpoolController()  # created late: sees every loaded BLAS
        with self._blas.limit(limits=self.blas_threads, user_api="blas"):
            return self.pipeline.predict_proba(X)


class ProbabilityOutlet(ValueOutlet):
    """Class probabilities on LSL: one float32 channel per class, one sample per decoded
    window, stamped with the window's timestamp (irregular rate, as labs expect of decisions).

    Parameters
    ----------
    classes : sequence of str
        Channel labels.
    name, source_id : str
        LSL stream name and source id (unique by default).
    """

    def __init__(self, classes: Sequence[str], name: str = "Yume decoder probabilities",
                 source_id: str | None = None) -> None:
        super().__init__(name, tuple(classes), source_id=source_id)
        self.classes = tuple(classes)

    def push_windows(self, windows: Sequence[DecodedWindow]) -> None:
        """Send each window's probabilities with its timestamp."""
        for w in windows:
            self.push(w.probabilities, w.timestamp)


class OnlineControl:
    """Buffer -> decoder -> policy, with failures turned into an idle policy and a reason.

    Call :meth:`step` regularly (e.g. from a Qt timer) with the current LSL time.

    Parameters
    ----------
    decoder : OnlineDecoder
        A decoder bound to the stream feeding ``buffer``.
    policy : ControlPolicy
        The policy to drive.
    outlet : ProbabilityOutlet | None
        Optional LSL publication of the probabilities.
    clock : {"lsl", "samples"}
        Time base of the policy: the windows' LSL timestamps (live use), or the signal time
        ``sample count / sfreq`` (offline replays).
    time_scale : float
        Multiplies LSL timestamps before the policy sees them: a simulation streamed
        ``speed`` times faster than real time uses ``time_scale=speed`` so that dwell and
        refractory periods still count signal seconds.
    stale_s : float
        No new sample for this long (seconds of ``now``) means the stream is lost: the policy
        goes idle with a reason.
    """

    def __init__(self, decoder: OnlineDecoder, policy: ControlPolicy,
                 outlet: ProbabilityOutlet | None = None, clock: str = "lsl",
                 stale_s: float = 1.0, time_scale: float = 1.0) -> None:
        if tuple(decoder.classes) != tuple(policy.classes):
            raise DecoderError(
                f"The decoder's classes {decoder.classes} differ from the policy's "
                f"{policy.classes}; build the policy from the same bundle.")
        if clock not in ("lsl", "samples"):
            raise DecoderError(f"Unknown clock {clock!r}; use 'lsl' or 'samples'.")
        self.decoder = decoder
        self.policy = policy
        if policy.window_s is None:
            policy.window_s = decoder.window_s
        self.outlet = outlet
        self.clock = clock
        self.stale_s = float(stale_s)
        self.time_scale = float(time_scale)
        self.last_probabilities: np.ndarray | None = None
        # LSL time the last step's windows were decoded (the latency trace's decode stage).
        self.decoded_at: float | None = None
        self._seen_count = -1
        self._seen_at: float | None = None
        self._policy_t = 0.0

    def _policy_time(self, w: DecodedWindow) -> float:
        if self.clock == "lsl":
            return w.timestamp * self.time_scale
        return w.end_count / self.decoder.sfreq

    def _stop(self, reason: str) -> PolicyOutput:
        return self.policy.interrupt(self._policy_t, reason)

    def step(self, buffer, now: float, source_error: str | None = None) -> list[PolicyOutput]:
        """Decode what is new, update the policy; never raises for a failing stream.

        Parameters
        ----------
        buffer : RingBuffer
            The live buffer.
        now : float
            Current LSL time (for the lost-stream check).
        source_error : str | None
            The acquisition's error, if it failed (e.g. ``Acquisition.error``).

        Returns
        -------
        list of PolicyOutput
            One per decoded window, plus one when the policy had to stop.
        """
        if source_error:
            return [self._stop(f"the signal source failed: {source_error}")]
        try:
            windows = self.decoder.update(buffer)
            self.decoded_at = local_clock()
        except Exception as err:  # noqa: BLE001 - a decoder failure must stop the world, not crash
            logger.exception("Decoding failed")
            return [self._stop(f"decoding failed: {err}")]
        if self.outlet is not None and windows:
            self.outlet.push_windows(windows)
        outs = []
        for w in windows:
            self._policy_t = self._policy_time(w)
            outs.append(self.policy.update(self._policy_t, w.probabilities))
        if windows:
            self.last_probabilities = windows[-1].probabilities
        # A lost stream shows as samples that stop arriving (LSL keeps the inlet open).
        if buffer.n_written != self._seen_count or self._seen_at is None:
            self._seen_count, self._seen_at = buffer.n_written, now
        gap = now - self._seen_at
        if gap > self.stale_s and not (self.policy.state.value == "idle" and self.policy.reason):
            outs.append(self._stop(
                f"no EEG for {gap:.1f} s: the stream may be lost; check the amplifier and "
                "the LSL stream"))
        return outs
