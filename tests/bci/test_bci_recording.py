"""Recording sessions (incremental raw file -> BIDS via mne-bids), crash recovery, source
configuration files and `yume record`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mne_bids
import numpy as np
import pandas as pd
import pytest
from pylsl import local_clock

from bci.acquisition import Acquisition
from bci.config import (
    BrainFlowSpec,
    ConfigError,
    FileSpec,
    LSLSpec,
    SimulatedSpec,
    load_sources,
    make_source,
    parse_source,
    parse_sources,
    spec_to_dict,
)
from bci.recording import Recorder, RecordingError, new_session_dir, read_session, record
from bci.session_files import RAW_DIR, RAW_TIMES, recover_session
from bci.simulated import ParticipantConfig, SimulatedParticipant
from bci.stream import AcquisitionError, StreamInfo

ROOT = Path(__file__).resolve().parents[2]


def _participant(speed: float = 1.0, seed: int = 1) -> SimulatedParticipant:
    cfg = ParticipantConfig(sfreq=250.0, montage="standard_32", speed=speed,
                            extra_channels=("emg",))
    return SimulatedParticipant(cfg, seed=seed)


# --------------------------------------------------------------------------- round trip


def test_simulated_recording_reads_back_with_mne_bids(tmp_path):
    src = _participant(speed=4.0)
    acq = Acquisition(src, seconds=5.0)
    folder = tmp_path / "run1"
    rec = Recorder(folder, src.info, subject="07", session="02", task="mi", run=1,
                   config={"source": spec_to_dict(SimulatedSpec(seed=1))}, line_freq=50.0)
    chunks, stamps = [], []
    acq.add_listener(rec.push)
    acq.add_listener(lambda d, t: (chunks.append(d.copy()), stamps.append(t.copy())))
    acq.start()
    time.sleep(0.8)  # about 3 s of signal at 4x
    acq.stop()
    data, ts = np.concatenate(chunks, axis=1), np.concatenate(stamps)
    # Events at the LSL times of known samples (a cue mid-way, one with a duration).
    cues = [(ts[100], 0.25, "left_hand"), (ts[400], 0.0, "rest"), (ts[-10], 0.0, "feet")]
    for onset, dur, desc in cues:
        rec.add_event(onset, dur, desc)
    rec.log_event("decision", action="forward", p=np.float32(0.8))
    assert rec.nbytes > data.size * 4
    bids_path = rec.close()
    assert rec.close() is bids_path  # twice is fine

    # The BIDS dataset: layout and sidecars.
    root = folder / "bids"
    eeg_dir = root / "sub-07" / "ses-02" / "eeg"
    base = "sub-07_ses-02_task-mi_run-1"
    for name in (f"{base}_eeg.vhdr", f"{base}_eeg.eeg", f"{base}_eeg.json",
                 f"{base}_channels.tsv", f"{base}_events.tsv"):
        assert (eeg_dir / name).is_file(), name
    assert json.loads((root / "dataset_description.json").read_text())["Name"].startswith(
        "Yume BCI recording")
    channels = pd.read_csv(eeg_dir / f"{base}_channels.tsv", sep="\t")
    assert list(channels["name"]) == list(src.info.ch_names)
    assert channels.set_index("name").loc["EMG", "type"] == "EMG"
    assert json.loads((eeg_dir / f"{base}_eeg.json").read_text())["PowerLineFrequency"] == 50

    # Same samples (µV on the stream, volts in MNE) and same events.
    raw = mne_bids.read_raw_bids(bids_path, verbose="error")
    assert raw.info["sfreq"] == 250.0 and raw.ch_names == list(src.info.ch_names)
    assert raw.get_channel_types()[-1] == "emg"
    np.testing.assert_allclose(raw.get_data() * 1e6, data, rtol=1e-6, atol=1e-4)
    ann = raw.annotations
    assert list(ann.description) == ["left_hand", "rest", "feet"]
    np.testing.assert_allclose(ann.onset - raw.first_time, [100 / 250, 400 / 250,
                                                            (len(ts) - 10) / 250], atol=1e-6)
    # The duration is on the LSL clock (0.25 s at 4x = 1 s of signal).
    np.testing.assert_allclose(ann.duration, [1.0, 0.0, 0.0], atol=1e-3)

    # The session-level files.
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["source"]["kind"] == "simulated"
    log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    assert log[0]["kind"] == "decision" and log[0]["p"] == pytest.approx(0.8)
    assert abs(log[0]["t"] - local_clock()) < 60
    table = pd.read_csv(folder / "events.tsv", sep="\t")
    np.testing.assert_allclose(table["onset_lsl"], [c[0] for c in cues])
    meta = json.loads((folder / "session.json").read_text())
    assert meta["status"] == "finished" and meta["n_samples"] == data.shape[1]
    assert not (folder / RAW_DIR / "recording.eeg").exists()  # BIDS copy replaces it

    # read_session gives the same thing, events with their LSL onsets.
    raw2, events = read_session(folder)
    np.testing.assert_allclose(raw2.get_data(), raw.get_data())
    assert list(events.columns) == ["onset", "duration", "description", "onset_lsl"]
    np.testing.assert_allclose(events["onset_lsl"], [c[0] for c in cues])
    np.testing.assert_allclose(events["onset"], [0.4, 1.6, (len(ts) - 10) / 250], atol=1e-6)


def test_units_volts_and_misc_channels(tmp_path):
    info = StreamInfo("volts", 100.0, ("C3", "TRIG"), ("eeg", "stim"), units="V")
    rec = Recorder(tmp_path / "s", info, bids_format="EDF")
    x = np.vstack([np.sin(np.arange(300) / 10) * 20e-6, (np.arange(300) % 50 == 0) * 3.0])
    t0 = local_clock()
    for i in range(0, 300, 70):  # uneven chunks
        rec.push(x[:, i:i + 70], t0 + np.arange(i, min(i + 70, 300)) / 100)
    rec.add_event(t0 + 1.0, 0.0, "tab\there")
    bids_path = rec.close()
    assert bids_path.fpath.suffix == ".edf"
    raw, events = read_session(tmp_path / "s")
    assert raw.get_channel_types() == ["eeg", "stim"]
    np.testing.assert_allclose(raw.get_data()[0], x[0], atol=1e-8)  # EDF is 16-bit
    np.testing.assert_allclose(raw.get_data()[1], x[1], atol=1e-3)
    assert list(events["description"]) == ["tab here"]


def test_recorder_refuses_bad_input(tmp_path):
    info = StreamInfo("s", 100.0, ("A", "B"))
    with pytest.raises(RecordingError, match="no regular sampling rate"):
        Recorder(tmp_path / "m", StreamInfo("markers", 0.0, ("M",), stream_type="Markers"))
    with pytest.raises(RecordingError, match="subject label 'S-1' may only hold letters"):
        Recorder(tmp_path / "x", info, subject="S-1")
    with pytest.raises(RecordingError, match="unit 'furlongs'"):
        Recorder(tmp_path / "y", StreamInfo("s", 100.0, ("A",), units="furlongs"))
    rec = Recorder(tmp_path / "a", info)
    with pytest.raises(RecordingError, match=r"shape \(2, n\)"):
        rec.push(np.zeros((3, 10)), np.zeros(10))
    with pytest.raises(RecordingError, match="10 samples but 9 timestamps"):
        rec.push(np.zeros((2, 10)), np.zeros(9))
    with pytest.raises(RecordingError, match="already holds a recording"):
        Recorder(tmp_path / "a", info)
    assert rec.close() is None  # no sample: no BIDS, but a clear status
    assert json.loads((tmp_path / "a" / "session.json").read_text())["status"] == "empty"
    with pytest.raises(RecordingError, match="is closed"):
        rec.add_event(0.0, 0.0, "late")
    with pytest.raises(RecordingError, match="not a Yume session folder"):
        read_session(tmp_path)


def test_new_session_dir_is_unique(tmp_path):
    a = new_session_dir(tmp_path, "01", "01", "mi")
    a.mkdir()
    b = new_session_dir(tmp_path, "01", "01", "mi")
    assert a != b and a.name.endswith("_sub-01_ses-01_task-mi") and not b.exists()


def test_lsl_to_seconds_interpolates_and_extrapolates_at_arrival_rate():
    from bci.session_files import lsl_to_seconds

    # 100 Hz signal replayed 10x faster: samples 1 ms apart on the LSL clock, with a dropout.
    ts = np.r_[np.arange(50), np.arange(60, 110)] / 1000 + 5.0
    got = lsl_to_seconds(np.array([5.0, 5.0205, 5.055, 5.06, 5.109, 5.110, 4.999]), ts, 100.0)
    # Inside: sample-exact even across the gap (5.055 falls inside it, between 49 and 50).
    np.testing.assert_allclose(got[:5], [0.0, 0.205, (49 + 6 / 11) / 100, 0.50, 0.99], atol=1e-9)
    # Outside: extrapolated at the arrival rate (~1 kHz), not at the nominal 100 Hz.
    assert abs(got[5] - 1.0) < 0.002 and abs(got[6] + 0.01) < 0.002  # 100 Hz: -0.001


# --------------------------------------------------------------------------- crash recovery

_RECORDER_SCRIPT = textwrap.dedent("""
    import sys, time
    from pylsl import local_clock
    from bci.recording import Recorder
    from bci.simulated import ParticipantConfig, SimulatedParticipant

    src = SimulatedParticipant(ParticipantConfig(sfreq=250.0), seed=2)
    src.start()
    rec = Recorder(sys.argv[1], src.info, task="crash", config={"kill": True})
    next_tick = local_clock() + 0.25
    while True:  # records until killed
        data, ts = src.poll()
        if data.shape[1]:
            rec.push(data, ts)
        if local_clock() >= next_tick:
            rec.add_event(next_tick, 0.0, "tick")
            next_tick += 0.25
        time.sleep(0.02)
""")


def test_killed_recording_is_recovered(tmp_path, capsys):
    folder = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _RECORDER_SCRIPT, str(folder)], env=env,
                            cwd=ROOT, stderr=subprocess.PIPE)
    times = folder / RAW_DIR / RAW_TIMES
    try:
        deadline = time.monotonic() + 60
        while not (times.exists() and times.stat().st_size >= 8 * 250 * 3):  # 3 s recorded
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the recorder never wrote 3 s of samples"
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        killed_at = local_clock()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((folder / "session.json").read_text())["status"] == "recording"

    from gui.cli import main

    assert main(["record", "--recover", str(folder)]) == 0
    assert capsys.readouterr().out.strip().endswith("_eeg.vhdr")
    raw, events = read_session(folder)
    meta = json.loads((folder / "session.json").read_text())
    assert meta["status"] == "recovered"
    ts = np.fromfile(times, dtype="<f8")
    assert len(ts) == raw.n_times >= 3 * 250
    assert killed_at - ts[-1] < 2.0  # at most the last second or two is lost (~0.05 s idle)
    np.testing.assert_allclose(np.diff(ts), 1 / 250, atol=1e-6)  # no gap, no duplicate
    assert raw.info["sfreq"] == 250.0 and raw.n_times == meta["n_samples"]
    # Every tick (4 a second) flushed before the kill is there, at its place.
    assert len(events) >= 4 * 3 - 1 and set(events["description"]) == {"tick"}
    np.testing.assert_allclose(np.diff(events["onset"]), 0.25, atol=1e-3)
    assert list(raw.annotations.description) == list(events["description"])
    # Recovering twice is harmless; the BIDS data read with mne-bids directly too.
    bids_path = recover_session(folder)
    again = mne_bids.read_raw_bids(bids_path, verbose="error")
    np.testing.assert_allclose(again.get_data(), raw.get_data())
    assert (folder / "bids" / "dataset_description.json").is_file()


def test_recover_refuses_a_live_recording(tmp_path):
    info = StreamInfo("s", 100.0, ("A",))
    rec = Recorder(tmp_path / "live", info)
    rec.push(np.zeros((1, 10)), np.arange(10) / 100)
    with pytest.raises(RecordingError, match="still being recorded by process"):
        read_session(tmp_path / "live")  # this very process records it
    rec.close()
    raw, _ = read_session(tmp_path / "live")
    assert raw.n_times == 10


# --------------------------------------------------------------------------- record / CLI


def test_record_function_from_simulated(tmp_path):
    folder = record(_participant(speed=5.0), tmp_path / "r", 0.5, progress=False, task="rest")
    raw, events = read_session(folder)
    assert raw.n_times >= 250 * 5 * 0.5 * 0.8
    log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in log] == ["recording_started", "recording_stopped"]


def test_yume_record_cli_from_edf_playback(physionet_dir, tmp_path, capsys):
    from gui.cli import main

    edf = physionet_dir / "S001R04.edf"
    code = main(["record", "--source", f"file:{edf}", "--speed", "40", "--duration", "0.8",
                 "--out", str(tmp_path), "--no-progress", "--task", "mi", "--line-freq", "60"])
    assert code == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert folder.parent == tmp_path and folder.is_dir()
    raw, events = read_session(folder)
    assert raw.info["sfreq"] == 160.0 and len(raw.ch_names) == 64
    # The file's cues went through playback and recording to BIDS unchanged.
    table = pd.read_csv(physionet_dir / "S001R04_events.csv")
    table = table[table["onset_s"] < raw.n_times / 160]
    assert len(table) >= 5
    assert list(events["description"]) == list(table["label"])
    np.testing.assert_allclose(events["onset"], table["onset_s"], atol=1e-3)
    dur = np.minimum(table["duration_s"], raw.n_times / 160 - table["onset_s"])
    np.testing.assert_allclose(events["duration"], dur, atol=1e-3)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["source"][0] == {"kind": "file", "path": str(edf), "speed": 40.0, "loop": False,
                                "events": None, "stream": None}


def test_yume_record_ctrl_c_keeps_the_recording(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gui.cli", "record", "--source", "simulated", "--duration", "60",
         "--out", str(tmp_path), "--no-progress", "--task", "rest"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            found = list(tmp_path.glob(f"*/{RAW_DIR}/{RAW_TIMES}"))
            if found and found[0].stat().st_size >= 8 * 250:  # a second recorded
                break
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "yume record never wrote a second of samples"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    folder = Path(out.strip().splitlines()[-1])
    raw, _ = read_session(folder)
    assert raw.n_times >= 250
    assert json.loads((folder / "session.json").read_text())["status"] == "finished"
    kinds = [json.loads(line)["kind"] for line in (folder / "log.jsonl").read_text().splitlines()]
    assert kinds == ["recording_started", "recording_interrupted", "recording_stopped"]


def test_yume_record_cli_with_config_file(tmp_path, capsys):
    from gui.cli import main

    cfg = tmp_path / "sources.toml"
    cfg.write_text('[[source]]\nkind = "simulated"\nseed = 5\nspeed = 4.0\nsfreq = 128.0\n')
    assert main(["record", "--config", str(cfg), "--duration", "0.3", "--out",
                 str(tmp_path / "runs"), "--no-progress", "--subject", "P3"]) == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert folder.name.endswith("_sub-P3_ses-01_task-bci")
    raw, _ = read_session(folder)
    assert raw.info["sfreq"] == 128.0 and raw.n_times >= 128 * 4 * 0.3 * 0.7
    assert (folder / "bids" / "sub-P3").is_dir()
    saved = json.loads((folder / "config.json").read_text())["source"][0]
    assert saved == {"kind": "simulated", "seed": 5, "speed": 4.0, "sfreq": 128.0}


def test_yume_record_cli_from_lsl_with_markers(tmp_path, capsys):
    import threading
    import uuid

    from bci.lsl_outlet import EEGOutlet, MarkerOutlet
    from gui.cli import main

    tag = uuid.uuid4().hex[:8]
    info = StreamInfo(f"rec-eeg-{tag}", 200.0, ("count", "C3", "C4"), units="uV",
                      source_id=f"rec-eeg-{tag}")
    eeg = EEGOutlet(info)
    cues = MarkerOutlet(f"rec-cues-{tag}", source_id=f"rec-cues-{tag}")
    stop = threading.Event()

    def send():  # 200 Hz in 20 ms chunks; channel 0 counts samples, C3/C4 derive from it
        i, t0 = 0, local_clock()
        while not stop.is_set():
            n = int((local_clock() - t0) * 200) - i
            if n > 0:
                k = np.arange(i, i + n)
                eeg.push(np.vstack([k, np.sin(k / 7) * 30, k % 17]), t0 + k / 200)
                if i // 40 != (i + n) // 40:  # a cue every 0.2 s
                    cues.push(f"cue{(i + n) // 40}", t0 + ((i + n) // 40) * 0.2)
                i += n
            time.sleep(0.02)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        code = main(["record", "--source", f"lsl:{info.name}", "--markers", cues.info.name,
                     "--duration", "1.5", "--out", str(tmp_path), "--no-progress"])
    finally:
        stop.set()
        sender.join()
    assert code == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    raw, events = read_session(folder)
    x = raw.get_data() * 1e6
    k = np.round(x[0])
    assert raw.n_times >= 150 and np.all(np.diff(k) == 1)  # contiguous, nothing lost
    np.testing.assert_allclose(x[1], np.sin(k / 7) * 30, atol=1e-3)
    np.testing.assert_allclose(x[2], k % 17, atol=1e-3)
    # Each cue lands on the sample it was stamped with.
    assert len(events) >= 4
    for onset, desc in zip(events["onset"], events["description"], strict=True):
        sample = int(desc[3:]) * 40
        assert abs(k[min(int(round(onset * 200)), len(k) - 1)] - sample) <= 1


def test_yume_record_cli_errors(tmp_path, capsys):
    from gui.cli import main

    assert main(["record", "--source", "bogus", "--out", str(tmp_path)]) == 2
    assert "Unknown source 'bogus'" in capsys.readouterr().err
    assert main(["record", "--source", "synthetic", "--speed", "2", "--out",
                 str(tmp_path)]) == 2
    assert "--speed applies to file sources only" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- configuration

CONFIG_TOML = """
[[source]]
kind = "brainflow"
board = "cyton"
serial_port = "/dev/ttyUSB0"

[[source]]
kind = "lsl"
name = "EMG"
type = "EMG"

[[source]]
kind = "file"
path = "rec.edf"
speed = 2

[[source]]
kind = "simulated"
seed = 3
snr = 0.5
extra_channels = ["eog"]
"""


def test_load_sources_toml_and_json(tmp_path):
    path = tmp_path / "sources.toml"
    path.write_text(CONFIG_TOML)
    specs = load_sources(path)
    assert specs[0] == BrainFlowSpec(board=specs[0].board)
    assert specs[0].board.board == "cyton" and specs[0].board.serial_port == "/dev/ttyUSB0"
    assert specs[1] == LSLSpec(name="EMG", stream_type="EMG")
    assert specs[2] == FileSpec(path="rec.edf", speed=2.0)
    assert specs[3] == SimulatedSpec(seed=3, options={"snr": 0.5, "extra_channels": ("eog",)})
    # JSON says the same, and spec_to_dict round-trips.
    js = tmp_path / "sources.json"
    js.write_text(json.dumps({"source": [spec_to_dict(s) for s in specs]}))
    assert load_sources(js) == specs
    sim = make_source(specs[3])
    assert isinstance(sim, SimulatedParticipant) and sim.info.ch_names[-1] == "EOG"


@pytest.mark.parametrize(("doc", "message"), [
    ({"source": [{"kind": "brainflow", "bord": "cyton"}]}, "unknown key 'bord'"),
    ({"source": [{"kind": "lsl", "name": "x", "timout": 2}]}, "unknown key 'timout'"),
    ({"source": [{"kind": "file", "path": "a.edf", "sped": 2}]}, "unknown key 'sped'"),
    ({"source": [{"kind": "simulated", "snrr": 1}]}, "unknown key 'snrr'"),
    ({"source": [{"kind": "camera"}]}, "unknown or missing 'kind' 'camera'"),
    ({"source": [{"board": "cyton"}]}, "unknown or missing 'kind' None"),
    ({"sources": []}, "unknown top-level key 'sources'"),
    ({"source": []}, "lists no source"),
    ({"source": [{"kind": "file", "path": "a.edf", "speed": "fast"}]}, "'speed' must be a float"),
    ({"source": [{"kind": "file"}]}, "'path' is required"),
    ({"source": [{"kind": "lsl"}]}, "at least one of 'name', 'type' or 'source_id'"),
    ({"source": [{"kind": "brainflow", "channels": "some"}]}, "'channels' must be 'eeg' or"),
])
def test_config_errors_name_the_key(doc, message):
    with pytest.raises(ConfigError, match=message):
        parse_sources(doc)


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[source]\nkind=")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_sources(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_sources(tmp_path / "none.toml")
    with pytest.raises(ConfigError, match="Invalid simulated participant settings"):
        make_source(SimulatedSpec(options={"sfreq": -1.0}))


def test_parse_source_strings(tmp_path):
    assert parse_source("simulated") == SimulatedSpec()
    assert parse_source("synthetic").board.board == "synthetic"
    assert parse_source("lsl:My EEG") == LSLSpec(name="My EEG")
    assert parse_source("file:/data/x.edf") == FileSpec(path="/data/x.edf")
    spec = parse_source("brainflow:cyton:/dev/ttyUSB1")
    assert spec.board.board == "cyton" and spec.board.serial_port == "/dev/ttyUSB1"
    one = tmp_path / "one.toml"
    one.write_text('[[source]]\nkind = "file"\npath = "y.bdf"\n')
    assert parse_source(str(one)) == FileSpec(path="y.bdf")


def test_make_source_bad_board_and_port():
    with pytest.raises(AcquisitionError, match="no board with id 9999"):
        make_source(parse_sources({"source": [{"kind": "brainflow", "board": 9999}]})[0])
    with pytest.raises(AcquisitionError, match="no board named 'cytonn'"):
        make_source(parse_sources({"source": [{"kind": "brainflow", "board": "cytonn"}]})[0])
    spec = parse_sources({"source": [{"kind": "brainflow", "board": "cyton",
                                      "serial_port": "/dev/ttyNOSUCHPORT0"}]})[0]
    src = make_source(spec)
    with pytest.raises(AcquisitionError, match=r"Check that /dev/ttyNOSUCHPORT0 exists"):
        src.start()


def test_make_source_file(physionet_dir):
    src = make_source(FileSpec(path=str(physionet_dir / "S001R05.edf"), speed=3.0, loop=True))
    assert src.info.sfreq == 160.0 and src.loop and src.speed == 3.0


def test_make_source_missing_lsl_stream():
    import uuid

    with pytest.raises(AcquisitionError) as err:
        make_source(LSLSpec(name=f"absent-{uuid.uuid4().hex}", timeout=0.3))
    assert "absent-" in str(err.value)
