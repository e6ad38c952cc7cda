"""Gaps are data: an outage stays visible in the recording, at its true time and length.

A real LSL outlet on loopback is killed mid-recording and started again; its channel 0 carries
each sample's own LSL time, so the BIDS copy can be checked sample by sample against the truth.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import mne
import mne_bids
import numpy as np
import pandas as pd
import pytest
from pylsl import local_clock

from bci.lsl import EEGOutlet, LSLInlet, MarkerInlet, MarkerOutlet
from bci.recording import Recorder, read_session, record
from bci.session_files import (
    GAP_ANNOTATION,
    RAW_DIR,
    RAW_TIMES,
    lsl_to_seconds,
    recover_session,
    sample_grid,
)
from bci.stream import StreamInfo

SFREQ = 250.0


class _Sender(threading.Thread):
    """250 Hz in 20 ms chunks on the true clock; ``down`` kills the outlet, ``up`` restarts it.

    Channel 0 is the sample's LSL time minus ``t_ref`` (float32 keeps microseconds over
    minutes), channel 1 a sine of it. A marker every 0.4 s, also while the EEG is down.
    """

    def __init__(self, info: StreamInfo, cues: MarkerOutlet) -> None:
        super().__init__(daemon=True)
        self.info, self.cues = info, cues
        self.t_ref = local_clock()
        self.outlet: EEGOutlet | None = EEGOutlet(info)
        self.stop_flag = threading.Event()
        self.markers: list[tuple[float, str]] = []
        self.sent: list[float] = []

    def down(self) -> None:
        outlet, self.outlet = self.outlet, None
        outlet.close()

    def up(self) -> None:
        self.outlet = EEGOutlet(self.info)

    def run(self) -> None:
        k, m = 0, 0
        while not self.stop_flag.is_set():
            due = int((local_clock() - self.t_ref) * SFREQ)
            if due > k:
                t = self.t_ref + np.arange(k, due) / SFREQ
                if self.outlet is not None:  # while down, these samples are lost for good
                    rel = t - self.t_ref
                    self.outlet.push(np.vstack([rel, np.sin(2 * np.pi * 3 * rel)]), t)
                    self.sent += list(t)
                k = due
            while self.t_ref + 0.2 + 0.4 * m < local_clock():
                stamp = self.t_ref + 0.2 + 0.4 * m
                self.cues.push(f"cue{m}", stamp)
                self.markers.append((stamp, f"cue{m}"))
                m += 1
            time.sleep(0.02)


@pytest.mark.slow
def test_outlet_killed_and_restarted_keeps_time_markers_and_marks_the_gap(tmp_path):
    tag = uuid.uuid4().hex[:8]
    info = StreamInfo(f"gap-eeg-{tag}", SFREQ, ("lsltime", "C3"), ("misc", "eeg"),
                      source_id=f"gap-eeg-{tag}")
    cues = MarkerOutlet(f"gap-cues-{tag}")
    sender = _Sender(info, cues)
    sender.start()

    def outage():
        time.sleep(1.5)
        sender.down()
        time.sleep(2.0)
        sender.up()

    killer = threading.Thread(target=outage, daemon=True)
    killer.start()
    folder = tmp_path / "session"
    try:
        source = LSLInlet(name=info.name, timeout=3.0, stall_timeout=0.3)
        record(source, folder, 6.0, progress=False,
               markers=[MarkerInlet(name=cues.info.name, timeout=3.0)])
    finally:
        killer.join()
        sender.stop_flag.set()
        sender.join()
        if sender.outlet is not None:
            sender.outlet.close()

    meta = json.loads((folder / "session.json").read_text())
    ts = np.fromfile(folder / RAW_DIR / RAW_TIMES, dtype="<f8")
    assert len(meta["gaps"]) == 1, meta["gaps"]
    gap = meta["gaps"][0]
    assert 1.7 < gap["duration"] < 6.0  # the outlet was gone 2 s, plus the reconnection

    raw, events = read_session(folder)
    raw.load_data()
    x = raw.get_data(picks="lsltime")[0]
    ok = ~np.isnan(x)
    # Duration: first to last received sample, holes included, within one sample.
    assert abs(raw.n_times / SFREQ - (ts[-1] - ts[0] + 1 / SFREQ)) <= 1 / SFREQ
    # Every received sample sits at its own time: file time = its LSL time - the first's.
    file_t = np.arange(raw.n_times) / SFREQ
    np.testing.assert_allclose(x[ok] - x[ok][0], file_t[ok] - file_t[ok][0], atol=1 / SFREQ)
    assert ok.sum() == len(ts) and (~ok).sum() == gap["n_missing"]
    # The hole is NaN exactly where the annotation says.
    ann = raw.annotations[raw.annotations.description == GAP_ANNOTATION]
    assert len(ann) == 1
    hole = np.nonzero(~ok)[0]
    assert abs(ann.onset[0] - hole[0] / SFREQ) < 0.5 / SFREQ
    assert abs(ann.duration[0] - len(hole) / SFREQ) < 0.5 / SFREQ
    # Every marker, those sent during the outage too, at its true time within one sample
    # (from 1 s on: the marker inlet connects after the EEG's first samples).
    first = sender.t_ref + float(x[ok][0])
    truth = {desc: stamp - first for stamp, desc in sender.markers
             if first + 1.0 <= stamp < first + raw.n_times / SFREQ}
    during = [d for d, t in truth.items() if ann.onset[0] <= t < ann.onset[0] + ann.duration[0]]
    assert len(during) >= 3
    got = dict(zip(events["description"], events["onset"], strict=True))
    assert set(truth) <= set(got)
    for desc, t in truth.items():
        assert abs(got[desc] - t) <= 1 / SFREQ, (desc, got[desc], t)

    # The BIDS files say so too: events.tsv has the gap, the sidecar a discontinuous run, the
    # real maker of the stream, not of the file format.
    bids_path = mne_bids.get_bids_path_from_fname(folder / meta["bids_file"])
    table = pd.read_csv(bids_path.copy().update(suffix="events", extension=".tsv").fpath,
                        sep="\t")
    row = table[table["trial_type"] == GAP_ANNOTATION]
    assert len(row) == 1 and abs(row["duration"].iloc[0] - ann.duration[0]) < 1e-3
    sidecar = json.loads(bids_path.copy().update(suffix="eeg", extension=".json").fpath
                         .read_text())
    assert sidecar["RecordingType"] == "discontinuous"
    assert sidecar["Manufacturer"] == "Yume BCI"
    # ...and so does the session log, as it happened.
    log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in log]
    assert "source_lost" in kinds and "source_back" in kinds
    logged = [e for e in log if e["kind"] == "gap"]
    assert len(logged) == 1 and logged[0]["n_missing"] == gap["n_missing"]
    back = next(e for e in log if e["kind"] == "source_back")
    assert 1.5 < back["outage_s"] < 6.0

    # MNE reads it correctly: a filter runs on each side of the hole, epochs touching it drop.
    eeg = raw.copy().pick("C3").filter(1.0, 20.0, verbose="error")
    assert np.isfinite(eeg.get_data()[0][ok]).all()
    onsets = np.arange(0.2, raw.n_times / SFREQ - 0.6, 0.5)
    epochs = mne.Epochs(eeg, np.c_[(onsets * SFREQ).astype(int), np.zeros((len(onsets), 2),
                                                                          int)],
                        tmin=0.0, tmax=0.4, baseline=None, preload=True, verbose="error")
    kept = onsets[epochs.selection]
    assert len(kept) < len(onsets)
    assert all(t + 0.4 < ann.onset[0] or t > ann.onset[0] + ann.duration[0] for t in kept)
    assert np.isfinite(epochs.get_data()).all()


def _stamps_with_hole(n1: int, missing: int, n2: int, t0: float = 100.0) -> np.ndarray:
    k = np.r_[np.arange(n1), np.arange(n1 + missing, n1 + missing + n2)]
    return t0 + k / SFREQ


def test_sample_grid_places_samples_after_a_hole_and_ignores_jitter():
    rng = np.random.default_rng(0)
    ts = _stamps_with_hole(1000, 137, 800) + rng.normal(0, 0.0008, 1800)
    grid = sample_grid(ts, SFREQ)
    assert [(g["after_sample"], g["n_missing"]) for g in grid.gaps] == [(1000, 137)]
    assert grid.n_times == 1937 and grid.index[1000] == 1137
    assert grid.gaps[0]["onset"] == pytest.approx(1000 / SFREQ)
    # No hole, only jitter: nothing is found.
    assert sample_grid(100.0 + np.arange(3000) / SFREQ + rng.normal(0, 0.0008, 3000),
                       SFREQ).gaps == []
    # An event during the hole lands where it happened.
    assert lsl_to_seconds(np.array([100.0 + 1050 / SFREQ]), ts, SFREQ,
                          grid.index)[0] == pytest.approx(1050 / SFREQ, abs=1 / SFREQ)


def test_recovered_session_has_the_same_gaps_and_a_clock_jump_is_a_boundary(tmp_path):
    info = StreamInfo("hole", SFREQ, ("C3", "C4"))
    ts = _stamps_with_hole(500, 250, 500)
    jump = np.r_[ts, ts[-1] + 7200.0 + np.arange(1, 200) / SFREQ]  # two hours later
    for name, stamps in (("killed", ts), ("jump", jump)):
        rec = Recorder(tmp_path / name, info)
        data = np.vstack([np.arange(len(stamps)), np.zeros(len(stamps))]).astype(float)
        for a in range(0, len(stamps), 100):
            rec.push(data[:, a:a + 100], stamps[a:a + 100])
        rec.add_event(ts[0] + 600 / SFREQ, 0.0, "in-the-hole")
        assert rec.n_gaps == (1 if name == "killed" else 2)
        rec._log.close()  # as if killed: no close(), the raw files stay as they are
        recover_session(tmp_path / name, force=True)
        raw, events = read_session(tmp_path / name)
        notes = list(raw.annotations.description)
        if name == "killed":
            assert raw.n_times == 1250 and notes.count(GAP_ANNOTATION) == 1
            assert events["onset"].iloc[0] == pytest.approx(600 / SFREQ, abs=1 / SFREQ)
            x = raw.get_data()[0] * 1e6
            assert np.isnan(x[500:750]).all() and x[750] == pytest.approx(500)
        else:  # filled where it was an outage, spliced and marked where the clock jumped
            assert raw.n_times == 1250 + 199
            assert "BAD boundary" in notes and "EDGE boundary" in notes


def test_edf_copy_of_a_gap_is_zero_and_annotated(tmp_path):
    info = StreamInfo("hole", SFREQ, ("C3",))
    rec = Recorder(tmp_path / "edf", info, bids_format="EDF")
    ts = _stamps_with_hole(500, 100, 500)
    rec.push(np.ones((1, 1000)), ts)
    with pytest.warns(RuntimeWarning, match="edge values"):  # EDF's whole data records
        rec.close()
    raw, _ = read_session(tmp_path / "edf")
    x = raw.get_data()[0]
    assert np.all(x[500:600] == 0) and np.all(x[:500] != 0) and np.all(x[600:1100] != 0)
    ann = raw.annotations[raw.annotations.description == GAP_ANNOTATION]
    assert ann.onset[0] == pytest.approx(2.0) and ann.duration[0] == pytest.approx(0.4)
