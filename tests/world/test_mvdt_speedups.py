"""Inference reuse of the MVDT (world/mvdt/reuse.py): the same frames, to the bit, faster.

Every reuse keeps a result of the very computation it replaces, so the frames of a drive with
reuse on (the default) must equal those with it off (``reuse.disabled()``, the computation
before it existed). On the development CPU they are equal to the bit; three of the changes
(fused QKV, guidance batched as a pair, the last block on the chunk's rows) are exact only
because of how its BLAS splits the work, so across paths the tests allow float round-off
(latents within 1e-4, frames within one grey level) and no more.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from control.actions import Action
from world.mvdt import MVDTModel, MVDTPipeline, ResidualCache, preset, reuse
from world.mvdt.checkpoint import DEFAULT_CHECKPOINT
from world.mvdt.engine import MVDTWorld
from world.mvdt.samplers import get_sampler


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to float round-off (another CPU's BLAS may split a product differently)."""
    return a.shape == b.shape and torch.allclose(a, b, rtol=0, atol=1e-4)


def _same_frames(a: np.ndarray, b: np.ndarray) -> bool:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return a.shape == b.shape and int(diff.max(initial=0)) <= 1

# Walking, turning both ways, strafing, pitching and standing still: every kind of chunk, and
# the shipped sampler's guided step (uncond + cond batched) at each.
DRIVE = ["W", "W →", "←", "A ↑", "·", "W"]


def _drive(world: MVDTWorld, actions=DRIVE, seed: int = 3100003):
    latents = []
    generate = world.pipeline.generate_latents

    def spy(*args, **kwargs):
        out = generate(*args, **kwargs)
        latents.append(out.clone())
        return out

    world.pipeline.generate_latents = spy
    try:
        frames = [world.reset(seed=seed).frames] + [world.step(a).frames for a in actions]
    finally:
        world.pipeline.generate_latents = generate
    return np.concatenate(frames), torch.stack(latents)


@pytest.fixture(scope="module", params=[True, False], ids=["learned-depth", "prior-depth"])
def shipped(request):
    if not (DEFAULT_CHECKPOINT / "model.safetensors").is_file():
        pytest.skip("the shipped MVDT checkpoint is not in this checkout")
    return MVDTWorld(use_depth=request.param)


def test_shipped_drive_is_bit_identical_with_and_without_reuse(shipped):
    from world.mvdt.depth import DepthWarp

    fast_frames, fast_latents = _drive(shipped)
    assert len(shipped.model._memo) > 0
    # The sampling grids are kept by camera geometry only with the fixed prior: a learned
    # depth makes them depend on the frames.
    learned = isinstance(shipped.warp_memory.warp, DepthWarp)
    assert learned == (shipped.warp_memory.grids.misses == 0)
    with reuse.disabled():
        hits = shipped.model._memo.hits
        slow_frames, slow_latents = _drive(shipped)
        assert shipped.model._memo.hits == hits  # off means off
    assert fast_frames.shape == (1 + 4 * len(DRIVE), 64, 64, 3)
    assert _same_frames(fast_frames, slow_frames)
    assert _same(fast_latents, slow_latents)
    # And again with everything memoised from the first drive: still the same numbers.
    again_frames, again_latents = _drive(shipped)
    assert _same_frames(again_frames, slow_frames)
    assert _same(again_latents, slow_latents)
    assert shipped.model._memo.hits > 0


def _warp_model() -> MVDTModel:
    cfg = preset("small", frame_height=32, frame_width=32, latent_height=8, latent_width=8,
                 latent_channels=48, prediction="x0", refiner_channels=8, dim=32, ffn_dim=64,
                 num_encoder_blocks=1, num_decoder_blocks=2, freq_dim=32, action_dim=16,
                 action_heads=2, action_ffn_dim=32, patch_size=[1, 4, 4],
                 history_first_kernel=4, history_schedule=[[2, 4], [2, 8]],
                 warp_sources=["first", "last"])
    torch.manual_seed(3)
    model = MVDTModel(cfg).eval()
    with torch.no_grad():  # non-zero warp paths and refiner, so that they count
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    return model


@pytest.mark.parametrize("sampler,params", [
    ("euler", {"num_steps": 3, "guidance_scale": 2.0}),
    ("aam", {"num_steps": 3, "guidance_scale": 2.0, "steps_replaced": 1}),
    ("tts-sde", {"num_steps": 4, "guidance_scale": 2.0, "eta": 0.2}),
])
def test_warp_model_drive_is_bit_identical_for_each_sampler(sampler, params):
    world = MVDTWorld(model=_warp_model(), sampler=sampler, sampler_params=params)
    fast = _drive(world, ["W", "→", "W ←"], seed=4)
    with reuse.disabled():
        slow = _drive(world, ["W", "→", "W ←"], seed=4)
    assert _same_frames(fast[0], slow[0])
    assert _same(fast[1], slow[1])


def test_residual_cache_with_reuse_is_the_residual_cache_without(tiny):
    hist = torch.randn(tiny.config.latent_channels, 5, tiny.config.latent_height,
                       tiny.config.latent_width, generator=torch.Generator().manual_seed(1))

    def run():
        cache = ResidualCache([0, 2], reuse=1)
        pipe = MVDTPipeline(tiny, sampler="euler", cache=cache, num_steps=5,
                            guidance_scale=3.0)
        out = pipe.generate_latents(hist, Action("W", "→"),
                                    generator=torch.Generator().manual_seed(2))
        return out, cache.skipped

    fast, skipped = run()
    with reuse.disabled():
        slow, skipped_slow = run()
    assert skipped == skipped_slow > 0
    assert _same(fast, slow)


def test_paired_guidance_equals_two_calls():
    def velocity(x, sigma, cond):
        return x * cond + sigma * x.flip(0)

    def paired(x, sigma, cond):
        return velocity(x, sigma, cond)

    calls = []

    def pair(x, sigma, c, u):
        calls.append(sigma)
        return velocity(x, sigma, c), velocity(x, sigma, u)

    paired.pair = pair
    sampler = get_sampler("euler", num_steps=4, shift=1.0, guidance_scale=3.0,
                          guidance_interval=(0, 0.5))
    noise = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    cond, uncond = torch.tensor(0.5), torch.tensor(-0.25)
    want = sampler(velocity, noise, cond, uncond)
    evals = sampler.num_evals
    got = sampler(paired, noise, cond, uncond)
    assert _same(got, want) and sampler.num_evals == evals == 6
    assert calls == [0.5, 0.25]  # only guided steps go through pair()


def test_memo_needs_the_same_live_unchanged_tensor():
    memo = reuse.InferenceMemo(4)
    t = torch.ones(3)
    first = memo.get(("x", t), lambda: t * 2)
    assert memo.get(("x", t), lambda: pytest.fail("recomputed")) is first
    t.add_(1)  # changed in place: a new version, recomputed
    assert torch.equal(memo.get(("x", t), lambda: t * 2), torch.full((3,), 4.0))
    assert torch.equal(memo.get(("x", torch.ones(3)), lambda: torch.zeros(3)), torch.zeros(3))
    for i in range(5):  # bounded
        memo.get(("n", i), lambda i=i: i)
    assert len(memo) == 4


def test_weights_change_and_autograd_bypass_the_memo():
    model = _warp_model()
    actions = [Action("W", "→")]
    with torch.no_grad():
        a = model.encode_actions(actions)
        assert model.encode_actions(actions) is a
        model.action_encoder.norm.bias.add_(1.0)  # a weight update (as an optimiser step)
        b = model.encode_actions(actions)
    assert b is not a and not torch.equal(a, b)
    misses = model._memo.misses
    with torch.enable_grad():  # training: never memoised, gradients flow
        c = model.encode_actions(actions)
    assert c.requires_grad and model._memo.misses == misses


def test_reuse_works_under_inference_mode():
    # Inference tensors keep no version counter; the memo must still key and hit them.
    world = MVDTWorld(model=_warp_model(), sampler_params={"num_steps": 2,
                                                           "guidance_scale": 2.0})
    with reuse.disabled():
        want = _drive(world, ["W →", "W →"], seed=5)
    with torch.inference_mode():
        got = _drive(world, ["W →", "W →"], seed=5)
        again = _drive(world, ["W →", "W →"], seed=5)
    assert world.model._memo.hits > 0
    for out in (got, again):
        assert _same_frames(out[0], want[0]) and _same(out[1], want[1])


def test_a_copied_model_starts_with_empty_memos():
    import copy
    import pickle

    model = _warp_model()
    with torch.no_grad():
        model.encode_actions([Action("W")])
    assert len(model._memo) == 1
    clone = copy.deepcopy(model)
    assert len(clone._memo) == 0 and len(pickle.loads(pickle.dumps(model))._memo) == 0
    with torch.no_grad():
        assert torch.equal(clone.encode_actions([Action("W")]), model.encode_actions([Action("W")]))
