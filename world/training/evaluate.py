"""Evaluation of a world model against the sandbox's ground truth (``yume world eval``).

On held-out scene seeds the sandbox walks a random plausible path
(:class:`world.training.data.WalkPolicy`)
and the model, given only the scene's first frame, generates the same actions chunk by chunk
(autoregressively, from its own output). Measured:

- **PSNR / SSIM per step** of the horizon (mean over the chunk's frames) against the sandbox,
  next to the baseline "repeat the last observed frame" (the first frame), and the gain;
- **action following**: the inverse-dynamics model (:mod:`world.training.idm`) reads each generated
  chunk
  (frame before it, its last frame) and its prediction is compared with the commanded action
  (translation, rotation and both); the same IDM on the ground-truth video gives the ceiling;
- **drift** over a long rollout (64+ chunks): PSNR, colour-mean error and sharpness ratio
  (generated / ground truth) per window of chunks;
- **speed**: frames per second of generation with the sampler used.

Episodes are generated in a batch (one model call covers every episode), which is how the
evaluation stays affordable on a CPU. Results are a JSON-serialisable dict; :func:`format_table`
prints it and :func:`save_strip` / :func:`save_gif` write rollouts for people to look at.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from control.actions import ROTATIONS, TRANSLATIONS, Action
from world.base import WorldError
from world.metrics import pooled_psnr, psnr, sharpness, ssim  # noqa: F401  (re-exported)
from world.training.data import Clip, WalkPolicy, generate_clip, make_world, scene_seeds

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- generation
class BatchedRollout:
    """Autoregressive generation for several episodes at once, each with its own actions.

    Parameters
    ----------
    model : MVDTModel
    codec : codec of the model (``encode``/``decode``, core protocol)
    sampler : world.mvdt.Sampler
    cache : world.mvdt.ResidualCache, optional
        Residual caching (reset for every chunk).
    generator : torch.Generator, optional
        Seeds the initial noise of every chunk.
    negative : {"null", "still"}
        What guidance pushes away from (:func:`world.mvdt.pipeline.negative_actions`).
    """

    def __init__(self, model, codec, sampler, cache=None, generator=None,
                 negative: str = "null") -> None:
        from world.mvdt import MVDTPipeline

        self.model, self.codec = model, codec
        self.pipeline = MVDTPipeline(model, codec, sampler, cache=cache, negative=negative)
        self.generator = generator or torch.Generator().manual_seed(0)
        self.history: torch.Tensor | None = None
        model.eval()

    def reset(self, first_frames: np.ndarray) -> None:
        """Start every episode from its first frame, uint8 ``(B, H, W, 3)``."""
        self.history = torch.stack([self.codec.encode(f[None]) for f in first_frames])

    def _trim(self) -> None:
        # Keep the first frame and as many recent ones as the memory schedule can use.
        keep = self.model.config.max_history_frames
        if self.history.shape[2] > 1 + keep:
            self.history = torch.cat([self.history[:, :, :1], self.history[:, :, -keep:]], 2)

    @torch.no_grad()
    def step(self, actions: list[Action]) -> np.ndarray:
        """Generate the next chunk of every episode; uint8 ``(B, F, H, W, 3)``."""
        b = self.history.shape[0]
        if len(actions) != b:
            raise WorldError(f"Got {len(actions)} actions for {b} episodes.")
        latents = self.pipeline.generate_latents(self.history, list(actions),
                                                 generator=self.generator)
        self.history = torch.cat([self.history, latents], dim=2)
        self._trim()
        return np.stack([self.codec.decode(z) for z in latents])


def ground_truth_episodes(
    seeds, n_chunks: int, resolution: tuple[int, int], frames_per_step: int,
    policy: WalkPolicy | None = None, seed: int = 0, world_factory=None,
) -> list[Clip]:
    """Sandbox walks of ``n_chunks`` chunks from each scene seed (actions + exact frames)."""
    h, w = resolution
    world = (world_factory or (lambda: make_world(h, w, frames_per_step)))()
    clips = [generate_clip(world, int(s), n_chunks, policy,
                           np.random.default_rng([seed, int(s), 11])) for s in seeds]
    world.close()
    return clips


# --------------------------------------------------------------------------- evaluation
@dataclass
class EvalConfig:
    """What :func:`evaluate` measures.

    Parameters
    ----------
    episodes : int
        Held-out scenes for the horizon metrics.
    horizon : int
        Chunks generated per episode for PSNR/SSIM/action following.
    drift_chunks, drift_episodes : int
        Length and count of the long rollouts for drift (0 disables).
    drift_window : int
        Chunks per drift window.
    sampler, num_steps, guidance_scale, guidance_interval : the sampler used.
    negative : {"null", "still"}
        What guidance pushes away from (:func:`world.mvdt.pipeline.negative_actions`).
    shift : float, optional
        Schedule shift of the sampler (default: the model's training ``flow_shift``). A few-step
        sampler with a smaller shift spends its last step at a lower noise level.
    cache_blocks, cache_reuse : residual caching of the ``cache_blocks`` least important blocks
        for ``cache_reuse`` calls (0 = off).
    seed : int
        Scene seeds, actions and noise.
    threads : int
        ``torch.set_num_threads`` during the evaluation.
    """

    episodes: int = 8
    horizon: int = 16
    drift_chunks: int = 64
    drift_episodes: int = 2
    drift_window: int = 16
    sampler: str = "euler"
    num_steps: int = 4
    guidance_scale: float = 1.0
    guidance_interval: tuple[float, float] = (0.0, 1.0)
    negative: str = "null"
    shift: float | None = None
    cache_blocks: int = 0
    cache_reuse: int = 0
    seed: int = 0
    threads: int = 2


def _make_cache(model, codec, cfg: EvalConfig, first_frames: np.ndarray):
    from world.mvdt import ResidualCache, block_importance, least_important

    if cfg.cache_blocks <= 0 or cfg.cache_reuse <= 0:
        return None, None
    mc = model.config
    n = min(2, len(first_frames))
    x = torch.stack([codec.encode(np.repeat(f[None], mc.frames_per_chunk, 0))
                     for f in first_frames[:n]])
    hist = torch.stack([codec.encode(f[None]) for f in first_frames[:n]])
    ctx = model.encode_actions([Action("W"), Action("·", "→")][:n])
    scores = block_importance(model, x, ctx, hist, num_steps=max(cfg.num_steps, 4),
                              shift=mc.flow_shift)
    blocks = least_important(scores, cfg.cache_blocks)
    return ResidualCache(blocks, cfg.cache_reuse), [float(s) for s in scores]


def rollout(model, codec, clips: list[Clip], n_chunks: int, cfg: EvalConfig,
            progress: bool = True, desc: str = "rollout") -> tuple[np.ndarray, dict]:
    """Generate ``n_chunks`` chunks for each clip's actions; frames ``(B, n*F, H, W, 3)``."""
    from world.mvdt import get_sampler

    sampler = get_sampler(cfg.sampler, num_steps=cfg.num_steps,
                          guidance_scale=cfg.guidance_scale,
                          guidance_interval=tuple(cfg.guidance_interval),
                          shift=cfg.shift or model.config.flow_shift)
    first = np.stack([c.frames[0] for c in clips])
    cache, scores = _make_cache(model, codec, cfg, first)
    gen = BatchedRollout(model, codec, sampler, cache,
                         torch.Generator().manual_seed(cfg.seed), cfg.negative)
    gen.reset(first)
    out, seconds = [], 0.0
    for k in tqdm(range(n_chunks), desc=desc, disable=not progress):
        t0 = time.perf_counter()
        out.append(gen.step([Action.from_index(int(c.actions[k])) for c in clips]))
        seconds += time.perf_counter() - t0
    frames = np.concatenate(out, axis=1)
    n_frames = frames.shape[0] * frames.shape[1]
    return frames, {"seconds": seconds, "frames": int(n_frames),
                    "batched_frames_per_second": n_frames / max(seconds, 1e-9),
                    "model_calls_per_chunk": sampler.num_evals,
                    "cache_blocks": sorted(cache.blocks) if cache else [],
                    "block_importance": scores}


def _idm_scores(idm, before: np.ndarray, after: np.ndarray, actions: np.ndarray) -> dict:
    pred = idm.predict(torch.from_numpy(before), torch.from_numpy(after)).numpy()
    # Action indices are translation-major: (translation class, rotation class) = divmod.
    want = np.stack(np.divmod(np.asarray(actions, np.int64), len(ROTATIONS)), axis=1)
    ok = pred == want
    confusion = np.zeros((len(TRANSLATIONS), len(TRANSLATIONS)), np.int64)
    np.add.at(confusion, (want[:, 0], pred[:, 0]), 1)
    by_key = {key: {"n": int((want[:, 0] == i).sum()),
                    "action": float(ok[want[:, 0] == i].all(1).mean())}
              for i, key in enumerate(TRANSLATIONS) if (want[:, 0] == i).any()}
    return {"action": float(ok.all(1).mean()), "translation": float(ok[:, 0].mean()),
            "rotation": float(ok[:, 1].mean()), "n": int(len(want)),
            "by_translation_key": by_key,
            # rows: commanded translation key, columns: the one the IDM read (TRANSLATIONS order)
            "translation_confusion": confusion.tolist()}


def _chunk_pairs(first: np.ndarray, frames: np.ndarray, fps: int) -> tuple[np.ndarray, ...]:
    """(before, after) frames of every chunk of every episode: frame before, chunk's last."""
    b, n = frames.shape[:2]
    chunks = n // fps
    lasts = frames[:, fps - 1::fps][:, :chunks]  # (B, chunks, H, W, 3)
    befores = np.concatenate([first[:, None], lasts[:, :-1]], axis=1)
    return befores.reshape(-1, *frames.shape[2:]), lasts.reshape(-1, *frames.shape[2:])


_DRIFT_STREAM = 7919  # offsets the seed of the drift scenes' draw from the horizon scenes' draw


def horizon_scene_seeds(cfg: EvalConfig) -> np.ndarray:
    """Held-out scenes of the horizon metrics: ``cfg.episodes`` of them, drawn with ``cfg.seed``.

    They depend on nothing else (not on the drift settings), so runs with and without drift
    score the same scenes.
    """
    return scene_seeds("heldout", cfg.episodes, cfg.seed)


def drift_scene_seeds(cfg: EvalConfig) -> np.ndarray:
    """Held-out scenes of the long drift rollouts: none of the horizon scenes."""
    horizon = set(horizon_scene_seeds(cfg).tolist())
    pool = scene_seeds("heldout", cfg.episodes + cfg.drift_episodes, cfg.seed + _DRIFT_STREAM)
    return np.array([s for s in pool if int(s) not in horizon][:cfg.drift_episodes], np.int64)


def evaluate(model, codec, idm=None, config: EvalConfig | None = None, progress: bool = True,
             world_factory=None, out_dir: str | Path | None = None,
             other_judges: dict | None = None) -> dict:
    """Measure a world model against the sandbox on held-out scenes.

    Parameters
    ----------
    model : MVDTModel
        The world model (eval mode is set).
    codec : object
        Its frame codec (:func:`world.mvdt.codec_from_config`).
    idm : world.training.idm.InverseDynamics, optional
        Scores action following; skipped when None.
    config : EvalConfig
    progress : bool
        tqdm bars.
    world_factory : callable, optional
        Ground-truth engine (default: the sandbox at the model's resolution).
    out_dir : path, optional
        Where to write ``eval.json``, ``rollouts.png`` and ``rollout.gif``.
    other_judges : dict of name -> InverseDynamics, optional
        More IDMs that score the same rollouts (``action_following["other_judges"]``): a
        second opinion when a model was trained against an IDM critic.

    Returns
    -------
    dict
        ``per_step`` (lists over the horizon: psnr, ssim, baseline_psnr, baseline_ssim,
        psnr_gain), ``summary`` (means and the values at horizon 8), ``action_following``
        (model and ground truth), ``drift`` and ``speed``.
    """
    cfg = config or EvalConfig()
    torch.set_num_threads(max(1, cfg.threads))
    mc = model.config
    fps, res = mc.frames_per_chunk, (mc.frame_height, mc.frame_width)
    seeds = horizon_scene_seeds(cfg)
    clips = ground_truth_episodes(seeds, cfg.horizon, res, fps, seed=cfg.seed,
                                  world_factory=world_factory)
    frames, speed = rollout(model, codec, clips, cfg.horizon, cfg, progress, "horizon")
    truth = np.stack([c.frames[1:] for c in clips])
    first = np.stack([c.frames[0] for c in clips])
    per_step = {k: [] for k in ("psnr", "ssim", "baseline_psnr", "baseline_ssim")}
    for k in range(cfg.horizon):
        sl = slice(k * fps, (k + 1) * fps)
        g, t = frames[:, sl], truth[:, sl]
        base = np.broadcast_to(first[:, None], t.shape)
        per_step["psnr"].append(pooled_psnr(g, t))
        per_step["ssim"].append(ssim(g, t))
        per_step["baseline_psnr"].append(pooled_psnr(base, t))
        per_step["baseline_ssim"].append(ssim(base, t))
    per_step["psnr_gain"] = [a - b for a, b in zip(per_step["psnr"], per_step["baseline_psnr"],
                                                   strict=True)]
    h8 = min(8, cfg.horizon) - 1
    summary = {
        "psnr_mean": float(np.mean(per_step["psnr"])),
        "ssim_mean": float(np.mean(per_step["ssim"])),
        "baseline_psnr_mean": float(np.mean(per_step["baseline_psnr"])),
        "psnr_gain_mean": float(np.mean(per_step["psnr_gain"])),
        "horizon_step": h8 + 1,
        "psnr_at_h": per_step["psnr"][h8], "baseline_psnr_at_h": per_step["baseline_psnr"][h8],
        "psnr_gain_at_h": per_step["psnr_gain"][h8],
        "ssim_at_h": per_step["ssim"][h8], "baseline_ssim_at_h": per_step["baseline_ssim"][h8],
    }
    actions = np.stack([c.actions for c in clips]).reshape(-1)
    results: dict = {"config": asdict(cfg), "model": {"params": mc.num_parameters(),
                     "frame_size": list(res), "frames_per_chunk": fps},
                     "seeds": [int(s) for s in seeds],
                     "per_step": per_step, "summary": summary, "speed": speed}
    if idm is not None:
        gb, ga = _chunk_pairs(first, frames, fps)
        tb, ta = _chunk_pairs(first, truth, fps)
        results["action_following"] = {"model": _idm_scores(idm, gb, ga, actions),
                                       "ground_truth": _idm_scores(idm, tb, ta, actions)}
        if other_judges:
            results["action_following"]["other_judges"] = {
                name: {"model": _idm_scores(j, gb, ga, actions)["action"],
                       "ground_truth": _idm_scores(j, tb, ta, actions)["action"]}
                for name, j in other_judges.items()}
    if cfg.drift_episodes > 0 and cfg.drift_chunks > 0:
        results["drift"] = _drift(model, codec, idm, cfg, drift_scene_seeds(cfg), res, fps,
                                  progress, world_factory)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(json.dumps(results, indent=1))
        save_strip(first, truth, frames, fps, out / "rollouts.png")
        save_gif(truth[:4], frames[:4], out / "rollout.gif")
    return results


def _drift(model, codec, idm, cfg: EvalConfig, seeds, res, fps, progress, world_factory) -> dict:
    clips = ground_truth_episodes(seeds, cfg.drift_chunks, res, fps, seed=cfg.seed + 1,
                                  world_factory=world_factory)
    frames, _ = rollout(model, codec, clips, cfg.drift_chunks, cfg, progress, "drift")
    truth = np.stack([c.frames[1:] for c in clips])
    first = np.stack([c.frames[0] for c in clips])
    rows = []
    w = cfg.drift_window
    for start in range(0, cfg.drift_chunks, w):
        sl = slice(start * fps, min(start + w, cfg.drift_chunks) * fps)
        g, t = frames[:, sl], truth[:, sl]
        row = {"chunks": [start + 1, min(start + w, cfg.drift_chunks)],
               "psnr": pooled_psnr(g, t),
               "colour_error": float(np.abs(g.reshape(-1, 3).mean(0) - t.reshape(-1, 3).mean(0))
                                     .mean()),
               "sharpness_ratio": sharpness(g) / max(sharpness(t), 1e-9)}
        if idm is not None:
            acts = np.stack([c.actions[start:start + w] for c in clips]).reshape(-1)
            gb, ga = _chunk_pairs(first, frames, fps)
            chunks = frames.shape[1] // fps
            sel = np.concatenate([np.arange(i * chunks + start, i * chunks + min(start + w, chunks))
                                  for i in range(len(clips))])
            row["action_following"] = _idm_scores(idm, gb[sel], ga[sel], acts)["action"]
        rows.append(row)
    return {"chunks": cfg.drift_chunks, "episodes": len(clips), "windows": rows}


# --------------------------------------------------------------------------- speed
def measure_speed(model, codec, cfg: EvalConfig, chunks: int = 4, seed_frame=None,
                  world_factory=None) -> dict:
    """Frames per second of one episode (batch 1, as the live engine runs) with ``cfg``'s sampler.

    The first chunk is a warm-up and not timed.
    """
    torch.set_num_threads(max(1, cfg.threads))
    mc = model.config
    fps, res = mc.frames_per_chunk, (mc.frame_height, mc.frame_width)
    clip = ground_truth_episodes(scene_seeds("heldout", 1, cfg.seed), chunks + 1, res, fps,
                                 seed=cfg.seed, world_factory=world_factory)[0]
    from world.mvdt import get_sampler

    sampler = get_sampler(cfg.sampler, num_steps=cfg.num_steps,
                          guidance_scale=cfg.guidance_scale,
                          guidance_interval=tuple(cfg.guidance_interval),
                          shift=cfg.shift or mc.flow_shift)
    cache, _ = _make_cache(model, codec, cfg, clip.frames[:1])
    gen = BatchedRollout(model, codec, sampler, cache, torch.Generator().manual_seed(cfg.seed),
                         cfg.negative)
    gen.reset(clip.frames[:1])
    gen.step([Action.from_index(int(clip.actions[0]))])  # warm-up
    t0 = time.perf_counter()
    for k in range(1, chunks + 1):
        gen.step([Action.from_index(int(clip.actions[k]))])
    seconds = time.perf_counter() - t0
    return {"frames_per_second": chunks * fps / seconds, "seconds_per_chunk": seconds / chunks,
            "model_calls_per_chunk": sampler.num_evals, "threads": cfg.threads,
            "sampler": cfg.sampler, "num_steps": cfg.num_steps,
            "guidance_scale": cfg.guidance_scale,
            "guidance_interval": list(cfg.guidance_interval), "cache_blocks": sorted(cache.blocks)
            if cache else [], "cache_reuse": cfg.cache_reuse}


# --------------------------------------------------------------------------- reporting
def format_table(results: dict) -> str:
    """A plain-text table of :func:`evaluate`'s results."""
    ps = results["per_step"]
    lines = ["step  PSNR model  PSNR repeat-last  gain   SSIM model  SSIM repeat-last"]
    for k in range(len(ps["psnr"])):
        lines.append(f"{k + 1:>4}  {ps['psnr'][k]:10.2f}  {ps['baseline_psnr'][k]:16.2f}  "
                     f"{ps['psnr_gain'][k]:+5.2f}  {ps['ssim'][k]:10.3f}  "
                     f"{ps['baseline_ssim'][k]:16.3f}")
    s = results["summary"]
    lines.append(f"horizon {s['horizon_step']}: PSNR gain {s['psnr_gain_at_h']:+.2f} dB, "
                 f"SSIM {s['ssim_at_h']:.3f} vs {s['baseline_ssim_at_h']:.3f}")
    if "action_following" in results:
        m, g = results["action_following"]["model"], results["action_following"]["ground_truth"]
        lines.append(f"action following (IDM): model {m['action']:.3f} "
                     f"(translation {m['translation']:.3f}, rotation {m['rotation']:.3f}); "
                     f"ground truth {g['action']:.3f}")
        lines.append("  by translation key (model / ground truth, n): " + ", ".join(
            f"{k} {v['action']:.2f}/{g['by_translation_key'][k]['action']:.2f} ({v['n']})"
            for k, v in m["by_translation_key"].items()))
        for name, r in results["action_following"].get("other_judges", {}).items():
            lines.append(f"  judged by {name}: model {r['model']:.3f}, ground truth "
                         f"{r['ground_truth']:.3f}")
    if "drift" in results:
        lines.append("drift  chunks     PSNR  colour err  sharpness  action-following")
        for r in results["drift"]["windows"]:
            af = r.get("action_following", float("nan"))
            lines.append(f"       {r['chunks'][0]:>3}-{r['chunks'][1]:<4} {r['psnr']:6.2f}  "
                         f"{r['colour_error']:10.2f}  {r['sharpness_ratio']:9.2f}  {af:16.3f}")
    sp = results.get("speed", {})
    if sp:
        lines.append(f"generation: {sp['batched_frames_per_second']:.1f} frames/s batched over "
                     f"episodes, {sp['model_calls_per_chunk']} model calls per chunk")
    return "\n".join(lines)


def save_strip(first: np.ndarray, truth: np.ndarray, frames: np.ndarray, fps: int,
               path: str | Path, episodes: int = 4, max_chunks: int = 12) -> Path:
    """PNG: for each episode a ground-truth row over a generated row (last frame per chunk)."""
    from PIL import Image

    n = min(episodes, len(frames))
    chunks = min(frames.shape[1] // fps, max_chunks)
    rows = []
    for i in range(n):
        for video in (truth[i], frames[i]):
            cells = [first[i]] + [video[(k + 1) * fps - 1] for k in range(chunks)]
            rows.append(np.concatenate(cells, axis=1))
        rows.append(np.full((2, rows[-1].shape[1], 3), 255, np.uint8))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return Path(path)


def save_gif(truth: np.ndarray, frames: np.ndarray, path: str | Path, fps: float = 8.0) -> Path:
    """GIF: ground truth (top) over generated (bottom), episodes side by side."""
    import imageio.v2 as imageio

    top = np.concatenate(list(truth), axis=2)
    bottom = np.concatenate(list(frames), axis=2)
    video = np.concatenate([top, bottom], axis=1)
    imageio.mimsave(path, list(video), duration=1.0 / fps, loop=0)
    return Path(path)
