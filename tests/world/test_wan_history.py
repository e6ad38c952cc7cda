"""Yume's history compression on the Wan engine, on tiny random 5B- and 14B-I2V-structured
transformers (CPU): the token path equals diffusers' forward when nothing is compressed, the
context stays bounded over a long run, a clip becomes the planned context, and text alone
starts a TI2V world."""

import numpy as np
import pytest
import torch

from control.actions import action_prompt, parse_action
from control.motion import CameraState
from world.base import WorldError
from world.images import fit_image
from world.mvdt.memory import HistorySlot, history_plan, history_token_count
from world.wan.engine import WanWorld
from world.wan.history import WanHistory, chunk_positions, history_config, rope_at, token_velocity
from world.wan.prompts import save_prompt_cache

SIZE = 64  # pixels: 4x4 latents (5B, x16) or 8x8 (14B I2V, x8)
SCHEDULE = [[2, 2], [2, 4], [2, 8]]  # a short table, so a 12-step run reaches its bound


def _world(wan_pair, **kw):
    _, tr, vae = wan_pair
    return WanWorld(transformer=tr, vae=vae, height=SIZE, width=SIZE, num_steps=1,
                    device="cpu", **kw)


def _clip(n, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (48, 80, 3))
    return [np.clip(base + 12 * i, 0, 255).astype(np.uint8) for i in range(n)]


def test_rope_at_integer_positions_is_diffusers_rope(wan_pair):
    _, tr, _ = wan_pair
    hidden = torch.zeros(1, tr.config.in_channels, 3, 8, 6)
    ref_cos, ref_sin = tr.rope(hidden)
    cos, sin = rope_at(tr.rope, chunk_positions(0, 3, 8, 6, (2, 2)))
    assert cos.shape == ref_cos.shape
    torch.testing.assert_close(cos, ref_cos, atol=1e-6, rtol=0)
    torch.testing.assert_close(sin, ref_sin, atol=1e-6, rtol=0)
    # Half-way positions (a compressed token's centre) give angles half-way too.
    half = rope_at(tr.rope, torch.tensor([[0.5, 0.0, 0.0]]))[1][0, 0, 0, : tr.rope.t_dim]
    assert torch.all(half.abs() < ref_sin[0, 4 * 3, 0, : tr.rope.t_dim].abs() + 1e-9)


def test_token_path_without_compression_is_diffusers_forward(wan_pair):
    """A plan that keeps every frame at the base patch gives diffusers' numbers."""
    fam, tr, _ = wan_pair
    g = torch.Generator().manual_seed(1)
    n, f, h = 3, 2, 8
    x = torch.randn(1, tr.config.in_channels, n + f, h, h, generator=g)
    text = torch.randn(1, 512, tr.config.text_dim, generator=g)
    image = (torch.randn(1, 3, tr.config.image_dim, generator=g) if tr.config.image_dim
             else None)
    memory = WanHistory(history_config(h, h, fam.latent_channels, schedule=[[n - 1, 2]]))
    tokens = memory.embed(tr, x[:, :, :n])
    assert len(tokens) == n * (h // 2) ** 2
    kw = {} if image is None else {"encoder_hidden_states_image": image}
    with torch.no_grad():
        if fam.conditioning == "expand":  # per-token timesteps, history clean
            steps = torch.full((1, (n + f) * (h // 2) ** 2), 700.0)
            steps[:, : len(tokens)] = 0.0
            ref = tr(x, steps, text, return_dict=False, **kw)[0][:, :, n:]
            out = token_velocity(tr, tokens, x[:, :, n:], 700.0, text, history_timestep=0.0)
        else:  # one timestep for the whole sequence
            ref = tr(x, torch.tensor([700.0]), text, return_dict=False, **kw)[0][:, :, n:]
            out = token_velocity(tr, tokens, x[:, :, n:], 700.0, text, history_timestep=None,
                                 image=image)
    assert out.shape == (1, tr.config.out_channels, f, h, h)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)


def test_context_stays_bounded_over_a_long_run(wan_pair):
    fam, _, _ = wan_pair
    world = _world(wan_pair, history_schedule=SCHEDULE, seed=2)
    baseline = _world(wan_pair, history="recent", context_latent_frames=64, seed=2)
    world.reset(image=_clip(1)[0])
    baseline.reset(image=_clip(1)[0])
    bound = world.memory.max_tokens()
    tokens, dense = [], []
    for k in range(12):
        chunk = world.step("W" if k % 2 else "D →")
        assert chunk.frames.shape == (4, SIZE, SIZE, 3)
        tokens.append(chunk.info["history_tokens"])
        dense.append(baseline.step("W").info["history_tokens"])
    assert max(tokens) <= bound and tokens[-1] == bound
    assert tokens[-6:] == [bound] * 6  # flat once the table is full (7 frames kept)
    assert len(world.memory) == 1 + sum(c for c, _ in SCHEDULE)
    # The dense baseline (every frame, full resolution) keeps growing.
    assert dense == sorted(dense) and dense[-1] == 12 * dense[0] > 2 * bound
    assert chunk.info["context_latent_frames"] == 7 and chunk.info["history"] == "compressed"


def test_a_clip_becomes_the_planned_context(wan_pair):
    fam, _, _ = wan_pair
    clip = _clip(22)  # trimmed to 1 + 4k = 21 frames -> 6 latent frames
    world = _world(wan_pair, history_schedule=[[1, 2], [2, 4]], seed=0)
    first = world.reset(clip=clip)
    assert first.info["source"] == "clip" and first.info["clip_frames"] == 21
    np.testing.assert_array_equal(first.frames[0], fit_image(clip[-1], SIZE, SIZE))
    np.testing.assert_allclose(first.poses[0], CameraState().pose())  # the origin
    fitted = np.stack([fit_image(f, SIZE, SIZE) for f in clip[1:]])
    encoded = world.codec.encode(fitted)  # the clip's frames encoded together (causal VAE)
    assert encoded.shape[2] == 6
    # Kept: the first latent frame and the newest three (the table's reach); the middle drops.
    assert first.info["history_frames"] == len(world.memory) == 4
    torch.testing.assert_close(world.memory.latents(), encoded[:, :, [0, 3, 4, 5]])
    assert history_plan(4, world.memory.config) == [
        HistorySlot(0, 2, 0), HistorySlot(1, 4, 2), HistorySlot(2, 4, 2), HistorySlot(3, 2, 1)]
    chunk = world.step("W")
    assert chunk.info["context_latent_frames"] == 4
    assert chunk.info["history_tokens"] == history_token_count(4, world.memory.config)
    with pytest.raises(WorldError, match="not both"):
        world.reset(image=clip[0], clip=clip)


def test_text_alone_starts_a_ti2v_world(wan_pair, tmp_path):
    fam, tr, vae = wan_pair
    scenes = ["A rainy street at night.", "A sunny beach."]
    g = torch.Generator().manual_seed(5)
    cache = save_prompt_cache(tmp_path / "p.safetensors", {
        t: torch.randn(512, tr.config.text_dim, generator=g) for t in scenes})
    world = _world(wan_pair, prompt_cache=cache, prompt=scenes[0], seed=4)
    if fam.conditioning == "concat":
        with pytest.raises(WorldError, match="cannot start from text alone"):
            world.reset()
        return
    first = world.reset()
    assert first.info["source"] == "text" and first.frames.shape == (1, SIZE, SIZE, 3)
    assert len(world.memory) == 1
    other = world.reset(prompt=scenes[1])
    assert not np.array_equal(first.frames, other.frames)  # the text conditions the frame
    again = _world(wan_pair, prompt_cache=cache, seed=4).reset(prompt=scenes[0])
    np.testing.assert_array_equal(again.frames, first.frames)
    chunk = world.step(parse_action("W"))
    assert chunk.frames.shape == (4, SIZE, SIZE, 3)
    assert chunk.info["prompt"] == action_prompt(parse_action("W"), fam.prompt_template)
    with pytest.raises(WorldError, match="needs a text encoder or a prompt cache"):
        world.reset(prompt="A text nobody encoded.")
