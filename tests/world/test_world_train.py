"""World-model training loop: runs, checkpoints, resumes; the few-step student path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from world.base import WorldError
from world.distill import DistillConfig, distill, student_sampler_params
from world.mvdt import load_checkpoint
from world.train import TrainConfig, TrainError, plot_loss, train


def tiny_config(tmp_path, **changes) -> TrainConfig:
    cfg = TrainConfig.load("world/configs/tiny.json")
    cfg.run_dir = str(tmp_path / "run")
    cfg.data = {**cfg.data, "train_dir": str(tmp_path / "train"),
                "heldout_dir": str(tmp_path / "heldout")}
    for k, v in changes.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    cfg = tiny_config(tmp)
    ckpt = train(cfg, progress=False)
    return tmp, cfg, ckpt


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_train_three_steps_and_checkpoint(trained):
    tmp, cfg, ckpt = trained
    rows = [r for r in _rows(tmp / "run") if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert (tmp / "run" / "loss.png").stat().st_size > 1000
    for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors", "state.json",
                 "config.json"):
        assert (tmp / "run" / "last" / name).is_file()
    model = load_checkpoint(ckpt)
    assert model.config.frames_per_chunk == 2
    assert json.loads((ckpt / "training.json").read_text())["step"] == 3
    # Data were generated on the way, in the documented format.
    assert (tmp / "train" / "index.json").is_file() and (tmp / "heldout" / "index.json").is_file()


def test_resume_continues_step_counter(trained):
    tmp, cfg, _ = trained
    state = json.loads((tmp / "run" / "last" / "state.json").read_text())
    assert state["step"] == 3
    ckpt = train(tiny_config(tmp), progress=False, max_steps=5)
    rows = _rows(tmp / "run")
    starts = [r for r in rows if r.get("event") == "start"]
    assert starts[-1]["resume"] and starts[-1]["step"] == 3
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == [1, 2, 3, 4, 5]
    assert json.loads((tmp / "run" / "last" / "state.json").read_text())["step"] == 5
    assert json.loads((ckpt / "training.json").read_text())["step"] == 5


def test_extra_train_dirs_and_session_minutes(trained, tmp_path):
    from world.data import write_dataset
    from world.mvdt import codec_from_config
    from world.train import ChunkSampler, build_model_config, make_sampler

    tmp, _, _ = trained
    extra = tmp_path / "extra"
    write_dataset(extra, 3, 16, 3, 2, seed=9, progress=False)
    cfg = tiny_config(tmp_path, max_steps=50)
    cfg.data = {**cfg.data, "train_dir": str(tmp / "train"), "heldout_dir": str(tmp / "heldout"),
                "extra_train_dirs": [str(extra)]}
    # A session of ~0 minutes stops at once with a resumable checkpoint; the budget is untouched.
    train(cfg, progress=False, session_minutes=1e-6)
    state = json.loads((tmp_path / "run" / "last" / "state.json").read_text())
    assert state["step"] < 50
    train(cfg, progress=False, max_steps=state["step"] + 2)
    assert json.loads((tmp_path / "run" / "last" / "state.json").read_text())["step"] == (
        state["step"] + 2)
    # The sampler sees the clips of both folders, encoded in one batched call that matches
    # the clip-by-clip codec.
    from world.data import ClipDataset

    mc = build_model_config(cfg)
    codec = codec_from_config(mc.codec)
    sets = [ClipDataset(tmp / "train"), ClipDataset(extra)]
    sampler = make_sampler(sets, codec, mc)
    assert sampler.frames.shape[0] == len(sets[0]) + len(sets[1])
    clips = sampler.frames[:2]
    looped = ChunkSampler(sampler.frames, sampler.actions, 2, type("C", (), {
        "encode": staticmethod(codec.encode)})())
    torch.testing.assert_close(sampler._encode(clips), looped._encode(clips))
    cfg.data["extra_train_dirs"] = [str(tmp_path / "missing")]
    cfg.run_dir = str(tmp_path / "run2")
    with pytest.raises(TrainError, match="extra_train_dirs"):
        train(cfg, progress=False)


def test_config_errors(tmp_path):
    with pytest.raises(TrainError, match="No training config"):
        TrainConfig.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "learning_rate": 1}))
    with pytest.raises(TrainError, match="unknown keys"):
        TrainConfig.load(bad)
    # A device that is not there fails before any clips are generated.
    cfg = TrainConfig(name="x", run_dir=str(tmp_path / "run"), device="tpu9",
                      data={"train_dir": str(tmp_path / "clips")})
    with pytest.raises(WorldError, match="not a torch device"):
        train(cfg, progress=False)
    assert not (tmp_path / "clips").exists()


def test_plot_loss(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps({"step": i, "loss": 1.0 / i}) for i in range(1, 40)))
    plot_loss(log, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_distill_student_path(trained, tmp_path):
    tmp, cfg, ckpt = trained
    out = distill(DistillConfig(teacher=str(ckpt), data=cfg.data["train_dir"],
                                out=str(tmp_path / "student"), student_steps=2, teacher_steps=4,
                                teacher_guidance=2.0, trajectories=2, batch_size=2,
                                max_steps=3), progress=False)
    student = load_checkpoint(out)
    teacher = load_checkpoint(ckpt)
    assert student.config.to_dict() == teacher.config.to_dict()
    assert student_sampler_params(out) == {"sampler": "euler", "num_steps": 2,
                                           "guidance_scale": 1.0}
    losses = [json.loads(r)["loss"] for r in (out / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    changed = any(not torch.equal(a, b) for a, b in zip(student.state_dict().values(),
                                                          teacher.state_dict().values(),
                                                          strict=True))
    assert changed


def test_x0_prediction_gives_velocity(trained):
    # The shipped configs predict x0; forward must return the velocity (x_t - x0_hat) / sigma.
    _, _, ckpt = trained
    model = load_checkpoint(ckpt)
    assert model.config.prediction == "x0"
    cfg = model.config
    x = torch.randn(1, cfg.latent_channels, cfg.chunk_latent_frames, cfg.latent_height,
                    cfg.latent_width)
    ctx = model.encode_actions([None])
    with torch.no_grad():
        v1 = model(x, 0.5, ctx)
        v2 = model(x, 0.25, ctx)
        model.config.prediction = "velocity"
        head = model(x, 0.5, ctx)
    torch.testing.assert_close(v1, (x - head) / 0.5)
    assert not torch.allclose(v1, v2)


def test_export_checkpoint(trained, tmp_path):
    from world.train import export_checkpoint

    tmp, cfg, _ = trained
    dest = export_checkpoint(cfg.run_dir, tmp_path / "ship",
                             sampler={"name": "euler", "params": {"num_steps": 4}})
    names = {p.name for p in dest.iterdir()}
    assert {"model.safetensors", "config.json", "training.json", "training_log.jsonl",
            "loss.png", "sampler.json"} <= names
    assert load_checkpoint(dest).config.frames_per_chunk == 2


def test_export_sets_the_inference_trust_and_keeps_the_weights(trained, tmp_path):
    from world.mvdt.checkpoint import read_metadata
    from world.train import export_checkpoint

    _, cfg, _ = trained
    src = cfg.run_dir
    dest = export_checkpoint(src, tmp_path / "ship", warp_trust=3)
    shipped = load_checkpoint(dest)  # loads: the re-saved config hash matches
    assert shipped.config.warp_trust == 3.0
    assert json.loads((dest / "config.json").read_text())["warp_trust"] == 3.0
    ema = load_checkpoint(f"{src}/checkpoint")
    for k, v in ema.state_dict().items():
        torch.testing.assert_close(shipped.state_dict()[k], v)
    assert read_metadata(dest)["dtype"] == read_metadata(f"{src}/checkpoint")["dtype"]
    with pytest.raises(TrainError, match="warp_trust"):
        export_checkpoint(src, tmp_path / "bad", warp_trust="high")


def test_export_raw_weights(trained, tmp_path):
    from world.train import export_checkpoint

    _, cfg, _ = trained
    dest = export_checkpoint(cfg.run_dir, tmp_path / "raw", weights="raw")
    assert json.loads((dest / "training.json").read_text())["weights"] == "raw"
    raw = load_checkpoint(dest).state_dict()
    ema = load_checkpoint(f"{cfg.run_dir}/checkpoint").state_dict()
    assert raw.keys() == ema.keys()
    assert any(not torch.equal(raw[k], ema[k]) for k in raw)  # EMA (decay 0.9) lags the weights
    with pytest.raises(TrainError):
        export_checkpoint(cfg.run_dir, tmp_path / "bad", weights="best")


def test_warm_start_into_a_model_with_a_refiner(trained, tmp_path):
    from world.mvdt import MVDTModel
    from world.train import warm_start

    _, _, ckpt = trained
    base = load_checkpoint(ckpt)
    grown = MVDTModel(base.config.replace(prediction="x0", refiner_channels=4))
    fresh = warm_start(grown, ckpt)
    assert fresh and all(k.startswith("refiner.") for k in fresh)
    for k, v in base.state_dict().items():
        assert torch.equal(grown.state_dict()[k], v)
    with pytest.raises(TrainError, match="No model.safetensors"):
        warm_start(grown, tmp_path)
    other = MVDTModel(base.config.replace(dim=32, num_heads=2))
    with pytest.raises(TrainError, match="another architecture"):
        warm_start(other, ckpt)
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(TrainError, match="damaged"):
        warm_start(grown, tmp_path)


def test_two_stage_run_warm_starts_and_ships_both_logs(trained, tmp_path):
    from world.train import export_checkpoint

    tmp, cfg, ckpt = trained
    stage2 = tiny_config(tmp, run_dir=str(tmp_path / "stage2"), init_from=str(ckpt), max_steps=2)
    stage2.model = {**cfg.model, "refiner_channels": 4, "refiner_action": True,
                    "history_noise": 0.1}
    out = train(stage2, progress=False)
    model = load_checkpoint(out)
    assert model.config.refiner_channels == 4 and model.refiner is not None
    starts = [r for r in _rows(tmp_path / "stage2") if r.get("event") == "start"]
    assert [s["step"] for s in starts] == [0]
    dest = export_checkpoint(stage2.run_dir, tmp_path / "ship")
    assert (dest / "training_log_init.jsonl").read_text() == (tmp / "run" / "log.jsonl").read_text()
    # A third stage ships the logs of both earlier stages, newest first.
    stage3 = tiny_config(tmp, run_dir=str(tmp_path / "stage3"), init_from=str(out), max_steps=1)
    stage3.model = stage2.model
    dest = export_checkpoint(Path(train(stage3, progress=False)).parent, tmp_path / "ship3")
    assert (dest / "training_log_init.jsonl").read_text() == (
        tmp_path / "stage2" / "log.jsonl").read_text()
    first = (tmp / "run" / "log.jsonl").read_text()
    assert (dest / "training_log_init2.jsonl").read_text() == first
    assert not (dest / "training_log_init3.jsonl").exists()
    # A stage warm-started from the exported checkpoint itself (as a fine-tune of the shipped
    # one is) carries the logs that checkpoint ships.
    stage4 = tiny_config(tmp, run_dir=str(tmp_path / "stage4"), init_from=str(dest), max_steps=1)
    stage4.model = stage2.model
    dest4 = export_checkpoint(Path(train(stage4, progress=False)).parent, tmp_path / "ship4")
    shipped = [(dest / "training_log.jsonl").read_text(), (tmp_path / "stage2" / "log.jsonl")
               .read_text(), first]
    assert [(dest4 / n).read_text() for n in ("training_log_init.jsonl",
            "training_log_init2.jsonl", "training_log_init3.jsonl")] == shipped
    assert (dest4 / "training_log.jsonl").read_text() == (
        tmp_path / "stage4" / "log.jsonl").read_text()
    # Shipping stage 4 over the folder it started from, then growing stage 5 from stage 4's
    # run, must not list stage 4 twice (its run log and the re-exported folder's log).
    export_checkpoint(tmp_path / "stage4", dest)
    stage5 = tiny_config(tmp, run_dir=str(tmp_path / "stage5"),
                         init_from=str(tmp_path / "stage4" / "checkpoint"), max_steps=1)
    stage5.model = stage2.model
    dest5 = export_checkpoint(Path(train(stage5, progress=False)).parent, tmp_path / "ship5")
    logs = sorted(dest5.glob("training_log*.jsonl"))
    assert len({p.read_text() for p in logs}) == len(logs) == 5


def test_self_generated_history_replaces_only_the_newest_chunks(trained):
    from control.actions import Action
    from world.mvdt import MVDTPipeline, self_generated_history

    _, _, ckpt = trained
    model = load_checkpoint(ckpt)
    f = model.config.chunk_latent_frames
    pipe = MVDTPipeline(model, num_steps=2, guidance_scale=1.0)
    g = torch.Generator().manual_seed(0)
    hist = torch.randn(2, model.config.latent_channels, 1 + 3 * f, 8, 8, generator=g)
    acts = torch.tensor([[0, 9, 18], [4, 40, 80]])
    out = self_generated_history(pipe, hist, acts, chunks=2,
                                 generator=torch.Generator().manual_seed(1))
    assert out.shape == hist.shape and not torch.equal(out, hist)
    torch.testing.assert_close(out[:, :, :1 + f], hist[:, :, :1 + f])  # older frames untouched
    # The newest chunk continues from the generated one before it, under its own action.
    gen = torch.Generator().manual_seed(1)
    want = hist.clone()
    for j, end in ((2, 1 + 2 * f), (1, 1 + 3 * f)):
        actions = [Action.from_index(int(a)) for a in acts[:, -j]]
        want[:, :, end - f:end] = pipe.generate_latents(want[:, :, :end - f], actions,
                                                        generator=gen)
    torch.testing.assert_close(out, want)
    # A history of the first frame alone has nothing to replace.
    first = hist[:, :, :1]
    assert torch.equal(self_generated_history(pipe, first, acts[:, :0], chunks=1), first)


def test_training_on_self_generated_history(tmp_path, trained):
    tmp, _, _ = trained
    cfg = tiny_config(tmp_path, self_history=1.0, self_history_chunks=2, max_steps=3)
    cfg.data = {**cfg.data, "train_dir": str(tmp / "train"), "heldout_dir": str(tmp / "heldout")}
    train(cfg, progress=False)
    rows = [r for r in _rows(tmp_path / "run") if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    cfg.run_dir, cfg.self_history_sampler = str(tmp_path / "bad"), {"name": "leapfrog"}
    with pytest.raises(TrainError, match="self_history_sampler"):
        train(cfg, progress=False)


def test_training_with_a_motion_critic(tmp_path, trained):
    from world.data import ClipDataset
    from world.idm import IDMConfig, fit_idm, pairs_from_clips

    tmp, _, _ = trained
    ds = ClipDataset(tmp / "train")
    poses = torch.stack([ds[k]["poses"] for k in range(len(ds))])
    pairs = pairs_from_clips(ds.all_frames(), poses, ds.frames_per_step)
    critic, _ = fit_idm(*pairs, IDMConfig(height=16, width=16, frames_per_step=2), steps=2,
                        batch=4, progress=False)
    critic.save(tmp_path / "critic")
    cfg = tiny_config(tmp_path, motion_critic=str(tmp_path / "critic"), motion_weight=1.0)
    cfg.data = {**cfg.data, "train_dir": str(tmp / "train"), "heldout_dir": str(tmp / "heldout")}
    train(cfg, progress=False)
    rows = [r for r in _rows(tmp_path / "run") if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["loss_motion"] is not None and r["loss_motion"] >= 0 for r in rows)

    critic32, _ = fit_idm(torch.zeros(2, 32, 32, 3, dtype=torch.uint8),
                          torch.zeros(2, 32, 32, 3, dtype=torch.uint8),
                          torch.zeros(2, 2, dtype=torch.int64), steps=1, batch=2,
                          progress=False)
    critic32.save(tmp_path / "critic32")
    cfg.run_dir, cfg.motion_critic = str(tmp_path / "bad"), str(tmp_path / "critic32")
    with pytest.raises(TrainError, match="motion critic"):
        train(cfg, progress=False)


def test_motion_loss_adds_to_the_same_flow_loss(trained):
    from world.data import ClipDataset
    from world.mvdt import codec_from_config
    from world.mvdt.training import training_loss
    from world.train import make_sampler

    tmp, cfg, ckpt = trained
    model = load_checkpoint(ckpt)
    codec = codec_from_config(model.config.codec)
    batch = make_sampler(ClipDataset(tmp / "train"), codec, model.config, 0).sample(2)
    calls = []

    def critic(before, target, generated):
        calls.append((before.shape, target.shape, generated.requires_grad))
        return (generated - target).pow(2).flatten(1).mean(1)

    base, logs = training_loss(model, batch, torch.Generator().manual_seed(3))
    both, logs2 = training_loss(model, batch, torch.Generator().manual_seed(3),
                                motion_critic=critic, motion_weight=0.5)
    assert "loss_motion" not in logs and logs2["loss_motion"] > 0
    assert torch.allclose(both, base + 0.5 * logs2["loss_motion"], atol=1e-5)
    c, h, w = model.config.latent_channels, model.config.latent_height, model.config.latent_width
    assert calls == [((2, c, h, w), (2, c, h, w), True)]


def test_balanced_sampling_evens_out_translation_keys(trained):
    from control.actions import Action
    from world.train import ChunkSampler

    codec = type("C", (), {"encode": staticmethod(lambda f: torch.zeros(1, len(f), 1, 1))})()
    w, s = Action("W", "·").index, Action("S", "·").index
    actions = torch.full((40, 1), w)
    actions[:4] = s  # walking backwards in one clip of ten
    frames = torch.zeros(40, 3, 2, 2, 3, dtype=torch.uint8)

    def share_of_s(balance):
        sampler = ChunkSampler(frames, actions, 2, codec, seed=1, balance=balance)
        keys = [a.translation for _ in range(50) for a in sampler.sample(8)["actions"]]
        return keys.count("S") / len(keys)

    assert share_of_s(0.0) < 0.2 and 0.4 < share_of_s(1.0) < 0.6


def test_mirrored_examples_flip_frames_and_actions():
    from control.actions import Action
    from world.train import ChunkSampler

    codec = type("C", (), {"encode": staticmethod(
        lambda f: torch.from_numpy(f).permute(3, 0, 1, 2).float())})()
    frames = torch.zeros(6, 5, 2, 2, 3, dtype=torch.uint8)
    frames[:, :, :, 0] = 255  # a bright left column
    act = Action("W+A", "↓→")
    sampler = ChunkSampler(frames, torch.full((6, 2), act.index), 2, codec, seed=0, mirror=True)
    seen = set()
    for _ in range(10):
        b = sampler.sample(4)
        for i, a in enumerate(b["actions"]):
            flipped = bool(b["target"][i, :, :, :, 0].max() == 0)
            assert a == (Action("W+D", "↓←") if flipped else act)
            assert bool((b["history_actions"][i] == a.index).all())
            seen.add(flipped)
    assert seen == {True, False}
