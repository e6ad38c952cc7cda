"""LSL inlets/outlets on loopback (real liblsl), gap detection and reconnection."""

from __future__ import annotations

import logging
import time
import uuid

import numpy as np
import pylsl
import pytest
from pylsl import local_clock

from bci.acquisition import Acquisition
from bci.health import TimestampTracker, counter_gaps
from bci.lsl import (
    EEGOutlet,
    LSLInlet,
    MarkerInlet,
    MarkerOutlet,
    StreamQuery,
    ValueOutlet,
    find_streams,
    open_inlet,
    open_inlets,
)
from bci.ringbuffer import RingBuffer
from bci.stream import AcquisitionError, SourceState, StreamInfo


def _name(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _eeg_info(name: str, n_ch: int = 4, sfreq: float = 250.0, **kw) -> StreamInfo:
    return StreamInfo(name=name, sfreq=sfreq, ch_names=tuple(f"E{i}" for i in range(n_ch)),
                      **kw)


def _drain(inlet, until_n: int, timeout: float = 3.0):
    """Poll until ``until_n`` samples arrived (or timeout); concatenated data and stamps."""
    parts, stamps, deadline = [], [], time.monotonic() + timeout
    while sum(p.shape[1] for p in parts) < until_n and time.monotonic() < deadline:
        d, t = inlet.poll()
        if d.shape[1]:
            parts.append(d)
            stamps.append(t)
        time.sleep(0.005)
    if not parts:
        return np.zeros((inlet.info.n_channels, 0)), np.zeros(0)
    return np.concatenate(parts, axis=1), np.concatenate(stamps)


def test_eeg_round_trip_keeps_every_sample_and_timestamp():
    name = _name()
    info = StreamInfo(name=name, sfreq=500.0, ch_names=("C3", "Cz", "C4", "EMG1"),
                      ch_types=("eeg", "eeg", "eeg", "emg"))
    with EEGOutlet(info) as out:
        assert out.info.source_id  # a unique id was made up
        inlet = LSLInlet(name=name, timeout=3.0)
        # channel metadata comes from the stream's XML desc
        assert inlet.info.ch_names == ("C3", "Cz", "C4", "EMG1")
        assert inlet.info.ch_types == ("eeg", "eeg", "eeg", "emg")
        assert inlet.info.units == "uV" and inlet.info.sfreq == 500.0
        assert inlet.info.source_id == out.info.source_id
        inlet.start()
        assert inlet.state == SourceState.STREAMING
        n = 3000
        data = np.random.default_rng(0).normal(0, 20, (4, n)).astype(np.float32)
        stamps = local_clock() + np.arange(n) / 500.0
        for k in range(0, n, 37):  # odd chunk sizes on purpose
            out.push(data[:, k:k + 37], stamps[k:k + 37])
        got, ts = _drain(inlet, n)
        inlet.stop()
    assert got.shape == (4, n) and inlet.n_received == n
    np.testing.assert_array_equal(got, data)
    np.testing.assert_allclose(ts, stamps, atol=2e-4)  # clock correction on loopback: ~us
    assert inlet.gaps.n_gaps == 0
    assert inlet.state == SourceState.STOPPED


def test_marker_round_trip_strings_and_exact_irregular_timestamps():
    name = _name("markers")
    with MarkerOutlet(name) as out:
        inlet = MarkerInlet(name=name, timeout=3.0)
        assert inlet.info.sfreq == 0.0 and inlet.info.stream_type == "Markers"
        inlet.start()
        t0 = local_clock()
        sent = [("cue:left_hand", t0), ("cmd:forward", t0 + 0.0137), ("héllo | ünïcode", t0 + 1.5)]
        for marker, t in sent:
            out.push(marker, t)
        out.push_json({"p": [0.1, 0.9]}, t0 + 1.6)
        got, ts = [], []
        deadline = time.monotonic() + 3.0
        while len(got) < 4 and time.monotonic() < deadline:
            m, t = inlet.poll()
            got += m
            ts += list(t)
            time.sleep(0.01)
        inlet.stop()
    assert got == [m for m, _ in sent] + ['{"p":[0.1,0.9]}']
    # irregular spacing survives: nothing was dejittered
    np.testing.assert_allclose(np.diff(ts), np.diff([t for _, t in sent] + [t0 + 1.6]),
                               atol=1e-6)
    np.testing.assert_allclose(ts[0], t0, atol=2e-4)
    with pytest.raises(ValueError, match="strings"):
        out.push(3)


def test_value_outlet_for_decoder_probabilities():
    name = _name("proba")
    with ValueOutlet(name, ["rest", "left_hand", "right_hand"]) as out:
        inlet = open_inlet(name=name, timeout=3.0)
        assert isinstance(inlet, LSLInlet) and inlet.info.sfreq == 0.0
        t0 = local_clock()
        out.push([0.2, 0.5, 0.3], t0)
        out.push([0.1, 0.1, 0.8], t0 + 0.73)
        data, ts = _drain(inlet, 2)
        inlet.stop()
    assert inlet.info.ch_names == ("rest", "left_hand", "right_hand")
    np.testing.assert_allclose(data, [[0.2, 0.1], [0.5, 0.1], [0.3, 0.8]], rtol=1e-6)
    assert ts[1] - ts[0] == pytest.approx(0.73, abs=1e-6)
    with pytest.raises(ValueError, match="3 values"):
        out.push([0.5, 0.5])


def test_resolve_timeout_names_the_stream_and_what_to_check():
    name = _name("missing")
    t0 = time.monotonic()
    with pytest.raises(AcquisitionError) as err:
        LSLInlet(name=name, timeout=0.3)
    assert time.monotonic() - t0 < 3.0
    msg = str(err.value)
    assert name in msg and "check" in msg and "running" in msg
    with pytest.raises(ValueError, match="name, a type or a source id"):
        StreamQuery()


def test_several_streams_at_once_and_missing_one_is_named():
    eeg, emg, mk = _name("eeg"), _name("emg"), _name("mk")
    with (EEGOutlet(_eeg_info(eeg, 8, stream_type="EEG")),
          EEGOutlet(_eeg_info(emg, 2, 1000.0, stream_type="EMG")),
          MarkerOutlet(mk)):
        inlets = open_inlets([{"name": eeg}, StreamQuery(name=emg, type="EMG"), {"name": mk}],
                             timeout=3.0)
        kinds = [type(i).__name__ for i in inlets]
        assert kinds == ["LSLInlet", "LSLInlet", "MarkerInlet"]
        assert [i.info.n_channels for i in inlets] == [8, 2, 1]
        assert inlets[1].info.sfreq == 1000.0
        for i in inlets:
            i.stop()
        ghost = _name("gaze")
        with pytest.raises(AcquisitionError, match=ghost):
            open_inlets([{"name": eeg}, {"name": ghost}], timeout=0.5)
        assert len(find_streams(name=eeg, timeout=0.3)) == 1


def test_gap_in_timestamps_is_reported():
    name = _name()
    with EEGOutlet(_eeg_info(name)) as out:
        inlet = LSLInlet(name=name, timeout=3.0)
        inlet.start()
        t0 = local_clock()
        stamps = t0 + np.arange(1000) / 250.0
        keep = np.ones(1000, bool)
        keep[400:450] = False  # 50 samples never sent
        data = np.zeros((4, 1000), np.float32)
        for k in range(0, 1000, 10):
            sel = slice(k, k + 10)
            if keep[sel].any():
                out.push(data[:, sel][:, keep[sel]], stamps[sel][keep[sel]])
        got, ts = _drain(inlet, 950)
        inlet.stop()
    assert got.shape[1] == 950
    assert inlet.gaps.n_gaps == 1 and inlet.gaps.n_missing == 50
    gap = inlet.gaps.reports[0]
    assert gap.n_missing == 50 and gap.cause == "timestamps"
    assert gap.start == pytest.approx(stamps[400], abs=1e-3)
    assert gap.duration == pytest.approx(0.2)
    # the hole stays visible in the returned (dejittered) timestamps
    assert np.diff(ts).max() == pytest.approx(51 / 250.0, abs=1e-3)
    assert [g.n_missing for g in inlet.gaps.pop_new()] == [50]
    assert inlet.gaps.pop_new() == []


def test_counter_channel_skips_are_reported():
    name = _name()
    info = StreamInfo(name=name, sfreq=250.0, ch_names=("C3", "counter"),
                      ch_types=("eeg", "misc"))
    with EEGOutlet(info) as out:
        inlet = LSLInlet(name=name, timeout=3.0, counter_channel="counter", counter_modulo=256,
                         dejitter=False)
        inlet.start()
        counter = np.arange(600) % 256
        counter = np.delete(counter, np.arange(300, 303))  # the amplifier dropped 3 samples
        data = np.vstack([np.zeros(597), counter]).astype(np.float32)
        out.push(data, local_clock() + np.arange(597) / 250.0)  # stamps hide the drop
        _drain(inlet, 597)
        inlet.stop()
        with pytest.raises(ValueError, match="No channel 'nope'"):
            LSLInlet(name=name, timeout=3.0, counter_channel="nope")
    assert [(g.n_missing, g.cause) for g in inlet.gaps.reports] == [(3, "counter")]


def test_stream_that_vanishes_and_returns_is_picked_up_with_a_gap():
    name, sid = _name(), _name("sid")
    info = _eeg_info(name, source_id=sid)
    out = EEGOutlet(info)
    inlet = LSLInlet(name=name, timeout=3.0, stall_timeout=0.3)
    inlet.start()
    out.push(np.zeros((4, 50), np.float32), local_clock() + np.arange(50) / 250.0)
    assert _drain(inlet, 50)[0].shape[1] == 50
    out.close()  # the sender crashes
    seen = set()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        inlet.poll()
        seen.add(inlet.state)
        time.sleep(0.02)
    assert SourceState.RECONNECTING in seen
    out = EEGOutlet(info)  # ...and comes back with the same source id
    try:
        deadline, got = time.monotonic() + 8.0, 0
        while got == 0 and time.monotonic() < deadline:
            out.push(np.zeros((4, 5), np.float32))
            got += inlet.poll()[0].shape[1]
            time.sleep(0.02)
    finally:
        out.close()
        inlet.stop()
    assert got > 0
    assert inlet.n_reconnects == 1
    reports = list(inlet.gaps.reports)
    assert len(reports) == 1 and reports[0].cause == "reconnect"
    assert reports[0].duration > 1.0 and reports[0].n_missing == round(reports[0].duration * 250)


def test_stream_without_source_id_is_found_again_by_name():
    name = _name()

    def sender():
        return pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 3, 100, "float32", ""))

    out = sender()
    inlet = LSLInlet(name=name, timeout=3.0, stall_timeout=0.3)
    inlet.start()
    out.push_chunk(np.zeros((10, 3), np.float32))
    assert _drain(inlet, 10)[0].shape[1] == 10
    del out
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline and inlet.state != SourceState.RECONNECTING:
        inlet.poll()
        time.sleep(0.02)
    assert inlet.state == SourceState.RECONNECTING
    out = sender()
    deadline, got = time.monotonic() + 8.0, 0
    while got == 0 and time.monotonic() < deadline:
        out.push_chunk(np.zeros((2, 3), np.float32))
        got += inlet.poll()[0].shape[1]
        time.sleep(0.02)
    inlet.stop()
    assert got > 0 and inlet.n_reconnects == 1
    assert inlet.gaps.reports[-1].cause == "reconnect"


def test_channel_count_mismatch_is_a_clear_error():
    name = _name()
    with EEGOutlet(_eeg_info(name, 4)) as out:
        with pytest.raises(ValueError, match=r"4 channels.*\(4, n_samples\)"):
            out.push(np.zeros((3, 10), np.float32))
        with pytest.raises(ValueError, match="timestamps"):
            out.push(np.zeros((4, 10), np.float32), np.zeros(9))
        inlet = LSLInlet(name=name, timeout=3.0)
        inlet.start()
        out.push(np.ones((4, 20), np.float32))
        data, ts = _drain(inlet, 20)
        inlet.stop()
    buffer = RingBuffer(n_channels=8, capacity=100)  # wrong buffer for this stream
    with pytest.raises(ValueError, match="channel count does not match"):
        buffer.push(data, ts)


def test_duplicate_source_id_is_refused():
    sid = _name("dup")
    with MarkerOutlet(_name(), source_id=sid):
        with pytest.raises(ValueError, match="already open"):
            MarkerOutlet(_name(), source_id=sid)
    MarkerOutlet(_name(), source_id=sid).close()  # free again once closed


def test_slow_consumer_backlog_is_counted_and_logged(caplog):
    name = _name()
    with EEGOutlet(_eeg_info(name)) as out:
        inlet = LSLInlet(name=name, timeout=3.0, max_pull_s=0.5, backlog_warn_s=0.5)
        inlet.start()
        out.push(np.zeros((4, 750), np.float32), local_clock() + np.arange(750) / 250.0)
        time.sleep(0.3)
        with caplog.at_level(logging.WARNING, logger="bci.lsl_inlet"):
            data, _ = inlet.poll()
        assert data.shape[1] == 125  # at most max_pull_s per poll
        assert inlet.backlog_seconds == pytest.approx(2.5, abs=0.05)
        assert inlet.n_backlog_warnings == 1
        assert "behind" in caplog.text
        _drain(inlet, 625)
        assert inlet.backlog_seconds < 0.5
        inlet.stop()


def test_acquisition_thread_reads_an_lsl_inlet_into_the_ring_buffer():
    name = _name()
    with EEGOutlet(_eeg_info(name, 6)) as out:
        acq = Acquisition(LSLInlet(name=name, timeout=3.0), seconds=2.0, interval=0.002)
        acq.start()
        sent = np.arange(6 * 400, dtype=np.float32).reshape(6, 400)
        for k in range(0, 400, 20):
            out.push(sent[:, k:k + 20], local_clock() + np.arange(20) / 250.0)
            time.sleep(0.005)
        deadline = time.monotonic() + 3.0
        while acq.buffer.n_written < 400 and time.monotonic() < deadline:
            time.sleep(0.01)
        acq.stop()
    assert acq.buffer.n_written == 400
    np.testing.assert_array_equal(acq.buffer.latest(400)[0], sent)


def test_timestamp_tracker_smooths_jitter_without_false_gaps():
    rng = np.random.default_rng(0)
    sfreq = 1000.0
    true = 100.0 + np.arange(20_000) / sfreq
    # chunks of 10 stamped at arrival with ~0.3 ms jitter, the way many drivers do it
    jitter = np.repeat(rng.uniform(0, 0.0006, 2000), 10)
    tracker = TimestampTracker(sfreq, "jittery")
    results = [tracker.process(c) for c in np.split(true + jitter, 200)]
    out = np.concatenate([r[0] for r in results])
    assert sum(len(r[1]) for r in results) == 0
    resid = out - true
    assert np.std(resid[5000:]) < np.std(jitter)  # smoother than what came in
    assert np.abs(resid).max() < 0.002
    # a real hole of 5 samples is still found
    later = true[-1] + (np.arange(6, 100)) / sfreq + 0.0003
    stamps, gaps = tracker.process(later)
    assert len(gaps) == 1 and gaps[0].n_missing == 5


def test_counter_gaps_with_wraparound():
    gaps, last = counter_gaps([250, 251, 252, 253, 254, 255, 0, 1, 4, 5], None, 256)
    assert gaps == [(8, 2)] and last == 5
    gaps, last = counter_gaps([7, 8], last, 256)
    assert gaps == [(0, 1)] and last == 8


def test_timestamp_tracker_learns_a_rate_other_than_nominal(caplog):
    # a simulator at speed 4 stamps 250 Hz samples 1 ms apart: no gaps, no warnings
    tracker = TimestampTracker(250.0, "fast")
    true = 50.0 + np.arange(8000) * 0.001
    with caplog.at_level(logging.WARNING):
        results = [tracker.process(c) for c in np.split(true, 400)]
    assert sum(len(r[1]) for r in results) == 0
    assert "went back" not in caplog.text
    np.testing.assert_allclose(np.concatenate([r[0] for r in results])[2000:], true[2000:],
                               atol=1e-6)
    assert tracker.slope == pytest.approx(0.001, rel=1e-6)
    _, gaps = tracker.process(true[-1] + 0.001 * np.arange(41, 60))  # 40 samples dropped
    assert [g.n_missing for g in gaps] == [40]
