"""`yume calibrate` end to end against the simulated participant, and its error messages."""

from __future__ import annotations

from bci.recording import read_session
from gui.cli import main

QUICK = "fixation=0.5,cue=0.5,trial=1.5,iti_min=0.5,iti_max=0.7"


def test_calibrate_headless_writes_a_recording(tmp_path, capsys):
    code = main(["calibrate", "--paradigm", "mi", "--classes", "left_hand,right_hand,feet",
                 "--trials", "3", "--headless", "--speed", "30", "--timing", QUICK,
                 "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    (session,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert "recorded" in out and f"yume train {session}" in out
    raw, events = read_session(session)
    counts = events["description"].value_counts()
    assert all(counts[c] == 3 for c in ("left_hand", "right_hand", "feet"))
    assert raw.info["sfreq"] == 250.0 and "C3" in raw.ch_names


def test_calibrate_offline_ssvep(tmp_path, capsys):
    code = main(["calibrate", "--paradigm", "ssvep", "--freqs", "8,12", "--trials", "2",
                 "--offline", "--headless", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr()
    (session,) = list(tmp_path.iterdir())
    _, events = read_session(session)
    assert set(events["description"]) >= {"ssvep:8", "ssvep:12"}


def test_calibrate_bad_settings_say_what_to_do(tmp_path, capsys):
    assert main(["calibrate", "--classes", "left_hand", "--headless", "--out",
                 str(tmp_path)]) == 2
    assert "at least two classes" in capsys.readouterr().err
    assert main(["calibrate", "--config", str(tmp_path / "nope.toml"), "--headless"]) == 2
    assert "No paradigm file" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_calibrate_from_an_lsl_stream(tmp_path, capsys):
    import uuid

    from bci.simulated import ParticipantConfig, ParticipantStream, SimulatedParticipant

    name = f"calib-eeg-{uuid.uuid4().hex[:8]}"
    with ParticipantStream(SimulatedParticipant(ParticipantConfig(sfreq=128.0)), name=name):
        code = main(["calibrate", "--lsl", name, "--headless", "--classes", "feet,rest",
                     "--trials", "2", "--timing",
                     "fixation=0.2,cue=0.2,trial=0.4,iti_min=0.2,iti_max=0.2",
                     "--out", str(tmp_path), "--no-markers"])
    assert code == 0, capsys.readouterr()
    (session,) = list(tmp_path.iterdir())
    raw, events = read_session(session)
    assert raw.info["sfreq"] == 128.0 and list(events["description"]).count("feet") == 2
