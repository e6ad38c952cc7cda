"""Generate the next chunk from (history, action): model + sampler + latent codec.

:class:`MVDTPipeline` glues a :class:`~world.mvdt.model.MVDTModel`, a sampler from
:mod:`world.mvdt.samplers` and a codec (frames <-> latents) in the diffusers style: the model
never knows the sampler, the sampler never knows the model. The history is embedded once per
chunk (it is clean and constant across sampler steps); cond and uncond action tokens likewise.

What guidance pushes away from is the pipeline's choice, not the sampler's (diffusers' negative
prompt): :data:`NEGATIVES` names the options (:func:`negative_actions`).

Codec protocol (what :mod:`world.vae` provides for a VAE; :class:`PixelCodec` here is the pixel
space one): ``encode(frames uint8 (n, H, W, 3)) -> Tensor (C, n_latent, h, w)`` and
``decode(latents (C, n_latent, h, w)) -> uint8 (n, H, W, 3)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from control.actions import Action, ActionError, parse_action, parse_prompt
from world.base import WorldError
from world.mvdt import reuse
from world.mvdt.cache import ResidualCache
from world.mvdt.model import MVDTModel
from world.mvdt.samplers import Sampler, get_sampler

logger = logging.getLogger(__name__)


NEGATIVES = ("null", "still")


def negative_actions(actions: Sequence[Action | str | None], negative: str = "null") -> list:
    """The actions classifier-free guidance pushes away from, one per commanded action.

    ``"null"``: the null prompt (Yume's guidance: away from "any action").
    ``"still"``: the same rotation with the translation key released, so guidance amplifies
    exactly what the translation key adds (the parallax of walking), which the null prompt
    blurs with every other action; actions without a translation key keep the null prompt.
    """
    if negative not in NEGATIVES:
        raise WorldError(f"Unknown guidance negative {negative!r}; use one of "
                         f"{', '.join(NEGATIVES)}.")
    if negative == "null":
        return [None] * len(actions)
    out: list = []
    for a in actions:
        if isinstance(a, str):  # key names ("W RIGHT") or an action prompt of the templates
            try:
                a = parse_action(a)
            except ActionError:
                try:
                    a = parse_prompt(a)
                except ActionError as err:
                    raise WorldError(str(err)) from err
        out.append(Action("·", a.rotation) if a is not None and a.translation != "·" else None)
    return out


def split_sampler_spec(spec: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """``(name, params, negative)`` of a sampler spec as ``sampler.json`` writes it
    (``{"name", "params", "negative"}``, every key optional)."""
    return (str(spec.get("name", "euler")), dict(spec.get("params", {})),
            str(spec.get("negative", "null")))


class PixelCodec:
    """Pixel-space "latents": RGB in [-1, 1], folded space-to-depth by ``factor``.

    A (n, H, W, 3) clip becomes (3 * factor**2, n, H / factor, W / factor), then
    ``(z - shift) * scale``; one latent frame per video frame. Same maths as
    :class:`world.vae.PixelLatent`, kept here so the engine works without the training code.
    """

    def __init__(self, factor: int = 1, scale: float = 1.0, shift: float = 0.0) -> None:
        self.factor, self.scale, self.shift = int(factor), float(scale), float(shift)

    def encode(self, frames: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.ascontiguousarray(frames)).float().div(127.5).sub(1.0)
        x = x.permute(0, 3, 1, 2)  # (n, 3, H, W)
        if self.factor > 1:
            x = F.pixel_unshuffle(x, self.factor)
        return ((x - self.shift) * self.scale).permute(1, 0, 2, 3).contiguous()  # (C, n, h, w)

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        x = latents.detach().float().cpu().permute(1, 0, 2, 3) / self.scale + self.shift
        if self.factor > 1:
            x = F.pixel_shuffle(x, self.factor)
        x = x.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
        return x.permute(0, 2, 3, 1).numpy()


class BatchedCodec:
    """Adapter from a batched latent space (``world.vae``: (B, T, H, W, 3) <-> (B, C, T, h, w))
    to the codec protocol used here (one clip, no batch axis)."""

    def __init__(self, space) -> None:
        self.space = space

    def encode(self, frames: np.ndarray) -> torch.Tensor:
        return self.space.encode(np.ascontiguousarray(frames)[None])[0]

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        out = self.space.decode(latents.detach().float().cpu()[None])[0]
        return out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out)


def codec_from_config(codec: dict[str, Any], checkpoint_dir=None):
    """The codec ``config.codec`` describes.

    Uses :func:`world.vae.latent_space_from_dict` when the project's latent spaces are
    importable (pixel or a trained Wan VAE in ``checkpoint_dir``); otherwise a pixel codec.
    """
    kind = codec.get("type", "pixel")
    try:
        from world import vae  # the latent spaces used in training
    except ImportError:
        vae = None
    if vae is not None and hasattr(vae, "latent_space_from_dict"):
        return BatchedCodec(vae.latent_space_from_dict(dict(codec), checkpoint_dir))
    if kind == "pixel":
        return PixelCodec(int(codec.get("factor", 1)), float(codec.get("scale", 1.0)),
                          float(codec.get("shift", 0.0)))
    raise WorldError(f"This checkpoint needs the {kind!r} latent space from world.vae, which is "
                     "not available; install the full project.")


class MVDTPipeline:
    """Next-chunk generation.

    Parameters
    ----------
    model : MVDTModel
    codec : object with ``encode``/``decode``, optional
        Needed only for :meth:`generate_frames` / :meth:`encode_frames`.
    sampler : str or Sampler
        Registry name or instance (default Euler, 50 steps, guidance 5).
    cache : ResidualCache, optional
        Residual caching of selected blocks (reset for every chunk).
    negative : {"null", "still"}
        What guidance pushes away from (:func:`negative_actions`); used only when the
        sampler guides.
    context_noise : float
        Standard deviation of Gaussian noise put on the history latents (and on the warp of
        the newest frame) before each chunk, as the context noise of GameNGen and DIAMOND:
        a model trained with ``history_noise`` sees at run time the kind of imperfect context
        it learnt to correct, instead of its own errors exactly (0 = off).
    """

    def __init__(self, model: MVDTModel, codec=None, sampler: str | Sampler = "euler",
                 cache: ResidualCache | None = None, negative: str = "null",
                 context_noise: float = 0.0, **sampler_params: Any) -> None:
        self.model = model
        self.codec = codec
        self.sampler = get_sampler(sampler, **sampler_params)
        self.cache = cache
        negative_actions([], negative)  # an unknown name fails here, not at the first chunk
        self.negative = negative
        if context_noise < 0:
            raise WorldError(f"context_noise must be >= 0, got {context_noise}.")
        self.context_noise = float(context_noise)

    @property
    def config(self):
        return self.model.config

    def encode_frames(self, frames: np.ndarray) -> torch.Tensor:
        """Latents (C, n, h, w) of uint8 frames (n, H, W, 3)."""
        return self.codec.encode(frames).to(self.model.device)

    @torch.no_grad()
    def generate_latents(
        self,
        history: torch.Tensor | None,
        action: Action | str | None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        num_frames: int | None = None,
        warp: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample the next chunk's latents ``(C, F, h, w)`` (or ``(B, ...)`` for batched input).

        Parameters
        ----------
        history : Tensor (C, Fh, h, w) or (B, C, Fh, h, w) or None
            Clean history latents, oldest first (already bounded by a HistoryBuffer or not:
            frames the schedule drops are never embedded).
        action : Action, prompt string or None, or a sequence of them (one per batch item)
        generator : torch.Generator, optional
            Seeds the initial noise (and SDE noise).
        noise : Tensor, optional
            Initial noise (overrides ``generator`` for it).
        num_frames : int, optional
            Latent frames to generate (default ``config.chunk_latent_frames``).
        warp : Tensor (B, S (C + 1), F, h, w), optional
            Geometric-memory conditioning (:mod:`world.mvdt.warp`) of a model with
            ``warp_sources``; None gives such a model none (it was trained with warp dropout).
        """
        model, cfg = self.model, self.model.config
        if model.training or not reuse.switched_on():  # eval() walks every module
            model.eval()
        batched = history is not None and history.ndim == 5
        if history is not None and not batched:
            history = history.unsqueeze(0)
        b = history.shape[0] if history is not None else 1
        f = num_frames or cfg.chunk_latent_frames
        shape = (b, cfg.latent_channels, f, cfg.latent_height, cfg.latent_width)
        if noise is None:
            noise = torch.randn(shape, generator=generator)
        noise = noise.reshape(shape).to(model.device)
        if history is not None and self.context_noise > 0:
            history = history + self.context_noise * torch.randn(
                history.shape, generator=generator).to(history)
        if warp is not None:
            warp = warp.to(model.device)
            if warp.ndim == 4:
                warp = warp.unsqueeze(0)
            if self.context_noise > 0 and "last" in cfg.warp_sources:
                c = cfg.latent_channels
                j = cfg.warp_sources.index("last") * (c + 1)
                warp = warp.clone()
                warp[:, j:j + c] += self.context_noise * torch.randn(
                    warp[:, j:j + c].shape, generator=generator).to(warp)
        hist = model.embed_history(
            history.to(model.device) if history is not None else None, batch=b)
        actions = list(action) if isinstance(action, list | tuple) else [action] * b
        if len(actions) != b:
            raise WorldError(f"Got {len(actions)} actions for a batch of {b} histories.")
        cond = model.encode_actions(actions)
        uncond = (model.encode_actions(negative_actions(actions, self.negative))
                  if self.sampler.guidance_scale != 1.0 else None)
        passes = {"cond": -1, "uncond": -1}  # sampling passes begun (AAM makes two)
        if self.cache is not None:
            self.cache.reset()

        def velocity(x: torch.Tensor, sigma: float, context: torch.Tensor) -> torch.Tensor:
            call = None
            if self.cache is not None:
                key = "cond" if context is cond else "uncond"
                # Every pass starts at sigma = 1; a residual from the end of one pass must not
                # stand in at the start of the next, so each pass keeps its own residuals.
                if sigma >= 1.0 - 1e-9:
                    passes[key] += 1
                call = self.cache.call(f"{key}/{max(passes[key], 0)}")
            return model(x, sigma, context, hist, cache=call, warp=warp)

        if self.cache is None and b == 1 and reuse.enabled():
            def pair(x: torch.Tensor, sigma: float, c: torch.Tensor, u: torch.Tensor):
                # Guided steps: cond and uncond as one batch of two. Every operation of the
                # model works per batch item, so each half is what its own call would give.
                both = model(torch.cat([x, x]), sigma, model.stack_contexts(c, u), hist,
                             warp=warp)
                return both[:1], both[1:]

            velocity.pair = pair
        out = self.sampler(velocity, noise, cond, uncond, generator=generator)
        return out if batched else out[0]

    @torch.no_grad()
    def generate_frames(self, history: torch.Tensor | None, action: Action | str | None,
                        generator: torch.Generator | None = None
                        ) -> tuple[np.ndarray, torch.Tensor]:
        """Frames (n, H, W, 3) uint8 and latents of the next chunk."""
        if self.codec is None:
            raise ValueError("MVDTPipeline needs a codec to produce frames; pass codec=...")
        latents = self.generate_latents(history, action, generator)
        return self.codec.decode(latents), latents
