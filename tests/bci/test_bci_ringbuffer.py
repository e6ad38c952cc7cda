import threading

import numpy as np
import pytest

from bci.ringbuffer import RingBuffer


def _chunk(start, n, n_ch=3):
    idx = np.arange(start, start + n)
    return np.vstack([idx + 1000 * c for c in range(n_ch)]).astype(np.float32), idx * 0.01


def test_wraparound_keeps_newest_in_order():
    buf = RingBuffer(3, 10)
    written = 0
    for n in (4, 5, 3, 7, 1):  # 20 samples through a 10-sample ring
        buf.push(*_chunk(written, n))
        written += n
    data, ts = buf.latest()
    assert buf.n_written == 20 and len(buf) == 10
    np.testing.assert_array_equal(data[0], np.arange(10, 20))
    np.testing.assert_array_equal(data[2], np.arange(10, 20) + 2000)
    np.testing.assert_allclose(ts, np.arange(10, 20) * 0.01)
    data, ts = buf.latest(3)
    np.testing.assert_array_equal(data[1], np.arange(17, 20) + 1000)


def test_chunk_larger_than_capacity():
    buf = RingBuffer(3, 8)
    buf.push(*_chunk(0, 5))
    buf.push(*_chunk(5, 21))
    data, ts = buf.latest()
    np.testing.assert_array_equal(data[0], np.arange(18, 26))
    assert buf.n_written == 26


def test_since_reads_each_sample_once_and_reports_loss():
    buf = RingBuffer(1, 6)
    buf.push(*_chunk(0, 4, 1))
    d, _, count = buf.since(0)
    np.testing.assert_array_equal(d[0], [0, 1, 2, 3])
    buf.push(*_chunk(4, 2, 1))
    d, _, count2 = buf.since(count)
    np.testing.assert_array_equal(d[0], [4, 5])
    buf.push(*_chunk(6, 9, 1))  # overruns the reader by 3 samples
    d, _, count3 = buf.since(count2)
    assert count3 - count2 == 9 and d.shape[1] == 6  # 3 lost, visible to the reader
    np.testing.assert_array_equal(d[0], np.arange(9, 15))


def test_channel_mismatch_is_a_clear_error():
    buf = RingBuffer(4, 10)
    with pytest.raises(ValueError, match="channel count does not match"):
        buf.push(np.zeros((3, 5)), np.zeros(5))
    with pytest.raises(ValueError, match="timestamps"):
        buf.push(np.zeros((4, 5)), np.zeros(4))
    with pytest.raises(ValueError):
        RingBuffer(0, 10)


def test_concurrent_writer_and_reader_see_consistent_chunks():
    buf = RingBuffer(2, 1000)
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set() and i < 200_000:
            d = np.full((2, 50), i, dtype=np.float32)
            d[1] = i + 0.5
            buf.push(d, np.full(50, float(i)))
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    for _ in range(300):
        data, ts = buf.latest(50)
        if data.shape[1]:
            # channel rows and timestamps always come from the same push
            np.testing.assert_array_equal(data[1] - data[0], 0.5)
            np.testing.assert_array_equal(data[0], ts)
    stop.set()
    t.join()
