import time

import numpy as np
import pytest
from pylsl import local_clock

from bci import Acquisition, AcquisitionError, BoardSpec, BrainFlowSource, resolve_board_id
from bci.eventlog import EventLog, read_event_log


def test_board_names_and_ids_resolve():
    assert resolve_board_id("synthetic") == -1
    assert resolve_board_id("SYNTHETIC_BOARD") == -1
    assert resolve_board_id(-1) == -1
    assert resolve_board_id("0") == 0  # Cyton


@pytest.mark.parametrize("bad", [12345, "no-such-board", "-77"])
def test_unknown_board_is_a_clear_error(bad):
    with pytest.raises(AcquisitionError, match="BrainFlow has no board"):
        BrainFlowSource(BoardSpec(bad))


def test_unopenable_serial_port_is_a_clear_error():
    src = BrainFlowSource(BoardSpec("cyton", serial_port="/dev/ttyDOES_NOT_EXIST"))
    with pytest.raises(AcquisitionError, match="/dev/ttyDOES_NOT_EXIST"):
        src.start()


def test_synthetic_board_streams_into_buffer_on_lsl_clock():
    src = BrainFlowSource(BoardSpec("synthetic"))
    assert src.info.sfreq == 250 and "C3" in src.info.ch_names
    acq = Acquisition(src, seconds=5)
    acq.start()
    try:
        time.sleep(1.0)
        data, ts = acq.buffer.latest()
    finally:
        acq.stop()
    assert data.shape[0] == src.info.n_channels
    assert 150 <= data.shape[1] <= 400  # about one second at 250 Hz
    assert np.all(np.diff(ts) > 0)
    assert abs(ts[-1] - local_clock()) < 1.0  # stamped on the LSL clock
    assert np.std(data) > 0


def test_event_log_lines_survive_and_truncation_is_tolerated(tmp_path):
    path = tmp_path / "log.jsonl"
    log = EventLog(path)
    log.log("action", action="W", index=9)
    log.log("frame", index=0, position=np.array([0.0, -1.6, 0.1]))
    # no close(): a killed writer; lines were flushed as written
    with open(path, "a") as fh:
        fh.write('{"t": 1.0, "kind": "trunc')
    records = read_event_log(path)
    assert [r["kind"] for r in records] == ["action", "frame"]
    assert records[1]["position"] == [0.0, -1.6, 0.1]
    log.close()
