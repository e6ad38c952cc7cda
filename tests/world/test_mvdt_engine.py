"""MVDTWorld: starting from images and seeds, long runs with flat memory, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from control.actions import Action, action_prompt
from control.motion import CameraState, MotionStep, apply_action
from world.base import WorldEngine, WorldError
from world.mvdt import MVDTModel, MVDTPipeline, PixelCodec, preset, save_checkpoint
from world.mvdt.engine import MVDTWorld, prepare_image
from world.mvdt.memory import max_history_tokens


def _world(model, **kw):
    params = {"num_steps": 1, "guidance_scale": 1.0}
    return MVDTWorld(model=model, sampler_params=params, **kw)


def test_is_a_world_engine_with_model_resolution(tiny):
    world = _world(tiny)
    assert isinstance(world, WorldEngine) and world.name == "mvdt"
    assert (world.height, world.width) == (16, 16)
    assert world.frames_per_step == tiny.config.chunk_latent_frames


def test_step_returns_frames_timestamps_and_commanded_poses(tiny):
    world = _world(tiny, frame_rate=8.0)
    first = world.reset(seed=1)
    assert first.frames.shape == (1, 16, 16, 3) and first.frames.dtype == np.uint8
    action = Action("W", "→")
    chunk = world.step(action)
    n = world.frames_per_step
    assert chunk.frames.shape == (n, 16, 16, 3) and chunk.frames.dtype == np.uint8
    np.testing.assert_allclose(chunk.timestamps, np.arange(1, n + 1) / 8.0)
    state = CameraState()
    for k in range(n):
        state = apply_action(state, action, MotionStep())
        np.testing.assert_allclose(chunk.poses[k], state.pose())
    np.testing.assert_allclose(world.pose, chunk.poses[-1])
    assert chunk.action == action and chunk.info["model_evals"] == 1
    # Key strings work too; a bad one is a clear WorldError.
    assert world.step("S ←").action == Action("S", "←")
    with pytest.raises(WorldError, match="not a key"):
        world.step("jump")
    with pytest.raises(WorldError, match="needs an Action"):
        world.step(42)


def test_reset_is_reproducible(tiny):
    a, b = _world(tiny), _world(tiny)
    fa = [a.reset(seed=5).frames] + [a.step(Action("W")).frames for _ in range(2)]
    fb = [b.reset(seed=5).frames] + [b.step(Action("W")).frames for _ in range(2)]
    for x, y in zip(fa, fb, strict=True):
        assert np.array_equal(x, y)
    other = a.reset(seed=6).frames
    assert not np.array_equal(other, fa[0])


def test_120_steps_with_flat_token_count_and_memory(tiny):
    world = _world(tiny)
    world.reset(seed=0)
    tokens, kept = [], []
    actions = [Action("W"), Action("·", "→"), Action("A", "↑"), Action("S+D", "↓←")]
    for i in range(120):
        chunk = world.step(actions[i % 4])
        tokens.append(chunk.info["history_tokens"])
        kept.append(len(world.history))
    cfg = tiny.config
    assert max(tokens) <= max_history_tokens(cfg)
    assert len(set(tokens[20:])) == 1 and len(set(kept[20:])) == 1  # flat
    assert max(kept) == 1 + cfg.max_history_frames
    assert world.history.total_frames == 1 + 120 * cfg.chunk_latent_frames
    assert chunk.timestamps[-1] == pytest.approx(120 * world.frames_per_step / world.frame_rate)


def test_reset_from_images_of_any_size_and_mode(tiny, tmp_path):
    world = _world(tiny)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (37, 51, 3), dtype=np.uint8)  # odd size, other aspect
    inputs = [
        rgb,
        Image.fromarray(rgb).convert("L"),
        Image.fromarray(rgb).convert("RGBA"),
        Image.fromarray(rgb).convert("P"),
        Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),  # 16-bit grey (I;16)
        rgb[..., 0],  # grayscale array
        rgb.astype(np.float32) / 255.0,
        (rgb.astype(np.uint16) * 257),
        np.dstack([rgb, np.full((37, 51), 255, np.uint8)]),  # RGBA array
        torch.from_numpy(rgb),
    ]
    path = tmp_path / "start.png"
    Image.fromarray(rgb).save(path)
    inputs.append(path)
    for image in inputs:
        chunk = world.reset(image=image)
        assert chunk.frames.shape == (1, 16, 16, 3) and chunk.frames.dtype == np.uint8
        assert chunk.info["source"] == "image"
        assert world.step(Action("W")).frames.shape[1:] == (16, 16, 3)
    # The 16-bit and 8-bit versions of one picture give the same start frame.
    a = prepare_image(rgb.astype(np.uint16) * 257, 16, 16)
    b = prepare_image(rgb, 16, 16)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((0, 5, 3), np.uint8), "too small"),
        (np.zeros((3, 16, 16), np.uint8), "channel-first"),
        (np.zeros((4, 4, 4, 3), np.uint8), "shape"),
        (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
        (np.zeros((8, 8, 3), np.complex64), "not supported"),
        ("no/such/file.png", "Cannot read"),
        ([1, 2, 3], "must be a file path"),
    ],
)
def test_bad_images_are_clear_errors(tiny, image, match):
    world = _world(tiny)
    with pytest.raises(WorldError, match=match):
        world.reset(image=image)


def test_prepare_image_centre_crops():
    img = np.zeros((10, 30, 3), np.uint8)
    img[:, 10:20] = 255  # the centre third is white
    out = prepare_image(img, 8, 8)
    assert out.shape == (8, 8, 3) and out.min() > 200


def test_no_checkpoint_says_how_to_train(tmp_path):
    with pytest.raises(WorldError, match="yume world train"):
        MVDTWorld(checkpoint=tmp_path / "nothing")


def test_engine_from_checkpoint_with_sampler_file(tiny, tmp_path):
    ck = save_checkpoint(tiny, tmp_path / "ck")
    (ck / "sampler.json").write_text(
        '{"name": "tts-sde", "params": {"num_steps": 2, "guidance_scale": 1.0, "eta": 0.0}}',
        encoding="utf-8")
    world = MVDTWorld(checkpoint=ck)
    assert world.pipeline.sampler.name == "tts-sde" and world.pipeline.sampler.num_steps == 2
    world.reset(seed=0)
    assert world.step(Action("D")).frames.shape == (2, 16, 16, 3)


def test_pipeline_frames_match_engine_codec(tiny):
    codec = PixelCodec(2)
    frames = np.random.default_rng(1).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    z = codec.encode(frames)
    assert z.shape == (12, 3, 8, 8)
    assert np.array_equal(codec.decode(z), frames)
    pipe = MVDTPipeline(tiny, codec, num_steps=2, guidance_scale=1.0)
    out, latents = pipe.generate_frames(z, Action("W"), torch.Generator().manual_seed(0))
    assert out.shape == (2, 16, 16, 3) and latents.shape == (12, 2, 8, 8)


def test_registry_builds_mvdt_and_seed_renders_the_sandbox(tiny):
    from world.registry import available_worlds, make_world

    assert "mvdt" in available_worlds()
    world = make_world("mvdt", model=tiny, height=32, width=24,
                       sampler_params={"num_steps": 1, "guidance_scale": 1.0})
    first = world.reset(seed=4)
    assert first.info["source"] == "sandbox"
    assert first.frames.shape == (1, 32, 24, 3)  # display size; the model runs at 16x16
    assert world.step(Action("W")).frames.shape == (world.frames_per_step, 32, 24, 3)
    assert first.frames.std() > 0  # a rendered scene, not a blank frame
    with pytest.raises(WorldError, match="frames per step"):
        make_world("mvdt", model=tiny, frames_per_step=7)
    with pytest.raises(WorldError, match="Resolution"):
        make_world("mvdt", model=tiny, height=-1, width=5)


def test_pipeline_cfg_one_is_the_conditional_model_alone(tiny):
    from world.mvdt import shifted_sigmas

    cfg = tiny.config
    g = torch.Generator().manual_seed(0)
    hist = torch.randn(cfg.latent_channels, 3, 8, 8, generator=g)
    noise = torch.randn(1, cfg.latent_channels, cfg.chunk_latent_frames, 8, 8, generator=g)
    pipe = MVDTPipeline(tiny, num_steps=3, guidance_scale=1.0)
    out = pipe.generate_latents(hist, Action("W", "↓"), noise=noise)
    assert pipe.sampler.num_evals == 3
    with torch.no_grad():
        ctx = tiny.encode_actions([Action("W", "↓")])
        h = tiny.embed_history(hist[None])
        x, sig = noise, shifted_sigmas(3, 3.0).tolist()
        for i in range(3):
            x = x + (sig[i + 1] - sig[i]) * tiny(x, sig[i], ctx, h)
    assert torch.equal(out, x[0])
    guided = MVDTPipeline(tiny, num_steps=3, guidance_scale=5.0)
    assert not torch.equal(guided.generate_latents(hist, Action("W", "↓"), noise=noise), out)
    assert guided.sampler.num_evals == 6


def test_negative_actions_release_the_translation_key():
    from world.mvdt.pipeline import negative_actions

    acts = [Action("W", "→"), Action("·", "←"), Action("S+D"), None]
    assert negative_actions(acts, "null") == [None] * 4
    assert negative_actions(acts, "still") == [Action("·", "→"), None, Action(), None]
    assert negative_actions(["W RIGHT", action_prompt(Action("S", "↑"))], "still") == [
        Action("·", "→"), Action("·", "↑")]
    with pytest.raises(WorldError, match="guidance negative"):
        negative_actions(acts, "opposite")
    with pytest.raises(WorldError, match="guidance negative"):
        MVDTPipeline(MVDTModel(preset("tiny")), negative="opposite")


def test_still_negative_guides_against_standing_still(tiny):
    cfg = tiny.config
    g = torch.Generator().manual_seed(3)
    hist = torch.randn(2, cfg.latent_channels, 3, 8, 8, generator=g)
    noise = torch.randn(2, cfg.latent_channels, cfg.chunk_latent_frames, 8, 8, generator=g)
    acts = [Action("W", "→"), Action("·", "←")]

    def run(negative, scale):
        pipe = MVDTPipeline(tiny, num_steps=2, guidance_scale=scale, negative=negative)
        return pipe.generate_latents(hist, acts, noise=noise)

    null, still = run("null", 2.0), run("still", 2.0)
    # Walking is guided away from standing still, not from the null prompt ...
    assert not torch.allclose(null[0], still[0])
    # ... and an action without a translation key keeps Yume's null-prompt guidance.
    torch.testing.assert_close(null[1], still[1])
    # Without guidance the negative is never used.
    assert torch.equal(run("null", 1.0), run("still", 1.0))
    # The same, written out: v = v(W ->) + 1 * (v(W ->) - v(. ->)) at each of the two steps.
    from world.mvdt import shifted_sigmas

    with torch.no_grad():
        h = tiny.embed_history(hist[:1])
        c, u = tiny.encode_actions([acts[0]]), tiny.encode_actions([Action("·", "→")])
        x, sig = noise[:1], shifted_sigmas(2, 3.0).tolist()
        for i in range(2):
            vc, vu = tiny(x, sig[i], c, h), tiny(x, sig[i], u, h)
            x = x + (sig[i + 1] - sig[i]) * (vu + 2.0 * (vc - vu))
    torch.testing.assert_close(still[:1], x)
    with pytest.raises(WorldError, match="2 histories"):
        MVDTPipeline(tiny, num_steps=1).generate_latents(hist, acts[:1], noise=noise)


def test_sampler_file_sets_the_guidance_negative(tiny, tmp_path):
    from world.mvdt.engine import read_sampler_spec

    ck = save_checkpoint(tiny, tmp_path / "ck")
    assert read_sampler_spec(ck) == ("euler", {}, "null")
    (ck / "sampler.json").write_text(
        '{"name": "euler", "params": {"num_steps": 1, "guidance_scale": 2.0}, '
        '"negative": "still"}', encoding="utf-8")
    assert MVDTWorld(checkpoint=ck).pipeline.negative == "still"
    assert MVDTWorld(checkpoint=ck, negative="null").pipeline.negative == "null"
    (ck / "sampler.json").write_text('{"name": "euler", "negative": "sideways"}')
    with pytest.raises(WorldError, match="guidance negative"):
        MVDTWorld(checkpoint=ck)
    (ck / "sampler.json").write_text('["euler"]')
    with pytest.raises(WorldError, match="sampler file"):
        MVDTWorld(checkpoint=ck)
