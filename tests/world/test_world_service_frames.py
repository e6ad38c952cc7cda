"""How the world service makes and hands over frames: the wire layout, and unpaced batches.

The service writes each frame into one buffer and, for an unpaced session, hands a fast
engine's frames to the event loop a few at a time (one wake-up per batch, not per frame). These
tests check that the bytes on the wire are still exactly the documented :data:`HEADER` layout
(the browser viewer reads them by offset) and that batching loses and strands nothing.
"""

from __future__ import annotations

import numpy as np
import pytest

from control.actions import parse_action
from world.service import (
    FORMATS,
    HEADER,
    MAGIC,
    VERSION,
    ServiceConfig,
    ServiceError,
    WorldService,
    decode_frame,
    encode_frame,
    stamp_frame,
)
from world.service_client import WorldClient


def _reference(image: np.ndarray, pose: np.ndarray, **f) -> bytes:
    """The frame as the protocol describes it: HEADER.pack of every field, then the pixels."""
    h, w = image.shape[:2]
    head = HEADER.pack(MAGIC, VERSION, FORMATS["raw"], h, w, f["chunk"], f["index"],
                       f["offset"], f["action"].index, f["world_time"], f["generated"], 0.0,
                       *np.asarray(pose, dtype=np.float64).reshape(16), 0)
    return head + np.ascontiguousarray(image, dtype=np.uint8).tobytes()


def test_encoded_frame_is_exactly_the_header_layout():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (20, 36, 3), dtype=np.uint8)
    pose = rng.normal(size=(4, 4))
    fields = dict(chunk=9, index=123, offset=3, action=parse_action("S+D →"),
                  world_time=7.25, generated=1234.5)
    # A contiguous image, a flipped view (not contiguous) and a transposed pose, and float
    # pixels (cast as before): all give the reference bytes.
    for img, p in ((image, pose), (image[:, ::-1], pose.T), (image.astype(np.float32), pose)):
        data = encode_frame(img, p, **fields)
        assert bytes(data) == _reference(img, p, **fields)
    data = encode_frame(image, pose, **fields)
    stamp_frame(data, 99.25, 17)
    head, back = decode_frame(bytes(data))
    assert (head.sent, head.dropped, head.index) == (99.25, 17, 123)
    assert np.array_equal(back, image) and np.array_equal(head.pose, pose)
    head.pose[0, 0] = 5.0  # the decoded pose is the caller's own array, not a view of bytes
    assert decode_frame(bytes(data))[0].pose[0, 0] == pose[0, 0]


def test_batch_window_is_checked():
    with pytest.raises(ServiceError, match="batch_s must lie between 0 and 1"):
        ServiceConfig(batch_s=-0.1)


@pytest.fixture(scope="module")
def batching():
    svc = WorldService(ServiceConfig(port=0, engines=("sandbox",), batch_s=0.2)).start()
    yield svc
    svc.stop()


def test_unpaced_frames_leave_in_batches_and_none_is_stranded(batching):
    with WorldClient(batching.url) as c:
        c.open(seed=2, height=32, width=32, pace=False)
        received = [c.frame()]
        session = next(iter(batching.sessions.values()))
        wakes = []
        wake = session._wake_sender
        session._wake_sender = lambda: (wakes.append(1), wake())[1]  # count the hand-offs
        c.act("W")
        received += [c.frame() for _ in range(60)]
        c.act("·")  # a pause: frames kept for a batch must still be handed over
        while True:
            try:
                received.append(c.frame(timeout=1.0))
            except TimeoutError:
                break
        stats = c.stats()
    moved = [f for f in received if str(f.action) == "W"]
    assert len(moved) >= 60
    # A 32x32 sandbox frame takes about a millisecond: the loop was woken far less often
    # than once per frame (up to half the unpaced queue goes together).
    assert len(wakes) <= 0.5 * len(moved)
    # In order, and every frame the world made reached this client or was counted as dropped.
    indices = [f.index for f in received]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert stats["generated"] == len(received) + stats["dropped"]
    assert stats["sent"] == len(received)

