"""The MVDT engine's samplers and residual cache on Wan transformers, and Yume's trained history
convolutions, on tiny random 5B- and 14B-I2V-structured models (CPU): every sampler drives the
transformer's velocity, the sampler spec comes from sampler.json as for the MVDT, the cache
reuses block residuals on the token path, and a Yume-layout checkpoint's history kernels embed
exactly the tokens of their size."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from control.actions import Action, action_prompt, parse_action
from world.base import WorldError
from world.mvdt.cache import ResidualCache
from world.mvdt.memory import history_plan, interpolated_kernel, tokens_per_slot
from world.mvdt.samplers import SAMPLERS
from world.wan.engine import WanWorld
from world.wan.history import WanHistory, history_config, token_velocity, trained_kernels
from world.wan.loading import load_transformer, save_transformer, save_vae
from world.wan.prompts import save_prompt_cache

SIZE = 64  # pixels: 4x4 latents (5B, x16) or 8x8 (14B I2V, x8)
IMAGE = np.full((80, 120, 3), 128, np.uint8)


def _world(wan_pair, **kw):
    _, tr, vae = wan_pair
    kw.setdefault("num_steps", 1)
    return WanWorld(transformer=tr, vae=vae, height=SIZE, width=SIZE, device="cpu", **kw)


def _clip(n, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (48, 80, 3))
    return [np.clip(base + 12 * i, 0, 255).astype(np.uint8) for i in range(n)]


def _prompts(wan_pair, tmp_path, actions):
    """A prompt cache with a distinct random embedding for each action's prompt (so guidance
    has something to push from; uncached texts such as the empty negative embed as zeros)."""
    fam, tr, _ = wan_pair
    g = torch.Generator().manual_seed(7)
    texts = {action_prompt(parse_action(a) if isinstance(a, str) else a, fam.prompt_template)
             for a in actions}
    return save_prompt_cache(tmp_path / "prompts.safetensors", {
        t: torch.randn(512, tr.config.text_dim, generator=g) for t in sorted(texts)})


def _count_calls(tr):
    """Counts transformer evaluations (the condition embedder runs once per call)."""
    calls = []
    return calls, tr.condition_embedder.register_forward_hook(lambda *a: calls.append(1))


def test_euler_step_is_the_transformers_velocity(wan_pair):
    """One Euler step from sigma 1 is noise - v(noise, t = 1000): the sampler drives the
    transformer itself, at Wan's timestep scale."""
    fam, tr, _ = wan_pair
    world = _world(wan_pair, seed=5)
    world.reset(image=IMAGE)
    history = world.memory.latents()
    g = torch.Generator().manual_seed(5)  # the world's noise, drawn in the same order
    x = torch.randn((1, fam.latent_channels, 1, *history.shape[3:]), generator=g)
    text = torch.zeros(1, 512, tr.config.text_dim)  # no prompt source: zeros
    with torch.no_grad():
        if fam.conditioning == "expand":
            tokens = world.memory.embed(tr, history)
            v = token_velocity(tr, tokens, x, 1000.0, text, history_timestep=0.0)
        else:  # the I2V history is re-noised to sigma = 1 in its noisy channels
            noise = torch.randn(history.shape, generator=g)
            ones = torch.ones(1, 4, *history.shape[2:])
            tokens = world.memory.embed(tr, torch.cat([noise, ones, history], dim=1))
            chunk = torch.cat([x, torch.zeros(1, 4, *x.shape[2:]), torch.zeros_like(x)], 1)
            v = token_velocity(tr, tokens, chunk, 1000.0, text, history_timestep=None,
                               image=world.image_embeds)
    chunk = world.step("W")
    assert chunk.info["sampler"] == "euler" and chunk.info["model_evals"] == 1
    torch.testing.assert_close(world.memory.latents()[:, :, -1:], x - v, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_mvdt_sampler_runs_on_a_wan_transformer(wan_pair, tmp_path, name):
    fam, tr, _ = wan_pair
    cache = _prompts(wan_pair, tmp_path, ["W →"])
    params = {"num_steps": 3, "guidance_scale": 2.0}
    world = _world(wan_pair, sampler=name, sampler_params=params, prompt_cache=cache, seed=1)
    world.reset(image=IMAGE)
    calls, hook = _count_calls(tr)
    try:
        chunk = world.step("W →")
    finally:
        hook.remove()
    assert chunk.frames.shape == (4, SIZE, SIZE, 3) and chunk.info["sampler"] == name
    assert chunk.info["model_evals"] == len(calls)  # the sampler's count is the real one
    expected = {"euler": 6, "aam": 3 + 6}  # CFG: 2 calls a step; AAM: + an unguided pass
    if name in expected:
        assert len(calls) == expected[name]
    else:  # time travel: look-ahead calls on top of Euler's
        assert len(calls) > 6
    assert chunk.info["negative_prompt"] == ""


def test_samplers_reduce_to_euler_on_wan(wan_pair, tmp_path):
    """TTS-SDE without noise or travel and AAM without replaced steps are exactly Euler on a
    Wan transformer; with them, they differ."""
    cache = _prompts(wan_pair, tmp_path, ["W →"])

    def run(name, **params):
        world = _world(wan_pair, sampler=name, prompt_cache=cache, seed=2,
                       sampler_params={"num_steps": 3, "guidance_scale": 2.0, **params})
        world.reset(image=IMAGE)
        world.step("W →")
        return world.memory.latents()[:, :, -1:]

    euler = run("euler")
    assert torch.equal(run("tts-sde", eta=0.0, interval=0), euler)
    assert torch.equal(run("aam", steps_replaced=0), euler)
    assert not torch.allclose(run("tts-sde"), euler)
    assert not torch.allclose(run("aam", steps_replaced=2), euler)


def test_recent_history_samples_with_the_same_samplers(wan_pair):
    world = _world(wan_pair, history="recent", sampler="tts-sde",
                   sampler_params={"num_steps": 3, "eta": 0.0, "interval": 0})
    euler = _world(wan_pair, history="recent", num_steps=3)
    for w in (world, euler):
        w.reset(image=IMAGE, seed=4)
    a, b = world.step("W"), euler.step("W")
    assert a.info["sampler"] == "tts-sde" and a.info["model_evals"] == 3
    np.testing.assert_array_equal(a.frames, b.frames)


def test_sampler_spec_from_the_checkpoint_folder(wan_pair, tmp_path):
    (tmp_path / "sampler.json").write_text(json.dumps({
        "name": "tts-sde", "params": {"num_steps": 2, "eta": 0.0, "guidance_scale": 1.5},
        "negative": "still"}))
    _, tr, vae = wan_pair
    kw = {"transformer": tr, "vae": vae, "height": SIZE, "width": SIZE, "device": "cpu"}
    world = WanWorld(tmp_path, **kw)
    assert (world.sampler.name, world.num_steps, world.guidance_scale, world.negative) == (
        "tts-sde", 2, 1.5, "still")
    assert world.sampler.eta == 0.0 and world.shift == 5.0  # the Wan default shift
    assert WanWorld(tmp_path, num_steps=3, **kw).sampler.num_steps == 3  # shortcut wins
    chosen = WanWorld(tmp_path, sampler="euler", sampler_params={"num_steps": 5}, num_steps=3,
                      negative="null", **kw)
    assert (chosen.sampler.name, chosen.num_steps, chosen.negative) == ("euler", 5, "null")
    assert WanWorld(**kw).sampler.params() == {  # no spec: Euler, 4 steps, shift 5, no CFG
        "num_steps": 4, "shift": 5.0, "guidance_scale": 1.0, "guidance_interval": [0.0, 1.0]}
    with pytest.raises(WorldError, match="Unknown sampler"):
        WanWorld(sampler="ddim", **kw)
    with pytest.raises(WorldError, match="Unknown guidance negative"):
        WanWorld(negative="blank", **kw)
    with pytest.raises(WorldError, match="at least 1 step"):
        WanWorld(num_steps=0, **kw)


def test_still_negative_drops_the_translation_key(wan_pair, tmp_path):
    fam, _, _ = wan_pair
    still = Action("·", "→")
    cache = _prompts(wan_pair, tmp_path, ["W →", still])

    def run(negative, action):
        world = _world(wan_pair, num_steps=2, guidance_scale=3.0, negative=negative,
                       prompt_cache=cache, seed=3)
        world.reset(image=IMAGE)
        return world.step(action)

    chunk = run("still", "W →")
    assert chunk.info["negative_prompt"] == action_prompt(still, fam.prompt_template)
    assert not np.array_equal(chunk.frames, run("null", "W →").frames)
    # Without a translation key there is nothing to drop: the null prompt, the same frames.
    turn = run("still", "→")
    assert turn.info["negative_prompt"] == ""
    np.testing.assert_array_equal(turn.frames, run("null", "→").frames)


def test_token_path_cache_reuses_block_residuals(wan_pair):
    fam, tr, _ = wan_pair
    g = torch.Generator().manual_seed(1)
    h = 8
    memory = WanHistory(history_config(h, h, fam.latent_channels, schedule=[[2, 2], [1, 4]]))
    tokens = memory.embed(tr, torch.randn(1, tr.config.in_channels, 3, h, h, generator=g))
    xa, xb = (torch.randn(1, tr.config.in_channels, 1, h, h, generator=g) for _ in range(2))
    text = torch.randn(1, 512, tr.config.text_dim, generator=g)
    ts = None if fam.conditioning == "concat" else 0.0
    image = (torch.randn(1, 3, tr.config.image_dim, generator=g) if tr.config.image_dim
             else None)
    n = len(tr.blocks)

    def velocity(x, t, cache=None):
        with torch.no_grad():
            return token_velocity(tr, tokens, x, t, text, history_timestep=ts, image=image,
                                  cache=cache)

    ref_a, ref_b = velocity(xa, 900.0), velocity(xb, 800.0)
    off = ResidualCache(range(n), reuse=0)  # every block computed: bit-identical
    assert torch.equal(velocity(xa, 900.0, off.call()), ref_a) and off.skipped == 0
    on = ResidualCache(range(n), reuse=1)
    assert torch.equal(velocity(xa, 900.0, on.call()), ref_a)  # a refresh call computes
    # Same input: reusing x + (block(x) - x) is the block's output up to rounding.
    torch.testing.assert_close(velocity(xa, 900.0, on.call()), ref_a, atol=1e-5, rtol=1e-5)
    assert on.skipped == n
    on.reset()
    velocity(xa, 900.0, on.call())
    reused = velocity(xb, 800.0, on.call())  # the residuals of xa's call on xb's tokens
    assert on.skipped == n and not torch.equal(reused, ref_b)


def test_world_cache_skips_blocks_across_sampler_steps(wan_pair):
    _, tr, _ = wan_pair
    n = len(tr.blocks)
    plain = _world(wan_pair, num_steps=4, seed=6)
    cached = _world(wan_pair, num_steps=4, seed=6, cache_blocks=range(n), cache_reuse=1)
    for w in (plain, cached):
        w.reset(image=IMAGE)
    a, b = plain.step("W"), cached.step("W")
    assert "cache_skipped" not in a.info
    assert b.info["cache_skipped"] == n * 2  # calls 1 and 3 of 4 reuse every block
    za, zb = plain.memory.latents()[:, :, -1:], cached.memory.latents()[:, :, -1:]
    diff = float((za - zb).abs().max())
    assert 0 < diff and float((za - zb).norm() / za.norm()) < 0.5
    # AAM samples twice from sigma = 1 (unguided, then guided): each pass, cond and uncond
    # keep their own residuals, so 3 calls a pass reuse once (not across the restart).
    aam = _world(wan_pair, sampler="aam", seed=6, cache_blocks=range(n), cache_reuse=1,
                 sampler_params={"num_steps": 3, "guidance_scale": 2.0, "steps_replaced": 1})
    aam.reset(image=IMAGE)
    info = aam.step("W").info
    assert info["model_evals"] == 9 and info["cache_skipped"] == 3 * n
    with pytest.raises(WorldError, match="compressed history"):
        _world(wan_pair, history="recent", cache_blocks=[0], cache_reuse=1)
    with pytest.raises(WorldError, match="not blocks of this transformer"):
        _world(wan_pair, cache_blocks=[n], cache_reuse=1)


def _yume_extras(tr, seed=0):
    """Random Yume history convolutions for ``tr``: 4x4 (``_2x``) and 8x8 (``_4x``) kernels, and
    the channel-to-channel ``_2x_f`` that is no token embedding."""
    g = torch.Generator().manual_seed(seed)
    d, c = tr.patch_embedding.weight.shape[:2]
    out = {}
    for m in (2, 4):
        out[f"patch_embedding_{m}x.weight"] = torch.randn(d, c, 1, 2 * m, 2 * m, generator=g)
        out[f"patch_embedding_{m}x.bias"] = torch.randn(d, generator=g)
    out["patch_embedding_2x_f.weight"] = torch.randn(c, c, 1, 4, 4, generator=g)
    out["patch_embedding_2x_f.bias"] = torch.randn(c, generator=g)
    return out


def _slot_tokens(tokens, plan, h, w, patch=(2, 2)):
    """The history tokens of each plan slot, in plan order."""
    out, start = [], 0
    for slot in plan:
        n = tokens_per_slot(h, w, slot.kernel, patch)
        out.append(tokens[0, start:start + n])
        start += n
    return out


def test_trained_history_kernels_embed_their_slots(wan_pair, tmp_path):
    fam, tr, _ = wan_pair
    extras = _yume_extras(tr)
    save_transformer(tr, tmp_path / "yume", "original", extras=extras)
    loaded = load_transformer(tmp_path / "yume")  # Yume layout: the extras come back
    assert set(extras) <= set(loaded.extras)
    model, h = loaded.model, 8
    config = history_config(h, h, fam.latent_channels, schedule=[[1, 2], [2, 4], [2, 8]])
    x = torch.randn(1, model.config.in_channels, 6, h, h, generator=torch.Generator()
                    .manual_seed(3))
    plan = history_plan(6, config)
    assert [s.kernel for s in plan] == [2, 8, 8, 4, 4, 2]
    memory = WanHistory(config)
    assert memory.use_trained(loaded.extras, model) == [4, 8]
    with torch.no_grad():
        slots = _slot_tokens(memory.embed(model, x).tokens, plan, h, h)
        base = model.patch_embedding
        for slot, got in zip(plan, slots, strict=True):
            frame = x[:, :, [slot.frame]]
            if slot.kernel == 2:
                weight, bias = base.weight, base.bias
            else:
                m = slot.kernel // 2
                weight = loaded.extras[f"patch_embedding_{m}x.weight"]
                bias = loaded.extras[f"patch_embedding_{m}x.bias"]
            ref = F.conv3d(frame, weight, bias, stride=(1, slot.kernel, slot.kernel))
            torch.testing.assert_close(got, ref.flatten(2).transpose(1, 2)[0], atol=1e-4,
                                       rtol=1e-4)

        # Zeroing the 8x8 convolution changes exactly the tokens of the 8x8 slots.
        zeroed = {**loaded.extras, "patch_embedding_4x.weight": torch.zeros_like(
            extras["patch_embedding_4x.weight"]), "patch_embedding_4x.bias": torch.zeros_like(
            extras["patch_embedding_4x.bias"])}
        other = WanHistory(config)
        other.use_trained(zeroed, model)
        for slot, a, b in zip(plan, slots, _slot_tokens(other.embed(model, x).tokens, plan, h,
                                                          h), strict=True):
            if slot.kernel == 8:
                assert not b.any()
            else:
                assert torch.equal(a, b)

        # Without extras (plain Wan): the base kernel interpolated, the base bias.
        plain = WanHistory(config)
        assert plain.use_trained({}, model) == []
        got = _slot_tokens(plain.embed(model, x).tokens, plan, h, h)[3]  # a 4x4 slot
        ref = F.conv3d(x[:, :, [plan[3].frame]], interpolated_kernel(base.weight, 4, 4),
                       base.bias, stride=(1, 4, 4))
        torch.testing.assert_close(got, ref.flatten(2).transpose(1, 2)[0], atol=1e-4,
                                   rtol=1e-4)
    bad = {"patch_embedding_2x.weight": extras["patch_embedding_2x.weight"][:, :1]}
    with pytest.raises(WorldError, match="belong to another model"):
        trained_kernels(bad, model)
    with pytest.raises(WorldError, match="comes without"):
        trained_kernels({"patch_embedding_8x.bias": extras["patch_embedding_2x.bias"]}, model)


def test_a_yume_checkpoints_kernels_enter_generation(wan_pair, tmp_path):
    """A pipeline folder whose Yume-layout transformer carries history convolutions: the world
    embeds with them, and its chunks differ from the same weights without them."""
    fam, tr, vae = wan_pair
    save_transformer(tr, tmp_path / "transformer", "original", extras=_yume_extras(tr))
    save_vae(vae, tmp_path / "vae")
    schedule = [[1, 2], [2, 4], [2, 8]]
    kw = {"height": SIZE, "width": SIZE, "num_steps": 1, "history_schedule": schedule,
          "seed": 0, "device": "cpu"}
    yume = WanWorld(tmp_path, **kw)
    assert yume.trained_kernels == [4, 8]
    plain = WanWorld(transformer=yume.transformer, vae=vae, **kw)
    assert plain.trained_kernels == []
    clip = _clip(22)  # 6 latent frames: the 4x4 (and 8x8) slots are filled
    for w in (yume, plain):
        w.reset(clip=clip)
    a, b = yume.step("W"), plain.step("W")
    assert a.frames.shape == b.frames.shape == (4, SIZE, SIZE, 3)
    assert a.info["history_tokens"] == b.info["history_tokens"]
    assert not torch.equal(yume.memory.latents()[:, :, -1:], plain.memory.latents()[:, :, -1:])
