"""Depth for the geometric memory: the sandbox's exact depth, the warp with a given depth, the
fixed-point target depth, the learned depth model and its training (world/mvdt/depth.py,
world/training/depth.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from control.actions import parse_action
from control.motion import CameraState
from world.baselines import CameraWarp, SandboxCamera, commanded_states
from world.evaluate import psnr
from world.honest_eval import FRESH_SEED_START
from world.mvdt.depth import (
    DepthNet,
    DepthWarp,
    load_depth_model,
    save_depth_model,
    target_depth,
)
from world.sandbox import SandboxWorld

RES = 64


@pytest.fixture(scope="module")
def world():
    w = SandboxWorld(seed=FRESH_SEED_START + 11, height=RES, width=RES)
    w.reset()
    return w


def _walk(world, key: str, chunks: int = 2):
    """Absolute and start-relative commanded cameras of a walk, and its start frame/depth."""
    start = world.state
    acts = [parse_action(key)] * chunks
    dst_abs = commanded_states(acts, 4, start)
    rel0 = CameraState(y=start.y, pitch=start.pitch)
    dst_rel = commanded_states(acts, 4, rel0)
    return start, rel0, dst_abs, dst_rel


def test_render_depth_is_the_ground_plane_below_the_horizon_and_sky_above(world) -> None:
    r = world._renderer
    state = world.state
    depth = r.render_depth(state)
    assert depth.shape == (RES, RES) and depth.dtype == np.float32
    horizon = RES / 2 + r.focal * np.tan(state.pitch)
    rows = np.arange(RES) + 0.5
    ground = -state.y * r.focal / (rows - horizon)
    below = rows > horizon
    # Every pixel is either the ground of its row or a wall in front of that ground.
    d, g = depth[below], np.repeat(ground[below][:, None], RES, axis=1)
    assert np.all((np.isclose(d, g, rtol=1e-4)) | (d < g))
    assert np.isclose(d, g, rtol=1e-4).mean() > 0.2  # some open ground is seen
    # Above the horizon: sky (inf) or walls at finite depth; never negative.
    assert np.all(depth > 0) and np.isinf(depth[~below]).any() | np.isfinite(depth[~below]).all()


def test_warp_with_the_true_target_depth_beats_the_prior_on_a_walk(world) -> None:
    """What makes depth worth learning: walking forward, the exact depth of each target view
    reproduces the true frames better than the fixed ground-plane prior."""
    warp = CameraWarp(SandboxCamera(RES, RES))
    start, rel0, dst_abs, dst_rel = _walk(world, "W")
    first = world.render(start)
    truth = np.stack([world.render(s) for s in dst_abs])
    x = torch.from_numpy(np.repeat(first[None], len(dst_rel), 0)).permute(0, 3, 1, 2).float()
    true_depth = torch.from_numpy(np.stack([world._renderer.render_depth(s) for s in dst_abs]))
    src = [rel0] * len(dst_rel)
    prior = warp.warp_tensor(x, src, dst_rel)
    exact = torch.nn.functional.grid_sample(x, warp.sampling_grid(src, dst_rel, depth=true_depth),
                                            mode="bilinear", padding_mode="border",
                                            align_corners=True)

    def to_u8(t):
        return t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    assert psnr(to_u8(exact), truth) > psnr(to_u8(prior), truth) + 0.3


def test_target_depth_of_the_same_camera_is_the_source_depth(world) -> None:
    warp = CameraWarp(SandboxCamera(RES, RES))
    d = torch.from_numpy(world._renderer.render_depth(world.state)).clamp(max=500.0)[None]
    s = CameraState(y=world.state.y)
    out = target_depth(warp, d, [s], [s])
    assert torch.allclose(out, d, rtol=1e-4)


def test_target_depth_from_the_true_source_depth_finds_the_true_target_depth(world) -> None:
    """The fixed-point iteration: a step forward, the target's depth from the source's."""
    warp = CameraWarp(SandboxCamera(RES, RES))
    start, rel0, dst_abs, dst_rel = _walk(world, "W", chunks=1)
    src_depth = torch.from_numpy(world._renderer.render_depth(start)).clamp(max=500.0)
    est = target_depth(warp, src_depth[None].repeat(len(dst_rel), 1, 1), [rel0] * len(dst_rel),
                       dst_rel)
    true = np.stack([world._renderer.render_depth(s) for s in dst_abs])
    near = true < 30  # the sky and far walls barely matter to a warp
    rel_err = np.abs(est.numpy()[near] / true[near] - 1)
    assert np.median(rel_err) < 0.05


def test_depth_model_round_trip_and_a_clear_error(tmp_path) -> None:
    model = DepthNet().eval()
    frames = np.random.default_rng(0).integers(0, 256, (2, RES, RES, 3), dtype=np.uint8)
    out = model.predict(frames)
    assert out.shape == (2, RES, RES)
    assert (out >= model.config.min_depth * 0.999).all()
    assert (out <= model.config.max_depth * 1.001).all()
    save_depth_model(model, tmp_path / "depth", {"note": "test"})
    again = load_depth_model(tmp_path / "depth")
    assert torch.equal(again.predict(frames), out)
    with pytest.raises(FileNotFoundError, match="holds no depth model"):
        load_depth_model(tmp_path / "nothing")


def test_depth_warp_leaves_rotations_exact_and_moves_walks(world) -> None:
    warp = CameraWarp(SandboxCamera(RES, RES))
    dw = DepthWarp(warp, DepthNet())
    first = world.render(world.state)[None]
    s0 = CameraState(y=world.state.y)
    turned = commanded_states([parse_action("· →")], 4, s0)
    a, _ = dw.warp_with_mask(np.repeat(first, 4, 0), [s0] * 4, turned)
    b, _ = warp.warp_with_mask(np.repeat(first, 4, 0), [s0] * 4, turned)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # rotation needs no depth
    walked = commanded_states([parse_action("W")], 4, s0)
    c, valid = dw.warp_with_mask(np.repeat(first, 4, 0), [s0] * 4, walked)
    assert c.shape == (4, RES, RES, 3) and valid.shape == (4, RES, RES)
    assert dw.predict(first, np.array([[parse_action("W").index]]), 4).shape == (1, 4, RES,
                                                                                  RES, 3)


def test_depth_training_runs_saves_and_scores(tmp_path) -> None:
    from world.training.depth import train_depth

    res = train_depth(tmp_path / "depth", scenes=2, heldout_scenes=1, minutes=0.02,
                      batch=4, progress=False)
    assert res["steps"] >= 1 and np.isfinite(res["train_loss"])
    h = res["heldout"]
    assert np.isfinite(h["log_l1"]) and np.isfinite(h["prior_log_l1"])
    assert load_depth_model(tmp_path / "depth").config.width == DepthNet().config.width


def test_a_recipe_depth_stage_puts_the_model_where_the_engine_looks(tmp_path) -> None:
    import json

    from world.mvdt.depth import memory_depth
    from world.training.recipe import run_recipe

    recipe = tmp_path / "depth.json"
    recipe.write_text(json.dumps({"name": "depth-only", "work_dir": "{runs}/work", "stages": [
        {"name": "depth", "kind": "depth",
         "args": {"out": "{runs}/ckpt/depth", "scenes": 2, "heldout_scenes": 2,
                  "minutes": 0.01}}]}))
    assert memory_depth(tmp_path / "ckpt") is None  # no depth/ folder: the fixed prior
    done = run_recipe(recipe, {"runs": str(tmp_path)}, progress=False)
    assert [(r["name"], r["status"]) for r in done] == [("depth", "done")]
    assert isinstance(memory_depth(tmp_path / "ckpt"), DepthNet)


def test_training_with_the_learned_memory_depth_warps_as_the_engine_and_ships_it(tmp_path) -> None:
    from world.data import ClipDataset
    from world.mvdt import codec_from_config, load_checkpoint
    from world.mvdt.depth import memory_depth
    from world.train import TrainConfig, TrainError, build_model_config, make_sampler, train

    cfg = TrainConfig.load("world/configs/tiny.json")
    cfg.run_dir = str(tmp_path / "run")
    cfg.data = {**cfg.data, "train_dir": str(tmp_path / "train"),
                "heldout_dir": str(tmp_path / "heldout")}
    cfg.model = {**cfg.model, "refiner_channels": 8, "warp_sources": ["first", "last"]}
    torch.manual_seed(0)
    save_depth_model(DepthNet(), tmp_path / "depth")
    cfg.warp_depth = str(tmp_path / "depth")
    ckpt = train(cfg, progress=False, max_steps=2)
    # The checkpoint carries the depth it trained with, where the engine looks for it.
    assert isinstance(memory_depth(ckpt), DepthNet)
    assert load_checkpoint(ckpt).config.warp_sources == ["first", "last"]
    from world.train import export_checkpoint

    shipped = export_checkpoint(tmp_path / "run", tmp_path / "shipped")
    assert isinstance(memory_depth(shipped), DepthNet)  # and so does the exported folder
    # Its batches are warped with that depth: a walk's conditioning differs from the prior's.
    mc = build_model_config(cfg)
    codec = codec_from_config(mc.codec)
    data = ClipDataset(tmp_path / "train")
    plain = make_sampler(data, codec, mc, seed=3)
    learned = make_sampler(data, codec, mc, seed=3, depth_model=load_depth_model(cfg.warp_depth))
    assert isinstance(learned._warp, DepthWarp) and not isinstance(plain._warp, DepthWarp)
    a, b = plain.sample(4, chunk=2), learned.sample(4, chunk=2)
    torch.testing.assert_close(a["target"], b["target"])  # same clips, same positions
    assert not torch.allclose(a["warp"], b["warp"])
    # A depth without a geometric memory to use it is refused in one sentence.
    cfg.model = {k: v for k, v in cfg.model.items() if k != "warp_sources"}
    cfg.run_dir = str(tmp_path / "run2")
    with pytest.raises(TrainError, match="no geometric memory"):
        train(cfg, progress=False, max_steps=1)
    cfg.model["warp_sources"] = ["first"]
    cfg.warp_depth = str(tmp_path / "nowhere")
    with pytest.raises(TrainError, match="holds no depth model"):
        train(cfg, progress=False, max_steps=1)
