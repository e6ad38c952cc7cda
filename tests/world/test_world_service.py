"""The world service over real loopback sockets: uvicorn in a thread, real WebSocket clients.

The browser viewer is tested in test_world_service_viewer.py (in headless Chromium where one is
installed), the remote world's link and reconnection in test_world_service_link.py.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from control.actions import parse_action
from world.service import (
    WS_PATH,
    ServiceConfig,
    ServiceError,
    WorldService,
    check_bind,
    decode_frame,
    encode_frame,
    is_loopback,
)
from world.service_client import WorldClient, service_url

ROOT = Path(__file__).resolve().parents[2]
UPLOAD_LIMIT = 64 * 1024


# Every test of the service runs with the engines in threads of the service (the default) and
# in processes of their own (engine_process=True): the two layouts must behave the same.
@pytest.fixture(scope="module", params=[False, True], ids=["engine-thread", "engine-process"])
def service(request):
    svc = WorldService(ServiceConfig(port=0, engines=("sandbox",), max_sessions=3, max_side=256,
                                     max_upload_bytes=UPLOAD_LIMIT, socket_buffer=32 * 1024,
                                     open_timeout=5.0, engine_process=request.param)).start()
    yield svc
    svc.stop()


def _http(svc: WorldService, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{svc.port}{path}", timeout=5) as r:
        return r.status, r.read().decode("utf-8")


def _sessions(svc: WorldService) -> int:
    return json.loads(_http(svc, "/status")[1])["sessions"]


def _wait_sessions(svc: WorldService, n: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while (count := _sessions(svc)) != n and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _non_loopback_address() -> str | None:
    for target in ("192.0.2.1", "10.255.255.255", "8.8.8.8"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((target, 9))  # UDP: nothing is sent, only a route is chosen
                addr = s.getsockname()[0]
            except OSError:
                continue
        if not is_loopback(addr) and addr != "0.0.0.0":
            return addr
    return None


def test_frame_message_round_trip():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    pose = rng.normal(size=(4, 4))
    for fmt in ("raw", "png"):
        data = encode_frame(image, pose, chunk=7, index=30, offset=2,
                            action=parse_action("W+A ←"), world_time=1.875, generated=12.5,
                            fmt=fmt)
        head, back = decode_frame(bytes(data))
        assert np.array_equal(back, image)  # PNG is lossless
        assert np.array_equal(head.pose, pose)
        assert (head.chunk, head.index, head.offset, head.format) == (7, 30, 2, fmt)
        assert str(head.action) == "W+A ←" and head.world_time == 1.875
    with pytest.raises(ServiceError, match="not a world frame"):
        decode_frame(b"\x00" * 300)


def test_viewer_page_and_status_are_served(service):
    status, html = _http(service, "/")
    assert status == 200
    assert "new WebSocket" in html and f'"{WS_PATH}"' in html
    assert 'type: "open"' in html and 'type: "action"' in html  # it opens and steers
    info = json.loads(_http(service, "/status")[1])
    assert info["ws_path"] == WS_PATH and info["max_sessions"] == 3
    assert info["token_required"] is False


def test_two_clients_get_their_own_worlds(service):
    with WorldClient(service.url) as a, WorldClient(service.url) as b:
        a.open(seed=1, height=48, width=48, pace=False)
        b.open(seed=2, height=48, width=48, pace=False)
        first_a, first_b = a.frame(), b.frame()
        assert (first_a.chunk, first_b.chunk) == (0, 0)
        assert not np.array_equal(first_a.image, first_b.image)  # different cities
        assert _sessions(service) == 2
        a.act("W")
        b.act("←")
        fa = [a.frame() for _ in range(5)]
        fb = [b.frame() for _ in range(5)]
    assert all(str(f.action) == "W" for f in fa)
    assert all(str(f.action) == "←" for f in fb)
    # A walked (its camera moved, without turning); B turned on the spot.
    assert np.linalg.norm(fa[-1].pose[:3, 3] - first_a.pose[:3, 3]) > 0.1
    assert np.allclose(fa[-1].pose[:3, :3], first_a.pose[:3, :3])
    assert np.allclose(fb[-1].pose[:3, 3], first_b.pose[:3, 3])
    assert not np.allclose(fb[-1].pose[:3, :3], first_b.pose[:3, :3])
    assert [f.index for f in fa] == sorted(f.index for f in fa)
    assert _wait_sessions(service, 0) == 0  # closing frees both sessions


_STREAMER = """
import sys
from world.service_client import WorldClient
c = WorldClient(sys.argv[1])
c.open(seed=4, height=32, width=32, pace=False)
c.act("W →")
for _ in range(20):
    c.frame()
print("streaming", flush=True)
while True:
    c.frame()
"""


def test_client_killed_mid_stream_frees_its_session(service):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", _STREAMER, service.url], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "streaming"
        assert _sessions(service) == 1
        proc.kill()
        proc.wait(timeout=5)
        assert _wait_sessions(service, 0) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    with WorldClient(service.url) as c:  # and the service still serves
        assert c.open(seed=0, height=16, width=16)["type"] == "opened"


def test_token_is_required_off_localhost():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    check_bind("127.0.0.1", None)
    with pytest.raises(ServiceError, match="token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(ServiceError, match="token"):
        ServiceConfig(host="0.0.0.0", port=0, token="  ")
    # The command refuses to start without one, with one sentence.
    proc = subprocess.run([sys.executable, "-m", "gui.cli", "world", "serve", "--host",
                           "0.0.0.0", "--port", "0"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, YUME_WORLD_TOKEN=""))
    assert proc.returncode == 2 and "set a token" in proc.stderr

    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address; the check itself is tested")
    svc = WorldService(ServiceConfig(host="0.0.0.0", port=0, token="s3cret",
                                     engines=("sandbox",))).start()
    try:
        url = f"ws://{address}:{svc.port}{WS_PATH}"
        with pytest.raises(ServiceError, match="401"):
            WorldClient(url)
        with pytest.raises(ServiceError, match="401"):
            WorldClient(url, token="wrong")
        with pytest.raises(ServiceError, match="401"):
            WorldClient(url + "?token=s3cre")
        assert svc.status()["sessions"] == 0
        with WorldClient(url, token="s3cret") as c:
            c.open(seed=0, height=16, width=16)
            assert c.frame().image.shape == (16, 16, 3)
        with WorldClient(url + "?token=s3cret") as c:  # the browser viewer's way
            assert c.open(seed=0, height=16, width=16)["type"] == "opened"
    finally:
        svc.stop()


def test_malformed_requests_get_an_error_and_the_service_stays_up(service):
    big = np.random.default_rng(1).integers(0, 256, (160, 160, 3), dtype=np.uint8)  # ~77 KB
    bad_opens = [
        ({"type": "open", "engine": "teapot"}, "Unknown engine"),
        ({"type": "open", "height": 100000, "width": 100000}, "out of range"),
        ({"type": "open", "height": -5}, "out of range"),
        ({"type": "open", "height": "abc"}, "whole number"),
        ({"type": "open", "width": 2.5}, "whole number"),
        ({"type": "open", "format": "jpeg2000"}, "format"),
        ({"type": "open", "colour": "red"}, "Unknown open field"),
        ({"type": "open", "image": base64.b64encode(_png(big)).decode()}, "larger than"),
        ({"type": "open", "image": base64.b64encode(b"hello, not a picture").decode()},
         "not an image"),
        ({"type": "open", "image": "@@@not base64@@@"}, "base64"),
        ({"type": "open", "image": base64.b64encode(_png(big[:4, :4])).decode()},
         "out of range"),
        ({"type": "action", "action": "W"}, "Open a session first"),
    ]
    with WorldClient(service.url) as c:
        for msg, words in bad_opens:
            reply = c.request(msg)
            assert reply["type"] == "error" and words in reply["message"], (msg, reply)
        c.open(seed=3, height=32, width=32, pace=False)  # the same connection still opens
        c.frame()
        for msg, words in [("garbage {", "not valid JSON"),
                           (b"\x00\xffbinary junk", "Binary messages"),
                           ("[1, 2]", "JSON object"),
                           ({"type": "teleport"}, "Unknown request type"),
                           ({"type": "action", "action": "Q"}, "Cannot read 'Q'"),
                           ({"type": "action"}, "needs \"action\""),
                           ({"type": "open"}, "already has a session")]:
            reply = c.request(msg)
            assert reply["type"] == "error" and words in reply["message"], (msg, reply)
        c.act("S")
        frames = [c.frame() for _ in range(3)]
        assert all(str(f.action) == "S" for f in frames)
    # A message far past the upload limit is cut off by the WebSocket layer (close 1009) ...
    with WorldClient(service.url) as c:
        c.send(json.dumps({"type": "open", "image": "A" * (4 * UPLOAD_LIMIT)}))
        with pytest.raises(ServiceError, match="1009"):
            c.receive(timeout=5)
    # ... and the service keeps serving; nothing leaked.
    assert _wait_sessions(service, 0) == 0
    with WorldClient(service.url) as c:
        assert c.open(seed=0, height=16, width=16)["type"] == "opened"


def test_session_limit_is_enforced(service):
    clients = [WorldClient(service.url) for _ in range(3)]
    try:
        for c in clients:
            c.open(seed=0, height=16, width=16)
        with WorldClient(service.url) as extra:
            with pytest.raises(ServiceError, match="limit"):
                extra.open(seed=0, height=16, width=16)
    finally:
        for c in clients:
            c.close()
    assert _wait_sessions(service, 0) == 0


def test_opens_from_an_image_or_a_clip(service):
    rng = np.random.default_rng(2)
    pictures = [np.full((40, 40, 3), c, np.uint8) for c in ((200, 40, 40), (40, 200, 40),
                                                            (40, 40, 200))]
    pictures = [np.clip(p + rng.integers(0, 30, p.shape), 0, 255).astype(np.uint8)
                for p in pictures]
    buf = io.BytesIO()
    Image.fromarray(pictures[0]).save(buf, format="GIF", save_all=True,
                                      append_images=[Image.fromarray(p) for p in pictures[1:]])
    clip_bytes = buf.getvalue()
    frames = []
    with WorldClient(service.url) as c:
        info = c.open(clip=clip_bytes, height=32, width=32)
        assert info["clip_frames"] == 3
        frames.append(c.frame().image)
    im = Image.open(io.BytesIO(clip_bytes))
    im.seek(2)
    last = np.asarray(im.convert("RGB"))  # the GIF's last frame (palette-quantised)
    for _ in range(2):  # the same picture gives the same world
        with WorldClient(service.url) as c:
            c.open(image=_png(last), height=32, width=32)
            frames.append(c.frame().image)
    with WorldClient(service.url) as c:
        c.open(image=_png(pictures[0]), height=32, width=32)
        other = c.frame().image
    assert np.array_equal(frames[1], frames[2])
    assert np.array_equal(frames[0], frames[1])  # a clip starts from its last frame
    assert not np.array_equal(frames[0], other)


def _reader(client: WorldClient, seconds: float, pause: float, out: list) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(client.frame(timeout=5))
        if pause:
            time.sleep(pause)


def test_slow_client_loses_frames_not_the_others_rate(service):
    fast = WorldClient(service.url)
    slow = WorldClient(service.url, recv_buffer=8 * 1024, max_queue=1)
    try:
        fast.open(seed=5, height=32, width=32, frame_rate=25)
        slow.open(seed=6, height=128, width=128, frame_rate=25)
        fast.frame()
        slow.frame()
        fast.act("W ←")
        slow.act("W →")
        got_fast, got_slow = [], []
        threads = [threading.Thread(target=_reader, args=(fast, 3.0, 0.0, got_fast)),
                   threading.Thread(target=_reader, args=(slow, 3.0, 0.3, got_slow))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats_fast, stats_slow = fast.stats(), slow.stats()
    finally:
        fast.close()
        slow.close()
    # The slow reader saw a fraction of its world, with holes, and the service counted them...
    assert stats_slow["dropped"] > 0 and got_slow[-1].dropped > 0
    assert any(b.index - a.index > 1 for a, b in zip(got_slow, got_slow[1:], strict=False))
    # ... while its world kept being generated at the world's pace, not the reader's.
    assert stats_slow["generated"] >= 2 * len(got_slow)
    # The fast reader got (nearly) every frame its world made.
    assert len(got_fast) >= 25
    # Each session says how much CPU its engine's steps took (the rest is the service's own).
    assert 0 < stats_fast["engine_cpu_s"] < 60 and stats_slow["engine_cpu_s"] > 0
    assert stats_fast["dropped"] <= max(2, 0.1 * stats_fast["generated"])
    assert len(got_fast) >= 0.85 * (stats_fast["generated"] - 1)


def test_service_url_forms():
    assert service_url("remote://gpu-box:9000") == "ws://gpu-box:9000/ws"
    assert service_url("127.0.0.1:8765") == "ws://127.0.0.1:8765/ws"
    assert service_url("ws://h:1/ws?token=x") == "ws://h:1/ws?token=x"
    with pytest.raises(ServiceError, match="not a world service address"):
        service_url("http://")


def test_remote_world_is_an_engine_like_the_others(service):
    from control.actions import IDLE, parse_action
    from world.base import WorldError
    from world.registry import make_world
    from world.server import WorldServer

    engine = make_world(f"remote://127.0.0.1:{service.port}/sandbox", height=64, width=64)
    try:
        first = engine.reset(seed=3)
        assert first.frames.shape == (1, 64, 64, 3) and engine.frame_rate > 0
        walked = engine.step(parse_action("W"))
        assert len(walked) == engine.frames_per_step
        # Walking moves the camera forward (OpenCV convention: +z ahead), not sideways.
        ahead = (np.linalg.inv(first.poses[-1]) @ walked.poses[-1])[:3, 3]
        assert ahead[2] > 0.01 and abs(ahead[0]) < 0.5 * ahead[2]
        still = engine.step(IDLE)  # a pause on the service: the last frame, paced
        np.testing.assert_array_equal(still.frames[-1], walked.frames[-1])
        # The window's world thread drives it as it drives a local engine.
        server = WorldServer(engine)
        server.set_action(parse_action("←"))
        server.start()
        deadline, got = time.monotonic() + 5.0, []
        while len(got) < 4 and time.monotonic() < deadline:
            got += server.frames()
            time.sleep(0.02)
        server.stop()
        assert len(got) >= 4 and engine.latency_s is not None and engine.latency_s < 1.0
    finally:
        engine.close()
    assert _wait_sessions(service, 0) == 0  # closing frees the session on the service
    with pytest.raises(WorldError, match="could not open"):
        make_world(f"remote://127.0.0.1:{service.port}/warp-drive").reset(seed=0)
    with pytest.raises(WorldError, match="Cannot reach"):
        make_world("remote://127.0.0.1:9").reset(seed=0)
