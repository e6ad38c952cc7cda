"""File playback (EDF through MNE, XDF through pyxdf, BrainFlow's playback board) as live
sources on the LSL clock, and clear errors on broken files."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest
from pylsl import local_clock

from bci.brainflow_source import BoardSpec, BrainFlowSource, resolve_board_id
from bci.playback import FilePlayback, check_edf_size
from bci.stream import AcquisitionError

# --------------------------------------------------------------------------- XDF writer
# pyxdf only reads, so the tests write XDF 1.0 chunks by hand (spec: github.com/sccn/xdf/wiki).


def _chunk(tag: int, content: bytes) -> bytes:
    body = struct.pack("<H", tag) + content
    return b"\x08" + struct.pack("<Q", len(body)) + body


def _varlen(n: int) -> bytes:
    return b"\x08" + struct.pack("<Q", n)


def write_xdf(path: Path, streams: list[dict]) -> None:
    """Write streams ``{"name", "type", "srate", "fmt", "labels", "units", "times", "data"}``.

    ``data`` is (n, n_channels) numbers, or a list of strings for ``fmt="string"``.
    """
    out = [b"XDF:", _chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')]
    for sid, s in enumerate(streams, start=1):
        chans = "".join(
            f"<channel><label>{lab}</label><unit>{s.get('units', 'microvolts')}</unit>"
            f"<type>{s['type']}</type></channel>" for lab in s["labels"])
        header = (f'<?xml version="1.0"?><info><name>{s["name"]}</name><type>{s["type"]}'
                  f'</type><channel_count>{len(s["labels"])}</channel_count><nominal_srate>'
                  f'{s["srate"]}</nominal_srate><channel_format>{s["fmt"]}</channel_format>'
                  f'<source_id>{s["name"]}-id</source_id><desc><channels>{chans}</channels>'
                  '</desc></info>')
        out.append(_chunk(2, struct.pack("<I", sid) + header.encode()))
    for sid, s in enumerate(streams, start=1):
        samples = [_varlen(len(s["times"]))]
        for t, row in zip(s["times"], s["data"], strict=True):
            samples.append(b"\x08" + struct.pack("<d", t))
            if s["fmt"] == "string":
                raw = str(row).encode()
                samples.append(_varlen(len(raw)) + raw)
            else:
                samples.append(np.asarray(row, dtype="<f4").tobytes())
        out.append(_chunk(3, struct.pack("<I", sid) + b"".join(samples)))
    for sid, s in enumerate(streams, start=1):
        footer = (f'<?xml version="1.0"?><info><first_timestamp>{s["times"][0]}</first_timestamp>'
                  f'<last_timestamp>{s["times"][-1]}</last_timestamp><sample_count>'
                  f'{len(s["times"])}</sample_count></info>')
        out.append(_chunk(6, struct.pack("<I", sid) + footer.encode()))
    path.write_bytes(b"".join(out))


def _eeg_stream(sfreq=100.0, n=300, t0=1000.0, n_ch=4, units="microvolts"):
    rng = np.random.default_rng(0)
    return {"name": "TestEEG", "type": "EEG", "srate": sfreq, "fmt": "float32",
            "labels": [f"C{i}" for i in range(n_ch)], "units": units,
            "times": t0 + np.arange(n) / sfreq,
            "data": rng.normal(0, 10, (n, n_ch)).astype(np.float32)}


def _drain(src, seconds: float, step: float = 0.01):
    chunks, times, events = [], [], []
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        d, t = src.poll()
        if d.shape[1]:
            chunks.append(d)
            times.append(t)
        events += src.poll_events() if hasattr(src, "poll_events") else []
        if getattr(src, "finished", False):
            break
        time.sleep(step)
    n_ch = src.info.n_channels
    data = np.concatenate(chunks, axis=1) if chunks else np.zeros((n_ch, 0))
    return data, (np.concatenate(times) if times else np.zeros(0)), events


# --------------------------------------------------------------------------- EDF


def test_physionet_edf_playback_channels_samples_events(physionet_dir):
    path = physionet_dir / "S001R04.edf"
    src = FilePlayback(path, speed=50.0)
    assert src.info.sfreq == 160.0
    assert src.info.n_channels == 64
    assert src.info.ch_names[:3] == ("Fc5.", "Fc3.", "Fc1.")
    assert src.info.units == "uV"
    assert src.events_source == physionet_dir / "S001R04_events.csv"  # sidecar found
    table = pd.read_csv(physionet_dir / "S001R04_events.csv")
    np.testing.assert_allclose(src.events["onset"], table["onset_s"])
    assert list(src.events["description"]) == list(table["label"])

    src.start()
    t_start = src.t0
    data, ts, events = _drain(src, 0.6)
    src.stop()
    n = data.shape[1]
    assert n >= 0.5 * 160 * 50 * 0.8  # about 50x real time
    ref = mne.io.read_raw_edf(path, preload=False, verbose="error").get_data(stop=n) * 1e6
    np.testing.assert_allclose(data, ref, atol=1e-3)
    # Timestamps on the LSL clock, spaced 1 / (sfreq * speed), ending no later than now.
    np.testing.assert_allclose(np.diff(ts), 1 / (160 * 50), rtol=1e-6)
    assert ts[-1] <= local_clock()
    # Events released with the samples, on the same clock as the samples.
    played = n / 160
    expected = table[table["onset_s"] < played]
    assert [d for _, d in events] == list(expected["label"])
    np.testing.assert_allclose([t for t, _ in events],
                               t_start + expected["onset_s"].to_numpy() / 50, atol=1e-9)
    for onset, _ in events:  # each event sits on a released sample's timestamp
        assert np.min(np.abs(ts - onset)) < 1e-6


def test_edf_annotations_used_without_sidecar(physionet_dir):
    src = FilePlayback(physionet_dir / "S001R03.edf", events=False)
    assert src.events_source == physionet_dir / "S001R03.edf"
    assert len(src.events) > 0 and src.events["description"].iloc[0] == "T0"


def test_truncated_edf_clear_error(physionet_dir, tmp_path):
    data = (physionet_dir / "S001R04.edf").read_bytes()
    cut = tmp_path / "cut.edf"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AcquisitionError, match=r"cut\.edf is truncated or not an EDF file;"):
        FilePlayback(cut)
    header_only = tmp_path / "hdr.edf"
    header_only.write_bytes(data[:1000])  # cut inside the signal headers
    with pytest.raises(AcquisitionError, match="truncated or not an EDF file"):
        FilePlayback(header_only)
    junk = tmp_path / "junk.edf"
    junk.write_bytes(b"this is not an EDF file at all " * 20)
    with pytest.raises(AcquisitionError, match="truncated or not an EDF file"):
        check_edf_size(junk)


def test_loop_repeats_samples_and_events(tmp_path):
    info = mne.create_info(["A", "B"], 100.0, "eeg")
    x = np.vstack([np.arange(50), -np.arange(50)]) * 1e-6
    raw = mne.io.RawArray(x, info, verbose="error")
    raw.set_annotations(mne.Annotations([0.1], [0.0], ["cue"]))
    path = tmp_path / "short_raw.fif"
    raw.save(path, verbose="error")
    src = FilePlayback(path, speed=20.0, loop=True)
    assert src.info.ch_types == ("eeg", "eeg")
    src.start()
    data, ts, events = _drain(src, 0.2)
    assert data.shape[1] > 100  # 0.5 s file, 2000 samples/s: looped several times
    np.testing.assert_allclose(data[0, :120], np.arange(120) % 50, atol=1e-4)
    assert [d for _, d in events] == ["cue"] * len(events) and len(events) >= 2
    np.testing.assert_allclose(np.diff([t for t, _ in events])[0], 0.5 / 20, atol=1e-9)
    assert not src.finished


def test_playback_ends_without_loop(tmp_path):
    raw = mne.io.RawArray(np.zeros((1, 20)), mne.create_info(["A"], 100.0, "eeg"),
                          verbose="error")
    path = tmp_path / "tiny_raw.fif"
    raw.save(path, verbose="error")
    src = FilePlayback(path, speed=100.0)
    src.start()
    data, _, _ = _drain(src, 5.0)
    assert data.shape[1] == 20 and src.finished


def test_bad_inputs(tmp_path):
    with pytest.raises(AcquisitionError, match="does not exist"):
        FilePlayback(tmp_path / "missing.edf")
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(AcquisitionError, match="unknown file type .txt"):
        FilePlayback(other)
    with pytest.raises(AcquisitionError, match="positive"):
        FilePlayback(other, speed=0)
    bad_fif = tmp_path / "bad_raw.fif"
    bad_fif.write_bytes(b"\x00" * 100)
    with pytest.raises(AcquisitionError, match="truncated or not a FIF file"):
        FilePlayback(bad_fif)


@pytest.mark.parametrize("fmt", ["edf", "bdf"])
def test_exported_edf_bdf_play_back_with_annotations(tmp_path, fmt):
    rng = np.random.default_rng(1)
    x = rng.normal(0, 20e-6, (3, 600))
    raw = mne.io.RawArray(x, mne.create_info(["C3", "Cz", "C4"], 200.0, "eeg"), verbose="error")
    raw.set_annotations(mne.Annotations([0.5, 2.0], [0.0, 0.0], ["left", "right"]))
    path = tmp_path / f"rec.{fmt}"
    raw.export(path, fmt=fmt, verbose="error")
    src = FilePlayback(path, speed=100.0)
    assert src.info.sfreq == 200.0 and src.info.ch_names == ("C3", "Cz", "C4")
    assert list(src.events["description"]) == ["left", "right"]
    np.testing.assert_allclose(src.events["onset"], [0.5, 2.0], atol=1e-3)
    src.start()
    data, _, events = _drain(src, 5.0)
    assert data.shape[1] == 600 and src.finished
    np.testing.assert_allclose(data, x * 1e6, atol=0.05 if fmt == "edf" else 0.01)
    assert [d for _, d in events] == ["left", "right"]
    # Cutting the last record off is caught (MNE alone would read the file silently).
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(AcquisitionError, match=f"truncated or not an {fmt.upper()} file"):
        FilePlayback(cut)


def test_bids_brainvision_recording_plays_back_with_its_events_tsv(tmp_path):
    from bci.recording import Recorder
    from bci.stream import StreamInfo

    info = StreamInfo("rec", 100.0, ("O1", "O2"))
    rec = Recorder(tmp_path / "s", info, task="replay")
    x = np.vstack([np.arange(300.0), -np.arange(300.0)])
    t0 = 50.0
    rec.push(x, t0 + np.arange(300) / 100)
    rec.add_event(t0 + 1.0, 0.5, "cue")
    bids_path = rec.close()
    src = FilePlayback(bids_path.fpath, speed=100.0)
    assert src.events_source.name.endswith("_events.tsv")  # the BIDS sidecar
    assert list(src.events["description"]) == ["cue"]
    np.testing.assert_allclose(src.events[["onset", "duration"]].iloc[0], [1.0, 0.5])
    src.start()
    data, _, events = _drain(src, 5.0)
    np.testing.assert_allclose(data, x, atol=1e-4)
    assert [d for _, d in events] == ["cue"]


# --------------------------------------------------------------------------- XDF


def test_xdf_playback_picks_eeg_and_markers(tmp_path):
    eeg = _eeg_stream(units="volts")
    markers = {"name": "Cues", "type": "Markers", "srate": 0, "fmt": "string",
               "labels": ["cue"], "times": [1000.5, 1001.25], "data": ["left", "right"]}
    aux = {"name": "Accel", "type": "ACC", "srate": 50.0, "fmt": "float32",
           "labels": ["x"], "times": 1000 + np.arange(10) / 50, "data": np.zeros((10, 1))}
    path = tmp_path / "run.xdf"
    write_xdf(path, [markers, aux, eeg])
    src = FilePlayback(path, speed=20.0)
    assert src.info.sfreq == 100.0
    assert src.info.ch_names == ("C0", "C1", "C2", "C3")
    assert "TestEEG" in src.info.name
    np.testing.assert_allclose(src.events["onset"], [0.5, 1.25], atol=1e-6)
    assert list(src.events["description"]) == ["left", "right"]
    src.start()
    data, ts, events = _drain(src, 5.0)  # returns when the file is finished
    assert data.shape[1] == 300  # 3 s file at 20x: all of it
    np.testing.assert_allclose(data, eeg["data"].T * 1e6, rtol=1e-5)  # volts -> µV
    assert [d for _, d in events] == ["left", "right"]
    np.testing.assert_allclose([t for t, _ in events], src.t0 + np.array([0.5, 1.25]) / 20,
                               atol=1e-6)


def test_xdf_without_eeg_lists_streams(tmp_path):
    markers = {"name": "Cues", "type": "Markers", "srate": 0, "fmt": "string",
               "labels": ["cue"], "times": [1.0], "data": ["go"]}
    aux = {"name": "Accel", "type": "ACC", "srate": 50.0, "fmt": "float32",
           "labels": ["x"], "times": np.arange(10) / 50, "data": np.zeros((10, 1))}
    path = tmp_path / "noeeg.xdf"
    write_xdf(path, [markers, aux])
    with pytest.raises(AcquisitionError, match=r"noeeg\.xdf has no EEG stream; it holds") as err:
        FilePlayback(path)
    assert "'Cues' (type Markers" in str(err.value) and "'Accel' (type ACC" in str(err.value)
    # Choosing a stream by name works for any numeric stream.
    src = FilePlayback(path, stream="Accel")
    assert src.info.sfreq == 50.0 and src.info.n_channels == 1


def test_corrupt_xdf_clear_error(tmp_path):
    path = tmp_path / "broken.xdf"
    path.write_bytes(b"NOPE" + b"\x00" * 50)
    with pytest.raises(AcquisitionError, match="truncated or not an XDF file"):
        FilePlayback(path)


# --------------------------------------------------------------------------- BrainFlow


def test_brainflow_playback_of_brainflow_file(tmp_path):
    from brainflow.board_shim import BoardShim
    from brainflow.data_filter import DataFilter

    # BrainFlow playback reads only BrainFlow files: write one in the synthetic board's layout.
    descr = BoardShim.get_board_descr(-1)
    rows = descr["num_rows"]
    n = 250
    table = np.zeros((rows, n))
    eeg_rows = descr["eeg_channels"]
    table[eeg_rows] = np.arange(n)[None, :] + 1000 * np.arange(len(eeg_rows))[:, None]
    table[descr["timestamp_channel"]] = time.time() - 100 + np.arange(n) / 250
    path = tmp_path / "session.csv"
    DataFilter.write_file(table, str(path), "w")

    assert resolve_board_id("playback") == -3
    src = BrainFlowSource(BoardSpec(board="playback", file=str(path), master_board="synthetic"))
    assert src.info.sfreq == 250.0 and src.info.n_channels == len(eeg_rows)
    src.start()
    try:
        data, ts, _ = _drain(src, 0.4)
    finally:
        src.stop()
    assert 50 <= data.shape[1] <= n
    np.testing.assert_allclose(data, table[eeg_rows, : data.shape[1]])
    # BrainFlow re-stamps played samples with the current time: they land near now on LSL.
    assert abs(ts[-1] - local_clock()) < 1.0


def test_brainflow_playback_errors(tmp_path, physionet_dir):
    with pytest.raises(AcquisitionError, match="needs master_board"):
        BrainFlowSource(BoardSpec(board="playback", file="x.csv"))
    with pytest.raises(AcquisitionError, match="does not exist; BrainFlow playback reads"):
        BrainFlowSource(BoardSpec(board="playback", file=str(tmp_path / "none.csv"),
                                  master_board="synthetic"))
    # An EDF is not a BrainFlow file: BrainFlow would play it as silence; we refuse it.
    with pytest.raises(AcquisitionError, match="is not a BrainFlow file for master board"):
        BrainFlowSource(BoardSpec(board="playback", file=str(physionet_dir / "S001R04.edf"),
                                  master_board="synthetic"))
    wrong_board = tmp_path / "cyton.csv"
    wrong_board.write_text("\t".join(["0.0"] * 24) + "\n")
    with pytest.raises(AcquisitionError, match="expected 32 tab-separated numbers"):
        BrainFlowSource(BoardSpec(board="playback", file=str(wrong_board),
                                  master_board="synthetic"))
