"""Stream health: gap and dropped-sample detection, gap-aware dejittering, gap reports.

liblsl's own dejitter (``proc_dejitter``) fits one straight line through all timestamps and so
smears a gap over the following seconds instead of showing it; :class:`TimestampTracker` does the
same smoothing but re-anchors at gaps, so a lost stretch is reported and stays visible in the
timestamps.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from bci.stream import SourceState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GapReport:
    """Samples that should have arrived but did not.

    Attributes
    ----------
    stream : str
        Name of the stream.
    start : float
        LSL time (s) at which the first missing sample was due.
    duration : float
        Length of the hole in seconds (``n_missing / sfreq``).
    n_missing : int
        Number of samples missing.
    cause : str
        ``"timestamps"`` (seen in the timestamps), ``"counter"`` (a hardware sample counter
        skipped) or ``"reconnect"`` (the stream disappeared and came back).
    index : int
        Samples of the stream received before the hole (-1 when not known); a recording
        puts the missing samples there.
    """

    stream: str
    start: float
    duration: float
    n_missing: int
    cause: str = "timestamps"
    index: int = -1

    def __str__(self) -> str:
        return (f"{self.stream}: {self.n_missing} samples ({self.duration * 1000:.1f} ms) "
                f"missing from t={self.start:.3f} s ({self.cause})")


class GapLog:
    """Bounded record of gap reports plus running totals (memory stays flat all session)."""

    def __init__(self, maxlen: int = 1000) -> None:
        self.reports: deque[GapReport] = deque(maxlen=maxlen)
        self.n_gaps = 0
        self.n_missing = 0
        self._unread: deque[GapReport] = deque(maxlen=maxlen)

    def add(self, report: GapReport) -> None:
        self.reports.append(report)
        self._unread.append(report)
        self.n_gaps += 1
        self.n_missing += report.n_missing
        logger.warning("gap: %s", report)

    def pop_new(self) -> list[GapReport]:
        """Reports added since the last call (for a GUI or a recorder's annotations)."""
        out = list(self._unread)
        self._unread.clear()
        return out


class TimestampTracker:
    """Dejitter the timestamps of a regular stream and detect missing samples.

    Sample ``k`` is expected at ``t_mean + slope * (k - k_mean)``, a straight line fitted to the
    received stamps by least squares with exponential forgetting (time constant ``tau``): it
    absorbs chunk jitter and clock drift, and learns the real rate when it differs from the
    nominal one (a simulator running faster than real time, a drifting amplifier). A sample
    later than the line by more than the threshold means samples were lost: the counter skips
    them, a :class:`GapReport` is made and the line is re-anchored (keeping its slope).

    Parameters
    ----------
    sfreq : float
        Nominal sampling rate (> 0).
    stream : str
        Name used in reports.
    tau : float
        Memory of the fit in seconds.
    jitter_s : float
        Initial estimate of the timestamp jitter; the estimate adapts as samples come in.
    dejitter : bool
        If False the received timestamps are returned unchanged (gaps are still detected).
    """

    def __init__(self, sfreq: float, stream: str = "", tau: float = 10.0, jitter_s: float = 0.002,
                 dejitter: bool = True) -> None:
        if sfreq <= 0:
            raise ValueError("TimestampTracker needs a regular stream (sfreq > 0).")
        self.sfreq = float(sfreq)
        self.period = 1.0 / self.sfreq
        self.slope = self.period  # seconds per sample, learnt
        self.stream = stream
        self.tau = float(tau)
        self.jitter = float(jitter_s)
        self.dejitter = dejitter
        self.n_seen = 0  # samples received
        self._k = 0  # sample index on the line (received + missing)
        self._fit: list[float] | None = None  # weight, mean k, mean t, Ckk, Ckt (t - t_ref)
        self._t_ref = 0.0
        self.last_timestamp: float | None = None

    @property
    def threshold(self) -> float:
        """How late (s) a sample may be before it counts as a gap."""
        return max(0.5 * self.slope, 8.0 * self.jitter)

    def reset(self) -> None:
        """Forget the line (e.g. after the sender's clock was reset); no gap is reported."""
        self._fit = None

    def _line(self) -> tuple[float, float, float]:
        """(k_mean, t_mean, slope) of the current fit."""
        w, mk, mt, ckk, ckt = self._fit
        # trust the fitted slope once the fit spans a tenth of a second or more
        if ckk > 0 and np.sqrt(ckk / w) * self.slope >= 0.1:
            slope = ckt / ckk
            if 0.1 * self.period < slope < 10 * self.period:
                self.slope = slope
        return mk, mt, self.slope

    def _update(self, k: np.ndarray, t: np.ndarray) -> None:
        n = k.shape[0]
        mkb, mtb = float(k.mean()), float(t.mean())
        ckkb = float(np.sum((k - mkb) ** 2))
        cktb = float(np.sum((k - mkb) * (t - mtb)))
        w, mk, mt, ckk, ckt = self._fit
        lam = math.exp(-n * self.period / self.tau)  # forget in seconds, whatever the chunking
        w, ckk, ckt = w * lam, ckk * lam, ckt * lam
        tot = w + n
        dk, dt = mkb - mk, mtb - mt
        self._fit = [tot, mk + dk * n / tot, mt + dt * n / tot,
                     ckk + ckkb + dk * dk * w * n / tot, ckt + cktb + dk * dt * w * n / tot]

    def process(self, timestamps: np.ndarray, cause: str = "timestamps"
                ) -> tuple[np.ndarray, list[GapReport]]:
        """Smoothed timestamps for ``timestamps`` and the gaps found before/among them."""
        raw = np.asarray(timestamps, dtype=np.float64)
        out = np.empty_like(raw)
        gaps: list[GapReport] = []
        i, n = 0, raw.shape[0]
        while i < n:
            if self._fit is None:  # anchor a new line on this sample
                self._t_ref = raw[i]
                self._fit = [1e-9, float(self._k), 0.0, 0.0, 0.0]
            mk, mt, slope = self._line()
            k = self._k + np.arange(n - i, dtype=np.float64)
            rel = raw[i:] - self._t_ref
            pred = mt + slope * (k - mk)
            resid = rel - pred
            late = np.nonzero(resid > self.threshold)[0]
            early = np.nonzero(resid < -max(0.5, 50 * self.threshold))[0]
            stop = min(late[0] if late.size else n - i, early[0] if early.size else n - i)
            if stop > 0:  # the regular part
                seg = resid[:stop]
                out[i:i + stop] = (pred[:stop] + self._t_ref) if self.dejitter else raw[i:i + stop]
                a = 1.0 - math.exp(-stop * self.period / 10.0)
                self.jitter = (1 - a) * self.jitter + a * float(np.mean(np.abs(seg)))
                self._update(k[:stop], rel[:stop])
                self._k += stop
                self.n_seen += stop
                i += stop
                continue
            if early.size and early[0] == 0:  # clock went backwards: start a new line
                logger.warning("%s: timestamps went back by %.3f s; re-anchoring", self.stream,
                               -resid[0])
                self._fit = None
                continue
            # a gap before sample i
            missing = max(int(round(resid[0] / slope)), 1)
            gaps.append(GapReport(self.stream, float(pred[0] + self._t_ref),
                                  missing * self.period, missing, cause, self.n_seen))
            self._k += missing
            self._fit = None  # re-anchor after the hole, keeping the learnt slope
        if n:
            self.last_timestamp = float(out[-1])
        return out, gaps


def counter_gaps(counter: np.ndarray, previous: int | None, modulo: int | None = None
                 ) -> tuple[list[tuple[int, int]], int | None]:
    """Find skips in a hardware sample counter.

    Parameters
    ----------
    counter : array of int-like
        The counter values of consecutive samples.
    previous : int or None
        The last counter value of the previous chunk.
    modulo : int or None
        Wrap-around of the counter (e.g. 256 for an 8-bit counter).

    Returns
    -------
    gaps : list of (index, n_missing)
        Index of the first sample after each skip and how many were skipped.
    last : int or None
        The last counter value, to pass as ``previous`` next time.
    """
    c = np.asarray(counter, dtype=np.int64).ravel()
    if c.size == 0:
        return [], previous
    full = c if previous is None else np.r_[previous, c]
    d = np.diff(full)
    if modulo:
        d %= modulo
    offset = 0 if previous is None else 1
    idx = np.nonzero(d != 1)[0]
    gaps = [(int(j + 1 - offset), int(d[j] - 1)) for j in idx if d[j] > 1]
    return gaps, int(c[-1])


class SourceWatch:
    """Turn a source's state changes and gap reports into log entries, each once.

    The window, the headless run and ``yume record`` log the same entries: ``source_lost``
    (state, error), ``source_back`` (``outage_s``), ``source_failed`` (error), ``source_ended``
    (file playback played out) and ``gap`` (``start``, ``duration_s``, ``n_missing``,
    ``cause``, from the source's :class:`GapLog`).

    Parameters
    ----------
    watched : Source or Acquisition
        Anything with a ``state``; an ``error``, a ``finished`` flag and ``gaps`` are read
        where it (or its ``source``) has them.
    gaps : bool
        Report the source's gaps too (a recorder that finds them in what it writes says no).
    """

    def __init__(self, watched, gaps: bool = True) -> None:
        self.watched = watched
        self.gaps = gaps
        self.state = watched.state
        self.lost_since: float | None = None  # LSL clock time the loss was first seen
        self.ended = False

    def poll(self, now: float) -> list[tuple[str, dict]]:
        """Entries ``(kind, fields)`` for what changed since the last call (``now``: LSL s)."""
        out: list[tuple[str, dict]] = []
        source = getattr(self.watched, "source", self.watched)
        error = getattr(self.watched, "error", None)
        state = self.watched.state
        if state != self.state:
            self.state = state
            if state == SourceState.RECONNECTING:
                self.lost_since = now
                out.append(("source_lost", {"state": str(state), "error": error}))
            elif state == SourceState.FAILED:
                self.lost_since = self.lost_since if self.lost_since is not None else now
                out.append(("source_failed", {"error": error}))
            elif state == SourceState.STREAMING and self.lost_since is not None:
                out.append(("source_back", {"outage_s": round(now - self.lost_since, 3)}))
                self.lost_since = None
        if getattr(source, "finished", False) and not self.ended:
            self.ended = True
            out.append(("source_ended", {}))
        gap_log = getattr(source, "gaps", None)
        if self.gaps and isinstance(gap_log, GapLog):
            out += [("gap", {"start": g.start, "duration_s": g.duration,
                             "n_missing": g.n_missing, "cause": g.cause})
                    for g in gap_log.pop_new()]
        return out
