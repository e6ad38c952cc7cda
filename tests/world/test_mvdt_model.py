"""MVDT config, action encoder, model shapes, RoPE, masking and training loss (tiny config)."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

from control.actions import Action, action_prompt, vocabulary
from world.base import WorldError
from world.mvdt import (
    MVDTConfig,
    MVDTModel,
    add_noise,
    flow_matching_loss,
    preset,
    random_token_mask,
    training_loss,
)
from world.mvdt.action_encoder import ActionTokenizer, build_vocab, tokenize_words
from world.mvdt.masking import gather_tokens
from world.mvdt.model import grid_positions, rope_from_positions
from world.mvdt.training import drop_actions, sample_timesteps, shift_sigma


def _inputs(cfg, b=2, hist_frames=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (b, cfg.latent_channels, cfg.chunk_latent_frames, cfg.latent_height, cfg.latent_width)
    hshape = (b, cfg.latent_channels, hist_frames, cfg.latent_height, cfg.latent_width)
    return torch.randn(shape, generator=g), torch.randn(hshape, generator=g)


def test_config_json_round_trip_and_presets(tmp_path):
    for name in ("tiny", "small", "wan-1.3b", "yume-14b", "yume-5b"):
        cfg = preset(name)
        again = MVDTConfig.from_json(cfg.to_json())
        assert again == cfg
        assert again.action_vocab == build_vocab()
    cfg = preset("small")
    path = cfg.save(tmp_path / "config.json")
    assert MVDTConfig.load(path) == cfg
    # The shipped sandbox model stays small; the big presets are never built in tests.
    assert cfg.num_parameters() * 4 < 30e6
    assert preset("yume-14b").num_parameters() > 10e9
    assert cfg.mask_ratio_min == 0.3 and cfg.mask_ratio_max == 0.5 and cfg.flow_shift == 3.0


def test_config_rejects_bad_values():
    with pytest.raises(WorldError, match="unknown keys"):
        MVDTConfig.from_dict({**preset("tiny").to_dict(), "bogus": 1})
    with pytest.raises(WorldError, match="num_heads"):
        preset("tiny", dim=25)
    with pytest.raises(WorldError, match="mask ratios"):
        preset("tiny", mask_ratio_min=0.6, mask_ratio_max=0.5)
    with pytest.raises(WorldError, match="not valid JSON"):
        MVDTConfig.from_json("{broken")
    with pytest.raises(WorldError, match="Unknown MVDT preset"):
        preset("huge")


def test_num_parameters_formula_matches_model(tiny):
    assert tiny.num_parameters() == tiny.config.num_parameters()
    small = preset("small")
    assert MVDTModel(small).num_parameters() == small.num_parameters()


def test_tokenizer_covers_every_action_prompt():
    cfg = preset("tiny")
    tok = ActionTokenizer(cfg.action_vocab, cfg.action_max_tokens, "14b")
    seen = set()
    for action in vocabulary():
        ids = tok.encode(action)
        assert len(ids) == cfg.action_max_tokens
        assert 1 not in ids  # no unknown words
        n_words = len(tokenize_words(action_prompt(action, "14b")))
        assert ids[n_words - 1] != 0 and all(i == 0 for i in ids[n_words:])
        seen.add(tuple(ids))
    assert len(seen) == 81  # every action has its own prompt
    null = tok.encode(None)
    assert null[0] == 2 and set(null[1:]) == {0}
    assert tok.encode("drop") == null == tok.encode("")


def test_forward_shapes_and_conditioning(tiny):
    cfg = tiny.config
    x, hist = _inputs(cfg)
    with torch.no_grad():
        ctx = tiny.encode_actions([Action("W", "→"), Action("S", "←")])
        assert ctx.shape == (2, cfg.action_max_tokens, cfg.action_dim)
        v = tiny(x, torch.tensor([0.7, 0.2]), ctx, hist)
        assert v.shape == x.shape and torch.isfinite(v).all()
        # The action reaches the output (cross-attention), and so does the history.
        ctx2 = tiny.encode_actions([Action("A", "↑"), None])
        assert not torch.allclose(v, tiny(x, torch.tensor([0.7, 0.2]), ctx2, hist))
        assert not torch.allclose(v, tiny(x, torch.tensor([0.7, 0.2]), ctx, hist * 2))
        # No history at all is allowed (first chunk of a world without a start frame).
        assert tiny(x, 0.5, ctx, None).shape == x.shape
        # Indices (-1 = null prompt) encode the same as Action objects / None.
        by_index = tiny.encode_actions(torch.tensor([Action("W", "→").index, -1]))
        by_obj = tiny.encode_actions([Action("W", "→"), None])
        torch.testing.assert_close(by_index, by_obj)
    with pytest.raises(ValueError, match="latents must have shape"):
        tiny(x[:, :3], 0.5, ctx, hist)


def test_rope_matches_wan_on_regular_grid():
    head_dim = 24
    cos, sin = WanRotaryPosEmbed(head_dim, (1, 2, 2), 1024)(torch.zeros(1, 4, 3, 10, 6))
    cos2, sin2 = rope_from_positions(grid_positions(3, 5, 3), head_dim)
    torch.testing.assert_close(cos2, cos, rtol=0, atol=1e-6)
    torch.testing.assert_close(sin2, sin, rtol=0, atol=1e-6)


def test_mask_counts_and_sorted_unique_indices():
    g = torch.Generator().manual_seed(1)
    m = random_token_mask(3, 40, 0.4, g)
    assert m.num_keep == 24 and m.num_masked == 16
    assert m.keep.shape == (3, 24)
    for row in m.keep:
        assert torch.equal(row, row.unique())  # sorted, no duplicates
    assert m.dropped().sum(1).tolist() == [16.0] * 3
    assert random_token_mask(1, 10, 0.99).num_keep == 1  # never drops everything
    with pytest.raises(ValueError):
        random_token_mask(1, 10, 1.0)


def test_zero_ratio_mask_equals_unmasked_forward(tiny):
    x, hist = _inputs(tiny.config)
    ctx = tiny.encode_actions([Action("W"), Action("D", "↓")])
    with torch.no_grad():
        plain = tiny(x, torch.tensor([0.5, 0.3]), ctx, hist)
        mask = random_token_mask(2, tiny.config.chunk_tokens, 0.0)
        masked = tiny(x, torch.tensor([0.5, 0.3]), ctx, hist, mask=mask)
    assert torch.equal(plain, masked)


def test_encoder_sees_kept_tokens_only_decoder_sees_all(tiny):
    cfg = tiny.config
    x, hist = _inputs(cfg)
    n_hist = len(tiny.embed_history(hist))
    seen: dict[str, int] = {}
    hooks = [
        tiny.encoder_blocks[0].register_forward_hook(
            lambda mod, args, out: seen.__setitem__("enc", args[0].shape[1])),
        tiny.decoder_blocks[0].register_forward_hook(
            lambda mod, args, out: seen.__setitem__("dec", args[0].shape[1])),
    ]
    try:
        mask = random_token_mask(2, cfg.chunk_tokens, 0.5, torch.Generator().manual_seed(0))
        with torch.no_grad():
            tiny(x, 0.4, tiny.encode_actions([Action("W")] * 2), hist, mask=mask)
    finally:
        for h in hooks:
            h.remove()
    assert seen["enc"] == n_hist + mask.num_keep
    assert seen["dec"] == n_hist + cfg.chunk_tokens


def test_side_interpolator_writes_only_masked_positions(tiny):
    cfg = tiny.config
    b, n_hist, n_tok, d = 2, 5, cfg.chunk_tokens, cfg.dim
    mask = random_token_mask(b, n_tok, 0.4, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(4)
    encoded = torch.randn(b, n_hist + mask.num_keep, d, generator=g)
    ctx = tiny.condition_embedder.text_embedder(tiny.encode_actions([Action("W")] * b))
    temb = torch.randn(b, n_hist + n_tok, 6, d, generator=g) * 0.1
    pos = torch.cat([torch.zeros(n_hist, 3), grid_positions(cfg.chunk_latent_frames, 4, 4, 1)])
    rope = rope_from_positions(pos, cfg.head_dim)
    with torch.no_grad():
        out = tiny.side_interpolate(encoded, mask, n_hist, ctx, temb, rope)
    assert out.shape == (b, n_hist + n_tok, d)
    assert torch.equal(out[:, :n_hist], encoded[:, :n_hist])  # history untouched
    chunk = out[:, n_hist:]
    assert torch.equal(gather_tokens(chunk, mask.keep), encoded[:, n_hist:])  # kept untouched
    dropped = mask.dropped().bool()
    filled = chunk[dropped]
    # Masked positions got the interpolator's output, not the raw mask token.
    assert not torch.allclose(filled, tiny.mask_token.reshape(1, d).expand_as(filled))


def test_training_loss_backward_masked_and_unmasked():
    torch.manual_seed(0)
    model = MVDTModel(preset("tiny"))
    x, hist = _inputs(model.config)
    batch = {"history": hist, "target": x, "actions": [Action("W"), Action("S", "←")]}
    loss, logs = training_loss(model, batch, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss.requires_grad
    assert logs["loss"] == pytest.approx(logs["loss_masked"] + logs["loss_unmasked"], rel=1e-5)
    assert 0.3 <= logs["mask_ratio"] <= 0.5
    loss.backward()
    assert model.mask_token.grad is not None and model.mask_token.grad.abs().sum() > 0
    assert model.interpolator.ffn.net[0].proj.weight.grad.abs().sum() > 0
    assert model.action_encoder.embed.weight.grad.abs().sum() > 0
    # Unmasked-only (a distilled student) skips the interpolator.
    model.zero_grad()
    loss, logs = training_loss(model, {**batch, "history": None}, masked=False)
    loss.backward()
    assert "loss_masked" not in logs and model.mask_token.grad is None


def test_flow_matching_loss_is_velocity_mse_on_the_chunk():
    torch.manual_seed(0)
    model = MVDTModel(preset("tiny")).eval()
    x0, hist = _inputs(model.config)
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0.25, 0.8])
    ctx = model.encode_actions([Action("W")] * 2)
    with torch.no_grad():
        loss = flow_matching_loss(model, x0, ctx, hist, None, t, noise)
        xt = add_noise(x0, noise, t)
        torch.testing.assert_close(xt[1], 0.2 * x0[1] + 0.8 * noise[1])
        v = model(xt, t, ctx, hist)
    # Output and target cover exactly the chunk: history frames are never predicted.
    assert v.shape == x0.shape
    torch.testing.assert_close(loss, ((v - (noise - x0)) ** 2).mean())


def test_timesteps_and_prompt_drop():
    g = torch.Generator().manual_seed(0)
    t = sample_timesteps(20000, 3.0, g)
    assert 0 < float(t.min()) and float(t.max()) < 1
    assert float(t.median()) == pytest.approx(float(shift_sigma(torch.tensor(0.5), 3.0)), abs=0.02)
    dropped = drop_actions([Action("W")] * 4000, 0.1, g)
    assert sum(a is None for a in dropped) == pytest.approx(400, abs=80)
    idx = drop_actions(torch.full((100,), 5), 1.0, g)
    assert (idx == -1).all()


def test_x0_prediction_head_returns_a_velocity():
    torch.manual_seed(0)
    model = MVDTModel(preset("tiny", prediction="x0"))
    x, hist = _inputs(model.config)
    loss, logs = training_loss(model, {"history": hist, "target": x,
                                       "actions": [Action("W")] * 2})
    loss.backward()
    assert torch.isfinite(loss)
    with torch.no_grad():
        v = model.eval()(x, torch.tensor([0.5, 0.01]), model.encode_actions([None, None]), hist)
    assert v.shape == x.shape and torch.isfinite(v).all()


def test_tiny_model_fits_a_fixed_batch():
    # The whole gradient path (action encoder, history, masked + unmasked passes) learns.
    torch.manual_seed(0)
    model = MVDTModel(preset("tiny", cfg_drop_prob=0.0))
    x, hist = _inputs(model.config, seed=9)
    batch = {"history": hist, "target": x, "actions": [Action("W"), Action("·", "←")]}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        loss, _ = training_loss(model, batch, generator=torch.Generator().manual_seed(step % 4))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-4:]) < 0.8 * sum(losses[:4])


def test_refiner_starts_as_identity_then_sharpens_from_the_reference():
    torch.manual_seed(0)
    plain = MVDTModel(preset("tiny", prediction="x0")).eval()
    torch.manual_seed(0)
    refined = MVDTModel(preset("tiny", prediction="x0", refiner_channels=8)).eval()
    assert refined.num_parameters() == refined.config.num_parameters()
    # Zero-initialised last layer: the fresh refiner changes nothing (a warm start is exact).
    refined.load_state_dict(plain.state_dict(), strict=False)
    x, hist = _inputs(plain.config)
    ctx = plain.encode_actions([Action("W"), None])
    with torch.no_grad():
        assert torch.equal(plain(x, 0.7, ctx, hist), refined(x, 0.7, ctx, hist))
    # The refiner reads the newest history frame, uncompressed.
    tokens = refined.embed_history(hist)
    assert torch.equal(tokens.reference, hist[:, :, -1])
    assert tokens.repeat(2).reference.shape == hist[:, :, -1].shape
    torch.nn.init.normal_(refined.refiner.net[-1].weight, std=0.1)
    with torch.no_grad():
        a = refined(x, 0.7, ctx, hist)
        hist2 = hist.clone()
        hist2[:, :, -1] += 1.0
        assert not torch.equal(a, refined(x, 0.7, ctx, hist2))
        assert refined(x, 0.7, ctx, None).shape == x.shape  # no history: zero reference


def test_refiner_and_history_noise_config_checks():
    with pytest.raises(WorldError, match="refiner_channels"):
        preset("tiny", refiner_channels=8)  # needs x0 prediction
    with pytest.raises(WorldError, match="history_noise"):
        preset("tiny", history_noise=-0.1)
    with pytest.raises(WorldError, match="refiner_action"):
        preset("tiny", prediction="x0", refiner_action=True)


def test_action_aware_refiner_reads_the_action():
    torch.manual_seed(0)
    model = MVDTModel(preset("tiny", prediction="x0", refiner_channels=8,
                             refiner_action=True)).eval()
    assert model.num_parameters() == model.config.num_parameters()
    x, hist = _inputs(model.config)
    walk = model.encode_actions([Action("W")] * 2)
    turn = model.encode_actions([Action("·", "←")] * 2)
    torch.nn.init.normal_(model.refiner.net[-1].weight, std=0.1)
    with torch.no_grad():
        base_walk, base_turn = model(x, 0.5, walk, hist), model(x, 0.5, turn, hist)
        torch.nn.init.normal_(model.refiner.film.weight, std=0.5)
        # Only the refiner's modulation changed: its output now depends on the action through it.
        assert not torch.equal(model(x, 0.5, walk, hist), base_walk)
        assert not torch.allclose(model(x, 0.5, walk, hist) - base_walk,
                                  model(x, 0.5, turn, hist) - base_turn)


def test_history_noise_perturbs_only_the_context():
    torch.manual_seed(0)
    cfg = preset("tiny", prediction="x0", cfg_drop_prob=0.0, history_noise=0.5)
    model = MVDTModel(cfg)
    x, hist = _inputs(cfg)
    batch = {"history": hist, "target": x, "actions": [Action("W")] * 2}
    clean_model = MVDTModel(cfg.replace(history_noise=0.0))
    clean_model.load_state_dict(model.state_dict())

    def loss(m, b):
        # Same generator seed: same timesteps and target noise; the context noise comes last.
        return training_loss(m, b, generator=torch.Generator().manual_seed(3), masked=False)[0]

    noisy, clean = loss(model, batch), loss(clean_model, batch)
    assert torch.isfinite(noisy) and not torch.isclose(noisy, clean)
    # Without history there is nothing to perturb: same loss.
    nohist = {**batch, "history": None}
    assert torch.equal(loss(model, nohist), loss(clean_model, nohist))
