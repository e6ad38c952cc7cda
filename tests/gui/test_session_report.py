"""The session report: a full session folder (real recording, real sandbox route) and a bare one.

The full folder is built the way the session runtime writes one (the session-folder
contract): a 30 s cued run in which a simulated participant imagines left hand, right hand and
feet, recorded with :class:`bci.recording.Recorder` (with a real 0.2 s hole in the samples),
commands logged beside the intents, a route driven through the real sandbox world, latency
traces, health events and a task summary.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bci.eventlog import EventLog
from bci.recording import Recorder
from bci.simulated import ParticipantConfig, SimulatedParticipant
from control.actions import parse_action
from control.mapping import DEFAULT_MI_MAPPING
from gui.cli import main
from gui.session_report import MISSING, write_report
from world.sandbox import SandboxWorld

T0 = 5000.0  # LSL time the run started
RUN_S = 30.0
CLASSES = ["rest", "left_hand", "right_hand", "feet"]
SCHEDULE = [(0, 4, "rest"), (4, 10, "left_hand"), (10, 13, "rest"), (13, 19, "right_hand"),
            (19, 21, "rest"), (21, 27, "feet"), (27, 30, "rest")]
# (seconds from start, decoded class): two are wrong (right hand during left, feet in rest).
COMMANDS = [(6.0, "left_hand"), (7.5, "left_hand"), (8.3, "right_hand"), (9.0, "left_hand"),
            (15.0, "right_hand"), (16.5, "right_hand"), (18.0, "right_hand"), (20.0, "feet"),
            (23.0, "feet"), (24.5, "feet"), (26.0, "feet")]
KEYBOARD = (11.5, "W")  # a keyboard override during rest
GAP = (12.6, 0.2)  # a hole in the recorded samples (s from start), inside one command's epoch
SECTIONS = ("run", "commands", "probabilities", "signals", "route", "latency", "events", "task")


def _intent_at(t: float) -> str:
    return next(cls for a, b, cls in SCHEDULE if a <= t < b)


def _record(folder, sfreq: float = 250.0) -> None:
    """30 s of the simulated participant following SCHEDULE, written by a real Recorder."""
    cfg = ParticipantConfig.easy(ch_names=("Fz", "C3", "Cz", "C4", "Pz", "O1", "O2"),
                                 sfreq=sfreq, blink_rate=0.0, muscle_rate=0.0)
    part = SimulatedParticipant(cfg, seed=3)
    start = T0 - 1.0  # the recording starts a second before the run
    with Recorder(folder / "recording", part.info, task="run") as rec:
        n_total, chunk = int((RUN_S + 1.5) * sfreq), int(0.1 * sfreq)
        for i in range(0, n_total, chunk):
            t = start + np.arange(i, i + chunk) / sfreq
            part.set_intent(_intent_at(min(max(t[0] - T0, 0.0), RUN_S - 1e-6)))
            data = part.generate(chunk)
            keep = ~((t - T0 >= GAP[0]) & (t - T0 < GAP[0] + GAP[1]))
            rec.push(data[:, keep], t[keep])


@functools.cache
def _drive(seed: int = 0) -> pd.DataFrame:
    """Drive the real sandbox world with the intended actions (16 frames per second)."""
    world = SandboxWorld(seed=seed, height=16, width=16)
    world.reset()
    rows = []
    for frame in range(int(RUN_S * world.frame_rate)):
        t = frame / world.frame_rate
        action = parse_action(DEFAULT_MI_MAPPING[_intent_at(t)])
        if 27 <= t:  # step sideways at the end, into the wall beside the street
            action = parse_action("D")
        chunk = world.step(action)
        pose = chunk.poses[-1]
        yaw = np.degrees(world.state.yaw)
        rows.append({"frame": frame, "t": T0 + t, "world_time": chunk.timestamps[-1],
                     "x": pose[0, 3], "y": pose[1, 3], "z": pose[2, 3], "yaw_deg": yaw,
                     "pitch_deg": 0.0, "action": str(action),
                     "collided": int(chunk.info["collided"])})
    return pd.DataFrame(rows)


def _write_tsv(path, rows: list[dict]) -> None:
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False, na_rep="")


def build_session(folder, recording: bool = True) -> None:
    """A session folder as the runtime writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    mapping = dict(DEFAULT_MI_MAPPING)
    summary = {"world": "sandbox", "seed": 0, "frames": int(RUN_S * 16), "wall_seconds": RUN_S,
               "generation_fps": 410.0, "collisions": 0, "resolution": [16, 16],
               "classes": CLASSES, "mapping": mapping, "decoder": "bundle.joblib",
               "source": "simulated", "sfreq": 250.0, "interrupted": False}
    log = EventLog(folder / "session.jsonl")
    log.log("run_started", t=T0, world="sandbox", seed=0, frame_rate=16.0, resolution=[16, 16],
            source="simulated", classes=CLASSES, mapping=mapping, decoder="bundle.joblib",
            task="cued", policy={"threshold": 0.6, "dwell": 2})
    events = []  # (t, kind, fields), logged in time order below
    for a, _, cls in SCHEDULE:
        events.append((a, "intent", {"action": mapping[cls], "cls": cls, "origin": "task"}))
        if cls != "rest":
            events.append((a, "task_event", {"task": "cued", "event": "cue_start", "cls": cls}))
    for i, (t, cls) in enumerate(COMMANDS):
        events.append((t, "command", {"id": i, "action": mapping[cls], "cls": cls,
                                      "origin": "decoder", "intended": mapping[_intent_at(t)],
                                      "t_window": T0 + t - 0.05}))
        events.append((t, "action", {"action": mapping[cls], "origin": "decoder"}))
    events.append((KEYBOARD[0], "command", {"id": len(COMMANDS), "action": KEYBOARD[1],
                                            "cls": None, "origin": "keyboard", "intended": "·",
                                            "t_window": None}))
    events += [(1.0, "signal_quality", {"summary": "all good", "channels": {}}),
               (2.0, "artifact_index", {"z": 0.4, "artifact": False}),
               (3.0, "artifact_index", {"z": 4.2, "artifact": True}),
               (GAP[0], "gap", {"start": T0 + GAP[0], "duration_s": GAP[1], "n_missing": 50}),
               (GAP[0] + 0.1, "source_lost", {"state": "reconnecting", "error": "timeout"}),
               (GAP[0] + 0.6, "source_back", {"outage_s": 0.5})]
    for t, kind, fields in sorted(events, key=lambda e: e[0]):
        log.log(kind, t=T0 + t, **fields)

    route = _drive().copy()
    route.to_csv(folder / "route.tsv", sep="\t", index=False)
    summary["collisions"] = int(route["collided"].sum())

    rng = np.random.default_rng(0)
    fired = {round(t, 1): cls for t, cls in COMMANDS}
    rows = []
    for k, t in enumerate(np.arange(0.5, RUN_S, 0.1)):
        t = round(float(t), 1)
        p = rng.dirichlet(np.ones(4)) * 0.4
        p[CLASSES.index(_intent_at(t))] += 0.6
        rows.append({"t": T0 + t - 0.05, "tick": k,
                     **{f"p_{c}": round(float(v), 4) for c, v in zip(CLASSES, p, strict=True)},
                     "state": "refractory" if t in fired else "idle",
                     "candidate": fired.get(t, ""), "command": mapping[fired[t]] if t in fired
                     else "", "intended": mapping[_intent_at(t)]})
    _write_tsv(folder / "decisions.tsv", rows)

    lat = []
    for i, (t, cls) in enumerate(COMMANDS):
        s0 = T0 + t - 0.05
        steps = np.cumsum([0.0, 0.021, 0.001, 0.002, 0.004 + 0.01 * rng.random(), 0.016])
        lat.append({"id": i, "origin": "decoder", "action": mapping[cls],
                    **dict(zip(("sample_acquired", "window_decoded", "command_issued",
                                "world_request", "frame_generated", "frame_shown"),
                               s0 + steps, strict=True))})
    for j, t in enumerate((2.0, 11.0, 28.0)):
        c = T0 + t
        lat.append({"id": len(COMMANDS) + j, "origin": "keyboard", "action": "W",
                    "sample_acquired": None, "window_decoded": None, "command_issued": c,
                    "world_request": c + 0.001, "frame_generated": c + 0.006,
                    "frame_shown": c + 0.02})
    _write_tsv(folder / "latency.tsv", lat)
    (folder / "latency.json").write_text(json.dumps({"world": "sandbox", "stages": [
        {"stage": "sample_acquired→window_decoded", "n": 11, "median_ms": 21.0, "p95_ms": 21.0,
         "p99_ms": 21.0},
        {"stage": "end_to_end", "n": 14, "median_ms": 45.0, "p95_ms": 52.0, "p99_ms": 53.0}]}))
    _write_tsv(folder / "ticks.tsv", [{"tick": k, "now": T0 + 0.1 * k, "n_written": 25 * k}
                                      for k in range(300)])
    (folder / "task.json").write_text(json.dumps(
        {"task": "cued", "trials": 3, "hits": 3, "false_commands": 2}))
    _write_tsv(folder / "task.tsv", [{"cue": i, "cls": cls, "onset_s": a, "hit": 1}
                                     for i, (a, _, cls) in enumerate(
                                         [s for s in SCHEDULE if s[2] != "rest"])])
    if recording:
        _record(folder)
    log.log("run_finished", t=T0 + RUN_S, summary=summary)
    log.close()
    (folder / "summary.json").write_text(json.dumps(summary))


def _sections(page: str) -> dict[str, str]:
    parts = re.split(r"<section id='([a-z]+)'>", page)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _pngs(text: str) -> list[Image.Image]:
    out = []
    for b64 in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text):
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        img.load()
        out.append(img)
    return out


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("session") / "run-01"
    build_session(folder)
    return write_report(folder)


def test_every_section_has_data_and_real_png_figures(full_report):
    page = full_report.read_text(encoding="utf-8")
    sections = _sections(page)
    assert set(SECTIONS) <= set(sections)
    for key in SECTIONS:
        assert MISSING not in sections[key], key
        assert "could not be drawn" not in sections[key], key
    figures = {"commands": 1, "probabilities": 1, "signals": 2, "route": 1, "latency": 1}
    for key, n in figures.items():
        images = _pngs(sections[key])
        assert len(images) == n, key
        assert all(im.format == "PNG" and im.size[0] > 300 for im in images), key
    report = full_report.parent / "report"
    for name in ("timeline", "probabilities", "signals_bandpower", "signals_traces", "route",
                 "latency"):
        assert Image.open(report / f"{name}.png").format == "PNG"
    header = sections["run"]
    for fact in ("sandbox", "simulated", "bundle.joblib", "left_hand → ←", "480"):
        assert fact in header
    index = json.loads((report / "report.json").read_text())
    assert {s["status"] for s in index["sections"].values()} == {"ok"}
    assert all((report / name).exists() for name in index["files"])


def test_commands_are_compared_with_intents(full_report):
    report = full_report.parent / "report"
    commands = pd.read_csv(report / "commands.tsv", sep="\t")
    assert len(commands) == len(COMMANDS) + 1
    decoded = commands[commands["origin"] == "decoder"]
    assert decoded["correct"].sum() == len(COMMANDS) - 2
    wrong = decoded[decoded["correct"] == 0]
    assert list(wrong["class"]) == ["right_hand", "feet"]
    assert list(wrong["intended_class"]) == ["left_hand", "rest"]
    (key,) = commands[commands["origin"] == "keyboard"].itertuples()
    assert key.t_s == KEYBOARD[0] and key.action == "W" and key.intended_class == "rest"
    agreement = json.loads((report / "agreement.json").read_text())
    assert agreement["agreement"] == pytest.approx(9 / 11, abs=1e-3)  # decoded ones only
    assert agreement["scored_origin"] == "decoder"
    assert agreement["chance_agreement"] < agreement["agreement"]
    # The decisions put 0.6 extra on the intended class: the window-level agreement is high
    # and far above always naming the most frequent intent.
    windows = agreement["windows"]
    assert windows["agreement"] > 0.9 > windows["majority_baseline"]
    page = full_report.read_text(encoding="utf-8")
    assert "threshold 0.6" in page  # read from run_started["policy"]


def test_signals_show_the_contralateral_desynchronisation(full_report):
    """Left-hand imagery desynchronises C4, right-hand imagery C3 (the simulated ERD)."""
    index = json.loads((full_report.parent / "report" / "report.json").read_text())
    sig = index["sections"]["signals"]["data"]
    assert sig["channels"] == ["C3", "Cz", "C4"]
    # The decoded commands only; the epoch of the one at 15 s overlaps the gap and is dropped.
    assert sig["n_commands"] == len(COMMANDS) and sig["n_kept"] == len(COMMANDS) - 1
    assert sig["n_epochs"] == {"left_hand": 3, "right_hand": 3, "feet": 4}
    pre = sig["mean_change_pct_before_command"]
    assert pre["left_hand"]["C4"] < pre["right_hand"]["C4"] - 10
    assert pre["right_hand"]["C3"] < pre["left_hand"]["C3"] - 10
    assert pre["feet"]["Cz"] < min(pre["left_hand"]["Cz"], pre["right_hand"]["Cz"]) - 10
    curves = pd.read_csv(full_report.parent / "report" / "signals_bandpower.tsv", sep="\t")
    assert set(curves["class"]) == {"left_hand", "right_hand", "feet"}
    assert curves["time_s"].min() == pytest.approx(-2.0) and curves["time_s"].max() == (
        pytest.approx(1.0))


def test_route_latency_events_and_task(full_report):
    report = full_report.parent / "report"
    route = json.loads((report / "route_summary.json").read_text())
    assert route["frames"] == 480 and route["path_length_m"] > 3
    assert route["share_inside_walls"] == 0.0  # the map drawn is the one driven
    assert route["collisions"] >= 1 and route["collided_frames"] > route["collisions"]
    landmarks = pd.read_csv(report / "route_landmarks.tsv", sep="\t")
    assert len(landmarks) == 4 and (landmarks["closest_m"] > 0).all()
    own = pd.read_csv(report / "latency_from_tsv.tsv", sep="\t").set_index("stage")
    assert own.loc["first→last (decoder)", "n"] == len(COMMANDS)
    assert own.loc["first→last (keyboard)", "median_ms"] == pytest.approx(20.0, abs=0.01)
    assert own.loc["sample_acquired→window_decoded", "median_ms"] == pytest.approx(21.0,
                                                                                   abs=0.01)
    sections = _sections(full_report.read_text(encoding="utf-8"))
    assert "end_to_end" in sections["latency"]
    events = pd.read_csv(report / "events.tsv", sep="\t")
    assert list(events["kind"]) == ["signal_quality", "artifact_index", "gap", "source_lost",
                                    "source_back"]  # the unflagged artifact check is left out
    assert events.loc[events["kind"] == "gap", "t_s"].item() == pytest.approx(GAP[0])
    assert "cued" in sections["task"] and "false_commands" in sections["task"]
    assert "<td>right_hand</td>" in sections["task"]  # task.tsv's own text column kept


def test_bare_session_says_what_is_missing(tmp_path):
    folder = tmp_path / "bare"
    folder.mkdir()
    with EventLog(folder / "session.jsonl") as log:
        log.log("run_started", t=T0, world="mvdt", seed=2, source="none", classes=None,
                mapping=None, decoder=None, task=None)
        log.log("run_finished", t=T0 + 5, summary={"frames": 80})
    (folder / "summary.json").write_text(json.dumps({"world": "mvdt", "frames": 80,
                                                     "wall_seconds": 5.0}))
    path = write_report(folder)
    sections = _sections(path.read_text(encoding="utf-8"))
    assert "mvdt" in sections["run"] and MISSING not in sections["run"]
    for key in SECTIONS[1:]:
        assert MISSING in sections[key], key
    assert not _pngs(path.read_text(encoding="utf-8"))
    index = json.loads((folder / "report" / "report.json").read_text())
    assert {k: v["status"] for k, v in index["sections"].items() if k != "run"} == {
        k: "missing" for k in SECTIONS[1:]}


def test_a_world_without_a_map_gets_its_trajectory_alone(tmp_path):
    folder = tmp_path / "mvdt"
    folder.mkdir()
    with EventLog(folder / "session.jsonl") as log:
        log.log("run_started", t=T0, world="mvdt", seed=0, source=None, classes=[],
                mapping={}, decoder=None, task=None)
        log.log("intent", t=T0, action="W →", cls=None, origin="route")
        log.log("command", t=T0, id=1, action="W →", cls=None, origin="route",
                intended="W →", t_window=None)
    a = np.linspace(0, np.pi, 40)
    _write_tsv(folder / "route.tsv", [{"frame": i, "t": T0 + i / 16, "x": 5 * np.sin(v),
                                       "y": -1.6, "z": 5 * np.cos(v), "collided": 0}
                                      for i, v in enumerate(a)])
    sections = _sections(write_report(folder).read_text(encoding="utf-8"))
    assert len(_pngs(sections["route"])) == 1
    assert "landmark" not in sections["route"] and "only the trajectory" in sections["route"]
    route = json.loads((folder / "report" / "route_summary.json").read_text())
    assert route["path_length_m"] == pytest.approx(5 * np.pi, rel=0.01)  # half a circle
    assert "follow the intent by construction" in sections["commands"]


def test_broken_files_cost_only_their_own_section(tmp_path):
    folder = tmp_path / "broken"
    build_session(folder, recording=False)
    write_report(folder)
    assert (folder / "report" / "route.png").exists()
    (folder / "latency.json").write_text('{"stages": [')  # killed mid-write
    with open(folder / "decisions.tsv", "a", encoding="utf-8") as f:
        f.write("5031.2\t301\t0.1")  # a half-written last row
    route = pd.read_csv(folder / "route.tsv", sep="\t").drop(columns=["z"])
    route.to_csv(folder / "route.tsv", sep="\t", index=False)
    path = write_report(folder)
    sections = _sections(path.read_text(encoding="utf-8"))
    assert "latency.json: could not be read" in sections["run"]
    assert len(_pngs(sections["probabilities"])) == 1  # the half row is skipped
    assert MISSING in sections["route"] and MISSING in sections["signals"]
    assert len(_pngs(sections["latency"])) == 1  # latency.tsv still gives the distributions
    assert not (folder / "report" / "route.png").exists()  # the earlier one is not left over


def test_cli_writes_the_report_and_refuses_a_folder_that_is_no_session(tmp_path, capsys):
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"world": "sandbox", "frames": 3}))
    assert main(["report", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == str(folder / "report.html")
    other = tmp_path / "photos"
    other.mkdir()
    assert main(["report", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "is not a Yume session folder" in err and "yume run" in err
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err
