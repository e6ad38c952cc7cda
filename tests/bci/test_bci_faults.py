"""Fault injection on the real recording path: each fault of BENCHMARKS.md's reliability table,
checked for what the user is told and what the files keep (benchmarks/bench_faults.py)."""

from __future__ import annotations

import signal

import pytest

from benchmarks import bench_faults as faults

pytestmark = pytest.mark.slow


def test_outlet_restart_loses_nothing_that_arrived(tmp_path):
    row = faults.outlet_restart(tmp_path, down_s=1.0)
    assert row.lost == 0
    assert len(row.details["gaps"]) == 1 and row.details["gaps"][0]["duration"] > 1.0
    assert row.details["marker_error_s"] <= 1 / faults.SFREQ
    assert 0 <= row.recovery_s < 3.0


@pytest.mark.parametrize("scenario, said", [(faults.rate_change, "500 Hz instead of 250"),
                                            (faults.channel_change, "3 channels instead of 2")])
def test_a_stream_back_with_another_rate_or_layout_is_refused(tmp_path, scenario, said):
    row = scenario(tmp_path)
    assert said in row.details["error"] and row.lost == 0
    assert "status finished" in row.files_hold


def test_nonfinite_samples_are_kept_and_logged(tmp_path):
    row = faults.nonfinite_samples(tmp_path)
    assert row.details["logged"] == 3 and "1 NaN, 2 inf" in row.files_hold and row.lost == 0


def test_clock_jump_is_a_boundary_not_hours_of_nan(tmp_path):
    row = faults.clock_jump(tmp_path)
    assert row.lost == 0 and "BAD boundary" in row.files_hold


def test_a_huge_chunk_is_written_whole(tmp_path):
    row = faults.huge_chunk(tmp_path)
    assert row.lost == 0 and row.details["backlog_warnings"] > 0


def test_garbage_markers_are_kept_as_events(tmp_path):
    row = faults.garbage_markers(tmp_path)
    got = row.details["events"]
    assert len(got) == len(faults.GARBAGE)
    assert "x" * 10_000 in got and "ünïcødé ✓" in got and not any("\t" in g for g in got)


def test_disk_full_is_one_sentence_and_recoverable(tmp_path):
    row = faults.disk_full(tmp_path)
    if row is None:
        pytest.skip("mounting a small tmpfs needs root")
    assert "No space left" in row.details["error"] and "--recover" in row.details["error"]
    assert row.lost <= 25  # at most the one chunk that was being written


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_yume_record_killed_keeps_its_samples(tmp_path, sig):
    row = faults.signal_record(tmp_path, sig)
    assert row.details["printed"]  # the folder was known before the kill
    seconds = float(row.files_hold.split(" s ")[0])
    assert seconds > 2.5
    if sig == signal.SIGTERM:  # ends like Ctrl+C: the BIDS copy is written
        assert row.details["status"] == "finished" and row.details["returncode"] == 0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_yume_calibrate_killed_keeps_its_recording(tmp_path, sig):
    from bci.session_files import recover_session

    row = faults.signal_command(tmp_path, sig, "yume calibrate", faults.CALIBRATE,
                                "*/raw/timestamps.f64")
    if sig == signal.SIGTERM:  # stops like Ctrl+C: the BIDS copy is written
        assert row.details["status"] == ["finished"]
    else:  # nothing could run: the raw files are there for --recover
        assert row.details["status"] == ["recording"]
        folder = next((tmp_path / f"cmd{sig}").iterdir())
        assert recover_session(folder).fpath.exists()


def test_yume_run_headless_sigterm_writes_its_outputs(tmp_path):
    row = faults.signal_command(tmp_path, signal.SIGTERM, "yume run --headless", faults.RUN,
                                "*/session.jsonl")
    names = {f.split("/")[-1] for f in row.details["files"]}
    assert row.details["returncode"] == 130
    assert {"route.gif", "contact_sheet.png", "summary.json", "session.jsonl"} <= names


def test_yume_world_train_sigterm_saves_and_resumes(tmp_path):
    row = faults.signal_world_train(tmp_path, signal.SIGTERM)
    d = row.details
    assert d["returncode"] == 130 and d["saved"] == d["steps_done"] >= 20 and d["resumed"]
