"""Honest evaluation of a world model (``yume world eval --honest``, issue 16).

What :mod:`world.training.evaluate` leaves open, measured against baselines that know nothing and a
judge that no training run has seen:

- **Fresh scenes.** Scene seeds from ``[FRESH_SEED_START, FRESH_SEED_START + 1e6)``: outside
  both of :mod:`world.training.data`'s ranges (train ``[0, 1e6)``, held-out ``[1e6, 2e6)``), so
  outside every clip folder made so far (all were made with ``yume world data``, whose
  ``--seed`` only seeds the draw inside those ranges)
  and outside every scene any model was selected on.
- **Baselines** (:mod:`world.baselines`): repeat the start frame; warp the start frame into the
  commanded cameras with a fixed depth prior ("warp"); the same warp chained chunk by chunk
  from its own last frame, without memory ("warp, chained").
- **Per horizon** (chunks 1, 4, 8, 16): PSNR and SSIM (kornia's, via :func:`world.metrics.
  psnr` / :func:`world.metrics.ssim`) against the sandbox, and sharpness (variance of the
  Laplacian of the grey frames) beside the truth's.
- **Loop closure**: turn left K chunks and right K back, or walk forward K and back K
  (K = 2, 4, 8); PSNR of the final frame against the start frame, for every predictor and the
  truth (the sandbox returns to the same pose; 100 dB stands for "identical").
- **Long horizon**: windows of 16 chunks up to 64 of a random walk: PSNR, sharpness ratio to
  the truth, colour drift (mean absolute difference of the mean RGB of generated and true
  frames, 0-255) and action following as a fraction of its ceiling.
- **Action following** by :class:`world.action_judge.GeometricJudge`, a training-free
  analysis-by-synthesis classifier (no data, no weights, other architecture than the IDM), split
  into translation and rotation and per key, on the model and on the ground truth (its ceiling),
  and, at 64x64 with 4-frame chunks, by the independent flow judge (:mod:`world.flow_judge`,
  trained on other seeds with other features, never a critic or a selection criterion): the
  geometric judge re-warps frames with the very warp the mvdt-warp model is conditioned on, so
  for that model only the flow judge's figure is quotable.

Every figure comes beside the truth's own, so a reader sees how much of the gap the model
closes. Results are a JSON-serialisable dict; :func:`format_honest_table` prints them and
:func:`save_drive_strip` draws a long drive.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from control.actions import Action
from world.action_judge import GeometricJudge, judge_scores
from world.baselines import CameraWarp, SandboxCamera, commanded_states, repeat_last
from world.metrics import pooled_psnr, ssim
from world.training.data import HELDOUT_SEED_START, Clip, make_world
from world.training.evaluate import ground_truth_episodes

FRESH_SEED_START = 3 * HELDOUT_SEED_START
"""First scene seed of the honest evaluation (train and held-out end at ``2e6``)."""

IDENTICAL_DB = 100.0
"""PSNR reported for identical images (JSON has no infinity)."""

Generator = Callable[[list[Clip], int], np.ndarray]
"""``(clips, n_chunks) -> frames (B, n_chunks * F, H, W, 3)``: a model's rollout."""


# --------------------------------------------------------------------------- metrics
def laplacian_variance(frames: np.ndarray) -> float:
    """Mean over frames of the variance of the Laplacian of the grey image (0-255 scale).

    The common focus measure: blur removes high frequencies and the variance drops. The
    4-neighbour kernel is OpenCV's ``Laplacian`` with ``ksize=1``; only the valid part of the
    image is used, so borders do not add edges.
    """
    x = torch.as_tensor(np.asarray(frames, np.float32)).reshape(-1, *np.shape(frames)[-3:])
    grey = x.mean(-1, keepdim=True).permute(0, 3, 1, 2)
    lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).reshape(1, 1, 3, 3)
    return float(F.conv2d(grey, lap).flatten(1).var(1).mean())


def colour_drift(generated: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute difference of the mean R, G, B of two frame sets, in 0-255."""
    g = np.asarray(generated, np.float64).reshape(-1, 3).mean(0)
    t = np.asarray(truth, np.float64).reshape(-1, 3).mean(0)
    return float(np.abs(g - t).mean())


def _db(value: float) -> float:
    return IDENTICAL_DB if math.isinf(value) else float(value)


# --------------------------------------------------------------------------- scenes
def fresh_scene_seeds(n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct scene seeds no model, IDM or earlier evaluation has used."""
    rng = np.random.default_rng([seed, 16])
    return FRESH_SEED_START + rng.choice(HELDOUT_SEED_START, size=n, replace=False).astype(
        np.int64)


def scripted_clips(seeds: Sequence[int], actions: np.ndarray, resolution: tuple[int, int],
                   frames_per_chunk: int, world_factory=None) -> list[Clip]:
    """Sandbox walks of fixed actions (one row of ``actions`` per scene seed)."""
    h, w = resolution
    world = (world_factory or (lambda: make_world(h, w, frames_per_chunk)))()
    clips = []
    for s, row in zip(seeds, np.asarray(actions, np.int64), strict=True):
        first = world.reset(seed=int(s))
        frames, poses, stamps = [first.frames], [first.poses], [first.timestamps]
        for a in row:
            chunk = world.step(Action.from_index(int(a)))
            frames.append(chunk.frames)
            poses.append(chunk.poses)
            stamps.append(chunk.timestamps)
        clips.append(Clip(np.concatenate(frames), np.concatenate(poses),
                          np.concatenate(stamps), row.copy(), int(s)))
    world.close()
    return clips


def loop_actions(kind: str, k: int, length: int) -> np.ndarray:
    """Action indices of a loop: ``k`` chunks out, ``k`` back, idle up to ``length`` chunks."""
    out, back = {"turn": ("· ←", "· →"), "walk": ("W", "S")}[kind]
    from control.actions import parse_action

    seq = [parse_action(out)] * k + [parse_action(back)] * k
    seq += [Action()] * (length - len(seq))
    return np.array([a.index for a in seq], np.int64)


# --------------------------------------------------------------------------- configuration
@dataclass
class HonestConfig:
    """What :func:`honest_evaluate` measures.

    Parameters
    ----------
    episodes : int
        Fresh scenes for the horizon metrics and action following.
    horizon : int
        Chunks generated per horizon episode.
    report_horizons : tuple of int
        Chunks reported in the summary table.
    loop_episodes : int
        Fresh scenes per loop (each runs every loop kind and K).
    loop_ks : tuple of int
        Chunks out (and back) of the loops.
    long_episodes, long_chunks, long_window : int
        Count and length of the long random walks, and chunks per reported window.
    seed : int
        Scene draw and actions.
    """

    episodes: int = 16
    horizon: int = 16
    report_horizons: tuple[int, ...] = (1, 4, 8, 16)
    loop_episodes: int = 8
    loop_ks: tuple[int, ...] = (2, 4, 8)
    long_episodes: int = 4
    long_chunks: int = 64
    long_window: int = 16
    seed: int = 0


def model_generator(model, codec, eval_config, progress: bool = True,
                    context_noise: float = 0.0, depth_model=None) -> Generator:
    """A :data:`Generator` for an MVDT model with :func:`world.training.evaluate.rollout`'s sampler.

    A model with geometric memory (``config.warp_sources``) is rolled out by
    :class:`world.mvdt.warp.WarpRollout` with the same sampler settings, which keeps its
    memory of the start frame and the newest frame and their commanded cameras.
    ``context_noise`` (that rollout only) is the inference context noise of
    :class:`world.mvdt.MVDTPipeline`; ``depth_model`` its memory's learned depth
    (:mod:`world.mvdt.depth`).
    """
    from world.training.evaluate import rollout

    if not getattr(model.config, "warp_sources", None):
        def generate(clips: list[Clip], n_chunks: int) -> np.ndarray:
            return rollout(model, codec, clips, n_chunks, eval_config, progress, "honest")[0]

        return generate
    from tqdm.auto import tqdm

    from world.mvdt import get_sampler
    from world.mvdt.warp import WarpRollout

    def generate_warp(clips: list[Clip], n_chunks: int) -> np.ndarray:
        sampler = get_sampler(eval_config.sampler, num_steps=eval_config.num_steps,
                              guidance_scale=eval_config.guidance_scale,
                              guidance_interval=tuple(eval_config.guidance_interval),
                              shift=eval_config.shift or model.config.flow_shift)
        gen = WarpRollout(model, codec, sampler, torch.Generator().manual_seed(eval_config.seed),
                          eval_config.negative, context_noise, depth_model=depth_model)
        gen.reset(np.stack([c.frames[0] for c in clips]))
        out = [gen.step([Action.from_index(int(c.actions[k])) for c in clips])
               for k in tqdm(range(n_chunks), desc="honest", disable=not progress)]
        return np.concatenate(out, axis=1)

    return generate_warp


# --------------------------------------------------------------------------- evaluation
class _Predictors:
    """Every predictor's frames for a set of clips: model, baselines and the truth."""

    def __init__(self, clips: list[Clip], n: int, fpc: int, warp: CameraWarp,
                 generate: Generator | None, depth_warp=None) -> None:
        self.first = np.stack([c.frames[0] for c in clips])
        self.actions = np.stack([c.actions[:n] for c in clips])
        self.truth = np.stack([c.frames[1:1 + n * fpc] for c in clips])
        self.videos = {"repeat": repeat_last(self.first, n * fpc),
                       "warp": warp.predict(self.first, self.actions, fpc),
                       "warp_chain": warp.predict(self.first, self.actions, fpc, chain=True)}
        if depth_warp is not None:  # learned, so not a baseline: a predictor beside them
            self.videos["warp_depth"] = depth_warp.predict(self.first, self.actions, fpc)
        self.seconds = 0.0
        if generate is not None:
            t0 = time.perf_counter()
            self.videos["model"] = generate(clips, n)
            self.seconds = time.perf_counter() - t0


def _pitch_before_chunks(actions: np.ndarray, fpc: int) -> np.ndarray:
    """Commanded camera tilt before each chunk, ``(B * n,)`` (what the judge is told)."""
    out = []
    for row in actions:
        states = commanded_states([Action.from_index(int(a)) for a in row], fpc)
        out.append([0.0] + [states[(k + 1) * fpc - 1].pitch for k in range(len(row) - 1)])
    return np.asarray(out, float).reshape(-1)


def _pairs(first: np.ndarray, video: np.ndarray, fpc: int) -> tuple[np.ndarray, np.ndarray]:
    """(frame before, last frame) of every chunk of every episode, flattened."""
    from world.training.evaluate import _chunk_pairs

    return _chunk_pairs(first, video, fpc)


def honest_evaluate(generate: Generator | None, config: HonestConfig | None = None,
                    resolution: tuple[int, int] = (64, 64), frames_per_chunk: int = 4,
                    world_factory=None, out_dir: str | Path | None = None,
                    idm=None, depth_warp=None) -> dict:
    """Score a world model (or only the baselines) on fresh sandbox scenes.

    Parameters
    ----------
    generate : Generator or None
        The model's rollout (:func:`model_generator`); None scores the baselines and the truth
        alone (what the tests and the judge's ceiling need).
    config : HonestConfig
    resolution, frames_per_chunk : the model's frame size and chunk length.
    world_factory : callable, optional
        Ground-truth engine (default: the sandbox at ``resolution``).
    out_dir : path, optional
        Where to write ``honest.json`` and ``drive.png`` (a long drive: truth, model, warp).
    idm : world.training.idm.InverseDynamics, optional
        The project's IDM, reported beside the judge for comparison (it is not independent:
        a sibling of it was the shipped model's training critic).
    depth_warp : world.mvdt.depth.DepthWarp, optional
        Also score the start frame warped with a learned depth (``"warp_depth"``, horizons
        only): what the memory's depth model alone gives, beside the fixed-prior baseline.

    Returns
    -------
    dict
        ``config``, ``seeds``, ``horizon`` (per-step and per reported horizon: PSNR, SSIM,
        sharpness per predictor and the truth's sharpness), ``action_following``,
        ``loop_closure``, ``long_horizon`` and ``seconds``.
    """
    cfg = config or HonestConfig()
    t_start = time.perf_counter()
    fpc = int(frames_per_chunk)
    cam = SandboxCamera(*resolution)
    warp = CameraWarp(cam)
    judge = GeometricJudge(cam, fpc)
    flow = _flow_judge(resolution, fpc)  # read once, used by both parts
    seeds = fresh_scene_seeds(cfg.episodes + cfg.loop_episodes + cfg.long_episodes, cfg.seed)
    s_h = seeds[:cfg.episodes]
    s_loop = seeds[cfg.episodes:cfg.episodes + cfg.loop_episodes]
    s_long = seeds[cfg.episodes + cfg.loop_episodes:]
    results: dict = {"config": asdict(cfg), "resolution": list(resolution),
                     "frames_per_chunk": fpc,
                     "seeds": {"horizon": s_h.tolist(), "loop": s_loop.tolist(),
                               "long": s_long.tolist()},
                     "judge": {"kind": "GeometricJudge (training-free, analysis by synthesis)",
                               "far_depths": list(judge.far_depths),
                               "downsample": judge.downsample}}
    if cfg.episodes > 0:
        results.update(_horizon_part(cfg, s_h, resolution, fpc, warp, judge, generate,
                                     world_factory, idm, flow, depth_warp))
    if cfg.loop_episodes > 0 and cfg.loop_ks:
        results["loop_closure"] = _loop_part(cfg, s_loop, resolution, fpc, warp, generate,
                                             world_factory)
    if cfg.long_episodes > 0 and cfg.long_chunks > 0:
        long_part, drive = _long_part(cfg, s_long, resolution, fpc, warp, judge, generate,
                                      world_factory, flow)
        results["long_horizon"] = long_part
    else:
        drive = None
    results["seconds"] = time.perf_counter() - t_start
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "honest.json").write_text(json.dumps(results, indent=1))
        if drive is not None:
            save_drive_strip(*drive, fpc, out / "drive.png")
    return results


_FLOW_SIZE, _FLOW_FPC = (64, 64), 4  # what the independent judge was trained on


def _flow_judge(resolution, fpc):
    """The independent judge (:mod:`world.flow_judge`) when it can read these frames, else
    None: it was trained on 64x64 chunks of 4 frames."""
    if tuple(resolution) != _FLOW_SIZE or int(fpc) != _FLOW_FPC:
        return None
    from world.flow_judge import FlowJudge

    return FlowJudge.load()


def _flow_read(flow, first: np.ndarray, video: np.ndarray, fpc: int) -> np.ndarray:
    from world.flow_judge import chunk_windows

    return flow.predict(chunk_windows(first, video, fpc))


def _to_ceiling(model: dict, truth: dict) -> dict:
    """Model's translation / rotation accuracy as a fraction of the judge's ceiling."""
    return {k: (model[k] / truth[k] if truth[k] > 0 else float("nan"))
            for k in ("translation", "rotation")}


def _horizon_part(cfg, seeds, resolution, fpc, warp, judge, generate, world_factory,
                  idm, flow=None, depth_warp=None) -> dict:
    clips = ground_truth_episodes(seeds, cfg.horizon, resolution, fpc, seed=cfg.seed,
                                  world_factory=world_factory)
    p = _Predictors(clips, cfg.horizon, fpc, warp, generate, depth_warp)
    names = list(p.videos)
    per_step = {name: {"psnr": [], "ssim": [], "sharpness": []} for name in names}
    per_step["truth"] = {"sharpness": []}
    for k in range(cfg.horizon):
        sl = slice(k * fpc, (k + 1) * fpc)
        t = p.truth[:, sl]
        per_step["truth"]["sharpness"].append(laplacian_variance(t))
        for name in names:
            g = p.videos[name][:, sl]
            per_step[name]["psnr"].append(_db(pooled_psnr(g, t)))
            per_step[name]["ssim"].append(ssim(g, t))
            per_step[name]["sharpness"].append(laplacian_variance(g))
    at = {f"h{h}": {name: {m: per_step[name][m][h - 1] for m in per_step[name]}
                    for name in per_step}
          for h in cfg.report_horizons if h <= cfg.horizon}
    acts = p.actions.reshape(-1)
    pitch = _pitch_before_chunks(p.actions, fpc)
    follow = {"truth": judge_scores(judge.predict(*_pairs(p.first, p.truth, fpc), pitch), acts),
              # A video that never moves: the judge's floor (it reads every chunk as idle).
              "repeat": judge_scores(judge.predict(*_pairs(p.first, p.videos["repeat"], fpc),
                                                   pitch), acts)}
    if "model" in p.videos:
        follow["model"] = judge_scores(
            judge.predict(*_pairs(p.first, p.videos["model"], fpc), pitch), acts)
    if flow is not None:
        # The independent reading: the geometric judge above shares the warp the mvdt-warp
        # model is conditioned on; this one was trained apart from every model and judge.
        ind = {name: judge_scores(_flow_read(flow, p.first, video, fpc), acts)
               for name, video in (("truth", p.truth), *[(n, p.videos[n]) for n in
                                                         ("repeat", "warp", "model")
                                                         if n in p.videos])}
        if "model" in ind:
            ind["model_to_ceiling"] = _to_ceiling(ind["model"], ind["truth"])
        follow["independent"] = ind
    if idm is not None:
        from world.training.evaluate import _idm_scores

        follow["project_idm"] = {
            "note": "a sibling of this IDM was the shipped model's training critic",
            "truth": {k: _idm_scores(idm, *_pairs(p.first, p.truth, fpc), acts)[k]
                      for k in ("action", "translation", "rotation")}}
        if "model" in p.videos:
            follow["project_idm"]["model"] = {
                k: _idm_scores(idm, *_pairs(p.first, p.videos["model"], fpc), acts)[k]
                for k in ("action", "translation", "rotation")}
    return {"horizon": {"per_step": per_step, "at": at}, "action_following": follow,
            "model_seconds_horizon": p.seconds}


def _loop_part(cfg, seeds, resolution, fpc, warp, generate, world_factory) -> dict:
    length = 2 * max(cfg.loop_ks)
    plan = [(kind, k) for kind in ("turn", "walk") for k in cfg.loop_ks]
    # One batch for every loop (shorter ones idle after returning), so the model runs once.
    all_seeds = np.array([s for _ in plan for s in seeds], np.int64)
    actions = np.stack([loop_actions(kind, k, length) for kind, k in plan for _ in seeds])
    clips = scripted_clips(all_seeds, actions, resolution, fpc, world_factory)
    p = _Predictors(clips, length, fpc, warp, generate)
    videos = dict(p.videos, truth=p.truth)
    rows = []
    n = len(seeds)
    for j, (kind, k) in enumerate(plan):
        sel = slice(j * n, (j + 1) * n)
        end = 2 * k * fpc - 1  # the last frame of the way back
        start = p.first[sel]
        row = {"kind": kind, "k": k}
        for name, video in videos.items():
            row[name] = _db(pooled_psnr(video[sel, end], start))
        rows.append(row)
    return {"episodes": n, "rows": rows, "identical_db": IDENTICAL_DB}


def _long_part(cfg, seeds, resolution, fpc, warp, judge, generate, world_factory, flow=None):
    clips = ground_truth_episodes(seeds, cfg.long_chunks, resolution, fpc, seed=cfg.seed + 1,
                                  world_factory=world_factory)
    p = _Predictors(clips, cfg.long_chunks, fpc, warp, generate)
    pitch = _pitch_before_chunks(p.actions, fpc).reshape(len(clips), -1)
    b, n = p.actions.shape
    reads = {"truth": judge.predict(*_pairs(p.first, p.truth, fpc), pitch.reshape(-1))}
    if "model" in p.videos:
        reads["model"] = judge.predict(*_pairs(p.first, p.videos["model"], fpc),
                                       pitch.reshape(-1))
    reads = {k: v.reshape(b, n, 2) for k, v in reads.items()}
    flow_reads = ({k: _flow_read(flow, p.first, v, fpc).reshape(b, n, 2) for k, v in
                   (("truth", p.truth), ("model", p.videos.get("model"))) if v is not None}
                  if flow is not None else {})
    rows = []
    for lo in range(0, n, cfg.long_window):
        hi = min(n, lo + cfg.long_window)
        sl = slice(lo * fpc, hi * fpc)
        t = p.truth[:, sl]
        sharp_t = laplacian_variance(t)
        acts = p.actions[:, lo:hi].reshape(-1)
        truth_follow = judge_scores(reads["truth"][:, lo:hi].reshape(-1, 2), acts)
        row = {"chunks": [lo + 1, hi], "truth_sharpness": sharp_t,
               "truth_action_following": {k: truth_follow[k]
                                          for k in ("action", "translation", "rotation")}}
        for name, video in p.videos.items():
            g = video[:, sl]
            row[name] = {"psnr": _db(pooled_psnr(g, t)),
                         "sharpness_ratio": laplacian_variance(g) / max(sharp_t, 1e-9),
                         "colour_drift": colour_drift(g, t)}
        if "model" in reads:
            mf = judge_scores(reads["model"][:, lo:hi].reshape(-1, 2), acts)
            row["model"]["action_following"] = {k: mf[k] for k in
                                                ("action", "translation", "rotation")}
            row["model"]["action_following_ratio"] = (
                mf["action"] / truth_follow["action"] if truth_follow["action"] > 0
                else float("nan"))
        if "model" in flow_reads:
            ft = judge_scores(flow_reads["truth"][:, lo:hi].reshape(-1, 2), acts)
            fm = judge_scores(flow_reads["model"][:, lo:hi].reshape(-1, 2), acts)
            row["model"]["independent_following"] = {
                "translation": fm["translation"], "rotation": fm["rotation"],
                "ceiling": {"translation": ft["translation"], "rotation": ft["rotation"]},
                "to_ceiling": _to_ceiling(fm, ft)}
        # The constant mean image of the window's truth: what "no better than a mean" means.
        mean_img = np.broadcast_to(t.mean(axis=(0, 1), keepdims=True).round().astype(np.uint8),
                                   t.shape)
        row["mean_image_psnr"] = _db(pooled_psnr(mean_img, t))
        rows.append(row)
    drive = (p.first[0], p.truth[0], p.videos.get("model", p.videos["warp_chain"])[0],
             p.videos["warp"][0])
    return {"episodes": b, "chunks": n, "windows": rows}, drive


# --------------------------------------------------------------------------- reporting
_LABELS = {"repeat": "repeat start frame", "warp": "warp of start frame",
           "warp_chain": "warp, chained", "warp_depth": "warp, learned depth", "model": "model",
           "truth": "truth"}


def format_honest_table(res: dict) -> str:
    """A plain-text report of :func:`honest_evaluate`'s results."""
    lines = []
    if "horizon" in res:
        at = res["horizon"]["at"]
        hs = list(at)
        names = [n for n in ("repeat", "warp", "warp_chain", "warp_depth", "model")
                 if n in at[hs[0]]]
        lines.append("predictor              PSNR " + "/".join(hs) + "      SSIM "
                     + "/".join(hs) + "      sharpness " + "/".join(hs))
        for name in names:
            ps = "/".join(f"{at[h][name]['psnr']:.1f}" for h in hs)
            ss = "/".join(f"{at[h][name]['ssim']:.2f}" for h in hs)
            sh = "/".join(f"{at[h][name]['sharpness']:.0f}" for h in hs)
            lines.append(f"{_LABELS[name]:<22} {ps:<24} {ss:<24} {sh}")
        sh = "/".join(f"{at[h]['truth']['sharpness']:.0f}" for h in hs)
        lines.append(f"{'truth':<22} {'':<24} {'':<24} {sh}")
    af = res.get("action_following")
    if af:
        lines.append("action following (geometric judge, training-free): translation / rotation "
                     "/ both")
        for name in ("model", "truth", "repeat"):
            if name in af:
                a = af[name]
                lines.append(f"  {name:<6} {a['translation']:.3f} / {a['rotation']:.3f} / "
                             f"{a['action']:.3f}  (n {a['n']})")
        if "model" in af:
            m, t = af["model"], af["truth"]
            lines.append("  by translation key (model / truth, n): " + ", ".join(
                f"{k} {v['accuracy']:.2f}/{t['by_translation_key'][k]['accuracy']:.2f} "
                f"({v['n']})" for k, v in m["by_translation_key"].items()))
            lines.append("  by rotation key (model / truth, n): " + ", ".join(
                f"{k} {v['accuracy']:.2f}/{t['by_rotation_key'][k]['accuracy']:.2f} "
                f"({v['n']})" for k, v in m["by_rotation_key"].items()))
        ind = af.get("independent")
        if ind:
            lines.append("action following (independent flow judge, world/flow_judge.py): "
                         "translation / rotation")
            for name in ("model", "warp", "repeat", "truth"):
                if name in ind:
                    a = ind[name]
                    tail = " (the ceiling)" if name == "truth" else ""
                    lines.append(f"  {name:<6} {a['translation']:.3f} / {a['rotation']:.3f}"
                                 f"{tail}")
            if "model_to_ceiling" in ind:
                c = ind["model_to_ceiling"]
                lines.append(f"  model / ceiling: {c['translation']:.2f} / {c['rotation']:.2f}")
        if "project_idm" in af and "model" in af["project_idm"]:
            pi = af["project_idm"]
            lines.append(f"  project IDM (critic's sibling): model {pi['model']['action']:.3f}, "
                         f"truth {pi['truth']['action']:.3f}")
    if "loop_closure" in res:
        rows = res["loop_closure"]["rows"]
        names = [n for n in ("model", "warp", "warp_chain", "repeat", "truth") if n in rows[0]]
        lines.append("loop closure: PSNR of the final frame vs the start frame ("
                     f"{res['loop_closure']['identical_db']:.0f} = identical)")
        lines.append("  loop      " + "  ".join(f"{_LABELS[n]:>20}" for n in names))
        for r in rows:
            lines.append(f"  {r['kind']:<4} K={r['k']:<2} " + "  ".join(
                f"{r[n]:20.1f}" for n in names))
    if "long_horizon" in res:
        nan = {"psnr": math.nan, "sharpness_ratio": math.nan, "colour_drift": math.nan}
        lines.append("long horizon: PSNR model/warp/mean image; sharpness ratio to truth "
                     "model/warp; colour drift model/warp; action following model/truth (ratio)")
        for r in res["long_horizon"]["windows"]:
            m, wp = r.get("model", nan), r["warp"]
            af_m = m.get("action_following", {}).get("action", math.nan)
            ratio = m.get("action_following_ratio", math.nan)
            lines.append(
                f"  chunks {r['chunks'][0]:>2}-{r['chunks'][1]:<3}  "
                f"PSNR {m['psnr']:5.1f}/{wp['psnr']:4.1f}/{r['mean_image_psnr']:4.1f}  "
                f"sharpness {m['sharpness_ratio']:4.2f}/{wp['sharpness_ratio']:4.2f}  "
                f"colour {m['colour_drift']:4.1f}/{wp['colour_drift']:4.1f}  "
                f"actions {af_m:.2f}/{r['truth_action_following']['action']:.2f} "
                f"({ratio:.2f})")
            ind = m.get("independent_following")
            if ind:
                lines.append(f"  {'':<14}independent judge, model / ceiling: translation "
                             f"{ind['to_ceiling']['translation']:.2f}, rotation "
                             f"{ind['to_ceiling']['rotation']:.2f}")
    return "\n".join(lines)


def save_drive_strip(first: np.ndarray, truth: np.ndarray, generated: np.ndarray,
                     warped: np.ndarray, fps: int, path: str | Path,
                     per_row: int = 16) -> Path:
    """PNG of a long drive: per block of ``per_row`` chunks, rows truth / model / warp.

    Each cell is a chunk's last frame; the first cell of the first block is the start frame.
    """
    from PIL import Image

    chunks = truth.shape[0] // fps
    h, w = first.shape[:2]
    blocks = []
    for lo in range(0, chunks, per_row):
        rows = []
        for video in (truth, generated, warped):
            cells = [video[(k + 1) * fps - 1] for k in range(lo, min(chunks, lo + per_row))]
            cells += [np.full((h, w, 3), 255, np.uint8)] * (per_row - len(cells))
            rows.append(np.concatenate(cells, axis=1))
        blocks.append(np.concatenate(rows, axis=0))
        blocks.append(np.full((4, per_row * w, 3), 255, np.uint8))
    head = np.concatenate([first] + [np.full((h, w, 3), 255, np.uint8)] * (per_row - 1), axis=1)
    Image.fromarray(np.concatenate([head, *blocks], axis=0)).save(path)
    return Path(path)

