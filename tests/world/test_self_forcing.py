"""Self-forcing context (world/training/self_forcing.py): rolled batches, training, option off."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.world.test_world_train import tiny_config
from world.mvdt import MVDTModel, codec_from_config
from world.train import TrainConfig, build_model_config, ensure_data, make_sampler, train
from world.training.data import ClipDataset
from world.training.self_forcing import RolloutHistory, rollout_sampler_spec

FAST_SAMPLER = {"name": "euler", "params": {"num_steps": 2, "guidance_scale": 2.0,
                                            "guidance_interval": [0, 0.5]}, "negative": "null"}


def tiny_warp_config(tmp_path, **changes) -> TrainConfig:
    """The tiny training config with the geometric memory of the shipped model."""
    cfg = tiny_config(tmp_path, **changes)
    cfg.model = {**cfg.model, "refiner_channels": 8, "history_noise": 0.1,
                 "warp_sources": ["first", "last"]}
    cfg.data = {**cfg.data, "chunks_per_clip": 4}
    return cfg


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """(config, model config, codec, model, train clips) of a tiny warp model."""
    tmp = tmp_path_factory.mktemp("selfforce")
    cfg = tiny_warp_config(tmp)
    mc = build_model_config(cfg)
    ensure_data(cfg, mc.frames_per_chunk, progress=False)
    torch.manual_seed(0)
    model = MVDTModel(mc).eval()
    return tmp, cfg, mc, codec_from_config(mc.codec), model, ClipDataset(cfg.data["train_dir"])


def _sampler(parts, seed=3):
    _, _, mc, codec, _, data = parts
    return make_sampler(data, codec, mc, seed)


def test_rolled_batch_has_generated_history_and_the_true_target(parts):
    _, _, mc, codec, model, _ = parts
    roller = RolloutHistory(model, codec, FAST_SAMPLER, 1.0, 3, seed=0)
    k = 2
    true, rolled = _sampler(parts).sample(3, k), _sampler(parts).sample(3, k, roller)
    for key in ("history", "target", "warp", "history_actions"):
        assert rolled[key].shape == true[key].shape, key
    assert torch.isfinite(rolled["history"]).all() and torch.isfinite(rolled["warp"]).all()
    f = mc.frames_per_chunk
    assert rolled["history"].shape[2] == 1 + k * f  # tiny: every history frame is kept
    # The start frame and the target are the clip's; every later history frame is generated.
    assert torch.equal(rolled["history"][:, :, 0], true["history"][:, :, 0])
    assert torch.equal(rolled["target"], true["target"])
    assert rolled["actions"] == true["actions"]
    assert torch.equal(rolled["history_actions"], true["history_actions"])
    diff = (rolled["history"][:, :, 1:] - true["history"][:, :, 1:]).abs().mean(dim=(0, 1, 3, 4))
    assert (diff > 1e-3).all(), diff
    # Warp memory: the start frame's warp is the truth's, the newest frame's the rollout's.
    c1 = mc.latent_channels + 1
    assert torch.equal(rolled["warp"][:, :c1], true["warp"][:, :c1])
    assert not torch.equal(rolled["warp"][:, c1:], true["warp"][:, c1:])


def test_rolled_history_is_what_the_warp_rollout_generates(parts):
    from control.actions import Action
    from world.mvdt import get_sampler
    from world.mvdt.warp import WarpRollout

    _, _, mc, codec, model, data = parts
    clips, actions = data.all_frames()[:2], data.all_actions()[:2]
    roller = RolloutHistory(model, codec, FAST_SAMPLER, 1.0, 3)
    roller.rollout.generator = torch.Generator().manual_seed(5)
    out = roller(clips, actions, 2)
    ref = WarpRollout(model, codec, get_sampler("euler", **FAST_SAMPLER["params"]),
                      torch.Generator().manual_seed(5))
    ref.reset(clips[:, 0].numpy())
    frames = [ref.step([Action.from_index(int(a)) for a in actions[:, j]]) for j in range(2)]
    f = mc.frames_per_chunk
    assert torch.equal(out[:, 1:1 + 2 * f], torch.from_numpy(np.concatenate(frames, axis=1)))
    assert torch.equal(out[:, 0], clips[:, 0]) and torch.equal(out[:, 1 + 2 * f:],
                                                              clips[:, 1 + 2 * f:])


def test_plan_is_seeded_by_the_step_and_capped():
    model = MVDTModel(build_model_config(TrainConfig.load("world/configs/tiny.json")))
    codec = codec_from_config(model.config.codec)
    roller = RolloutHistory(model, codec, FAST_SAMPLER, 0.5, 3, seed=1)
    plans = [roller.plan(s, 16) for s in range(200)]
    assert plans == [roller.plan(s, 16) for s in range(200)]
    rolled = [k for k in plans if k is not None]
    assert 60 < len(rolled) < 140 and set(rolled) == {1, 2, 3}
    assert roller.plan(0, 1) is None  # one-chunk clips: no history to roll out
    assert all(RolloutHistory(model, codec, FAST_SAMPLER, 0.0).plan(s, 16) is None
               for s in range(50))


def test_option_off_gives_the_old_batches_bit_for_bit(parts):
    a, b = _sampler(parts, seed=11), _sampler(parts, seed=11)
    for _ in range(5):
        x, y = a.sample(2), b.sample(2, None, None)
        assert x.keys() == y.keys()
        for key in ("history", "target", "warp", "history_actions"):
            assert torch.equal(x[key], y[key]), key
        assert x["actions"] == y["actions"]


def test_a_few_training_steps_with_rollouts_stay_finite(parts, tmp_path):
    tmp = parts[0]
    cfg = tiny_warp_config(tmp, run_dir=str(tmp_path / "run"), max_steps=4, own_rollout=1.0,
                           own_rollout_chunks=3, own_rollout_sampler=FAST_SAMPLER)
    ckpt = train(cfg, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all(r["own_rollout_batches"] == 1 for r in steps)
    assert all(torch.isfinite(torch.tensor([r["loss"], r["grad_norm"]])).all() for r in steps)
    held = [r["heldout_loss"] for r in rows if "heldout_loss" in r]
    assert held and all(torch.isfinite(torch.tensor(held)))
    from world.mvdt import load_checkpoint

    weights = load_checkpoint(ckpt).state_dict()
    assert all(torch.isfinite(v.float()).all() for v in weights.values())


def test_default_rollout_sampler_is_the_shipped_one(tmp_path):
    shipped = json.loads(open("world/checkpoints/mvdt-warp/sampler.json").read())
    assert rollout_sampler_spec({}, "") == shipped
    assert rollout_sampler_spec({}, "world/checkpoints/mvdt-warp") == shipped
    assert rollout_sampler_spec(FAST_SAMPLER, "world/checkpoints/mvdt-warp") == FAST_SAMPLER


def test_rollout_warps_its_memory_with_the_runs_learned_depth(parts):
    from world.mvdt.depth import DepthNet, DepthWarp

    _, _, _, codec, model, _ = parts
    plain = RolloutHistory(model, codec, FAST_SAMPLER, 1.0, 2, seed=0)
    learned = RolloutHistory(model, codec, FAST_SAMPLER, 1.0, 2, seed=0, depth_model=DepthNet())
    assert not isinstance(plain.rollout.memory.warp, DepthWarp)
    assert isinstance(learned.rollout.memory.warp, DepthWarp)
