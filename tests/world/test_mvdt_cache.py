"""Residual caching: bit-identical without reuse, skipped blocks with reuse, importance."""

from __future__ import annotations

import pytest
import torch

from control.actions import Action
from world.mvdt import (
    MVDTPipeline,
    ResidualCache,
    block_importance,
    least_important,
)


def _history(cfg, n=5):
    return torch.randn(cfg.latent_channels, n, cfg.latent_height, cfg.latent_width,
                       generator=torch.Generator().manual_seed(1))


def _generate(model, cache, sampler="euler", **params):
    pipe = MVDTPipeline(model, sampler=sampler, cache=cache, **params)
    return pipe.generate_latents(_history(model.config), Action("W", "→"),
                                 generator=torch.Generator().manual_seed(2)), pipe


@pytest.mark.parametrize("sampler", ["euler", "tts-sde"])
def test_zero_reuse_is_bit_identical(tiny, sampler):
    n_blocks = len(tiny.blocks)
    ref, _ = _generate(tiny, None, sampler, num_steps=6, guidance_scale=3.0)
    cache = ResidualCache(range(n_blocks), reuse=0)
    out, _ = _generate(tiny, cache, sampler, num_steps=6, guidance_scale=3.0)
    assert torch.equal(out, ref)
    assert cache.skipped == 0


def test_reuse_skips_blocks_and_stays_close(tiny):
    ref, _ = _generate(tiny, None, num_steps=12, guidance_scale=3.0)
    cache = ResidualCache([1, 2], reuse=1)
    out, pipe = _generate(tiny, cache, num_steps=12, guidance_scale=3.0)
    # 12 steps x (cond + uncond) calls, every second call reuses 2 blocks.
    assert cache.skipped == 2 * 2 * 6
    assert not torch.equal(out, ref)
    rel = float((out - ref).norm() / ref.norm())
    assert rel < 0.5


def test_cond_and_uncond_keep_separate_residuals(tiny):
    cache = ResidualCache([0], reuse=3)
    first_c, first_u = cache.call("cond"), cache.call("uncond")
    assert first_c.refresh and first_u.refresh
    assert not cache.call("cond").refresh
    assert first_c.store is not first_u.store
    cache.reset()
    assert cache.call("cond").refresh


def test_block_importance_and_selection(tiny):
    cfg = tiny.config
    x = torch.randn(1, cfg.latent_channels, cfg.chunk_latent_frames, 8, 8,
                    generator=torch.Generator().manual_seed(3))
    ctx = tiny.encode_actions([Action("W")])
    scores = block_importance(tiny, x, ctx, _history(cfg)[None], num_steps=10)
    assert scores.shape == (len(tiny.blocks),)
    assert torch.all(scores > 0)  # reusing any residual changes the output a little
    chosen = least_important(scores, 2)
    assert len(chosen) == 2 and all(scores[c] <= scores.max() for c in chosen)
    worst = int(torch.argmax(scores))
    assert worst not in chosen
    assert least_important(scores, 0) == []


def test_each_aam_pass_keeps_its_own_residuals(tiny):
    # AAM samples twice from sigma = 1 (a first pass, then the pass that replaces its low
    # frequencies); the second pass must refresh at its start, not reuse the first pass's end.
    cache = ResidualCache([0, 1], reuse=1)
    _generate(tiny, cache, "aam", num_steps=6, guidance_scale=1.0, steps_replaced=2)
    assert set(cache._stores) == {"cond/0", "cond/1"}
    # 6 calls per pass, every second one reuses both blocks, in each pass.
    assert cache.skipped == 2 * 2 * 3
