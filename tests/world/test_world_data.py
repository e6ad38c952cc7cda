"""World-model data: sandbox walks, shard format round trip, seed splits, latent spaces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from control.actions import Action
from world.data import (
    HELDOUT_SEED_START,
    ClipDataset,
    DatasetError,
    WalkPolicy,
    generate_clip,
    make_world,
    read_index,
    scene_seeds,
    write_dataset,
)
from world.vae import PixelLatent, PixelLatentConfig, fit_pixel_latent, psnr


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("clips")
    write_dataset(out, n_clips=3, resolution=16, chunks_per_clip=4, frames_per_step=2,
                  split="train", seed=5, clips_per_shard=2, progress=False)
    return out


def test_scene_seeds_disjoint_and_deterministic():
    train = scene_seeds("train", 500, seed=1)
    held = scene_seeds("heldout", 500, seed=1)
    assert len(set(train.tolist())) == 500
    assert set(train.tolist()).isdisjoint(held.tolist())
    assert train.max() < HELDOUT_SEED_START <= held.min()
    np.testing.assert_array_equal(train, scene_seeds("train", 500, seed=1))
    with pytest.raises(DatasetError, match="split"):
        scene_seeds("test", 3)


def test_walk_policy_is_plausible():
    rng = np.random.default_rng(0)
    policy = WalkPolicy()
    actions, prev = [], None
    for _ in range(3000):
        prev = policy.next_action(rng, prev)
        actions.append(prev)
    trans = [a.translation for a in actions]
    rots = [a.rotation for a in actions]
    # Mostly forward walking and turning; some strafing and tilting; few fully idle chunks.
    assert trans.count("W") / len(trans) > 0.35
    assert (rots.count("→") + rots.count("←")) / len(rots) > 0.2
    assert 0 < sum(a.is_idle for a in actions) / len(actions) < 0.15
    assert {"A", "D"} <= set(trans) and {"↑", "↓"} <= set(rots)
    # After a collision the explorer turns away instead of pushing on.
    blocked = [policy.next_action(rng, Action("W"), blocked=True) for _ in range(50)]
    assert all(a.rotation in ("→", "←") and a.translation in ("·", "S") for a in blocked)
    with pytest.raises(DatasetError):
        WalkPolicy(translation_weights={"Q": 1.0})


def test_walk_policy_pushing_into_walls():
    # push_probability=1: a blocked walker keeps its action; 0.5: about half do.
    rng = np.random.default_rng(1)
    pusher = WalkPolicy(push_probability=1.0)
    assert all(pusher.next_action(rng, Action("W", "→"), blocked=True) == Action("W", "→")
               for _ in range(20))
    half = WalkPolicy(push_probability=0.5)
    kept = [half.next_action(rng, Action("W"), blocked=True) == Action("W") for _ in range(400)]
    assert 0.4 < np.mean(kept) < 0.6
    # The default never pushes and draws the same actions as before the option existed.
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert ([WalkPolicy().next_action(a, Action("W"), blocked=True) for _ in range(30)]
            == [WalkPolicy(push_probability=0.0).next_action(b, Action("W"), blocked=True)
                for _ in range(30)])
    with pytest.raises(DatasetError, match="push_probability"):
        WalkPolicy(push_probability=1.5)


def test_generate_clip_matches_sandbox():
    world = make_world(16, 16, 2)
    clip = generate_clip(world, seed=11, chunks_per_clip=3)
    assert clip.frames.shape == (7, 16, 16, 3) and clip.frames.dtype == np.uint8
    assert clip.poses.shape == (7, 4, 4) and clip.actions.shape == (3,)
    # Replaying the recorded actions in the sandbox gives the same frames and poses.
    first = world.reset(seed=11)
    np.testing.assert_array_equal(first.frames[0], clip.frames[0])
    for k, a in enumerate(clip.action_list):
        chunk = world.step(a)
        np.testing.assert_array_equal(chunk.frames, clip.frames[1 + 2 * k:3 + 2 * k])
        np.testing.assert_allclose(chunk.poses, clip.poses[1 + 2 * k:3 + 2 * k])


def test_dataset_round_trip(dataset, tmp_path):
    index = read_index(dataset)
    assert index["format"] == "yume-world-clips" and index["n_clips"] == 3
    assert [s["n_clips"] for s in index["shards"]] == [2, 1]
    ds = ClipDataset(dataset)
    lazy = ClipDataset(dataset, in_memory=False)
    assert len(ds) == 3 and ds.frames_per_step == 2 and ds.chunks_per_clip == 4
    world = make_world(16, 16, 2)
    for k in range(3):
        item = ds[k]
        assert item["frames"].shape == (9, 16, 16, 3) and item["frames"].dtype == torch.uint8
        assert item["actions"].dtype == torch.int64 and item["poses"].shape == (9, 4, 4)
        for key in ("frames", "poses", "timestamps", "actions"):
            assert torch.equal(item[key], lazy[k][key])
        # The shard holds exactly what the sandbox renders for that seed and those actions.
        world.reset(seed=item["seed"])
        for j, a in enumerate(item["actions"].tolist()):
            chunk = world.step(Action.from_index(a))
            np.testing.assert_array_equal(chunk.frames, item["frames"][1 + 2 * j:3 + 2 * j])
            np.testing.assert_allclose(chunk.poses, item["poses"][1 + 2 * j:3 + 2 * j].numpy())
    assert ds.seeds == [int(s) for s in scene_seeds("train", 3, seed=5)]
    # Same arguments, identical tensors (determinism).
    again = tmp_path / "again"
    write_dataset(again, n_clips=3, resolution=16, chunks_per_clip=4, frames_per_step=2,
                  split="train", seed=5, clips_per_shard=2, progress=False)
    for name in ("shard-00000.safetensors", "shard-00001.safetensors"):
        a, b = load_file(again / name), load_file(dataset / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_heldout_dataset_is_disjoint(dataset, tmp_path):
    held = tmp_path / "held"
    write_dataset(held, n_clips=2, resolution=16, chunks_per_clip=1, frames_per_step=2,
                  split="heldout", seed=5, progress=False)
    assert set(ClipDataset(held).seeds).isdisjoint(ClipDataset(dataset).seeds)
    assert read_index(held)["split"] == "heldout"


def test_bad_dataset_errors(tmp_path, dataset):
    with pytest.raises(DatasetError, match="yume world data"):
        ClipDataset(tmp_path / "missing")
    (tmp_path / "index.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(DatasetError, match="regenerate"):
        read_index(tmp_path)
    with pytest.raises(DatasetError):
        write_dataset(tmp_path / "x", n_clips=0, progress=False)


def test_pixel_latent_is_invertible(dataset):
    frames = ClipDataset(dataset).all_frames()
    space = fit_pixel_latent(frames, factor=4)
    z = space.encode(frames)
    assert z.shape == (3, 48, 9, 4, 4)
    assert abs(float(z.std()) - 1.0) < 0.05
    assert torch.equal(space.decode(z), frames)
    assert psnr(space.decode(z), frames) == float("inf")
    with pytest.raises(ValueError, match="multiple"):
        PixelLatent(PixelLatentConfig(factor=5)).encode(frames)
