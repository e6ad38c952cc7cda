"""A cued online run: rest blocks and cues of each movement class, scored as a user lives them.

The schedule (seeded, balanced, shuffled)::

    rest (lead_s) -> cue (cue_s) -> rest (rest_s + 0..rest_jitter_s) -> cue -> ... -> rest

During a cue the participant means the cued class's mapped action; during rest, nothing
(:data:`~control.actions.IDLE`). Every command is recorded and scored at the end with
:func:`calibration.pseudo_online.score_commands`, the same rules as the pseudo-online
evaluation of a recording: the first command of a cue (or up to ``grace_s`` after it) is a hit
when it is the cued class, wrong otherwise, a miss when none came; every command during rest
(from ``grace_s`` after the rest starts) is a false activation; the Wolpaw ITR is taken at the
real selection rate (commands per minute of the run, every non-hit command an error).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from calibration.pseudo_online import Command, PseudoOnlineScore, score_commands
from control.actions import IDLE, Action, format_action
from control.mapping import ActionMapping
from gui.tasks.base import OnlineTask, TaskError, as_mapping
from world.base import Chunk, WorldEngine

REST = "rest"


@dataclass(frozen=True)
class Block:
    """One block of the schedule: ``onset`` and ``duration`` in seconds from the task start."""

    kind: str  # "rest" or "cue"
    cls: str | None
    onset: float
    duration: float

    @property
    def end(self) -> float:
        return self.onset + self.duration


class CuedTask(OnlineTask):
    """Cued online run (see the module docstring).

    Parameters
    ----------
    mapping : ActionMapping or dict, optional
        Class -> action of the decoder (default: ``control.mapping.DEFAULT_MI_MAPPING``).
    classes : sequence of str, optional
        The classes to cue (default: every class the mapping does not map to idle).
    n_per_class : int
        Cues of each class.
    cue_s : float
        Length of each cue (the participant imagines the class throughout).
    rest_s : float
        Rest between cues (shortest; see ``rest_jitter_s``).
    seed : int
        Seed of the cue order and the rest jitter.
    grace_s : float
        Seconds after a cue in which its answer still counts; rest is scored from ``grace_s``
        after its start.
    lead_s : float, optional
        Rest before the first cue (default: ``rest_s``).
    rest_jitter_s : float
        Each rest lasts ``rest_s`` plus a uniform random 0..``rest_jitter_s`` seconds, so that
        the next cue cannot be anticipated.

    Attributes
    ----------
    blocks : list of Block
        The schedule (seconds from :meth:`start`).
    time_limit_s : float
        Length of the whole schedule.
    """

    name = "cued"

    def __init__(self, mapping: ActionMapping | Mapping[str, str] | None = None,
                 classes: Sequence[str] | None = None, n_per_class: int = 5,
                 cue_s: float = 4.0, rest_s: float = 4.0, seed: int = 0,
                 grace_s: float = 1.0, lead_s: float | None = None,
                 rest_jitter_s: float = 0.0) -> None:
        self.mapping = as_mapping(mapping)
        if classes is None:
            classes = [c for c in self.mapping.classes if not self.mapping.is_rest(c)]
        self.classes = tuple(str(c) for c in classes)
        if not self.classes:
            raise TaskError("A cued run needs at least one movement class; map a class to an "
                            "action such as 'W'.")
        for c in self.classes:
            if self.mapping.action(c).is_idle:  # also raises for a class not in the mapping
                raise TaskError(f"Class {c!r} maps to idle, so cueing it could never be "
                                "answered; cue only classes mapped to a movement.")
        if len(set(self.classes)) != len(self.classes):
            raise TaskError(f"Classes repeat in {self.classes}; list each class once.")
        if int(n_per_class) != n_per_class or n_per_class < 1:
            raise TaskError(f"n_per_class must be a whole number >= 1, got {n_per_class}.")
        for label, v in (("cue_s", cue_s), ("rest_s", rest_s), ("grace_s", grace_s),
                         ("rest_jitter_s", rest_jitter_s)):
            if not np.isfinite(v) or v < 0:
                raise TaskError(f"{label} must be a number of seconds >= 0, got {v}.")
        if cue_s <= 0 or rest_s <= grace_s:
            raise TaskError(f"cue_s must be > 0 and rest_s ({rest_s} s) longer than grace_s "
                            f"({grace_s} s), or no rest would be scored.")
        self.n_per_class = int(n_per_class)
        self.cue_s, self.rest_s, self.grace_s = float(cue_s), float(rest_s), float(grace_s)
        self.lead_s = self.rest_s if lead_s is None else float(lead_s)
        self.rest_jitter_s = float(rest_jitter_s)
        self.seed = int(seed)
        self.blocks = self._schedule()
        self.time_limit_s = self.blocks[-1].end
        self.t0: float | None = None
        self._now: float | None = None
        self._commands: list[Command] = []
        self._n_idle_commands = 0
        self._emitted = 0  # boundary events already returned by observe()

    # ------------------------------------------------------------------ schedule

    def _schedule(self) -> list[Block]:
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(np.repeat(np.arange(len(self.classes)), self.n_per_class))
        blocks = [Block(REST, None, 0.0, self.lead_s)] if self.lead_s > 0 else []
        t = self.lead_s
        for k in order:
            blocks.append(Block("cue", self.classes[int(k)], t, self.cue_s))
            t += self.cue_s
            rest = self.rest_s + float(rng.uniform(0, self.rest_jitter_s))
            blocks.append(Block(REST, None, t, rest))
            t += rest
        return blocks

    @property
    def cues(self) -> list[Block]:
        return [b for b in self.blocks if b.kind == "cue"]

    def block_at(self, t: float) -> Block | None:
        """The block running at LSL time ``t`` (None before the start or after the end)."""
        if self.t0 is None:
            return None
        rel = t - self.t0
        for b in self.blocks:
            if b.onset <= rel < b.end:
                return b
        return None

    # ------------------------------------------------------------------ OnlineTask

    def start(self, engine: WorldEngine | None, t: float) -> None:
        """Start the schedule at ``t``; the world is not needed (``engine`` may be None)."""
        self.t0 = float(t)
        self._now = float(t)
        self._commands.clear()
        self._n_idle_commands = 0
        self._emitted = 0

    def _advance(self, t: float) -> None:
        if self.t0 is None:
            raise TaskError("The cued task has not been started; call start(engine, t) first.")
        self._now = max(self._now, float(t))

    def intent(self, t: float) -> Action:
        """The cued class's action during a cue, IDLE during rest and once the run is over."""
        self._advance(t)
        b = self.block_at(t)
        return self.mapping.action(b.cls) if b is not None and b.kind == "cue" else IDLE

    def _boundaries(self) -> list[tuple[float, str, int, Block]]:
        out = []
        for i, b in enumerate(self.cues):
            out.append((b.onset, "cue_start", i, b))
            out.append((b.end, "cue_end", i, b))
        return out

    def observe(self, t: float, chunk: Chunk | None = None, taken: Action | None = None,
                command: Action | None = None) -> list[dict]:
        """``cue_start`` / ``cue_end`` events for every boundary passed since the last call."""
        self._advance(t)
        rel = self._now - self.t0
        events = []
        bounds = self._boundaries()
        while self._emitted < len(bounds) and bounds[self._emitted][0] <= rel:
            at, event, i, b = bounds[self._emitted]
            events.append({"event": event, "index": i, "cls": b.cls,
                           "action": format_action(self.mapping.action(b.cls)),
                           "t_scheduled": self.t0 + at})
            self._emitted += 1
        return events

    def _label(self, command: Action, cls: str | None) -> str:
        if cls is not None:
            return str(cls)
        # A keyboard command: the class whose action it is (a cued class first).
        for c in self.classes + self.mapping.classes:
            if self.mapping.action(c) == command:
                return c
        return f"action:{format_action(command)}"

    def on_command(self, t: float, command: Action, cls: str | None = None) -> None:
        """Record a command; idle commands (a return to rest) move nothing and are not scored."""
        self._advance(t)
        if command.is_idle:
            self._n_idle_commands += 1
            return
        self._commands.append(Command(float(t) - self.t0, self._label(command, cls)))

    @property
    def done(self) -> bool:
        return self.t0 is not None and self._now - self.t0 >= self.time_limit_s

    def describe(self, t: float) -> str:
        """What the screen asks of the participant at ``t``: a headline, a newline, a detail.

        During a cue: ``Imagine LEFT HAND ←`` and the seconds left of it with the cue count;
        during rest: ``Rest`` and the cues done (not the time to the next cue: the rest is
        jittered so that the cue cannot be anticipated); once over: ``Done`` with the hits
        and the false activations per minute of rest. Reads the task, never advances it.
        """
        if self.t0 is None:
            return "Get ready\nthe cued run has not started"
        rel = float(t) - self.t0
        cues = self.cues
        if self.done or rel >= self.time_limit_s:
            s = self.summary()
            fa = s.get("fa_per_min")
            fa_text = f"{fa:.1f}" if fa is not None and np.isfinite(fa) else "–"
            return (f"Done\n{s.get('hits', 0)}/{s.get('n_cues', 0)} cues hit · {fa_text} false "
                    "activations/min of rest")
        b = self.block_at(t)
        if b is not None and b.kind == "cue":
            i = cues.index(b)
            name = b.cls.replace("_", " ").upper()
            left = int(np.ceil(b.end - rel - 1e-9))
            return (f"Imagine {name} {format_action(self.mapping.action(b.cls))}\n"
                    f"{left} s left · cue {i + 1} of {len(cues)}")
        finished = sum(c.end <= rel for c in cues)
        return f"Rest\n{finished} of {len(cues)} cues done"

    # ------------------------------------------------------------------ scoring

    @property
    def elapsed_s(self) -> float:
        if self.t0 is None:
            return 0.0
        return min(self._now - self.t0, self.time_limit_s)

    def score(self) -> PseudoOnlineScore | None:
        """The score of the cues that have finished (None before the first has)."""
        elapsed = self.elapsed_s
        rows = [(b.onset, b.duration, b.cls) for b in self.cues if b.end <= elapsed + 1e-9]
        rows += [(b.onset, min(b.end, elapsed) - b.onset, REST) for b in self.blocks
                 if b.kind == REST and b.onset < elapsed]
        if not any(label != REST for *_, label in rows) or not any(
                label == REST and d > self.grace_s for _, d, label in rows):
            return None
        events = pd.DataFrame(rows, columns=["onset", "duration", "description"])
        commands = [c for c in self._commands if c.t <= elapsed]
        return score_commands(commands, events, list(self.classes) + [REST], elapsed,
                              rest_labels=(REST,), grace_s=self.grace_s)

    def summary(self) -> dict:
        """Hits, wrong, misses, time to command, false activations per minute of rest, ITR."""
        base = {"classes": list(self.classes), "mapping": self.mapping.to_dict(),
                "n_per_class": self.n_per_class, "cue_s": self.cue_s, "rest_s": self.rest_s,
                "grace_s": self.grace_s, "seed": self.seed,
                "n_scheduled_cues": len(self.cues), "schedule_s": self.time_limit_s,
                "elapsed_s": self.elapsed_s, "completed": self.done,
                "idle_commands": self._n_idle_commands}
        score = self.score()
        if score is None:
            return base | {"n_cues": 0, "n_commands": len(self._commands)}
        d = score.to_dict()
        d.pop("cues")
        answered = d["hits"] + d["wrong"]
        latencies = [c.latency_s for c in score.cues if c.outcome == "hit"]
        return base | d | {
            "accuracy": d["hit_rate"],
            "accuracy_answered": d["hits"] / answered if answered else None,
            "median_time_to_command_s": d.pop("median_latency_s"),
            "mean_time_to_command_s": float(np.mean(latencies)) if latencies else None,
            "selections_per_min": score.n_commands / (score.duration_s / 60.0)
            if score.duration_s > 0 else 0.0,
        }

    def rows(self) -> list[dict]:
        """One row per scheduled cue: class, action, onset, first command, outcome, latency."""
        score = self.score()
        scored = {round(c.onset, 9): c for c in score.cues} if score is not None else {}
        out = []
        for i, b in enumerate(self.cues):
            c = scored.get(round(b.onset, 9))
            out.append({"index": i, "cls": b.cls,
                        "action": format_action(self.mapping.action(b.cls)),
                        "onset_s": round(b.onset, 6), "duration_s": b.duration,
                        "first": "" if c is None or c.first is None else c.first,
                        "outcome": "" if c is None else c.outcome,
                        "time_to_command_s": None if c is None else c.latency_s})
        return out
