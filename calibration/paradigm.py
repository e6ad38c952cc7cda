"""Calibration paradigms as data, and the trial scheduler that turns one into a cue timeline.

Two paradigms: motor imagery (:class:`MIParadigm`) and SSVEP (:class:`SSVEPParadigm`). Both are
plain dataclasses, loadable from JSON or TOML (:func:`load_paradigm`) and overridable from the
command line. :func:`schedule` expands a paradigm into a list of :class:`Cue` (fixation, cue,
inter-trial rest, breaks between runs) with seeded, balanced, randomised trial order.

A motor-imagery trial::

    fixation cross (fixation_s) -> arrow/label, imagery starts (trial_s; the arrow shows for
    cue_s) -> blank rest (random iti_min_s..iti_max_s)

An SSVEP trial: fixation (targets visible) -> target highlighted (cue_s), then every target
flickers and the participant attends the cued one (trial_s) -> rest.

Cue labels are the class names (``left_hand``, ``ssvep:12``...) so recordings carry events named
as the classes; bookkeeping events are ``fixation``, ``iti``, ``break``, ``run_start`` and
``session_end``.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

MI_CLASSES = ("left_hand", "right_hand", "feet", "rest", "tongue", "hands")
BOOKKEEPING = ("fixation", "iti", "break", "run_start", "session_end")


class ParadigmError(ValueError):
    """A paradigm setting that cannot work; the message says what to change."""


@dataclass(frozen=True)
class Timing:
    """Durations of one trial (seconds).

    Parameters
    ----------
    fixation_s : float
        Fixation cross before the cue.
    cue_s : float
        How long the arrow / target highlight stays visible.
    trial_s : float
        Imagery or attention period from the cue onset (>= cue_s); the event duration.
    iti_min_s, iti_max_s : float
        Random inter-trial rest, uniform in this range.
    break_s : float
        Break between runs.
    """

    fixation_s: float = 2.0
    cue_s: float = 1.25
    trial_s: float = 4.0
    iti_min_s: float = 1.5
    iti_max_s: float = 2.5
    break_s: float = 15.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ParadigmError(f"timing.{f.name} must be a number >= 0 s, got {v!r}.")
        if self.trial_s <= 0:
            raise ParadigmError("timing.trial_s must be > 0 s: it is the imagery period.")
        if self.cue_s > self.trial_s:
            raise ParadigmError(
                f"timing.cue_s ({self.cue_s} s) is longer than trial_s ({self.trial_s} s); "
                "the cue is shown within the trial.")
        if self.iti_max_s < self.iti_min_s:
            raise ParadigmError("timing.iti_max_s must be >= iti_min_s.")

    @property
    def mean_trial_s(self) -> float:
        return self.fixation_s + self.trial_s + (self.iti_min_s + self.iti_max_s) / 2


@dataclass(frozen=True)
class MIParadigm:
    """Motor imagery calibration.

    Parameters
    ----------
    classes : tuple of str
        Imagined movements (``left_hand``, ``right_hand``, ``feet``, ``rest``...).
    trials_per_class : int
        Trials of each class over the whole session.
    runs : int
        Runs (blocks) the trials are split into, with a break between them.
    timing : Timing
        Trial timing.
    seed : int
        Seed of the trial order and inter-trial intervals.
    """

    classes: tuple[str, ...] = ("left_hand", "right_hand", "feet")
    trials_per_class: int = 20
    runs: int = 1
    timing: Timing = field(default_factory=Timing)
    seed: int = 0
    kind: str = "mi"

    def __post_init__(self) -> None:
        classes = tuple(str(c).strip() for c in self.classes if str(c).strip())
        object.__setattr__(self, "classes", classes)
        if len(classes) < 2:
            raise ParadigmError("A motor-imagery paradigm needs at least two classes, e.g. "
                                "left_hand,right_hand.")
        if len(set(classes)) != len(classes):
            raise ParadigmError(f"Classes repeat in {classes}; list each class once.")
        bad = [c for c in classes if c in BOOKKEEPING]
        if bad:
            raise ParadigmError(f"{bad} are reserved event names; name the classes otherwise.")
        _check_counts(self.trials_per_class, self.runs)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classes


@dataclass(frozen=True)
class SSVEPTarget:
    """One flickering target: its frequency (Hz), phase (radians) and shown text."""

    freq: float
    phase: float = 0.0
    text: str = ""

    @property
    def label(self) -> str:
        """Class label, also the simulated participant's intent (``"ssvep:12"``)."""
        return f"ssvep:{self.freq:g}"


@dataclass(frozen=True)
class SSVEPParadigm:
    """SSVEP calibration: N targets flickering at their own frequency and phase.

    Parameters
    ----------
    targets : tuple of SSVEPTarget
        The targets (at least two, distinct frequencies).
    trials_per_class : int
        Trials per target.
    runs : int
        Runs, with breaks between them.
    timing : Timing
        Trial timing (``trial_s`` is the stimulation period).
    seed : int
        Seed of the trial order.
    """

    targets: tuple[SSVEPTarget, ...] = (
        # Drawn clockwise from the top (gui/cue_screen.py), so each arrow points outwards.
        SSVEPTarget(8.0, 0.0, "↑"), SSVEPTarget(10.0, 0.5 * math.pi, "→"),
        SSVEPTarget(12.0, math.pi, "↓"), SSVEPTarget(15.0, 1.5 * math.pi, "←"))
    trials_per_class: int = 10
    runs: int = 1
    timing: Timing = field(default_factory=lambda: Timing(1.0, 1.0, 4.0, 1.0, 1.5, 10.0))
    seed: int = 0
    kind: str = "ssvep"

    def __post_init__(self) -> None:
        targets = tuple(t if isinstance(t, SSVEPTarget) else SSVEPTarget(**t)
                        for t in self.targets)
        object.__setattr__(self, "targets", targets)
        if len(targets) < 2:
            raise ParadigmError("An SSVEP paradigm needs at least two targets.")
        freqs = [t.freq for t in targets]
        if any(f <= 0 for f in freqs) or len(set(freqs)) != len(freqs):
            raise ParadigmError(f"SSVEP frequencies must be positive and distinct, got {freqs}.")
        _check_counts(self.trials_per_class, self.runs)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(t.label for t in self.targets)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classes


Paradigm = MIParadigm | SSVEPParadigm


def _check_counts(trials: int, runs: int) -> None:
    if int(trials) < 1:
        raise ParadigmError(f"trials per class must be >= 1, got {trials}.")
    if int(runs) < 1 or int(runs) > int(trials):
        raise ParadigmError(f"runs must be between 1 and the trials per class, got {runs}.")


@dataclass(frozen=True)
class Cue:
    """One entry of the cue timeline.

    Attributes
    ----------
    onset_s : float
        Planned time from the session start (s).
    duration_s : float
        How long the state lasts.
    kind : {"fixation", "cue", "iti", "break", "run_start", "session_end"}
        What the screen shows.
    label : str
        Class label for ``cue``; the kind otherwise. Used as event and marker text.
    intent : str
        What the (simulated) participant does meanwhile: the class, or ``"rest"``.
    trial : int
        Trial number (0-based, -1 outside trials).
    run : int
        Run number (0-based).
    """

    onset_s: float
    duration_s: float
    kind: str
    label: str
    intent: str = "rest"
    trial: int = -1
    run: int = 0


def schedule(paradigm: Paradigm) -> list[Cue]:
    """The cue timeline of a session: balanced, seeded random order within each run.

    Each run holds every class equally often (as far as the division allows), shuffled; the
    same seed gives the same timeline.
    """
    rng = np.random.default_rng(paradigm.seed)
    t = paradigm.timing
    labels = list(paradigm.labels)
    n_runs = int(paradigm.runs)
    per_run = [len(range(r, int(paradigm.trials_per_class), n_runs)) for r in range(n_runs)]
    cues: list[Cue] = []
    now = 0.0
    trial = 0
    for run, n in enumerate(per_run):
        if run > 0 and t.break_s > 0:
            cues.append(Cue(now, t.break_s, "break", "break", run=run))
            now += t.break_s
        cues.append(Cue(now, 0.0, "run_start", "run_start", run=run))
        order = np.repeat(labels, n)
        rng.shuffle(order)
        for label in order:
            if t.fixation_s > 0:
                cues.append(Cue(now, t.fixation_s, "fixation", "fixation", trial=trial, run=run))
                now += t.fixation_s
            intent = "rest" if label == "rest" else str(label)
            cues.append(Cue(now, t.trial_s, "cue", str(label), intent, trial, run))
            now += t.trial_s
            iti = float(rng.uniform(t.iti_min_s, t.iti_max_s))
            if iti > 0:
                cues.append(Cue(now, iti, "iti", "iti", trial=trial, run=run))
                now += iti
            trial += 1
    cues.append(Cue(now, 0.0, "session_end", "session_end", run=n_runs - 1))
    return cues


def session_length(cues: list[Cue]) -> float:
    """Planned length of a timeline (s)."""
    return max((c.onset_s + c.duration_s for c in cues), default=0.0)


# ------------------------------------------------------------------------------ files / CLI


def paradigm_to_dict(paradigm: Paradigm) -> dict:
    """JSON-able form (what :func:`paradigm_from_dict` reads back)."""
    return asdict(paradigm)


def paradigm_from_dict(data: dict) -> Paradigm:
    """Build a paradigm from a dict (as in a JSON/TOML file).

    Keys: ``kind`` (``"mi"`` or ``"ssvep"``), ``classes`` (MI), ``targets`` (SSVEP: list of
    ``{freq, phase, text}`` or of frequencies), ``trials_per_class``, ``runs``, ``seed``,
    ``timing`` (``{fixation_s, cue_s, trial_s, iti_min_s, iti_max_s, break_s}``).
    """
    data = dict(data)
    kind = str(data.pop("kind", data.pop("paradigm", "mi"))).lower()
    timing = data.pop("timing", None)
    try:
        if kind == "mi":
            cls = MIParadigm
            if "classes" in data:
                data["classes"] = _split(data["classes"])
        elif kind == "ssvep":
            cls = SSVEPParadigm
            if "targets" in data:
                data["targets"] = tuple(
                    SSVEPTarget(float(t)) if isinstance(t, int | float | str) else SSVEPTarget(**t)
                    for t in data["targets"])
        else:
            raise ParadigmError(f"Unknown paradigm {kind!r}; use 'mi' or 'ssvep'.")
        known = {f.name for f in fields(cls)} - {"kind", "timing"}
        unknown = set(data) - known
        if unknown:
            raise ParadigmError(
                f"Unknown paradigm setting(s) {sorted(unknown)}; known: {sorted(known)} and "
                "timing.")
        base = cls()
        if timing is not None:
            data["timing"] = replace(base.timing, **dict(timing))
        return cls(**data)
    except TypeError as err:
        raise ParadigmError(f"Invalid paradigm settings: {err}.") from None


def load_paradigm(path: str | Path) -> Paradigm:
    """Read a paradigm from a ``.json`` or ``.toml`` file."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParadigmError(f"No paradigm file at {path}; check the path.") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise ParadigmError(f"{path} is not valid {path.suffix[1:].upper()}: {err}.") from None
    if not isinstance(data, dict):
        raise ParadigmError(f"{path} must hold a table/object of settings.")
    return paradigm_from_dict(data)


def _split(value) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v) for v in value)


def build_paradigm(kind: str = "mi", path: str | Path | None = None, *,
                   classes=None, freqs=None, trials: int | None = None, runs: int | None = None,
                   seed: int | None = None, timing: dict | None = None) -> Paradigm:
    """A paradigm from an optional file, then command-line overrides (what ``yume calibrate``
    calls). ``classes`` and ``freqs`` accept comma-separated strings."""
    base = load_paradigm(path) if path else paradigm_from_dict({"kind": kind})
    data = paradigm_to_dict(base)
    if classes is not None:
        if base.kind != "mi":
            raise ParadigmError("--classes is for motor imagery; give SSVEP targets with --freqs.")
        data["classes"] = _split(classes)
    if freqs is not None:
        if base.kind != "ssvep":
            raise ParadigmError("--freqs is for SSVEP; give motor-imagery classes with --classes.")
        fs = [float(f) for f in _split(freqs)]
        data["targets"] = [{"freq": f, "phase": (i * 0.5 * math.pi) % (2 * math.pi)}
                           for i, f in enumerate(fs)]
    for key, value in (("trials_per_class", trials), ("runs", runs), ("seed", seed)):
        if value is not None:
            data[key] = value
    if timing:
        data["timing"] = {**data["timing"], **timing}
    return paradigm_from_dict(data)
