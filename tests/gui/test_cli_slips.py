"""`yume` command-line slips: help defaults, run --checkpoint/--start-image, folders given as
files, the folder of a killed recording, and a recording's progress bar."""

from __future__ import annotations

import argparse
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from bci.recording import read_session
from bci.session_files import RAW_DIR, RAW_TIMES
from gui.cli import build_parser, iter_parsers, main

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "world" / "checkpoints" / "mvdt-sandbox"
STATED = re.compile(r"\(default: ([^()]*)\)")


def _real_default(parser: argparse.ArgumentParser, action: argparse.Action):
    """What parse_args puts in the namespace: the first action of a destination sets it."""
    return next(a for a in parser._actions if a.dest == action.dest).default


def _matches(stated: str, action: argparse.Action, real) -> bool:
    if stated == str(real):
        return True
    if callable(action.type):
        try:
            return action.type(stated) == real
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            return False
    return False


def test_every_help_states_each_default_once_and_truly():
    parsers = list(iter_parsers(build_parser()))
    names = {name for name, _ in parsers}
    assert {"yume run", "yume record", "yume train", "yume calibrate", "yume lsl",
            "yume world eval", "yume world data"} <= names
    checked = 0
    for name, parser in parsers:
        text = parser.format_help()
        assert "(default: None)" not in text, name
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.help or action.help == argparse.SUPPRESS:
                continue
            shown = formatter._expand_help(action)
            where = f"{name} {'/'.join(action.option_strings) or action.dest}: {shown!r}"
            assert len(re.findall(r"\bdefault\b", shown, re.IGNORECASE)) <= 1, where
            real = _real_default(parser, action)
            stated = STATED.findall(shown)
            if action.nargs == 0:  # a flag: its on/off default is not stated
                assert not stated, where
                continue
            if real is None:
                # Decided later; the help may describe how ("default: every cue label").
                assert stated != ["None"], where
                continue
            if real in ("", [], ()) or real is False:
                continue
            assert len(stated) == 1, where  # a real default is always told
            assert _matches(stated[0], action, real), where
            checked += 1
    assert checked > 40


def test_run_window_flag_no_longer_claims_a_true_default():
    (run,) = [p for n, p in iter_parsers(build_parser()) if n == "yume run"]
    text = run.format_help()
    assert "(default: True)" not in text and "(default: (256, 256))" not in text
    assert "(default: 256x256)" in text and "--checkpoint DIR" in text and "--start-image" in text


def _picture(path: Path) -> Path:
    img = np.zeros((30, 40, 3), np.uint8)
    img[..., 0] = 220  # a red picture tints the sandbox's city
    img[:10] = (20, 200, 40)
    Image.fromarray(img).save(path)
    return path


def test_sandbox_run_starts_from_a_start_image(tmp_path, capsys):
    args = ["run", "--headless", "--fast", "--world", "sandbox", "--resolution", "32x32",
            "--source", "none", "--seed", "3"]
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    png = _picture(tmp_path / "start.png")
    assert main([*args, "--start-image", str(png), "--out", str(tmp_path / "image")]) == 0
    (plain,) = (tmp_path / "plain").iterdir()
    (tinted,) = (tmp_path / "image").iterdir()
    a = iio.imread(plain / "route.gif", index=None)
    b = iio.imread(tinted / "route.gif", index=None)
    assert a.shape == b.shape and a.shape[1:3] == (32, 32)
    # Same city (--seed 3), same route, other colours: the picture tinted it.
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0


def test_mvdt_world_loads_a_lab_checkpoint_and_starts_from_the_image(tmp_path):
    from gui.app import RunOptions, make_engine
    from world.images import fit_image

    lab = tmp_path / "lab-model"
    shutil.copytree(CHECKPOINT, lab, ignore=shutil.ignore_patterns("*.png", "training_log*"))
    png = _picture(tmp_path / "start.png")
    engine, first = make_engine(RunOptions(world="mvdt", resolution=(64, 64), checkpoint=lab,
                                           start_image=png))
    try:
        assert engine.checkpoint_dir == lab  # the lab's copy, not the shipped folder
        assert first.info["source"] == "image"
        np.testing.assert_array_equal(first.frames[0], fit_image(png, 64, 64))
        chunk = engine.step("W")
        assert chunk.frames.shape[1:] == (64, 64, 3) and chunk.frames.std() > 1
    finally:
        engine.close()


@pytest.mark.parametrize(("extra", "words"), [
    (["--world", "mvdt", "--checkpoint", "{tmp}/nothing"], "No checkpoint folder at"),
    (["--world", "mvdt", "--checkpoint", f"{CHECKPOINT}/model.safetensors"],
     "is a file; pass the checkpoint folder"),
    (["--world", "sandbox", "--checkpoint", str(CHECKPOINT)], "sandbox world loads no checkpoint"),
    (["--start-image", "{tmp}/missing.png"], "there is no such file"),
    (["--start-image", "{tmp}/notes.png"], "Cannot read an image"),
    (["--start-image", "{tmp}/dot.png"], "too small"),
])
def test_bad_checkpoint_or_start_image_is_one_sentence(tmp_path, capsys, extra, words):
    (tmp_path / "notes.png").write_text("not a picture")
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    code = main(["run", "--headless", "--fast", "--resolution", "32x32", "--source", "none",
                 "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and words in err, err
    assert err.startswith("yume run: error: ") and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_file_source_given_a_folder_says_so(tmp_path, physionet_dir, capsys):
    assert main(["record", "--source", f"file:{physionet_dir}", "--duration", "1",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and "does not exist" not in err
    assert f"file:{physionet_dir / 'S001R03.edf'}" in err  # what to pass instead
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", "--headless", "--source", f"file:{empty}", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder with no recording in it" in err and ".edf" in err and ".xdf" in err


def test_file_source_given_a_session_folder_names_its_bids_file(tmp_path, capsys):
    assert main(["record", "--source", "simulated", "--duration", "0.5", "--no-progress",
                 "--out", str(tmp_path)]) == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["record", "--source", f"file:{folder}", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    (vhdr,) = folder.rglob("*_eeg.vhdr")
    assert "is a Yume session folder" in err and f"file:{vhdr}" in err


def test_record_prints_its_folder_first_so_a_kill_9_can_be_recovered(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gui.cli", "record", "--source", "simulated", "--duration", "60",
         "--out", str(tmp_path), "--no-progress"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    folder = None
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        while folder is None:
            assert time.monotonic() < deadline, "yume record never printed its folder"
            assert proc.poll() is None, "yume record ended early"
            if sel.select(timeout=0.5):
                m = re.match(r"recording to (\S+) ", proc.stdout.readline())
                if m:
                    folder = Path(m.group(1))
        assert folder.parent == tmp_path
        times = folder / RAW_DIR / RAW_TIMES
        while not (times.is_file() and times.stat().st_size >= 8 * 250):  # a second recorded
            assert time.monotonic() < deadline, "yume record never wrote a second of samples"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)  # no handler, no flush, no BIDS copy
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (folder / "bids").exists()
    assert main(["record", "--recover", str(folder)]) == 0
    raw, _ = read_session(folder)
    assert raw.n_times >= 250


def test_a_recording_ends_without_a_tqdm_warning(tmp_path, capsys):
    from tqdm import TqdmWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # 2 s: twenty 0.1 s steps of the bar add up to 2.0000000000000004 > its total.
        code = main(["record", "--source", "simulated", "--duration", "2", "--out",
                     str(tmp_path)])
    assert code == 0
    out, err = capsys.readouterr()
    assert "2.0/2.0 s" in err  # the bar was shown and reached its end
    assert "TqdmWarning" not in err
    assert not [w for w in caught if issubclass(w.category, TqdmWarning)]
    assert out.splitlines()[0].startswith("recording to ") and Path(out.splitlines()[-1]).is_dir()
