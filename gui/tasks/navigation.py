"""Navigation in the sandbox city, Cybathlon-BCI-race style: reach a course of landmarks.

The participant's plan (:class:`RoutePlanner`) follows the shortest walkable path to the next
landmark (:mod:`world.navigation`) the way a person with only a few commands would: turn
towards a point a few metres ahead on the path, walk forward while facing it. It only intends
actions the decoder's mapping offers (``←``, ``→``, ``W`` for left_hand, right_hand, feet by
default), so a perfect decoder executing the intent completes the course.

How far one step of each action goes (the sandbox's :class:`~control.motion.MotionStep`): by
default 0.08 m and 2 degrees per frame at 16 frames/s, that is 1.3 m/s and 32 degrees/s; a
discrete BCI command holds its action for one ``step_s`` (1 s by default), i.e. 1.3 m or 32
degrees. The planner starts turning when the heading error exceeds ``turn_start_deg`` (15
degrees, about half of one discrete turn, so a discrete turn does not overshoot into the
opposite turn) and stops once it is within ``turn_stop_deg`` (at least 0.6 of one world step's
turn, so that a held turn stops on target). A landmark counts as reached within
:func:`world.navigation.landmark_reach` of its centre (nearest free cell centre + 1.5 m), a
radius a 1.3 m/s walker needs more than one second to cross.

Scoring: completion (every landmark reached before ``time_limit_s``), completion time, path
length walked against the shortest path (per leg, from where the leg really started), commands
issued, wrong commands (a command that is none of the actions the planner intended in the
``grace_s`` before it: the decoder's answer lags the intent; ``wrong_commands_now`` counts
those other than the intent of that very moment, a stricter figure, since in closed loop a
wrong command changes what the participant intends next), collisions (steps whose
``chunk.info["collided"]`` is set) and one row per landmark.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from control.actions import IDLE, Action, format_action
from control.mapping import ActionMapping
from control.motion import pose_angles
from gui.tasks.base import OnlineTask, TaskError, as_mapping
from world.base import Chunk, WorldEngine
from world.navigation import (
    DEFAULT_MARGIN,
    NavigationError,
    Path,
    default_landmarks,
    landmark_position,
    landmark_reach,
    path_to_landmark,
    segment_clear,
)
from world.sandbox_scene import SandboxScene

_SIGHT = 0.2  # metres: line-of-sight test of the look-ahead point (under the walker's radius)


def _wrap(a: float) -> float:
    return float((a + np.pi) % (2 * np.pi) - np.pi)


def _pose_xz_yaw(pose: np.ndarray) -> tuple[float, float, float]:
    pose = np.asarray(pose, float)
    return float(pose[0, 3]), float(pose[2, 3]), pose_angles(pose)[0]


class RoutePlanner:
    """The participant's intent along a path: turn towards the path ahead, walk when facing it.

    Parameters
    ----------
    mapping : ActionMapping
        The decoder's mapping; only its non-idle actions are ever intended.
    lookahead_m : float
        Distance along the path of the point the walker heads for (pure pursuit), never past
        the next turning point until the walker is within ``arrive_m`` of it.
    arrive_m : float
        Distance to a turning point at which the walker heads for the next segment (it also
        does once it has walked past the turning point). Keep it well under the path's
        clearance less the walker's radius: cutting a corner by more clips the wall.
    turn_start_deg, turn_stop_deg : float
        Heading error at which turning starts, and below which it stops.
    replan_m : float
        Offset from the path (m) beyond which the path is planned again from where the walker
        is (after wrong commands or a collision).

    Raises
    ------
    TaskError
        If the mapping offers no action that walks forward or none that turns.
    """

    def __init__(self, mapping: ActionMapping, lookahead_m: float = 3.0, arrive_m: float = 0.6,
                 turn_start_deg: float = 15.0, turn_stop_deg: float = 4.0,
                 replan_m: float = 2.0) -> None:
        moves = sorted({a for a in mapping.actions.values() if not a.is_idle})
        self.forward = [a for a in moves if a.translation_axes[1] > 0]
        self.turns = [a for a in moves if a.rotation_axes[0] != 0]
        if not self.forward or not self.turns:
            raise TaskError(
                f"The mapping {mapping.to_dict()} offers no way to "
                f"{'walk forward' if not self.forward else 'turn'}; navigation needs a class "
                "mapped to 'W' and one to '←' or '→'.")
        # Preferred choices: pure moves first (a combined move also turns or walks).
        self.walk = min(self.forward, key=lambda a: (a.rotation != "·", a.rotation_axes[1] != 0,
                                                     a.translation != "W"))
        if not 0 < turn_stop_deg <= turn_start_deg:
            raise TaskError("turn_stop_deg must be positive and at most turn_start_deg.")
        self.lookahead_m, self.arrive_m, self.replan_m = lookahead_m, arrive_m, replan_m
        self.turn_start = np.deg2rad(turn_start_deg)
        self.turn_stop = np.deg2rad(turn_stop_deg)
        self.path: Path | None = None
        self.segment = 0
        self.turning = False

    def _turn(self, sign: int) -> Action:
        """The best offered action turning right (+1) or left (-1), else the other way round."""
        for s in (sign, -sign):
            cands = [a for a in self.turns if a.rotation_axes[0] == s]
            if cands:
                return min(cands, key=lambda a: (a.translation != "·", a.rotation_axes[1] != 0))
        raise AssertionError("unreachable: the constructor checked that some action turns")

    def follow(self, path: Path) -> None:
        """Follow ``path`` from its start (a one-point path becomes a zero-length segment)."""
        if len(path.waypoints) < 2:
            path = Path(np.vstack([path.waypoints, path.waypoints]), path.cells)
        self.path, self.segment, self.turning = path, 0, False

    def offset(self, x: float, z: float) -> float:
        """Distance from (x, z) to the current segment of the path."""
        a, b = self.path.waypoints[self.segment], self.path.waypoints[self.segment + 1]
        p, d = np.array([x, z]), b - a
        s = float(np.clip((p - a) @ d / max(d @ d, 1e-12), 0.0, 1.0))
        return float(np.hypot(*(a + s * d - p)))

    def target(self, x: float, z: float) -> np.ndarray:
        """The look-ahead point: on the current segment, ``lookahead_m`` past the walker."""
        wp = self.path.waypoints
        p = np.array([x, z])
        while self.segment < len(wp) - 2:
            a, b = wp[self.segment], wp[self.segment + 1]
            d = b - a
            passed = (p - a) @ d >= d @ d  # beyond the turning point (a long discrete step)
            if not passed and np.hypot(*(b - p)) > self.arrive_m:
                break
            self.segment += 1
        a, b = wp[self.segment], wp[self.segment + 1]
        d = b - a
        length = float(np.hypot(*d))
        if length < 1e-9:
            return b
        s = float(np.clip((p - a) @ d / length, 0.0, length))
        return a + min(s + self.lookahead_m, length) / length * d

    def action(self, x: float, z: float, yaw: float) -> tuple[Action, np.ndarray]:
        """The intended action at camera (x, z, yaw) and the point it heads for."""
        goal = self.target(x, z)
        bearing = float(np.arctan2(goal[0] - x, goal[1] - z))  # yaw 0 looks along +z
        err = _wrap(bearing - yaw)
        if np.hypot(goal[0] - x, goal[1] - z) < 1e-6:
            return self.walk, goal
        self.turning = abs(err) > (self.turn_stop if self.turning else self.turn_start)
        if self.turning:
            return self._turn(1 if err > 0 else -1), goal
        return self.walk, goal


@dataclass
class Leg:
    """Bookkeeping of one landmark of the course."""

    index: int
    landmark: str
    centre: tuple[float, float]
    reach_m: float
    t_start: float
    start: tuple[float, float]
    shortest_m: float
    walked_m: float = 0.0
    t_reached: float | None = None
    commands: int = 0
    wrong: int = 0
    collisions: int = 0
    collided_frames: int = 0
    replans: int = 0


class NavigationTask(OnlineTask):
    """Reach a course of landmarks in the sandbox city (see the module docstring).

    Parameters
    ----------
    landmarks : sequence of str, optional
        The course, in order (default: :func:`world.navigation.default_landmarks` from where
        the walker starts: every reachable landmark, nearest first).
    mapping : ActionMapping or dict, optional
        The decoder's class -> action mapping (default: ``DEFAULT_MI_MAPPING``); the planner
        only intends its actions.
    n_landmarks : int, optional
        With the default course, how many landmarks it holds.
    time_limit_s : float
        Seconds after :meth:`start` at which the run counts as not completed.
    margin_m : float
        Reach radius beyond the nearest free cell centre of a landmark.
    grace_s : float
        A command counts as right when the planner intended it at some time in the ``grace_s``
        seconds before it (0: only the intent of that very moment).
    clearance_m : float
        Metres the planner's path keeps from walls (the shortest-path reference keeps
        :data:`world.navigation.DEFAULT_CLEARANCE`, just over the walker's radius).
    scene : SandboxScene, optional
        The city's map; by default ``engine.scene`` at :meth:`start`.
    command_s : float, optional
        How long one command moves the world: the runtime's discrete ``step_s`` (a discrete
        BCI command holds its action that long); None when commands last as long as the
        intent (direct mode, keyboard, no decoder). It sets how far one command turns, and so
        the planner's turn tolerances.
    **planner : dict
        Passed to :class:`RoutePlanner` (``lookahead_m``, ``arrive_m``, ``turn_start_deg``,
        ``turn_stop_deg``, ``replan_m``). By default ``turn_stop_deg`` is 0.6 of one command's
        turn (at least 4 degrees) and ``turn_start_deg`` at least that, so that one command
        never turns past the opposite tolerance.
    """

    name = "navigation"

    def __init__(self, landmarks: Sequence[str] | None = None,
                 mapping: ActionMapping | Mapping[str, str] | None = None,
                 n_landmarks: int | None = None, time_limit_s: float = 600.0,
                 margin_m: float = DEFAULT_MARGIN, grace_s: float = 1.0,
                 clearance_m: float = 1.2, scene: SandboxScene | None = None,
                 command_s: float | None = None, **planner) -> None:
        self.mapping = as_mapping(mapping)
        if not time_limit_s > 0:
            raise TaskError(f"time_limit_s must be positive, got {time_limit_s}.")
        if grace_s < 0:
            raise TaskError(f"grace_s must be >= 0 s, got {grace_s}.")
        self.course = None if landmarks is None else tuple(str(n) for n in landmarks)
        if self.course is not None and not self.course:
            raise TaskError("The course is empty; name at least one landmark, e.g. 'fountain'.")
        self.n_landmarks = n_landmarks
        self.time_limit_s = float(time_limit_s)
        self.margin_m, self.grace_s, self.clearance_m = float(margin_m), float(grace_s), float(
            clearance_m)
        if command_s is not None and not command_s > 0:
            raise TaskError(f"command_s must be a positive number of seconds, got {command_s}.")
        self.command_s = command_s
        self.scene = scene
        self._planner_kw = dict(planner)
        RoutePlanner(self.mapping, **self._planner_kw)  # fail now for an unusable mapping
        self.planner: RoutePlanner | None = None
        self.t0: float | None = None
        self._now = 0.0
        self.legs: list[Leg] = []
        self._xz = (0.0, 0.0)
        self._yaw = 0.0
        self._intents: list[tuple[float, Action]] = []
        self.n_commands = self.n_wrong = self.n_collisions = self.n_collided_frames = 0
        self.n_wrong_now = 0
        self.walked_m = 0.0
        self._timed_out = False
        self._events: list[dict] = []
        self._last_replan = -np.inf

    # ------------------------------------------------------------------ set-up

    def start(self, engine: WorldEngine, t: float) -> None:
        """Plan the course from the engine's current pose (a reset sandbox world)."""
        scene = self.scene if self.scene is not None else getattr(engine, "scene", None)
        if not isinstance(scene, SandboxScene):
            raise TaskError("The navigation task needs the sandbox city's map: run it in the "
                            "sandbox world (--world sandbox) or pass scene=.")
        self.scene = scene
        x, z, yaw = _pose_xz_yaw(engine.pose)
        self._xz, self._yaw = (x, z), yaw
        try:
            course = self.course if self.course is not None else default_landmarks(
                scene, (x, z), self.n_landmarks, self.margin_m)
            for name in course:
                landmark_position(scene, name)  # one sentence for an unknown name
        except NavigationError as err:
            raise TaskError(str(err)) from None
        self.course = tuple(course)
        kw = dict(self._planner_kw)
        step = getattr(engine, "motion", None)
        per_frame = step.degrees_per_frame if step is not None else 2.0  # MotionStep default
        frames = getattr(engine, "frames_per_step", 1)
        if self.command_s is not None:
            frames = max(frames, self.command_s * getattr(engine, "frame_rate", 16.0))
        self.turn_per_command_deg = per_frame * frames
        kw.setdefault("turn_stop_deg", max(4.0, 0.6 * self.turn_per_command_deg))
        kw["turn_start_deg"] = max(kw.get("turn_start_deg", 15.0), kw["turn_stop_deg"])
        self.planner = RoutePlanner(self.mapping, **kw)
        self.t0 = self._now = float(t)
        self.legs, self._intents, self._events = [], [], []
        self.n_commands = self.n_wrong = self.n_collisions = self.n_collided_frames = 0
        self.n_wrong_now = 0
        self.walked_m, self._timed_out = 0.0, False
        self._start_leg(0, float(t))

    def _plan(self, name: str) -> Path:
        try:
            return path_to_landmark(self.scene, self._xz, name, self.margin_m, self.clearance_m)
        except NavigationError as err:
            raise TaskError(str(err)) from None

    def _start_leg(self, index: int, t: float) -> None:
        name = self.course[index]
        centre = landmark_position(self.scene, name)
        reach = landmark_reach(self.scene, name, self.margin_m)
        try:
            shortest = path_to_landmark(self.scene, self._xz, name, self.margin_m).truncated(
                centre, reach).length_m
        except NavigationError as err:
            raise TaskError(str(err)) from None
        self.legs.append(Leg(index, name, centre, reach, t, self._xz, shortest))
        self.planner.follow(self._plan(name))
        if np.hypot(self._xz[0] - centre[0], self._xz[1] - centre[1]) <= reach:
            self._reach(t)

    def _reach(self, t: float) -> None:
        leg = self.legs[-1]
        leg.t_reached = t
        self._events.append({"event": "landmark_reached", "index": leg.index,
                             "landmark": leg.landmark, "time_s": t - leg.t_start,
                             "walked_m": leg.walked_m, "shortest_m": leg.shortest_m})
        if leg.index + 1 < len(self.course):
            self._start_leg(leg.index + 1, t)
        else:
            self._events.append({"event": "course_completed", "time_s": t - self.t0,
                                 "walked_m": self.walked_m})

    # ------------------------------------------------------------------ OnlineTask

    @property
    def current(self) -> Leg | None:
        """The landmark being walked to (None before the start and once done)."""
        if not self.legs or self.legs[-1].t_reached is not None:
            return None
        return self.legs[-1]

    @property
    def completed(self) -> bool:
        return bool(self.legs) and len(self.legs) == len(self.course) and \
            self.legs[-1].t_reached is not None

    @property
    def done(self) -> bool:
        return self.completed or self._timed_out

    def _clock(self, t: float) -> None:
        if self.t0 is None:
            raise TaskError("The navigation task has not been started; call start(engine, t).")
        self._now = max(self._now, float(t))
        if not self.completed and not self._timed_out and \
                self._now - self.t0 >= self.time_limit_s:
            self._timed_out = True
            self._events.append({"event": "time_limit", "time_s": self._now - self.t0,
                                 "reached": sum(g.t_reached is not None for g in self.legs)})

    def intent(self, t: float) -> Action:
        """What the participant means now: turn towards the path ahead or walk on."""
        self._clock(t)
        if self.done:
            action = IDLE
        else:
            x, z = self._xz
            pl = self.planner
            need = pl.offset(x, z) > pl.replan_m
            if not need:
                goal = pl.target(x, z)
                need = not segment_clear(self.scene, (x, z), tuple(goal), _SIGHT)
            if need and self._now - self._last_replan > 0.5:
                # Pushed off the path (wrong commands, a wall): plan again from here.
                self._last_replan = self._now
                self.current.replans += 1
                pl.follow(self._plan(self.current.landmark))
            action, _ = pl.action(x, z, self._yaw)
        if not self._intents or self._intents[-1][1] != action:
            self._intents.append((float(t), action))
        return action

    def observe(self, t: float, chunk: Chunk, taken: Action | None = None,
                command: Action | None = None) -> list[dict]:
        """Walk the chunk's poses: path length, collisions, landmarks reached."""
        self._clock(t)
        if not self.done and len(chunk.poses):
            leg = self.current
            if chunk.info.get("collided", False):
                self.n_collisions += 1
                leg.collisions += 1
            frames = np.asarray(chunk.info.get("collided_frames", []), bool)
            self.n_collided_frames += int(frames.sum())
            leg.collided_frames += int(frames.sum())
            for pose in chunk.poses:
                x, z, yaw = _pose_xz_yaw(pose)
                d = float(np.hypot(x - self._xz[0], z - self._xz[1]))
                self._xz, self._yaw = (x, z), yaw
                if self.done:
                    continue  # frames after the last landmark do not count
                self.walked_m += d
                self.current.walked_m += d
                cur = self.current
                if np.hypot(x - cur.centre[0], z - cur.centre[1]) <= cur.reach_m:
                    self._reach(float(t))
        elif len(chunk.poses):
            self._xz = _pose_xz_yaw(chunk.poses[-1])[:2]
        events, self._events = self._events, []
        return events

    def describe(self, t: float) -> str:
        """What the screen tells the participant at ``t``: a headline, a newline, a detail.

        While walking: the next landmark, an arrow of its bearing from the walker's heading
        (straight line, not the path), its distance, and the commands so far; once over:
        the completion time and the path walked against the shortest (or, out of time, the
        landmarks reached). Reads the task, never advances it.
        """
        if self.t0 is None:
            return "Get ready\nthe navigation task has not started"
        limit = self.time_limit_s
        if self.done:
            s = self.summary()
            if s["completed"]:
                ratio = f" ({s['path_ratio']:.2f}×)" if s["path_ratio"] is not None else ""
                return (f"Done: course completed\n{s['completion_time_s']:.1f} s · path "
                        f"{s['walked_m']:.1f} m vs shortest {s['shortest_m']:.1f} m{ratio} · "
                        f"{s['n_commands']} commands, {s['wrong_commands']} wrong")
            return (f"Time is up\n{s['reached']} of {s['n_landmarks']} landmarks reached in "
                    f"{limit:.0f} s · path {s['walked_m']:.1f} m · {s['n_commands']} commands")
        leg = self.current
        if leg is None:
            return "Navigation\nplanning the course"
        (x, z), yaw = self._xz, self._yaw
        dx, dz = leg.centre[0] - x, leg.centre[1] - z
        bearing = float(np.degrees(_wrap(np.arctan2(dx, dz) - yaw)))  # + is to the right
        arrow = "↑↗→↘↓↙←↖"[int(round(bearing / 45.0)) % 8]
        side = ("ahead" if abs(bearing) < 10 else
                f"{abs(bearing):.0f}° to the {'right' if bearing > 0 else 'left'}")
        elapsed = min(max(float(t) - self.t0, 0.0), limit)
        n = self.n_commands
        return (f"Go to the {leg.landmark.replace('_', ' ')} {arrow}\n"
                f"{np.hypot(dx, dz):.0f} m away, {side} · landmark {leg.index + 1} of "
                f"{len(self.course)} · {n} command{'' if n == 1 else 's'} ({self.n_wrong} "
                f"wrong) · {elapsed:.0f} of {limit:.0f} s")

    def intended_between(self, t0: float, t1: float) -> set[Action]:
        """Every action the planner intended at some time in [t0, t1]."""
        out, before = set(), None
        for ts, a in self._intents:
            if ts <= t0:
                before = a
            elif ts <= t1:
                out.add(a)
        if before is not None:
            out.add(before)
        return out

    def on_command(self, t: float, command: Action, cls: str | None = None) -> None:
        """Count a command; it is wrong unless the planner intended it in the last ``grace_s``."""
        self._clock(t)
        if command.is_idle or self.current is None:
            return  # a return to rest moves nothing; commands after the end are not scored
        self.n_commands += 1
        self.current.commands += 1
        if command not in self.intended_between(float(t) - self.grace_s, float(t)):
            self.n_wrong += 1
            self.current.wrong += 1
        if command not in self.intended_between(float(t), float(t)):
            self.n_wrong_now += 1

    # ------------------------------------------------------------------ scoring

    def summary(self) -> dict:
        """Completion, times, path length against the shortest, commands, errors, collisions."""
        reached = [g for g in self.legs if g.t_reached is not None]
        shortest = float(sum(g.shortest_m for g in self.legs))
        elapsed = (self._now - self.t0) if self.t0 is not None else 0.0
        done_t = self.legs[-1].t_reached - self.t0 if self.completed else None
        return {
            "course": list(self.course or ()), "n_landmarks": len(self.course or ()),
            "reached": len(reached), "completed": self.completed,
            "timed_out": self._timed_out, "time_limit_s": self.time_limit_s,
            "completion_time_s": done_t, "elapsed_s": min(elapsed, self.time_limit_s),
            "walked_m": self.walked_m, "shortest_m": shortest,
            "path_ratio": self.walked_m / shortest if shortest > 0 and self.completed else None,
            "n_commands": self.n_commands, "wrong_commands": self.n_wrong,
            "wrong_rate": self.n_wrong / self.n_commands if self.n_commands else None,
            "wrong_commands_now": self.n_wrong_now,
            "commands_per_landmark": self.n_commands / len(reached) if reached else None,
            "collisions": self.n_collisions, "collided_frames": self.n_collided_frames,
            "replans": sum(g.replans for g in self.legs), "margin_m": self.margin_m,
            "grace_s": self.grace_s, "mapping": self.mapping.to_dict(),
            "actions": sorted({format_action(a) for _, a in self._intents}),
        }

    def rows(self) -> list[dict]:
        """One row per landmark of the course (unstarted ones with empty figures)."""
        out = []
        for i, name in enumerate(self.course or ()):
            g = self.legs[i] if i < len(self.legs) else None
            if g is None:
                out.append({"index": i, "landmark": name, "reached": 0})
                continue
            ok = g.t_reached is not None
            out.append({
                "index": i, "landmark": name, "reached": int(ok),
                "t_reached_s": round(g.t_reached - self.t0, 4) if ok else None,
                "leg_time_s": round(g.t_reached - g.t_start, 4) if ok else None,
                "walked_m": round(g.walked_m, 4), "shortest_m": round(g.shortest_m, 4),
                "path_ratio": round(g.walked_m / g.shortest_m, 4) if ok and g.shortest_m > 0
                else None,
                "commands": g.commands, "wrong": g.wrong, "collisions": g.collisions,
                "replans": g.replans, "reach_m": round(g.reach_m, 3),
                "start_x": round(g.start[0], 3), "start_z": round(g.start[1], 3)})
        return out
