"""Online tasks (gui.tasks) driven the way the session runtime drives them, with a real
sandbox world: intent -> command -> world step -> observe."""

import json

import numpy as np
import pytest

from calibration.metrics import wolpaw_bits
from control.actions import IDLE, parse_action
from gui.tasks import CuedTask, NavigationTask, TaskError, make_task
from world.sandbox import SandboxWorld

RESERVED = {"t", "kind", "task"}  # the runtime adds these to every task_event


def drive(task, world, hold=None, wrong_every=0, limit_s=400.0):
    """The runtime's loop without a decoder: the intent becomes the command.

    ``hold=None``: a command whenever the intent changes, held until the next (the runtime
    without a decoder); ``hold=n``: each command lasts n steps, then the next intent is sent (a
    discrete BCI command); ``wrong_every``: every n-th command is replaced by a mapped action
    other than the intent, and executed. Returns the events, the number of wrong commands sent
    and the number of commands sent.
    """
    world.reset()
    dt = world.frames_per_step / world.frame_rate
    t, events, n_wrong, n_sent, left = 1000.0, [], 0, 0, 0
    held = last_intent = IDLE
    moves = [a for a in task.mapping.actions.values() if not a.is_idle]
    task.start(world, t)
    while not task.done and t < 1000.0 + limit_s:
        intent = task.intent(t)
        due = intent != last_intent if hold is None else left == 0
        if due:
            last_intent, held, left = intent, intent, hold or 0
            if not intent.is_idle:
                n_sent += 1
                if wrong_every and n_sent % wrong_every == 0:
                    others = [a for a in moves if a != intent]
                    held = others[n_wrong % len(others)]  # walk or turn, in turn
                    n_wrong += 1
                task.on_command(t, held, None)
        chunk = world.step(held)
        left = max(left - 1, 0)
        t += dt
        events += task.observe(t, chunk, held, None)
    return events, n_wrong, n_sent


@pytest.fixture
def world():
    return SandboxWorld(seed=0, height=8, width=8)


def test_navigation_intent_executed_perfectly_completes_the_course(world):
    task = NavigationTask(n_landmarks=2, grace_s=0.0)
    events, _, sent = drive(task, world)
    s = task.summary()
    assert s["completed"] and not s["timed_out"] and s["reached"] == 2
    # Path walked against the shortest path: never shorter, and not much longer.
    assert s["shortest_m"] > 60.0
    assert s["shortest_m"] <= s["walked_m"] <= 1.15 * s["shortest_m"]
    assert s["collisions"] == 0 and s["wrong_commands"] == 0
    assert s["n_commands"] == sent > 4
    # Only the mapping's actions are intended (default: left_hand ←, right_hand →, feet W).
    assert set(s["actions"]) <= {"←", "→", "W", "·"}
    rows = task.rows()
    assert [r["landmark"] for r in rows] == s["course"] and all(r["reached"] for r in rows)
    assert sum(r["walked_m"] for r in rows) == pytest.approx(s["walked_m"], abs=1e-3)
    assert all(r["path_ratio"] >= 1.0 for r in rows)
    # Walking at 1.28 m/s the course cannot take less than its length over that speed.
    assert s["completion_time_s"] >= s["shortest_m"] / (0.08 * 16)
    kinds = [e["event"] for e in events]
    assert kinds == ["landmark_reached", "landmark_reached", "course_completed"]
    assert not any(RESERVED & e.keys() for e in events)
    json.dumps(s), json.dumps(rows)  # task.json / task.tsv material
    assert task.intent(5000.0) == IDLE  # done: the participant rests


def test_wrong_commands_are_scored_as_wrong_and_the_course_still_completes(world):
    # Discrete BCI commands: each holds its action 8 frames (0.5 s); every 4th is wrong.
    task = NavigationTask(n_landmarks=1, grace_s=0.0, command_s=0.5)
    _, n_wrong, sent = drive(task, world, hold=8, wrong_every=4)
    s = task.summary()
    assert s["completed"]
    assert n_wrong >= 5
    assert s["wrong_commands"] == s["wrong_commands_now"] == n_wrong and s["n_commands"] == sent
    assert task.rows()[0]["wrong"] == n_wrong
    assert s["walked_m"] >= s["shortest_m"]


def test_navigation_time_limit_ends_the_run_unfinished(world):
    task = NavigationTask(n_landmarks=2, time_limit_s=8.0)  # turning first takes ~3 s
    events, _, _ = drive(task, world)
    s = task.summary()
    assert task.done and s["timed_out"] and not s["completed"]
    assert s["reached"] == 0 and s["path_ratio"] is None and 0 < s["walked_m"] < 8 * 1.28
    assert events[-1]["event"] == "time_limit"
    assert task.rows()[1] == {"index": 1, "landmark": s["course"][1], "reached": 0}


def test_navigation_refuses_a_mapping_that_cannot_steer():
    with pytest.raises(TaskError, match="walk forward"):
        NavigationTask(mapping={"rest": "·", "left_hand": "←", "right_hand": "→"})
    with pytest.raises(TaskError, match="turn"):
        NavigationTask(mapping={"rest": "·", "feet": "W"})


def test_navigation_with_a_combined_mapping_only_intends_what_it_offers(world):
    # Only turning right and walking are offered: the planner turns right, the
    # long way round when it has to, and still gets there.
    task = make_task("navigation", landmarks=["red tower"],
                     mapping={"rest": "·", "right_hand": "→", "feet": "W"})
    drive(task, world)
    s = task.summary()
    assert s["completed"] and set(s["actions"]) <= {"→", "W"}


# ---------------------------------------------------------------------- cued


def run_schedule(task, commands, t0=500.0, dt=0.1):
    """Observe the whole schedule every ``dt`` s; send ``commands`` = [(rel_t, action, cls)]."""
    task.start(None, t0)
    todo = sorted(commands, key=lambda c: c[0])
    events, intents = [], []
    t = t0
    while not task.done:
        t = round(t + dt, 9)
        while todo and t0 + todo[0][0] <= t:
            rel, action, cls = todo.pop(0)
            task.on_command(t0 + rel, parse_action(action), cls)
        intents.append((t - t0, task.intent(t)))
        events += task.observe(t, None, IDLE, None)
    return events, intents


def test_cued_schedule_and_intent():
    task = CuedTask(n_per_class=2, cue_s=4.0, rest_s=4.0, seed=3)
    cues = task.cues
    assert sorted(c.cls for c in cues) == ["feet", "feet", "left_hand", "left_hand",
                                           "right_hand", "right_hand"]
    assert task.time_limit_s == pytest.approx(4.0 + 6 * 8.0)
    events, intents = run_schedule(task, [])
    for rel, action in intents:
        block = next((b for b in task.blocks if b.onset <= rel < b.end), None)
        expected = task.mapping.action(block.cls) if block and block.kind == "cue" else IDLE
        assert action == expected
    assert [e["event"] for e in events] == ["cue_start", "cue_end"] * 6
    assert [e["cls"] for e in events[::2]] == [c.cls for c in cues]
    assert not any(RESERVED & e.keys() for e in events)
    assert events[0]["t_scheduled"] == pytest.approx(500.0 + cues[0].onset)


def test_cued_scoring_of_a_known_command_list():
    task = CuedTask(n_per_class=2, cue_s=4.0, rest_s=4.0, seed=3, grace_s=1.0)
    c = task.cues
    act = {k: str(task.mapping.action(k)) for k in task.classes}
    other = {k: next(o for o in task.classes if o != k) for k in task.classes}
    commands = [
        (2.0, act["feet"], "feet"),  # lead rest, after the grace: a false activation
        (c[0].onset + 1.5, act[c[0].cls], c[0].cls),  # hit, 1.5 s
        (c[0].end + 2.0, act[c[0].cls], c[0].cls),  # rest after cue 0: false activation
        (c[1].onset + 0.5, act[other[c[1].cls]], other[c[1].cls]),  # wrong first ...
        (c[1].onset + 1.0, act[c[1].cls], c[1].cls),  # ... a later right one does not count
        # cue 2: nothing -> miss
        (c[3].end + 0.5, act[c[3].cls], c[3].cls),  # within the grace: hit, 4.5 s
        (c[4].onset + 2.0, act[c[4].cls], None),  # a keyboard command of the cued action: hit
        (c[4].end + 0.2, "·", None),  # a return to rest moves nothing: not scored
        # cue 5: nothing -> miss
    ]
    run_schedule(task, commands)
    s = task.summary()
    assert (s["n_cues"], s["hits"], s["wrong"], s["misses"]) == (6, 3, 1, 2)
    assert s["accuracy"] == pytest.approx(0.5) and s["accuracy_answered"] == pytest.approx(0.75)
    assert s["false_activations"] == 2 and s["idle_commands"] == 1
    rest_min = 7 * (4.0 - 1.0) / 60  # lead rest + 6 rests, each scored from 1 s in
    assert s["rest_minutes"] == pytest.approx(rest_min)
    assert s["fa_per_min"] == pytest.approx(2 / rest_min)
    assert s["median_time_to_command_s"] == pytest.approx(2.0)  # of 1.5, 2.0, 4.5
    assert s["n_commands"] == 7
    minutes = task.time_limit_s / 60
    assert s["itr_bits_per_min"] == pytest.approx(wolpaw_bits(3, 3 / 7) * 7 / minutes)
    rows = task.rows()
    assert [r["outcome"] for r in rows] == ["hit", "wrong", "miss", "hit", "hit", "miss"]
    assert rows[1]["first"] == other[c[1].cls]
    assert rows[3]["time_to_command_s"] == pytest.approx(4.5)
    json.dumps(s), json.dumps(rows)


def test_cued_summary_before_any_cue_finished():
    task = CuedTask(n_per_class=1)
    task.start(None, 10.0)
    task.observe(12.0, None, IDLE, None)
    s = task.summary()
    assert s["n_cues"] == 0 and not s["completed"]
    assert all(r["outcome"] == "" for r in task.rows())


def test_cued_refuses_idle_classes():
    with pytest.raises(TaskError, match="idle"):
        CuedTask(classes=["rest", "feet"])
    with pytest.raises(TaskError, match="grace_s"):
        CuedTask(rest_s=0.5, grace_s=1.0)


def test_unknown_task_name():
    with pytest.raises(TaskError, match="cued, navigation"):
        make_task("maze")
    assert isinstance(make_task("cued", n_per_class=1), CuedTask)
    assert np.isfinite(make_task("cued").time_limit_s)
