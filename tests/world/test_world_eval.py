"""World-model evaluation: metrics, IDM, evaluation of a tiny random model, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from control.actions import ROTATIONS, TRANSLATIONS, Action
from control.motion import CameraState, apply_action
from world.evaluate import (
    EvalConfig,
    drift_scene_seeds,
    evaluate,
    format_table,
    horizon_scene_seeds,
    measure_speed,
    psnr,
    ssim,
)
from world.idm import (
    IDMConfig,
    IDMError,
    InverseDynamics,
    accuracy,
    fit_idm,
    motion_kl,
    motion_labels,
    pairs_from_clips,
)
from world.mvdt import MVDTModel, codec_from_config, preset


def test_psnr_ssim_basics():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    assert psnr(a, a) == math.inf
    assert 20 < psnr(a, b) < 40
    assert ssim(a, a) == pytest.approx(1.0)
    s = ssim(a, b)
    assert 0.0 <= s < 1.0
    assert 0.0 <= ssim(a, 255 - a) <= 1.0


def test_motion_labels_from_poses():
    s0 = CameraState()
    s1 = s0
    for _ in range(4):
        s1 = apply_action(s1, Action("W+D", "↑→"))
    t, r = motion_labels(s0.pose(), s1.pose(), metres=0.32, radians=np.deg2rad(8))
    assert TRANSLATIONS[t] == "W+D" and ROTATIONS[r] == "↑→"
    assert motion_labels(s0.pose(), s0.pose(), 0.32, 0.1) == (0, 0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from world.data import ClipDataset, write_dataset

    out = tmp_path_factory.mktemp("eval-clips")
    write_dataset(out, n_clips=3, resolution=16, chunks_per_clip=4, frames_per_step=2,
                  progress=False)
    ds = ClipDataset(out)
    return ds.all_frames(), torch.stack([ds[k]["poses"] for k in range(len(ds))])


def test_idm_schedule_is_one_cycle_over_steps_or_seconds(clips):
    from world.idm import _one_cycle

    assert _one_cycle(0.0, 1.0) == pytest.approx(1 / 25)
    assert _one_cycle(0.3, 1.0) == pytest.approx(1.0)
    assert _one_cycle(1.0, 1.0) == pytest.approx(1 / 25e4)
    lrs = [_one_cycle(k / 20, 1.0) for k in range(21)]
    assert lrs[:7] == sorted(lrs[:7]) and lrs[6:] == sorted(lrs[6:], reverse=True)
    frames, poses = clips
    pairs = pairs_from_clips(frames, poses, frames_per_step=2)
    # A time cap of zero stops after the first step (the schedule then ends at once).
    _, log = fit_idm(*pairs, steps=50, batch=4, seconds=0.0, progress=False, device="cpu")
    assert len(log) == 1


def test_idm_trains_predicts_and_round_trips(clips, tmp_path):
    frames, poses = clips
    before, after, labels = pairs_from_clips(frames, poses, frames_per_step=2)
    assert before.shape == (12, 16, 16, 3) and labels.shape == (12, 2)
    model, log = fit_idm(before, after, labels, steps=4, batch=8, progress=False)
    assert len(log) == 4 and all(math.isfinite(r["loss"]) for r in log)
    lt, lr = model(before[:3], after[:3])
    assert lt.shape == (3, 9) and lr.shape == (3, 9)
    pred = model.predict(before, after)
    assert pred.shape == (12, 2) and int(pred.max()) < 9 and int(pred.min()) >= 0
    assert all(isinstance(a, Action) for a in model.predict_actions(before[:2], after[:2]))
    acc = accuracy(model, before, after, labels)
    assert all(0 <= acc[k] <= 1 for k in ("action", "translation", "rotation"))
    assert acc["action"] <= min(acc["translation"], acc["rotation"]) and acc["n"] == 12
    model.save(tmp_path / "idm")
    again = InverseDynamics.load(tmp_path / "idm")
    assert torch.equal(again.predict(before, after), pred)
    with pytest.raises(IDMError):
        InverseDynamics.load(tmp_path / "nothing")
    with pytest.raises(IDMError, match="frame batches"):
        model(before[:, :8], after[:, :8])


def test_eval_tiny_random_model(tmp_path):
    torch.manual_seed(0)
    cfg = preset("tiny", latent_channels=12)
    model = MVDTModel(cfg)
    codec = codec_from_config(cfg.codec)
    idm = InverseDynamics(IDMConfig(height=16, width=16, frames_per_step=2))
    ev = EvalConfig(episodes=2, horizon=3, drift_chunks=4, drift_episodes=1, drift_window=2,
                    num_steps=2, threads=1)
    judge = InverseDynamics(IDMConfig(height=16, width=16, frames_per_step=2, width_mult=16))
    res = evaluate(model, codec, idm, ev, progress=False, out_dir=tmp_path,
                   other_judges={"second": judge})
    for key in ("psnr", "ssim", "baseline_psnr", "baseline_ssim", "psnr_gain"):
        assert len(res["per_step"][key]) == 3
    assert all(0.0 <= s <= 1.0 for s in res["per_step"]["ssim"] + res["per_step"]["baseline_ssim"])
    assert {"psnr_gain_at_h", "ssim_at_h", "horizon_step"} <= set(res["summary"])
    af = res["action_following"]
    assert {"model", "ground_truth", "other_judges"} == set(af) and 0 <= af["model"]["action"] <= 1
    m = af["model"]
    assert sum(map(sum, m["translation_confusion"])) == m["n"] == 6
    assert sum(v["n"] for v in m["by_translation_key"].values()) == m["n"]
    hits = sum(m["translation_confusion"][i][i] for i in range(9))
    assert hits / m["n"] == pytest.approx(m["translation"])
    assert len(res["drift"]["windows"]) == 2
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["summary"] == pytest.approx(res["summary"])
    assert (tmp_path / "rollouts.png").stat().st_size > 100
    assert (tmp_path / "rollout.gif").stat().st_size > 100
    assert "PSNR" in format_table(res) and "by translation key" in format_table(res)
    assert set(af["other_judges"]["second"]) == {"model", "ground_truth"}
    assert "judged by second" in format_table(res)
    speed = measure_speed(model, codec, ev, chunks=1)
    assert speed["frames_per_second"] > 0 and speed["model_calls_per_chunk"] == 2


def test_eval_scenes_do_not_depend_on_the_drift_settings():
    # A figure measured with drift on must be comparable with one measured without it.
    base = horizon_scene_seeds(EvalConfig(episodes=16, drift_episodes=0))
    for drift in (1, 2, 5):
        cfg = EvalConfig(episodes=16, drift_episodes=drift)
        np.testing.assert_array_equal(horizon_scene_seeds(cfg), base)
        far = drift_scene_seeds(cfg)
        assert len(far) == drift and set(far.tolist()).isdisjoint(base.tolist())
    assert not np.array_equal(horizon_scene_seeds(EvalConfig(episodes=16, seed=1)), base)


def test_cli_world_help(monkeypatch, capsys):
    out = subprocess.run([sys.executable, "-m", "gui.cli", "world", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for word in ("data", "train", "eval", "idm", "distill"):
        assert word in out.stdout
    # The rest in this process (one interpreter start is enough to show the entry point works);
    # main() would point this process's SIGTERM at KeyboardInterrupt, which pytest does not want.
    import signal

    from gui.cli import main

    monkeypatch.setattr(signal, "signal", lambda *args: None)
    assert main(["world", "eval", "--checkpoint", "/nonexistent/ckpt"]) == 2
    assert "error" in capsys.readouterr().err
    for bad in ("0.5", "x,1", "0.8,0.2"):
        assert main(["world", "eval", "--guidance-interval", bad]) == 2
        err = capsys.readouterr().err
        assert "LOW <= HIGH" in err and "Traceback" not in err


def test_cli_world_idm_trains_with_a_time_cap_and_names_a_missing_gpu(tmp_path):
    from world.data import write_dataset

    data = tmp_path / "clips"
    write_dataset(data, n_clips=2, resolution=16, chunks_per_clip=3, frames_per_step=2,
                  progress=False)
    base = [sys.executable, "-m", "gui.cli", "world", "idm", "--data", str(data), "--heldout",
            str(data), "--steps", "3", "--batch", "4", "--width", "4", "--max-minutes", "5",
            "--out", str(tmp_path / "idm")]
    out = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "idm" / "idm_config.json").read_text())["report"]
    assert (report["steps"], report["batch"], report["device"]) == (3, 4, "cpu")
    assert InverseDynamics.load(tmp_path / "idm").config.width_mult == 4
    for device, words in (("gpu0", "not a torch device"), ("cuda", "no usable CUDA GPU")):
        if device == "cuda" and torch.cuda.is_available():
            continue
        out = subprocess.run(base + ["--device", device], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr


def test_idm_symmetry_labels_match_poses(clips):
    from world.idm import symmetry_augment

    frames, poses = clips
    before, after, labels = pairs_from_clips(frames, poses, frames_per_step=2)
    gen = torch.Generator().manual_seed(0)
    b2, a2, l2 = symmetry_augment(before, after, labels, gen)
    # A time-reversed pair must carry the label of the reverse motion, computed from the poses.
    p = poses.numpy()
    k = 0
    for i in range(p.shape[0]):
        for c in range(4):
            pa, pb = p[i, 2 * c], p[i, 2 * c + 2]
            fwd = torch.equal(b2[k], before[k]) and torch.equal(a2[k], after[k])
            rev = torch.equal(b2[k], after[k]) and torch.equal(a2[k], before[k])
            if fwd or rev:  # not mirrored
                want = motion_labels(pb, pa, 0.16, np.deg2rad(4)) if rev and not fwd else \
                    tuple(labels[k].tolist())
                assert tuple(l2[k].tolist()) == want
            k += 1


def test_symmetric_idm_prediction_respects_the_symmetries():
    from world.idm import _FLIP_R, _FLIP_T, _REV_R, _REV_T

    torch.manual_seed(0)
    idm = InverseDynamics(IDMConfig(height=16, width=16, width_mult=4, hidden=16, stem=4)).eval()
    gen = torch.Generator().manual_seed(1)
    before = torch.randint(0, 256, (6, 16, 16, 3), generator=gen, dtype=torch.uint8)
    after = torch.randint(0, 256, (6, 16, 16, 3), generator=gen, dtype=torch.uint8)
    lt, lr = idm.symmetric_log_probs(before, after)
    assert torch.allclose(lt.exp().sum(1), torch.ones(6)) and lr.shape == (6, 9)
    # Averaging over the symmetry group: a mirrored or reversed pair gets exactly the permuted
    # probabilities, so its prediction is the mirrored / reversed action.
    mt, mr = idm.symmetric_log_probs(before.flip(2), after.flip(2))
    torch.testing.assert_close(mt, lt[:, _FLIP_T])
    torch.testing.assert_close(mr, lr[:, _FLIP_R])
    rt, rr = idm.symmetric_log_probs(after, before)
    torch.testing.assert_close(rt, lt[:, _REV_T])
    torch.testing.assert_close(rr, lr[:, _REV_R])
    plain = idm.predict(before, after, symmetric=False)
    assert plain.shape == (6, 2) and idm.predict(before, after).shape == (6, 2)


def test_motion_kl_is_zero_on_the_truth_and_differentiable(clips):
    frames, poses = clips
    before, after, labels = pairs_from_clips(frames, poses, frames_per_step=2)
    model, _ = fit_idm(before, after, labels, steps=2, batch=8, progress=False)
    model.zero_grad(set_to_none=True)
    unit = [x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0) for x in (before, after)]
    lt, lr = model.logits_unit(*unit)
    ft, fr = model(before, after)
    assert torch.allclose(lt, ft) and torch.allclose(lr, fr)
    assert torch.allclose(motion_kl(model, unit[0], unit[1], unit[1]), torch.zeros(12), atol=1e-6)
    generated = unit[0].clone().requires_grad_(True)  # "no motion" where the truth moved
    kl = motion_kl(model, unit[0], unit[1], generated)
    assert kl.shape == (12,) and bool((kl >= -1e-6).all()) and float(kl.detach().sum()) > 0
    kl.sum().backward()
    assert generated.grad is not None and float(generated.grad.abs().sum()) > 0
