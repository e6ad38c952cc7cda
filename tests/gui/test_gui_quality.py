"""Signal quality at a glance: real EEG with a dead electrode, played into the window."""

from __future__ import annotations

import mne
import pytest

from bci.eventlog import read_event_log
from gui.app import RunOptions, build_window
from gui.traces import LIGHTS


@pytest.fixture
def dead_cz(physionet_dir, tmp_path):
    raw = mne.io.read_raw_edf(physionet_dir / "S001R03.edf", preload=True, verbose="error")
    raw.rename_channels(lambda name: name.strip("."))
    raw.pick(["C3", "Cz", "C4", "Fp1", "Fp2", "Pz", "O1", "O2"]).crop(0, 20)
    raw._data[1] = 2e-6  # Cz: the electrode is off, a constant offset
    path = tmp_path / "dead_cz_raw.fif"
    raw.save(path, verbose="error")
    return path


def test_window_lights_a_dead_channel_red_and_logs_it(qapp, tmp_path, pump, dead_cz):
    window = build_window(RunOptions(resolution=(64, 64), source=f"file:{dead_cz}",
                                     out=tmp_path))
    window.show()
    window.start()
    try:
        assert pump(8.0, until=lambda: window.traces.quality is not None)
        report = window.traces.quality
        assert report["Cz"].status == "bad" and "flat" in report["Cz"].reasons
        assert report["C3"].status != "bad"
        assert LIGHTS["bad"] in window.traces.lights["Cz"].toHtml()
        assert "Cz flat" in window.traces.quality_label.text()
    finally:
        window.close()
    logged = [e for e in read_event_log(window.session_folder / "session.jsonl")
              if e["kind"] == "signal_quality"]
    assert logged and "Cz flat" in logged[0]["summary"]


def test_window_shows_and_logs_impedance_where_the_board_reports_it(qapp, tmp_path, pump):
    # BrainFlow's synthetic board has resistance channels (as Ganglion and ANT amplifiers do).
    window = build_window(RunOptions(resolution=(64, 64), source="synthetic", out=tmp_path))
    window.show()
    window.start()
    try:
        assert pump(8.0, until=lambda: window.quality_watch.impedance_kohm is not None)
        assert pump(3.0, until=lambda: "kΩ" in window.traces.quality_label.text())
        kohm = window.quality_watch.impedance_kohm
        assert kohm and all(v > 0 for v in kohm.values())
    finally:
        window.close()
    logged = [e for e in read_event_log(window.session_folder / "session.jsonl")
              if e["kind"] == "impedance"]
    assert logged and set(logged[0]["kohm"]) == set(kohm)
