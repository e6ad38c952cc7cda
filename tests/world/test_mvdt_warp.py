"""Geometric memory of the MVDT (world/mvdt/warp.py): exact rotations, training, old checkpoints."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch

from control.actions import Action, parse_action
from control.motion import CameraState
from world.evaluate import psnr
from world.honest_eval import FRESH_SEED_START
from world.mvdt import MVDTModel, load_checkpoint, preset
from world.mvdt.checkpoint import DEFAULT_CHECKPOINT
from world.mvdt.pipeline import PixelCodec
from world.mvdt.training import training_loss
from world.mvdt.warp import WarpMemory, WarpRollout, camera_warp, warp_condition
from world.sandbox import SandboxWorld

RES = 64


def _warp_config(**changes):
    cfg = preset("small", frame_height=RES, frame_width=RES, latent_height=16, latent_width=16,
                 latent_channels=48, prediction="x0", refiner_channels=8, dim=32, ffn_dim=64,
                 num_encoder_blocks=1, num_decoder_blocks=1, freq_dim=32, action_dim=16,
                 action_heads=2, action_ffn_dim=32, patch_size=[1, 4, 4],
                 history_first_kernel=4, history_schedule=[[2, 4], [2, 8]],
                 warp_sources=["first", "last"])
    return cfg.replace(**changes) if changes else cfg


@pytest.fixture(scope="module")
def world():
    w = SandboxWorld(seed=FRESH_SEED_START + 7, height=RES, width=RES)
    w.reset()
    return w


@pytest.mark.parametrize("dyaw, dpitch", [(10.0, 0.0), (-6.0, 6.0)])
def test_conditioning_warp_of_a_pure_rotation_is_exact_where_valid(world, dyaw, dpitch):
    start = world.state
    first = world.render(start)
    turned = dataclasses.replace(start, yaw=start.yaw + np.deg2rad(dyaw),
                                 pitch=start.pitch + np.deg2rad(dpitch))
    truth = world.render(turned)
    cfg = _warp_config(warp_sources=["first"])
    codec = PixelCodec(4)
    cond = warp_condition(cfg, codec, camera_warp(cfg), {"first": (first[None], [start])},
                          [[turned] * cfg.frames_per_chunk])
    assert cond.shape == (1, 49, cfg.frames_per_chunk, 16, 16)
    warped = codec.decode(cond[0, :48, :1])[0]
    valid = cond[0, 48, 0]  # fraction of each 4x4 block that sees inside the start frame
    assert 0.5 < float(valid.mean()) < 1.0  # the turn brings unseen pixels in at one side
    full = valid.repeat_interleave(4, 0).repeat_interleave(4, 1).numpy() == 1.0
    # Where valid, the warp is the true view up to the renderer's nearest-texel aliasing ...
    exact = psnr(warped[full], truth[full])
    assert exact > 27.0
    assert exact > psnr(first[full], truth[full]) + 8.0
    # ... and what is flagged invalid is where the border padding guesses (much worse).
    assert psnr(warped[~full], truth[~full]) < exact - 3.0


def test_memory_tracks_the_commanded_cameras_and_a_return_reproduces_the_start():
    cfg = _warp_config()
    codec = PixelCodec(4)
    first = np.random.default_rng(0).integers(0, 255, (2, RES, RES, 3), dtype=np.uint8)
    mem = WarpMemory(cfg, codec)
    mem.reset(first)
    left, right = parse_action("· ←"), parse_action("· →")
    cond = mem.condition([left, Action()])
    mem.advance(np.repeat(first[:, None], cfg.frames_per_chunk, axis=1))
    assert mem.states[1] == CameraState() and mem.states[0].yaw != 0.0
    back = mem.condition([right, Action()])
    # After turning back, the "first" warp of the last frame is the start frame itself.
    decoded = np.stack([codec.decode(back[i, :48, -1:])[0] for i in range(2)])
    assert np.abs(decoded.astype(int) - first).max() <= 1
    assert float(back[:, 48, -1].min()) == 1.0 and float(cond[0, 48, -1].mean()) < 1.0


def test_warp_config_trains_one_step_in_seconds():
    torch.manual_seed(0)
    cfg = preset("tiny", prediction="x0", refiner_channels=8, warp_sources=["first", "last"])
    model = MVDTModel(cfg)
    assert model.num_parameters() == cfg.num_parameters()
    b, c, f = 2, cfg.latent_channels, cfg.chunk_latent_frames
    g = torch.Generator().manual_seed(0)
    batch = {"target": torch.randn(b, c, f, 8, 8, generator=g),
             "history": torch.randn(b, c, 3, 8, 8, generator=g),
             "actions": [parse_action("W"), parse_action("· →")],
             "warp": torch.rand(b, cfg.warp_channels, f, 8, 8, generator=g)}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    loss, logs = training_loss(model, batch, generator=g)
    loss.backward()
    # The zero-initialised warp inputs get a gradient, so training can learn to use them.
    assert model.warp_embedding.weight.grad.abs().sum() > 0
    assert model.refiner.gate.bias.grad.abs().sum() > 0
    assert model.refiner.gate.weight.grad.abs().sum() > 0
    before = model.refiner.gate.bias.detach().clone()
    opt.step()
    assert time.perf_counter() - t0 < 10.0
    assert torch.isfinite(loss) and not torch.equal(before, model.refiner.gate.bias)


def test_gate_copies_a_valid_warp_and_ignores_an_invalid_one():
    torch.manual_seed(0)
    cfg = preset("tiny", prediction="x0", refiner_channels=8, warp_sources=["first"],
                 warp_gate_bias=12.0)
    model = MVDTModel(cfg).eval()
    c, f = cfg.latent_channels, cfg.chunk_latent_frames
    x = torch.randn(1, c, f, 8, 8)
    z = torch.rand(1, c, f, 8, 8)
    hist = torch.randn(1, c, 1, 8, 8)
    ctx = model.encode_actions([None])
    sigma = torch.tensor([0.5])
    with torch.no_grad():
        valid = torch.cat([z, torch.ones(1, 1, f, 8, 8)], 1)
        v = model(x, sigma, ctx, hist, warp=valid)
        x0 = x - 0.5 * v
        assert torch.allclose(x0, z, atol=1e-3)
        invalid = torch.cat([z, torch.zeros(1, 1, f, 8, 8)], 1)
        plain = model(x, sigma, ctx, hist)  # no warp given: the same as an all-invalid one
        assert torch.allclose(model(x, sigma, ctx, hist, warp=invalid), plain, atol=1e-5)


def test_trust_moves_the_blend_toward_the_warps_at_inference_only():
    torch.manual_seed(0)
    base = preset("tiny", prediction="x0", refiner_channels=8, warp_sources=["first"],
                  warp_gate_bias=0.0)
    plain = MVDTModel(base)
    trusting = MVDTModel(base.replace(warp_trust=4.0))
    trusting.load_state_dict(plain.state_dict())
    c, f = base.latent_channels, base.chunk_latent_frames
    x = torch.randn(1, c, f, 8, 8)
    z = torch.rand(1, c, f, 8, 8)
    warp = torch.cat([z, torch.ones(1, 1, f, 8, 8)], 1)
    ctx = plain.encode_actions([None])
    sigma = torch.tensor([0.5])

    def x0_error(model):
        with torch.no_grad():
            return (x - 0.5 * model(x, sigma, ctx, warp=warp) - z).abs().mean().item()

    plain.eval(), trusting.eval()
    assert x0_error(trusting) < 0.2 * x0_error(plain)  # logit +4: the warp gets ~e^4 more weight
    plain.train(), trusting.train()
    assert x0_error(trusting) == pytest.approx(x0_error(plain))  # training learns the gate as is


def test_shipped_checkpoint_has_the_memory_and_its_base_still_loads_without():
    shipped = load_checkpoint(DEFAULT_CHECKPOINT)
    assert DEFAULT_CHECKPOINT.name == "mvdt-warp"
    assert shipped.config.warp_sources == ["first", "last"]
    assert shipped.warp_embedding is not None
    model = load_checkpoint(DEFAULT_CHECKPOINT.parent / "mvdt-sandbox")
    assert model.config.warp_sources == [] and model.warp_embedding is None
    with pytest.raises(ValueError, match="no geometric memory"):
        c = model.config
        x = torch.zeros(1, c.latent_channels, c.chunk_latent_frames, c.latent_height,
                        c.latent_width)
        model(x, 0.5, model.encode_actions([None]), warp=torch.zeros(1, 1, 1, 1, 1))


def test_bad_warp_sources_are_refused_in_one_sentence():
    from world.base import WorldError

    with pytest.raises(WorldError, match="warp_sources"):
        preset("tiny", prediction="x0", refiner_channels=8, warp_sources=["middle"])
    with pytest.raises(WorldError, match="refiner_channels"):
        preset("tiny", warp_sources=["first"])
    with pytest.raises(WorldError, match="warp_trust"):
        preset("tiny", prediction="x0", refiner_channels=8, warp_sources=["first"],
               warp_trust=float("nan"))
    with pytest.raises(WorldError, match="warp_interpolation"):
        preset("tiny", prediction="x0", refiner_channels=8, warp_sources=["first"],
               warp_interpolation="lanczos")
    from world.mvdt.warp import camera_warp

    crisp = preset("tiny", prediction="x0", refiner_channels=8, warp_sources=["first"],
                   warp_interpolation="bicubic")
    assert camera_warp(crisp).interpolation == "bicubic"


def test_warp_rollout_generates_chunks_and_feeds_back_shown_frames():
    torch.manual_seed(0)
    cfg = _warp_config()
    model = MVDTModel(cfg).eval()
    roll = WarpRollout(model, PixelCodec(4), "euler", torch.Generator().manual_seed(0),
                       context_noise=0.02)
    roll.pipeline.sampler.num_steps = 2
    first = np.full((2, RES, RES, 3), 120, np.uint8)
    roll.reset(first)
    out = roll.step([parse_action("W"), parse_action("· →")])
    assert out.shape == (2, cfg.frames_per_chunk, RES, RES, 3) and out.dtype == np.uint8
    assert roll.history.shape[2] == 1 + cfg.frames_per_chunk
    assert float(roll.history.abs().max()) <= 1.0  # re-encoded from shown (clipped) frames


def test_train_loop_with_geometric_memory_runs_resumes_and_loads(tmp_path):
    from world.train import TrainConfig, train

    cfg = TrainConfig.load("world/configs/tiny.json")
    cfg.run_dir = str(tmp_path / "run")
    cfg.data = {**cfg.data, "train_dir": str(tmp_path / "train"),
                "heldout_dir": str(tmp_path / "heldout")}
    cfg.model = {**cfg.model, "refiner_channels": 8, "warp_sources": ["first", "last"]}
    cfg.max_steps, cfg.warp_lr_scale = 2, 10.0
    t0 = time.perf_counter()
    ckpt = train(cfg, progress=False)
    model = load_checkpoint(ckpt)
    assert model.config.warp_sources == ["first", "last"]
    train(cfg, progress=False, max_steps=3)  # resumes with the same two parameter groups
    state = (tmp_path / "run" / "last" / "state.json").read_text()
    assert '"step": 3' in state
    assert time.perf_counter() - t0 < 30.0
