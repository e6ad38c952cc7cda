"""The Wan world engine on tiny random 5B- and 14B-I2V-structured checkpoints, on the CPU: VAE
folders loaded back, chunks of the right shape, frames, timestamps and poses, prompts from a
cache, and the registry path ``make_world("wan", checkpoint=DIR)``."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel

from control.actions import action_prompt, parse_action
from world.base import WorldError
from world.registry import make_world
from world.wan import tiny_family
from world.wan.engine import WanVAECodec, WanWorld
from world.wan.loading import load_vae, save_transformer, save_vae
from world.wan.prompts import (
    CachedPrompts,
    UMT5Prompts,
    make_prompt_encoder,
    save_prompt_cache,
    transformers_available,
)

SIZE = 64  # pixels: 4x4 latents (5B, x16) or 8x8 (14B I2V, x8)


@pytest.fixture(scope="module", params=["yume-5b-720p", "yume-i2v-540p"])
def checkpoint(request, tmp_path_factory):
    """A pipeline folder: transformer/ in Yume's original layout, vae/ in diffusers layout."""
    fam = tiny_family(request.param)
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp(request.param)
    save_transformer(WanTransformer3DModel(**fam.transformer), root / "transformer", "original")
    vae = AutoencoderKLWan(**fam.vae).eval()
    save_vae(vae, root / "vae")
    return fam, root, vae


def test_vae_folder_round_trip(checkpoint):
    fam, root, vae = checkpoint
    loaded = load_vae(root)  # the pipeline folder: vae/ is found
    frame = np.random.default_rng(0).integers(0, 256, (1, SIZE, SIZE, 3), dtype=np.uint8)
    ours, ref = WanVAECodec(loaded), WanVAECodec(vae)
    z = ours.encode(frame)
    t, s, _ = fam.compression
    assert z.shape == (1, fam.latent_channels, 1, SIZE // s, SIZE // s)
    assert torch.allclose(z, ref.encode(frame), atol=1e-6)
    out = ours.decode(torch.cat([z, z], dim=2))
    assert out.shape == (1 + t, SIZE, SIZE, 3) and out.dtype == np.uint8
    with pytest.raises(WorldError, match="not a diffusers AutoencoderKLWan"):
        load_vae(root / "transformer")


def test_steps_give_chunks(checkpoint):
    fam, root, _ = checkpoint
    world = WanWorld(root, height=SIZE, width=SIZE, num_steps=2, chunk_latent_frames=1,
                     seed=3, device="cpu")
    assert world.conditioning == fam.conditioning and world.dtype == torch.float32
    first = world.reset(image=np.full((80, 120, 3), 128, np.uint8))
    assert first.frames.shape == (1, SIZE, SIZE, 3)
    a = world.step("W")
    b = world.step(parse_action("D →"))
    for chunk in (a, b):
        assert chunk.frames.shape == (4, SIZE, SIZE, 3) and chunk.frames.dtype == np.uint8
        assert chunk.poses.shape == (4, 4, 4)
    assert np.allclose(np.diff(np.r_[a.timestamps, b.timestamps]), 1 / world.frame_rate)
    assert a.poses[-1][2, 3] > 0  # W moves the camera forward (+z)
    assert a.info["prompt"] == action_prompt(parse_action("W"), fam.prompt_template)
    assert a.info["prompt_source"] == "zeros" and a.info["model_evals"] == 2
    assert b.info["context_latent_frames"] == 2
    # Same seed, same actions -> same frames; the noise is seeded per world.
    again = WanWorld(root, height=SIZE, width=SIZE, num_steps=2, seed=3, device="cpu")
    again.reset(image=np.full((80, 120, 3), 128, np.uint8))
    assert np.array_equal(again.step("W").frames, a.frames)


def test_registry_and_prompt_cache(checkpoint, tmp_path):
    fam, root, _ = checkpoint
    text_dim = fam.transformer["text_dim"]
    prompt = action_prompt(parse_action("S"), fam.prompt_template)
    cache = save_prompt_cache(tmp_path / "p.safetensors", {prompt: torch.ones(512, text_dim)})
    assert len(CachedPrompts(cache, text_dim)) == 1
    world = make_world("wan", checkpoint=root, height=SIZE, width=SIZE, num_steps=1,
                       prompt_cache=cache, guidance_scale=2.0)
    world.reset(seed=1)
    chunk = world.step("S")
    assert chunk.info["prompt_source"] == "cache" and chunk.info["model_evals"] == 2
    assert world.step("W").info["prompt_source"] == "zeros"  # not cached: falls through


def test_bad_settings_are_refused(checkpoint, tmp_path):
    _, root, _ = checkpoint
    with pytest.raises(WorldError, match="not a multiple of 32 pixels|not a multiple of 16"):
        WanWorld(root, height=72, width=SIZE, device="cpu")
    with pytest.raises(WorldError, match="frames per step"):
        WanWorld(root, height=SIZE, width=SIZE, frames_per_step=5, device="cpu")
    with pytest.raises(WorldError, match="needs a checkpoint"):
        WanWorld()
    with pytest.raises(WorldError, match="No checkpoint folder"):
        make_world("wan", checkpoint=tmp_path / "absent")
    bad = tmp_path / "bad.safetensors"
    save_prompt_cache(bad, {"x": torch.ones(512, 3)})
    with pytest.raises(WorldError, match="another width"):
        make_prompt_encoder(512, 16, prompt_cache=bad)


@pytest.mark.skipif(transformers_available(), reason="checks the path without transformers")
def test_text_encoder_needs_transformers(tmp_path):
    with pytest.raises(WorldError, match="needs the transformers package"):
        UMT5Prompts(tmp_path)
    enc = make_prompt_encoder(512, 16, checkpoint=tmp_path)
    assert [s.name for s in enc.sources] == ["zeros"]
    emb, source = enc.encode("anything")
    assert source == "zeros" and emb.shape == (512, 16) and not emb.any()
