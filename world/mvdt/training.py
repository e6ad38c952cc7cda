"""Rectified-flow training loss of the MVDT (masked + unmasked pass).

``x_t = (1 - t) x0 + t eps``, target velocity ``eps - x0``, ``t = sigmoid(N(0, 1))`` warped by the
flow shift (3); the loss covers only the generated chunk, never the history. The action prompt is
replaced by the null prompt with probability ``cfg_drop_prob`` so classifier-free guidance works.
Each step runs an unmasked pass and an MAE-masked pass (mask ratio ~ U[0.3, 0.5]). With
``history_noise`` set, the history latents get Gaussian noise of a random strength per example.
:func:`self_generated_history` swaps the newest history chunks for the model's own samples
(training on its own output, as it runs; a one-chunk form of self-forcing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from control.actions import Action
from world.mvdt.masking import random_token_mask, sample_mask_ratio
from world.mvdt.model import X0_SIGMA_MIN, MVDTModel
from world.mvdt.pipeline import MVDTPipeline


def shift_sigma(sigma: torch.Tensor | float, shift: float) -> torch.Tensor | float:
    """``s * sigma / (1 + (s - 1) * sigma)``: more time at high noise for s > 1."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def sample_timesteps(
    batch: int, shift: float = 3.0, generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``t = shift(sigmoid(N(0, 1)))``, shape (B,)."""
    t = torch.sigmoid(torch.randn(batch, generator=generator))
    return shift_sigma(t, shift).to(device)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``(1 - t) x0 + t eps`` with ``t`` of shape (B,)."""
    tt = t.reshape(-1, *([1] * (x0.ndim - 1))).to(x0)
    return (1 - tt) * x0 + tt * noise


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``: from ``generator`` (CPU) when given, else drawn
    on ``x``'s device (no host round trip on a GPU)."""
    if generator is None:
        return torch.randn(x.shape, device=x.device, dtype=x.dtype)
    return torch.randn(x.shape, generator=generator).to(x)


def drop_actions(
    actions: Sequence[Any] | torch.Tensor, prob: float, generator: torch.Generator | None = None,
) -> list[Any] | torch.Tensor:
    """Replace each action by the null prompt (None / index -1) with probability ``prob``."""
    n = len(actions)
    drop = (torch.rand(n, generator=generator) < prob).tolist()
    if isinstance(actions, torch.Tensor):
        out = actions.clone()
        out[torch.tensor(drop, dtype=torch.bool)] = -1
        return out
    return [None if d else a for a, d in zip(actions, drop, strict=True)]


def flow_matching_loss(
    model: MVDTModel,
    x0: torch.Tensor,
    context: torch.Tensor,
    history=None,
    mask=None,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    return_x0: bool = False,
    warp: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """MSE between predicted and true velocity on the chunk ``x0`` (B, C, F, H, W).

    With ``return_x0`` also returns the model's estimate of the clean chunk (differentiable).
    """
    b = x0.shape[0]
    if t is None:
        t = sample_timesteps(b, model.config.flow_shift, generator, x0.device)
    if noise is None:
        noise = _randn_like(x0, generator)
    xt = add_noise(x0, noise, t)
    v = model(xt, t, context, history, mask=mask, warp=warp)
    loss = F.mse_loss(v.float(), (noise - x0).float())
    if not return_x0:
        return loss
    # x_t = (1 - t) x0 + t eps and v = eps - x0; an x0-model's sigma floor applies here too.
    s = t.reshape(-1, 1, 1, 1, 1).to(v.dtype)
    if model.config.prediction == "x0":
        s = s.clamp_min(X0_SIGMA_MIN)
    return loss, xt - s * v


def training_loss(
    model: MVDTModel,
    batch: dict[str, Any],
    generator: torch.Generator | None = None,
    masked: bool = True,
    unmasked: bool = True,
    motion_critic: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    motion_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One MVDT training objective.

    Parameters
    ----------
    model : MVDTModel
    batch : dict
        ``"target"``: chunk latents (B, C, F, H, W); ``"history"``: clean history latents
        (B, C, Fh, H, W) or None; ``"actions"``: list of :class:`~control.actions.Action` (or
        LongTensor of indices 0-80). Optional ``"mask_ratio"`` overrides the sampled ratio.
    generator : torch.Generator, optional
        Makes timesteps, noise, prompt dropping and masks reproducible.
    masked, unmasked : bool
        Which passes to run (Yume runs both; a distilled student may run only the unmasked one).
    motion_critic : callable, optional
        ``critic(before, target, generated) -> (B,)`` on latent frames ``(B, C, H, W)``: how
        differently the motion from the newest history frame to the chunk's last frame reads
        in the unmasked pass's clean-chunk estimate than in the truth (e.g. an inverse-dynamics
        model's :func:`world.training.idm.motion_kl`). Added with weight ``motion_weight * (1 -
        t)``,
        since the estimate carries little detail at high noise.

    Returns
    -------
    loss : Tensor (scalar, differentiable)
    logs : dict of float
        ``loss``, ``loss_unmasked``, ``loss_masked``, ``mask_ratio``, ``t_mean``, ``drop_frac``.
    """
    if not (masked or unmasked):
        raise ValueError("training_loss needs at least one of masked/unmasked passes.")
    cfg = model.config
    x0 = batch["target"].to(model.device)
    history = batch.get("history")
    b = x0.shape[0]
    if history is not None:
        history = history.to(model.device)
    use_critic = motion_critic is not None and motion_weight > 0 and unmasked
    if use_critic and (history is None or history.shape[2] == 0):
        raise ValueError("The motion loss needs a history frame before the chunk.")
    before = history[:, :, -1] if use_critic else None

    actions = drop_actions(batch["actions"], cfg.cfg_drop_prob, generator)
    dropped = (actions < 0).cpu() if isinstance(actions, torch.Tensor) else torch.tensor(
        [a is None for a in actions])
    n_drop = int(dropped.sum())
    context = model.encode_actions(actions)
    t = sample_timesteps(b, cfg.flow_shift, generator, x0.device)
    noise = _randn_like(x0, generator)
    std = None
    if history is not None and cfg.history_noise > 0 and history.shape[2] > 0:
        # Noisy context: the model will continue from its own imperfect frames.
        std = torch.rand(b, generator=generator) * cfg.history_noise
        history = history + std.reshape(b, 1, 1, 1, 1).to(history) * _randn_like(
            history, generator)
    hist_tokens = model.embed_history(history, batch=b)
    warp = _training_warp(model, batch, std, generator)
    logs: dict[str, float] = {"t_mean": float(t.mean()), "drop_frac": n_drop / b}
    loss = x0.new_zeros(())
    if unmasked:
        lu, x0_hat = flow_matching_loss(model, x0, context, hist_tokens, None, t, noise,
                                        return_x0=True, warp=warp)
        loss = loss + lu
        logs["loss_unmasked"] = float(lu.detach())
        if use_critic:
            # Examples whose prompt was dropped are left out: their motion is not asked for.
            weight = (1 - t) * (~dropped).to(t)
            lmot = (motion_critic(before, x0[:, :, -1], x0_hat[:, :, -1].float())
                    * weight).mean()
            loss = loss + motion_weight * lmot
            logs["loss_motion"] = float(lmot.detach())
    if masked:
        ratio = batch.get("mask_ratio")
        if ratio is None:
            ratio = sample_mask_ratio(cfg.mask_ratio_min, cfg.mask_ratio_max, generator)
        n_tokens = x0.shape[2] * cfg.tokens_per_frame
        mask = random_token_mask(b, n_tokens, float(ratio), generator, x0.device)
        lm = flow_matching_loss(model, x0, context, hist_tokens, mask, t, noise, warp=warp)
        loss = loss + lm
        logs["loss_masked"] = float(lm.detach())
        logs["mask_ratio"] = float(ratio)
    logs["loss"] = float(loss.detach())
    return loss, logs


def _training_warp(model: MVDTModel, batch: dict[str, Any], std: torch.Tensor | None,
                   generator: torch.Generator | None) -> torch.Tensor | None:
    """The batch's geometric-memory conditioning as the model trains on it.

    With probability ``warp_dropout`` an example gets none (zeros: no valid pixel), so the
    model also works without it; the warp of the newest frame gets the history's noise
    (``std`` per example), because at run time that frame is the model's own.
    """
    cfg = model.config
    warp = batch.get("warp")
    if warp is None or not cfg.warp_sources:
        return None
    warp = warp.to(model.device).float()
    b = warp.shape[0]
    if std is not None and "last" in cfg.warp_sources:
        c = cfg.latent_channels
        j = cfg.warp_sources.index("last") * (c + 1)
        warp = warp.clone()
        warp[:, j:j + c] += std.reshape(b, 1, 1, 1, 1).to(warp) * _randn_like(
            warp[:, j:j + c], generator)
    if cfg.warp_dropout > 0:
        keep = (torch.rand(b, generator=generator) >= cfg.warp_dropout).to(warp)
        warp = warp * keep.reshape(b, 1, 1, 1, 1)
    return warp


@torch.no_grad()
def self_generated_history(
    pipeline: MVDTPipeline,
    history: torch.Tensor,
    history_actions: torch.Tensor,
    chunks: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The history with its newest ``chunks`` chunks replaced by the pipeline's own samples.

    At run time the model continues from frames it generated itself, softer and with other
    errors than the clean clips it trains on; training on such histories teaches it to carry
    on from them (and to correct them) instead of compounding their errors. Chunk ``j`` back
    from the newest is generated from everything before it (its own earlier samples included)
    under the action that produced it in the clip.

    Parameters
    ----------
    pipeline : MVDTPipeline
        Model and sampler that generate (usually the EMA weights with the shipped sampler).
    history : Tensor (B, C, Fh, H, W)
        Clean history latents, first frame then the recent ones (as :class:`ChunkSampler`
        gives them).
    history_actions : LongTensor (B, K)
        Action indices of the clip's chunks before the target; the last ``chunks`` are used.
    chunks : int
        How many of the newest chunks to replace; fewer when the history is shorter.

    Returns
    -------
    Tensor
        A new history tensor (the input is not modified).
    """
    f = pipeline.config.chunk_latent_frames
    length = history.shape[2]
    n = min(int(chunks), history_actions.shape[1], (length - 1) // f)
    out = history.clone()
    for j in range(n, 0, -1):
        end = length - (j - 1) * f
        acts = [Action.from_index(int(a)) for a in history_actions[:, -j]]
        out[:, :, end - f:end] = pipeline.generate_latents(out[:, :, :end - f], acts,
                                                           generator=generator)
    return out
