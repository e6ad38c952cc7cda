"""World engines in processes of their own (world.engine_process), alone and in the service."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from control.actions import parse_action
from world.base import WorldError
from world.engine_process import EngineProcessError, ProcessWorld
from world.registry import make_world
from world.service import ServiceConfig, WorldService
from world.service_client import WorldClient


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_a_process_world_makes_the_frames_of_the_engine_itself():
    local = make_world("sandbox", height=32, width=32)
    remote = ProcessWorld("sandbox", height=32, width=32)
    try:
        assert remote.pid != os.getpid() and remote.alive
        assert (remote.name, remote.height, remote.width, remote.frames_per_step) == (
            "sandbox", 32, 32, 1)
        np.testing.assert_array_equal(remote.reset(seed=4).frames, local.reset(seed=4).frames)
        for key in ("W", "W+A ←", "D", "S →"):
            a, b = remote.step(parse_action(key)), local.step(parse_action(key))
            np.testing.assert_array_equal(a.frames, b.frames)
            np.testing.assert_array_equal(a.poses, b.poses)
            assert a.action == b.action
        np.testing.assert_array_equal(remote.pose, local.pose)
    finally:
        remote.close()
        local.close()
    assert _wait(lambda: not remote.alive)
    with pytest.raises(EngineProcessError, match="closed"):
        remote.step(parse_action("W"))


def test_the_engines_errors_come_back_as_sentences():
    with pytest.raises(WorldError, match="Resolution"):
        ProcessWorld("sandbox", height=-3, width=32)
    world = ProcessWorld("sandbox", height=32, width=32)
    try:
        with pytest.raises(WorldError, match="not both"):
            world.reset(image=np.zeros((32, 32, 3), np.uint8),
                        clip=[np.zeros((32, 32, 3), np.uint8)] * 2)
        assert world.reset(seed=1).frames.shape == (1, 32, 32, 3)  # it is still usable
    finally:
        world.close()


def test_a_killed_engine_process_is_reported_not_waited_for():
    world = ProcessWorld("sandbox", height=32, width=32)
    world.reset(seed=2)
    os.kill(world.pid, signal.SIGKILL)
    assert _wait(lambda: not world.alive)
    with pytest.raises(EngineProcessError, match="ended unexpectedly"):
        world.step(parse_action("W"))
    world.close()


@pytest.fixture(scope="module")
def service():
    svc = WorldService(ServiceConfig(port=0, max_side=128, open_timeout=5.0,
                                     engine_process=True)).start()
    yield svc
    svc.stop()


def _engine(svc: WorldService) -> ProcessWorld:
    _wait(lambda: bool(svc.sessions))
    return max(list(svc.sessions.items()))[1].engine


def test_service_sessions_run_their_engines_in_processes_that_end_with_them(service):
    with WorldClient(service.url, timeout=30) as c:
        c.open("sandbox", seed=3, height=32, width=32, pace=False)
        c.frame()
        engine = _engine(service)
        assert isinstance(engine, ProcessWorld) and engine.pid != os.getpid()
        c.act("W")
        frames = [c.frame() for _ in range(20)]
        assert [f.index for f in frames] == sorted(f.index for f in frames)
        assert c.stats()["chunks"] >= 20
    assert _wait(lambda: not engine.alive)  # the client left: its engine process ends
    assert _wait(lambda: not service.sessions)


def test_a_killed_engine_ends_its_session_with_a_sentence_and_the_service_stays_up(service):
    with WorldClient(service.url, timeout=30) as c:
        c.open("sandbox", seed=3, height=32, width=32, pace=False)
        c.frame()
        engine = _engine(service)
        c.act("W")
        c.frame()
        os.kill(engine.pid, signal.SIGKILL)
        with pytest.raises(Exception, match="ended unexpectedly"):
            for _ in range(100_000):  # the frames already sent, then the sentence
                c.frame(timeout=10)
    with WorldClient(service.url, timeout=30) as c:  # another session works as before
        c.open("sandbox", seed=4, height=32, width=32)
        c.act("D")
        assert c.frame(timeout=10).image.shape == (32, 32, 3)


def test_the_engine_wire_carries_data_only():
    from pathlib import Path

    from world.base import Chunk
    from world.engine_wire import WireError, decode, encode

    chunk = Chunk(np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3), np.array([0.5]),
                  np.eye(4)[None], parse_action("W ←"), {"collided": np.bool_(True), "n": 3})
    msg = ["ok", chunk, bytearray(b"frame"), {"checkpoint": Path("a/b"), "seed": None}]
    got = decode(encode(msg))
    np.testing.assert_array_equal(got[1].frames, chunk.frames)
    assert got[1].action == chunk.action and got[1].info == {"collided": True, "n": 3}
    assert got[2] == bytearray(b"frame") and got[3] == {"checkpoint": Path("a/b"), "seed": None}
    with pytest.raises(WireError, match="cannot be sent"):
        encode(["ok", object()])
    with pytest.raises(WireError, match="could not be read"):
        decode(b"\x00\x00\x00\x05garbage")
