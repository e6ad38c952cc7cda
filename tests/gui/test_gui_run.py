"""`yume run`: the headless scripted route, the window under a real X server, and bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bci.eventlog import read_event_log
from gui.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_headless_run_writes_animation_sheet_signals_and_log(tmp_path, capsys):
    code = main(["run", "--headless", "--task", "route", "--fast", "--resolution", "64x64",
                 "--out", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert str(folder) in printed
    gif = iio.imread(folder / "route.gif", index=None)
    assert gif.shape[0] > 250 and gif.shape[1:3] == (64, 64)  # ~20 s at 16 frames/s
    assert gif.std() > 10
    sheet = Image.open(folder / "contact_sheet.png")
    assert sheet.size[0] > 500
    assert (folder / "signals.png").stat().st_size > 10_000
    records = read_event_log(folder / "session.jsonl")
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    route = pd.read_csv(folder / "route.tsv", sep="\t")
    assert len(route) == gif.shape[0]  # one row per frame, with the camera's position
    assert np.hypot(route.x.iloc[-1] - route.x[0], route.z.iloc[-1] - route.z[0]) > 5
    ticks = pd.read_csv(folder / "ticks.tsv", sep="\t")
    assert len(ticks) == gif.shape[0] and ticks["n_written"].is_monotonic_increasing
    # Every route step change is a traced command that reached the screen.
    latency = pd.read_csv(folder / "latency.tsv", sep="\t")
    assert (latency.origin == "route").all() and latency.frame_shown.notna().sum() >= 10
    assert (latency.frame_shown >= latency.command_issued).all()
    assert (folder / "recording" / "bids").is_dir()
    assert {r["action"] for r in records if r["kind"] == "action"} >= {"W", "W →", "←"}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["samples"] > 0 and summary["source_state"] == "streaming"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--resolution", "0x0"], "resolution"),
        (["run", "--resolution", "big"], "resolution"),
        (["run", "--headless", "--world", "dreamland"], "dreamland"),
        (["run", "--headless", "--source", "brainflow:99999"], "no board with id 99999"),
    ],
)
def test_bad_input_gives_one_clear_line(argv, message, tmp_path, capsys):
    try:
        code = main(argv + ["--out", str(tmp_path)])
    except SystemExit as exc:  # argparse rejects malformed options itself
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err


def test_help_explains_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "run" in out and "boards" in out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run not installed")
def test_window_opens_under_xvfb(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    env.pop("DISPLAY", None)
    yume = [sys.executable, "-m", "gui.cli"]
    proc = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", *yume, "run", "--max-seconds", "4",
         "--task", "route", "--resolution", "96x96", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    kinds = [r["kind"] for r in read_event_log(folder / "session.jsonl")]
    assert kinds[0] == "window_started" and kinds[-1] == "window_closed"


def test_lsl_command_lists_a_live_stream(capsys):
    import uuid

    from bci.lsl_outlet import MarkerOutlet

    name = f"yume-list-{uuid.uuid4().hex[:8]}"
    outlet = MarkerOutlet(name)
    try:
        code = main(["lsl", "--name", name, "--wait", "2"])
    finally:
        outlet.close()
    out = capsys.readouterr().out
    assert code == 0 and name in out and "irregular" in out
