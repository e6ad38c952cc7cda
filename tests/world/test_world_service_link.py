"""The remote world's link: a killed and restarted service, a dropped connection, tokens.

Real services on loopback: a ``serve_forever`` process killed with SIGKILL and started again on
the same port, and uvicorn threads stopped and restarted.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from control.actions import IDLE, parse_action
from world.base import WorldError
from world.remote import RemoteWorld
from world.server import WorldServer
from world.service import ServiceConfig, WorldService
from world.service_client import WorldClient

ROOT = Path(__file__).resolve().parents[2]
WALK = parse_action("W")

_SERVE = """
import sys
from world.service import ServiceConfig, WorldService
svc = WorldService(ServiceConfig(port=int(sys.argv[1]), engines=("sandbox",)))
svc.bind()
print("ready", flush=True)
svc.serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _until(predicate, timeout: float, step=None) -> bool:
    """Poll ``predicate`` (calling ``step`` between polls) until it holds or time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if step is not None:
            step()
        else:
            time.sleep(0.05)
    return predicate()


def _take(server: WorldServer, into: list) -> None:
    into.extend(server.frames())
    time.sleep(0.02)


def _service(port: int = 0, token: str | None = None) -> WorldService:
    return WorldService(ServiceConfig(port=port, token=token, engines=("sandbox",),
                                      max_side=128, open_timeout=5.0)).start()


def test_remote_world_survives_a_killed_and_restarted_service(caplog):
    caplog.set_level(logging.INFO, logger="world.remote")
    port = _free_port()
    proc = _serve(port)
    engine = RemoteWorld(f"remote://127.0.0.1:{port}", height=32, width=32, timeout=3.0,
                         backoff=(0.1, 0.4))
    try:
        first = engine.reset(seed=3)
        assert engine.link_state == "connected"
        walked = [engine.step(WALK) for _ in range(3)]
        before = walked[-1]
        assert np.linalg.norm(before.poses[-1][:3, 3] - first.poses[-1][:3, 3]) > 0.05

        proc.kill()
        proc.wait(timeout=5)
        # Walking on while the service is gone: the last picture, never an exception.
        held = engine.step(WALK)
        assert _until(lambda: engine.link_state.startswith("reconnecting"), 5.0,
                      step=lambda: engine.step(WALK))
        held = engine.step(WALK)
        np.testing.assert_array_equal(held.frames[-1], before.frames[-1])
        np.testing.assert_array_equal(held.poses[-1], before.poses[-1])
        assert re.fullmatch(r"reconnecting \(\d+ s\)", engine.link_state)
        assert held.info["link"].startswith("reconnecting")

        proc = _serve(port)  # the same port, a fresh process with no sessions
        assert _until(lambda: engine.link_state == "connected", 15.0,
                      step=lambda: engine.step(WALK))
        assert engine.reconnects == 1
        after = [engine.step(WALK) for _ in range(2)]
    finally:
        engine.close()
        proc.kill()
        proc.wait(timeout=5)
    # The world goes on from where it was: time runs forward from the last frame and the
    # camera moves on from the last pose (a small step, not back to the spawn point).
    last_time = before.timestamps[-1]
    assert after[0].timestamps[0] > last_time
    assert np.all(np.diff(np.concatenate([c.timestamps for c in after])) > 0)
    step_size = np.linalg.norm(walked[1].poses[-1][:3, 3] - walked[0].poses[-1][:3, 3])
    moved = np.linalg.norm(after[-1].poses[-1][:3, 3] - before.poses[-1][:3, 3])
    assert 0 < moved < 4 * step_size + 1e-6
    assert not np.array_equal(after[-1].frames[-1], before.frames[-1])  # frames flow again
    text = caplog.text
    assert "link lost" in text and "link back" in text and "reopened from the last frame" in text


@pytest.fixture
def service():
    svc = _service()
    yield svc
    svc.stop()


def test_dropped_connection_reconnects_from_the_last_frame_and_the_window_thread_goes_on(
        service):
    engine = RemoteWorld(f"remote://127.0.0.1:{service.port}", height=32, width=32,
                         timeout=3.0, backoff=(0.05, 0.2))
    try:
        engine.reset(seed=5)
        server = WorldServer(engine)  # the window's world thread
        server.set_action(WALK)
        server.start()
        try:
            assert _until(lambda: len(server.frames()) > 0, 5.0)
            server.set_action(IDLE)  # standing still: nothing reads from the socket ...
            time.sleep(0.3)
            server.frames()
            shown = engine._last.frames[-1].copy()
            engine.client.abort()  # ... and the link drops
            # ... yet it is noticed, and repaired, without a single step.
            assert _until(lambda: engine.reconnects == 1, 5.0)
            assert engine.link_state == "connected"
            assert _until(lambda: service.status()["sessions"] == 1, 5.0)  # the old one freed
            server.set_action(WALK)
            got = []
            assert _until(lambda: len(got) >= 2, 5.0, step=lambda: _take(server, got))
            assert server.error is None
        finally:
            server.stop()
    finally:
        engine.close()
    # The reopened session started from the picture shown: a client opened from that same
    # picture and walking gets the very frames the remote world got.
    with WorldClient(service.url) as c:
        c.open(image=shown, height=32, width=32, pace=False)
        c.frame()
        c.act(WALK)
        twin = c.frame()
    np.testing.assert_array_equal(got[0].image, twin.image)
    assert _until(lambda: service.status()["sessions"] == 0, 5.0)


def test_a_wrong_or_missing_token_is_one_clear_sentence(monkeypatch):
    svc = _service(token="s3cret")
    url = f"remote://127.0.0.1:{svc.port}"
    try:
        monkeypatch.delenv("YUME_WORLD_TOKEN", raising=False)
        with pytest.raises(WorldError) as wrong:
            RemoteWorld(url, height=16, width=16, token="wrong").reset(seed=0)
        with pytest.raises(WorldError) as missing:
            RemoteWorld(url, height=16, width=16).reset(seed=0)
        monkeypatch.setenv("YUME_WORLD_TOKEN", "s3cret")
        engine = RemoteWorld(url, height=16, width=16)
        assert engine.reset(seed=0).frames.shape == (1, 16, 16, 3)
        engine.close()
    finally:
        svc.stop()
    for err, words in ((wrong, "refused the token"), (missing, "requires a token")):
        message = str(err.value)
        assert words in message and "YUME_WORLD_TOKEN" in message
        # One sentence: a single full stop, at the end (the URL's dots are not sentences).
        assert message.endswith(".") and message.count(". ") == 0 and "\n" not in message


def test_a_service_back_with_another_token_or_never_back_is_a_lost_link(monkeypatch):
    monkeypatch.delenv("YUME_WORLD_TOKEN", raising=False)
    svc = _service(token="first")
    port = svc.port
    engine = RemoteWorld(f"remote://127.0.0.1:{port}", height=16, width=16, token="first",
                         timeout=2.0, backoff=(0.05, 0.2))
    try:
        engine.reset(seed=1)
        engine.step(WALK)
        svc.stop()  # a graceful stop: the service closes the connection itself
        assert _until(lambda: engine.link_state.startswith("reconnecting"), 5.0)
        svc = _service(port=port, token="second")  # restarted with another token
        assert _until(lambda: engine.link_state.startswith("lost"), 10.0)
        assert "refused the token" in engine.link_state
        assert engine.step(WALK).info["link"].startswith("lost")  # still no exception
    finally:
        engine.close()
        svc.stop()
    assert engine.link_state == "closed"

    svc = _service()
    engine = RemoteWorld(f"remote://127.0.0.1:{svc.port}", height=16, width=16, timeout=1.0,
                         give_up_s=0.5, backoff=(0.05, 0.1))
    try:
        engine.reset(seed=1)
        svc.stop()  # and never comes back
        assert _until(lambda: engine.link_state.startswith("lost"), 10.0)
        assert "no answer for 0.5 s" in engine.link_state
    finally:
        engine.close()
