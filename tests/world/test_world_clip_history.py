"""A video clip as the start of a world: its frames become the MVDT's compressed history (the
engine directly, through the world service over loopback, and through RemoteWorld), the
sandbox starts from its last frame, and an image with a clip is refused by every engine."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from control.actions import Action
from control.motion import CameraState
from world.base import WorldError
from world.mvdt import save_checkpoint
from world.mvdt.engine import MVDTWorld, prepare_image
from world.mvdt.memory import history_token_count, max_history_tokens
from world.remote import RemoteWorld, clip_png
from world.sandbox import SandboxWorld
from world.service import ServiceConfig, WorldService, decode_clip
from world.service_client import WorldClient

PARAMS = {"num_steps": 1, "guidance_scale": 1.0}


def _clip(n: int, seed: int = 0, shape=(24, 20)) -> list[np.ndarray]:
    """``n`` distinct frames, larger than the tiny model's 16x16 so they are fitted."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for _ in range(n)]


def _fitted(frames, size=16):
    return np.stack([prepare_image(f, size, size) for f in frames])


def test_mvdt_clip_frames_become_the_history(tiny):
    world = MVDTWorld(model=tiny, sampler_params=PARAMS)
    clip = _clip(6)
    first = world.reset(clip=clip)
    assert first.info["source"] == "clip" and first.info["clip_frames"] == 6
    np.testing.assert_array_equal(first.frames[0], _fitted(clip[-1:])[0])
    np.testing.assert_allclose(first.poses[0], CameraState().pose())
    assert len(world.history) == first.info["history_frames"] == 6
    torch.testing.assert_close(world.history.latents(), world.codec.encode(_fitted(clip)))
    assert world.history_tokens == history_token_count(6, tiny.config)
    chunk = world.step(Action("W"))
    assert chunk.info["history_frames"] == 6 and chunk.frames.shape[0] == world.frames_per_step


def test_a_long_clip_is_compressed_and_bounded(tiny):
    cfg = tiny.config
    world = MVDTWorld(model=tiny, sampler_params=PARAMS)
    clip = _clip(20, seed=1)
    world.reset(clip=clip)
    kept = 1 + cfg.max_history_frames
    assert len(world.history) == kept < len(clip)
    # The first frame stays (fine kernel); the newest frames follow; the middle is dropped.
    expected = world.codec.encode(_fitted([clip[0], *clip[-cfg.max_history_frames:]]))
    torch.testing.assert_close(world.history.latents(), expected)
    assert world.history_tokens == max_history_tokens(cfg)


def test_the_clip_history_steers_what_comes_next(tiny):
    """Same seed, same last frame: a clip start and an image start diverge on the next step."""
    clip = _clip(6, seed=2)
    a = MVDTWorld(model=tiny, sampler_params=PARAMS, seed=3)
    b = MVDTWorld(model=tiny, sampler_params=PARAMS, seed=3)
    fa, fb = a.reset(clip=clip), b.reset(image=clip[-1])
    np.testing.assert_array_equal(fa.frames, fb.frames)
    assert not np.array_equal(a.step(Action("W")).frames, b.step(Action("W")).frames)


def test_sandbox_starts_from_the_last_frame_and_everyone_refuses_both(tiny):
    clip = _clip(3, seed=4, shape=(40, 40))
    sandbox = SandboxWorld(height=24, width=24)
    try:
        from_clip = sandbox.reset(clip=clip).frames
        np.testing.assert_array_equal(from_clip, sandbox.reset(image=clip[-1]).frames)
        for engine in (sandbox, MVDTWorld(model=tiny, sampler_params=PARAMS)):
            with pytest.raises(WorldError, match="not both"):
                engine.reset(image=clip[0], clip=clip)
            with pytest.raises(WorldError, match="holds no frames"):
                engine.reset(clip=[])
    finally:
        sandbox.close()


@pytest.fixture(scope="module")
def mvdt_service(tiny, tmp_path_factory):
    ckpt = save_checkpoint(tiny, tmp_path_factory.mktemp("tiny-mvdt"))
    (ckpt / "sampler.json").write_text(json.dumps({"name": "euler", "params": PARAMS}))
    # Engines in threads of the service (the default): these tests look into the session's
    # engine (its history).
    svc = WorldService(ServiceConfig(port=0, engines=("mvdt",), checkpoint=ckpt, max_side=64,
                                     open_timeout=5.0, engine_process=False)).start()
    yield svc
    svc.stop()


def _newest_engine(svc: WorldService):
    """The engine of the newest session (an earlier test's may still be closing)."""
    return max(list(svc.sessions.items()))[1].engine


def test_service_opens_an_mvdt_world_from_a_clip(mvdt_service):
    clip = _clip(6, seed=5)
    upload = clip_png(clip)
    assert all(np.array_equal(x, y) for x, y in zip(decode_clip(upload), clip, strict=True))
    with WorldClient(mvdt_service.url) as c:
        info = c.open("mvdt", clip=upload, height=16, width=16, pace=False)
        assert info["clip_frames"] == 6
        first = c.frame().image
        engine = _newest_engine(mvdt_service)
        assert len(engine.history) == 6
        torch.testing.assert_close(engine.history.latents(), engine.codec.encode(_fitted(clip)))
        c.act("W")
        assert c.frame(timeout=30).image.shape == (16, 16, 3)  # it goes on from that history
    np.testing.assert_array_equal(first, _fitted(clip[-1:])[0])


def test_remote_world_sends_the_clip(mvdt_service):
    clip = _clip(6, seed=6)
    world = RemoteWorld(f"remote://127.0.0.1:{mvdt_service.port}", engine="mvdt", height=16,
                        width=16, timeout=30.0)
    try:
        first = world.reset(clip=clip)
        np.testing.assert_array_equal(first.frames[-1], _fitted(clip[-1:])[0])
        assert len(_newest_engine(mvdt_service).history) == 6
        with pytest.raises(WorldError, match="not both"):
            world.reset(image=clip[0], clip=clip)
    finally:
        world.close()


def test_clip_png_is_an_animated_png():
    clip = _clip(3, seed=7)
    im = Image.open(io.BytesIO(clip_png(clip)))
    assert im.format == "PNG" and getattr(im, "n_frames", 1) == 3
