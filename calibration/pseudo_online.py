"""Pseudo-online evaluation: a recording played through the live decoding path, scored per cue.

:func:`play_recording` feeds a recording's samples chunk by chunk into a ring buffer and runs
:class:`control.online.OnlineControl` on it (the same :class:`~control.online.OnlineDecoder`,
:class:`~control.policy.ControlPolicy`, window, step, dwell and refractory period as ``yume
run``; signal time as the clock). :func:`decode_recording` + :func:`replay_policy` split that in
two, so that many operating points (threshold, dwell) can be tried on one decoding; a test keeps
the two routes identical.

:func:`score_commands` scores the commands the way a user lives them:

- per cue: the first command within the cue (and ``grace_s`` after it, since decisions lag the
  signal) is a hit when it is the cued class, wrong otherwise, a miss when none came; the time to
  that command is kept;
- per minute of rest: every command during a rest period (from ``grace_s`` after its start, so
  that a late answer to the previous cue is not counted twice) is a false activation;
- the Wolpaw ITR at the real selection rate (commands per minute of the whole recording, with
  every wrong command and false activation counted as an error).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from bci.ringbuffer import RingBuffer
from bci.stream import StreamInfo
from calibration.dataset import DatasetError, Recording
from calibration.metrics import wolpaw_bits
from control.bundle import DecoderBundle
from control.online import DecodedWindow, OnlineControl, OnlineDecoder
from control.policy import ControlPolicy, PolicyConfig

REST_LABELS = ("rest",)


@dataclass(frozen=True)
class OperatingPoint:
    """The policy settings a pseudo-online score belongs to (what a bundle ships).

    Parameters
    ----------
    threshold : float
        Smoothed probability a movement class must reach.
    dwell_s : float
        How long it must stay there before the command fires.
    tau_s : float
        Time constant of the probability smoothing.
    refractory_s : float
        Pause after each command.
    mode : {"discrete", "direct"}
        Policy mode.
    """

    threshold: float = 0.7
    dwell_s: float = 0.5
    tau_s: float = 0.5
    refractory_s: float = 1.0
    mode: str = "discrete"

    def policy_config(self) -> PolicyConfig:
        return PolicyConfig(mode=self.mode, threshold=self.threshold, dwell_s=self.dwell_s,
                            tau_s=self.tau_s, refractory_s=self.refractory_s)


@dataclass(frozen=True)
class Command:
    """A command that fired: signal time (s from the recording's first sample) and class."""

    t: float
    label: str


def _stream_info(recording: Recording) -> StreamInfo:
    raw = recording.raw
    types = tuple(raw.get_channel_types())
    return StreamInfo(name=recording.path.name, sfreq=float(raw.info["sfreq"]),
                      ch_names=tuple(raw.ch_names), ch_types=types, units="uV")


def _chunks(recording: Recording, chunk_s: float):
    """The recording's samples (µV) as the acquisition would deliver them."""
    raw = recording.raw
    data = raw.get_data(units="uV")
    sfreq = float(raw.info["sfreq"])
    step = max(int(round(chunk_s * sfreq)), 1)
    # The first block is at most 0.1 s, as from an amplifier: the decoder starts at the newest
    # complete window it first sees, so a larger first block would skip the windows inside it.
    starts = [0, *range(min(step, max(int(round(0.1 * sfreq)), 1)), data.shape[1], step)]
    for a, b in zip(starts, [*starts[1:], data.shape[1]], strict=True):
        block = data[:, a:b]
        yield block, (a + np.arange(block.shape[1])) / sfreq


def _decoder(bundle: DecoderBundle, recording: Recording, adapt: str | None = None,
             adapt_alpha: float = 0.02, chunk_s: float = 0.1
             ) -> tuple[OnlineDecoder, RingBuffer]:
    info = _stream_info(recording)
    if adapt is not None:  # online re-centering changes the pipeline: not the caller's
        bundle = copy.deepcopy(bundle)
    decoder = OnlineDecoder.from_bundle(bundle, adapt=adapt, adapt_alpha=adapt_alpha)
    decoder.bind(info)  # another montage or rate: one sentence from the decoder or bundle
    capacity = decoder.window_n + int((4 + chunk_s) * info.sfreq)
    return decoder, RingBuffer(info.n_channels, capacity, dtype=np.float64)


def decode_recording(bundle: DecoderBundle, recording: Recording, chunk_s: float = 0.1,
                     adapt: str | None = None, adapt_alpha: float = 0.02
                     ) -> list[DecodedWindow]:
    """Every window the live decoder would decode on ``recording``, oldest first.

    ``adapt``/``adapt_alpha``: online re-centering as :class:`OnlineDecoder` does it (on a copy
    of the bundle).
    """
    decoder, buffer = _decoder(bundle, recording, adapt, adapt_alpha, chunk_s)
    windows: list[DecodedWindow] = []
    for block, ts in _chunks(recording, chunk_s):
        buffer.push(block, ts)
        windows += decoder.update(buffer)
    return windows


def _policy(bundle: DecoderBundle, point: OperatingPoint) -> ControlPolicy:
    return ControlPolicy(bundle.classes, bundle.actions, point.policy_config(),
                         step_s=bundle.step_s, window_s=bundle.window_s)


def replay_policy(windows: Sequence[DecodedWindow], bundle: DecoderBundle,
                  point: OperatingPoint) -> list[Command]:
    """The commands a fresh policy at ``point`` fires on decoded ``windows``.

    Time is the windows' sample count over the rate, as :class:`OnlineControl` with
    ``clock="samples"`` counts it.
    """
    policy = _policy(bundle, point)
    out = []
    for w in windows:
        step = policy.update(w.end_count / bundle.sfreq, w.probabilities)
        if step.command is not None:
            out.append(Command(round(step.timestamp, 6), str(step.candidate)))
    return out


def play_recording(bundle: DecoderBundle, recording: Recording, point: OperatingPoint,
                   chunk_s: float = 0.1) -> list[Command]:
    """Play ``recording`` through the whole live loop (buffer, decoder, policy) at ``point``."""
    decoder, buffer = _decoder(bundle, recording)
    control = OnlineControl(decoder, _policy(bundle, point), clock="samples",
                            stale_s=float("inf"))
    out = []
    for block, ts in _chunks(recording, chunk_s):
        buffer.push(block, ts)
        for step in control.step(buffer, now=float(ts[-1])):
            if step.command is not None:
                out.append(Command(round(step.timestamp, 6), str(step.candidate)))
    return out


@dataclass
class CueScore:
    """How one cue was answered."""

    onset: float
    duration: float
    target: str
    first: str | None
    latency_s: float | None

    @property
    def outcome(self) -> str:
        if self.first is None:
            return "miss"
        return "hit" if self.first == self.target else "wrong"


@dataclass
class PseudoOnlineScore:
    """Per-cue and per-rest-minute figures of one played recording (see the module docstring).

    Attributes
    ----------
    cues : list of CueScore
    n_false : int
        Commands during rest.
    rest_s : float
        Seconds of rest scored (each rest period less its first ``grace_s``).
    duration_s : float
        Length of the recording.
    n_commands : int
        Every command fired.
    n_classes : int
        Movement classes (the ITR's N).
    """

    cues: list[CueScore]
    n_false: int
    rest_s: float
    duration_s: float
    n_commands: int
    n_classes: int
    commands: list[Command] = field(default_factory=list, repr=False)

    def _count(self, outcome: str) -> int:
        return sum(c.outcome == outcome for c in self.cues)

    @property
    def n_cues(self) -> int:
        return len(self.cues)

    @property
    def hit_rate(self) -> float:
        return self._count("hit") / self.n_cues if self.cues else float("nan")

    @property
    def wrong_rate(self) -> float:
        return self._count("wrong") / self.n_cues if self.cues else float("nan")

    @property
    def miss_rate(self) -> float:
        return self._count("miss") / self.n_cues if self.cues else float("nan")

    @property
    def fa_per_min(self) -> float:
        return self.n_false / (self.rest_s / 60.0) if self.rest_s > 0 else float("nan")

    @property
    def median_latency_s(self) -> float | None:
        lat = [c.latency_s for c in self.cues if c.outcome == "hit"]
        return float(np.median(lat)) if lat else None

    @property
    def itr_bits_per_min(self) -> float:
        """Wolpaw ITR at the real selection rate; every non-hit command is an error."""
        if not self.n_commands or self.duration_s <= 0:
            return 0.0
        accuracy = self._count("hit") / self.n_commands
        return wolpaw_bits(self.n_classes, accuracy) * self.n_commands / (self.duration_s / 60)

    def to_dict(self) -> dict:
        return {"n_cues": self.n_cues, "hits": self._count("hit"), "wrong": self._count("wrong"),
                "misses": self._count("miss"), "hit_rate": self.hit_rate,
                "wrong_rate": self.wrong_rate, "miss_rate": self.miss_rate,
                "false_activations": self.n_false, "rest_minutes": self.rest_s / 60.0,
                "fa_per_min": self.fa_per_min, "median_latency_s": self.median_latency_s,
                "n_commands": self.n_commands, "itr_bits_per_min": self.itr_bits_per_min,
                "cues": [asdict(c) | {"outcome": c.outcome} for c in self.cues]}

    @classmethod
    def pooled(cls, scores: Sequence[PseudoOnlineScore]) -> PseudoOnlineScore:
        """One score over several recordings (cues and rest minutes added up)."""
        return cls([c for s in scores for c in s.cues], sum(s.n_false for s in scores),
                   sum(s.rest_s for s in scores), sum(s.duration_s for s in scores),
                   sum(s.n_commands for s in scores), max(s.n_classes for s in scores),
                   [c for s in scores for c in s.commands])


def score_commands(commands: Sequence[Command], events: pd.DataFrame, classes: Sequence[str],
                   duration_s: float, rest_labels: Sequence[str] = REST_LABELS,
                   grace_s: float = 1.0) -> PseudoOnlineScore:
    """Score ``commands`` against a recording's cues (see the module docstring).

    Parameters
    ----------
    commands : sequence of Command
        What fired, in signal time.
    events : DataFrame
        ``onset``, ``duration``, ``description`` (labels already mapped to class names).
    classes : sequence of str
        The movement classes (cues of other labels are not scored, except rest).
    duration_s : float
        Length of the recording.
    rest_labels : sequence of str
        Labels of rest periods (no-control time).
    grace_s : float
        Seconds after a cue in which its answer still counts; rest is scored from this long
        after its start.

    Raises
    ------
    DatasetError
        The recording has no cue of the classes, or no rest period.
    """
    movement = [str(c) for c in classes if c not in rest_labels]
    ev = events.sort_values("onset", kind="stable")
    cue_ev = ev[ev["description"].isin(movement)]
    rest_ev = ev[ev["description"].isin(rest_labels)]
    if cue_ev.empty:
        raise DatasetError(
            f"The test recording has no cue of class {', '.join(movement)}; it holds "
            f"{', '.join(sorted(set(map(str, ev['description'])))[:10]) or 'no events'}.")
    if rest_ev.empty:
        raise DatasetError(
            f"The test recording has no rest period (label {', '.join(rest_labels)}), so false "
            "activations cannot be counted; map its rest label with --map (e.g. T0=rest) or "
            "name it with --rest.")
    times = np.array([c.t for c in commands])
    cues = []
    for onset, dur, label in zip(cue_ev["onset"], cue_ev["duration"], cue_ev["description"],
                                 strict=True):
        inside = np.nonzero((times >= onset) & (times <= onset + dur + grace_s))[0]
        first = commands[inside[0]] if inside.size else None
        cues.append(CueScore(float(onset), float(dur), str(label),
                             first.label if first else None,
                             float(first.t - onset) if first else None))
    n_false, rest_s = 0, 0.0
    for onset, dur in zip(rest_ev["onset"], rest_ev["duration"], strict=True):
        start, end = onset + grace_s, onset + dur
        if end > start:
            rest_s += end - start
            n_false += int(np.sum((times >= start) & (times < end)))
    return PseudoOnlineScore(cues, n_false, rest_s, float(duration_s), len(commands),
                             len(movement), list(commands))


def recording_duration(recording: Recording) -> float:
    return recording.raw.n_times / float(recording.raw.info["sfreq"])


def mapped_events(recording: Recording, label_map: dict | None) -> pd.DataFrame:
    """The recording's events with labels renamed by ``label_map``."""
    ev = recording.events.copy()
    if label_map:
        ev["description"] = ev["description"].map(lambda d: label_map.get(d, d))
    return ev
