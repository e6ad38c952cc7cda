"""``WanWorld``: a Wan/Yume transformer + VAE behind the :class:`~world.base.WorldEngine` interface.

Each ``step(action)`` generates the next chunk from the last latent frames with one of the MVDT
engine's flow-matching samplers (:mod:`world.mvdt.samplers`: Euler by default, Yume's TTS-SDE
and AAM), run on the transformer's velocity (timestep ``1000 sigma``), conditioned on the
action's Yume prompt (:func:`control.actions.action_prompt`, the template of the family). How the
known frames enter depends on the transformer's input channels:

- ``in_channels == z_dim`` (Wan2.2-TI2V-5B, Yume 1.5): the context latents go in clean with
  timestep 0 per token (Wan 2.2's per-token timesteps), the chunk's latents noisy;
- ``in_channels == 2 * z_dim + 4`` (Wan2.1-I2V-14B, Yume-I2V-540P): all frames are denoised,
  with a 4-channel mask and the context latents concatenated (Wan 2.1 I2V); the CLIP image
  tokens are zeros unless given (``image_embeds``), since no CLIP encoder is loaded here.

The context is Yume's compressed history by default (``history="compressed"``,
:mod:`world.wan.history`): the first latent frame at full resolution, the newest ones too, older
ones patchified with larger kernels interpolated from the transformer's ``patch_embedding``, by
the MVDT's own plan (:func:`world.mvdt.memory.history_plan`), so the token count is bounded
however long the world runs. There the I2V history's noisy channels carry the history re-noised
to the current level (its mask and condition channels the clean latents), as in Yume.
``history="recent"`` is the plain Wan path kept as the baseline: only the newest
``context_latent_frames`` latents, dense, through diffusers' own forward.

A world starts from an image, a clip (its frames, VAE-encoded together, become the history) or,
for the 5B (TI2V) family with a prompt embedding available, from text alone. New latents are
decoded together with the last context latent (the VAE is causal in time) and that frame's
picture is dropped, so a chunk is ``4 * chunk_latent_frames`` frames. Runs in bfloat16 on CUDA,
float32 on the CPU.

Sampling and caching are the MVDT engine's objects, not copies: the sampler sees only a velocity
function, so every sampler of :data:`world.mvdt.samplers.SAMPLERS` works here, chosen as for
:class:`~world.mvdt.engine.MVDTWorld` (argument, else the checkpoint folder's ``sampler.json``,
else Euler). Its schedule is the MVDT's (:func:`~world.mvdt.samplers.shifted_sigmas`, linear
from 1 to 0 then shifted), not diffusers' ``FlowMatchEulerDiscreteScheduler`` this engine used
before, whose last steps stop short of 0 (e.g. 4 steps, shift 5: 1, .91, .72, .02 there against
1, .94, .83, .63 here). Classifier-free guidance pushes away from the negative prompt
(``negative="null"``) or from the same action without its translation key (``"still"``,
:func:`world.mvdt.pipeline.negative_actions`). On the compressed path the blocks are run by
:func:`world.wan.history.token_velocity`, so a :class:`~world.mvdt.cache.ResidualCache` can reuse
the residuals of chosen blocks across sampler steps (``cache_blocks``, ``cache_reuse``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from control.actions import IDLE, Action, ActionError, action_prompt, parse_action
from control.motion import CameraState, MotionStep, apply_action
from world.base import Chunk, WorldEngine, WorldError, check_resolution, check_start
from world.images import fit_image
from world.mvdt.cache import ResidualCache
from world.mvdt.engine import read_sampler_spec
from world.mvdt.pipeline import negative_actions
from world.mvdt.samplers import Sampler, get_sampler
from world.wan.history import WanHistory, history_config, token_velocity
from world.wan.loading import load_transformer, load_vae
from world.wan.prompts import make_prompt_encoder

logger = logging.getLogger(__name__)

# Tokens of Wan's CLIP ViT-H/14 image features (256 patches + class token).
CLIP_TOKENS = 257


class WanVAECodec:
    """Frames (uint8) <-> normalised Wan latents through ``AutoencoderKLWan``.

    Latents are normalised as diffusers' Wan pipelines do: ``(mu - mean) / std`` per channel
    with the VAE config's ``latents_mean`` / ``latents_std``; the posterior mode is used.
    """

    def __init__(self, vae, dtype: torch.dtype = torch.float32) -> None:
        self.vae, self.dtype = vae, dtype
        c = vae.config
        self.channels = int(c.z_dim)
        self.temporal = int(c.scale_factor_temporal)
        self.spatial = int(c.scale_factor_spatial)
        self.device = next(vae.parameters()).device
        self.mean = torch.tensor(c.latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self.std = torch.tensor(c.latents_std, dtype=torch.float32).view(1, -1, 1, 1, 1)

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> torch.Tensor:
        """``(n, H, W, 3)`` uint8 (n = 1 + 4k) -> ``(1, C, 1 + k, H/s, W/s)`` float32."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).float().div(127.5).sub(1.0)
        x = x.permute(3, 0, 1, 2).unsqueeze(0).to(self.device, self.dtype)
        mu = self.vae.encode(x).latent_dist.mode().float().cpu()
        return (mu - self.mean) / self.std

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """``(1, C, f, h, w)`` -> ``(1 + 4 (f - 1), h*s, w*s, 3)`` uint8."""
        z = (latents.float().cpu() * self.std + self.mean).to(self.device, self.dtype)
        x = self.vae.decode(z).sample.float().clamp(-1, 1)
        frames = ((x[0].permute(1, 2, 3, 0) + 1.0) * 127.5).round()
        return frames.to(torch.uint8).cpu().numpy()


def default_device() -> tuple[str, torch.dtype]:
    """``("cuda", bfloat16)`` where CUDA is available, else ``("cpu", float32)``."""
    return ("cuda", torch.bfloat16) if torch.cuda.is_available() else ("cpu", torch.float32)


class WanWorld(WorldEngine):
    """A world generated by a Wan 2.1/2.2 or Yume transformer and its VAE.

    Parameters
    ----------
    checkpoint : path, optional
        Pipeline folder with ``transformer/`` (diffusers or original Wan/Yume layout) and
        ``vae/`` (diffusers layout), optionally ``text_encoder/`` + ``tokenizer/`` and
        ``prompt_embeds.safetensors``. Not needed when ``transformer`` and ``vae`` are given.
    transformer, vae : diffusers models, optional
        In-memory models (tests, benchmarks).
    extras : dict, optional
        Yume's extra weights of an in-memory ``transformer`` (original names, as
        :func:`world.wan.loading.load_transformer` returns them); a checkpoint's are loaded.
    height, width : int, optional
        Generation size in pixels, a multiple of the VAE's compression x 2; default 704x1280
        (5B) or 544x960 (14B I2V).
    sampler : str or Sampler, optional
        ``"euler"``, ``"tts-sde"`` or ``"aam"`` (:func:`world.mvdt.samplers.get_sampler`) or an
        instance; default from the checkpoint folder's ``sampler.json`` if present, else Euler
        (whose parameters apply only when its sampler is the one used).
    sampler_params : dict, optional
        Sampler parameters (``eta``, ``steps_replaced``, ``guidance_interval`` ...); they win
        over ``num_steps``/``shift``/``guidance_scale`` and ``sampler.json``.
    num_steps, shift, guidance_scale : int, float, float, optional
        Shortcuts for those sampler parameters; defaults (when neither they nor
        ``sampler.json`` set them) 4 steps, shift 5, guidance 1 (CFG off, one call a step).
    negative : {"null", "still"}, optional
        What guidance pushes away from: ``negative_prompt`` or the action without its
        translation key; default from ``sampler.json``, else ``"null"``.
    cache_blocks, cache_reuse : sequence of int, int
        Residual caching (:class:`world.mvdt.cache.ResidualCache`): indices into
        ``transformer.blocks`` whose residual is reused for ``cache_reuse`` calls after each
        computed one (0 = off); compressed history only.
    chunk_latent_frames : int
        Latent frames generated per step (4 frames each).
    context_latent_frames : int
        Newest latent frames the next chunk is conditioned on (``history="recent"`` only).
    history : {"compressed", "recent"}
        Yume's bounded compressed history (default) or the newest ``context_latent_frames``
        latents only (the plain Wan baseline).
    history_schedule : list of [count, kernel], optional
        Compression table, newest first, in latent pixels (default: Yume's, see
        :func:`world.mvdt.config.default_history_schedule`); frames beyond it are dropped,
        the first frame is always kept at the base patch.
    prompt : str, optional
        A scene text: :meth:`reset` without image or clip generates the first frame from it
        (5B / TI2V family, with a text encoder or a prompt cache that holds the text).
    template : {"5b", "14b"}, optional
        Yume prompt template; default by the family (5B: "5b", I2V: "14b").
    text_encoder, prompt_cache : path, optional
        See :func:`world.wan.prompts.make_prompt_encoder`.
    image_embeds : Tensor, optional
        CLIP image tokens ``(1, 257, image_dim)`` for an I2V transformer; default zeros.
    device, dtype : optional
        Default: CUDA in bfloat16 when available, else the CPU in float32.
    """

    name = "wan"

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        transformer=None,
        vae=None,
        extras: dict[str, torch.Tensor] | None = None,
        height: int | None = None,
        width: int | None = None,
        sampler: str | Sampler | None = None,
        sampler_params: dict[str, Any] | None = None,
        num_steps: int | None = None,
        shift: float | None = None,
        guidance_scale: float | None = None,
        negative: str | None = None,
        cache_blocks: tuple[int, ...] | list[int] = (),
        cache_reuse: int = 0,
        chunk_latent_frames: int = 1,
        context_latent_frames: int = 2,
        history: str = "compressed",
        history_schedule: list[list[int]] | None = None,
        prompt: str | None = None,
        template: str | None = None,
        text_encoder: str | Path | None = None,
        prompt_cache: str | Path | None = None,
        negative_prompt: str = "",
        image_embeds: torch.Tensor | None = None,
        seed: int = 0,
        frame_rate: float = 16.0,
        motion: MotionStep | None = None,
        frames_per_step: int | None = None,
        device: str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.device = device or default_device()[0]
        self.dtype = dtype or (torch.bfloat16 if str(self.device).startswith("cuda")
                               else torch.float32)
        if transformer is None or vae is None:
            if checkpoint is None:
                raise WorldError("A Wan world needs a checkpoint folder (with transformer/ and "
                                 "vae/); pass make_world('wan', checkpoint=DIR).")
            if transformer is None:
                loaded = load_transformer(checkpoint, dtype=self.dtype, device=self.device)
                transformer, self.extras = loaded.model, loaded.extras
            if vae is None:
                vae = load_vae(checkpoint, dtype=self.dtype, device=self.device)
        self.extras = dict(extras or getattr(self, "extras", {}))
        self.transformer = transformer.eval()
        self.codec = WanVAECodec(vae.eval(), self.dtype)
        c, z = transformer.config, self.codec.channels
        if c.in_channels == z and c.out_channels == z:
            self.conditioning = "expand"
        elif c.in_channels == 2 * z + 4 and c.out_channels == z:
            self.conditioning = "concat"
        else:
            raise WorldError(f"The transformer reads {c.in_channels} channels and writes "
                             f"{c.out_channels}, which fits neither way of conditioning on a "
                             f"{z}-channel VAE; pair it with its own VAE.")
        self.template = template or ("5b" if self.conditioning == "expand" else "14b")
        if self.template not in ("5b", "14b"):
            raise WorldError(f"Unknown prompt template {template!r}; use '5b' or '14b'.")
        grid = self.codec.spatial * int(c.patch_size[1])
        default = (704, 1280) if self.conditioning == "expand" else (544, 960)
        self.height, self.width = check_resolution(height or default[0], width or default[1])
        if self.height % grid or self.width % grid:
            h, w = (max(grid, v // grid * grid) for v in (self.height, self.width))
            raise WorldError(f"{self.height}x{self.width} is not a multiple of {grid} pixels, "
                             f"which this model's VAE and patches need; choose e.g. {h}x{w}.")
        if int(chunk_latent_frames) < 1 or int(context_latent_frames) < 1:
            raise WorldError("chunk_latent_frames and context_latent_frames must be at least 1.")
        self.sampler, self.negative = self._make_sampler(
            checkpoint, sampler, sampler_params, num_steps, shift, guidance_scale, negative)
        self.num_steps, self.shift = self.sampler.num_steps, self.sampler.shift
        self.guidance_scale = self.sampler.guidance_scale
        self.chunk_latent_frames = int(chunk_latent_frames)
        self.context_latent_frames = int(context_latent_frames)
        self.frames_per_step = self.codec.temporal * self.chunk_latent_frames
        if frames_per_step is not None and int(frames_per_step) != self.frames_per_step:
            raise WorldError(f"This Wan world generates {self.frames_per_step} frames per step "
                             f"(4 per latent frame), not {frames_per_step}; set "
                             "chunk_latent_frames instead.")
        if not frame_rate > 0:
            raise WorldError(f"frame_rate must be positive, got {frame_rate}.")
        self.frame_rate = float(frame_rate)
        self.motion = motion or MotionStep()
        self.prompts = make_prompt_encoder(512, int(c.text_dim), checkpoint=checkpoint,
                                           text_encoder=text_encoder, prompt_cache=prompt_cache,
                                           device=self.device)
        self.negative_prompt = negative_prompt
        if c.image_dim:
            self.image_embeds = (image_embeds if image_embeds is not None
                                 else torch.zeros(1, CLIP_TOKENS, int(c.image_dim)))
        else:
            self.image_embeds = None
        if history not in ("compressed", "recent"):
            raise WorldError(f"history must be 'compressed' or 'recent', not {history!r}.")
        self.history_mode = history
        s = self.codec.spatial
        self.memory = WanHistory(history_config(
            self.height // s, self.width // s, self.codec.channels,
            (int(c.patch_size[1]), int(c.patch_size[2])), history_schedule))
        self.trained_kernels = self.memory.use_trained(self.extras, transformer)
        if self.trained_kernels:
            logger.info("history kernels %s from the checkpoint's trained convolutions",
                        self.trained_kernels)
        self.cache = self._make_cache(cache_blocks, cache_reuse)
        self.prompt = prompt
        self.seed = int(seed)
        self._generator = torch.Generator().manual_seed(self.seed)
        self._history: torch.Tensor | None = None  # history="recent": the newest latents
        self._state = CameraState()
        self._frame_index = 0

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _make_sampler(checkpoint, sampler, sampler_params, num_steps, shift, guidance_scale,
                      negative) -> tuple[Sampler, str]:
        """The sampler and guidance negative, by precedence: ``sampler_params``, the
        ``num_steps``/``shift``/``guidance_scale`` shortcuts, ``sampler.json``, Wan defaults."""
        folder = Path(checkpoint) if checkpoint is not None else None
        name, spec, spec_negative = read_sampler_spec(folder if folder is not None
                                                      and folder.is_dir() else None)
        if sampler is not None and (isinstance(sampler, Sampler)
                                    or str(sampler).lower() != name.lower()):
            spec = {}  # the spec's parameters belong to its own sampler
        params: dict[str, Any] = {"num_steps": 4, "shift": 5.0, "guidance_scale": 1.0, **spec}
        shortcuts = {"num_steps": num_steps, "shift": shift, "guidance_scale": guidance_scale}
        params.update({k: v for k, v in shortcuts.items() if v is not None})
        params.update(sampler_params or {})
        chosen = get_sampler(sampler if sampler is not None else name, **params)
        negative = negative or spec_negative
        negative_actions([], negative)  # an unknown name fails here, not at the first step
        return chosen, negative

    def _make_cache(self, blocks, reuse: int) -> ResidualCache | None:
        if not reuse or not len(blocks):
            return None
        if self.history_mode != "compressed":
            raise WorldError("Residual caching runs on the compressed history's token path; "
                             "use history='compressed' or leave cache_reuse at 0.")
        n = len(self.transformer.blocks)
        bad = [int(b) for b in blocks if not 0 <= int(b) < n]
        if bad:
            raise WorldError(f"cache_blocks {bad} are not blocks of this transformer; use "
                             f"indices 0..{n - 1}.")
        try:
            return ResidualCache(blocks, reuse)
        except ValueError as err:
            raise WorldError(f"{err} Pass cache_reuse=0 to turn caching off.") from err

    def _negative_prompt(self, action: Action | None) -> str:
        """The text guidance pushes away from for ``action`` (see ``negative``)."""
        neg = negative_actions([action], self.negative)[0] if action is not None else None
        return self.negative_prompt if neg is None else action_prompt(neg, self.template)

    def _embed(self, text: str) -> tuple[torch.Tensor, str]:
        emb, source = self.prompts.encode(text)
        return emb.unsqueeze(0).to(self.device, self.dtype), source

    def _velocity(self, x: torch.Tensor, t: float, context: torch.Tensor, text: torch.Tensor
                  ) -> torch.Tensor:
        """The transformer's flow velocity for the whole sequence ``x`` (context + chunk)."""
        c = self.transformer.config
        fc = context.shape[2]
        if self.conditioning == "expand":
            hidden = torch.cat([context, x[:, :, fc:]], dim=2)
            per_frame = (hidden.shape[3] // c.patch_size[1]) * (hidden.shape[4] // c.patch_size[2])
            steps = torch.full((1, hidden.shape[2] * per_frame), float(t))
            steps[:, : fc * per_frame] = 0.0  # known frames are clean
        else:
            mask = torch.zeros(1, 4, x.shape[2], *x.shape[3:])
            mask[:, :, :fc] = 1.0
            y = torch.cat([context, torch.zeros_like(x[:, :, fc:])], dim=2)
            hidden = torch.cat([x, mask, y], dim=1)
            steps = torch.tensor([float(t)])
        kwargs = {}
        if self.image_embeds is not None:
            kwargs["encoder_hidden_states_image"] = self.image_embeds.to(self.device, self.dtype)
        out = self.transformer(hidden_states=hidden.to(self.device, self.dtype),
                               timestep=steps.to(self.device),
                               encoder_hidden_states=text, return_dict=False, **kwargs)[0]
        return out.float().cpu()

    def _texts(self, prompt: str, negative: str) -> tuple[torch.Tensor, torch.Tensor | None,
                                                          str]:
        text, source = self._embed(prompt)
        uncond = self._embed(negative)[0] if self.sampler.guidance_scale != 1.0 else None
        return text, uncond, source

    @torch.no_grad()
    def _sample(self, context: torch.Tensor, prompt: str, negative: str
                ) -> tuple[torch.Tensor, str]:
        """The next chunk after the dense ``context`` through diffusers' forward (baseline)."""
        fc = context.shape[2]
        shape = (1, context.shape[1], fc + self.chunk_latent_frames, *context.shape[3:])
        noise = torch.randn(shape, generator=self._generator)
        text, uncond, source = self._texts(prompt, negative)
        if self.conditioning == "expand":
            # Only the chunk is sampled; the context goes in clean each call.
            def velocity(x: torch.Tensor, sigma: float, emb: torch.Tensor) -> torch.Tensor:
                full = torch.cat([context, x], dim=2)
                return self._velocity(full, 1000.0 * sigma, context, emb)[:, :, fc:]

            return self.sampler(velocity, noise[:, :, fc:], text, uncond,
                                generator=self._generator), source

        # Wan 2.1 I2V denoises every frame; the mask and condition channels carry the context.
        def velocity(x: torch.Tensor, sigma: float, emb: torch.Tensor) -> torch.Tensor:
            return self._velocity(x, 1000.0 * sigma, context, emb)

        out = self.sampler(velocity, noise, text, uncond, generator=self._generator)
        return out[:, :, fc:], source

    @torch.no_grad()
    def _sample_tokens(self, history: torch.Tensor | None, prompt: str, frames: int,
                       negative: str | None = None) -> tuple[torch.Tensor, str]:
        """``frames`` new latent frames after the compressed ``history`` ``(1, C, n, h, w)``
        (None: from the prompt alone), through :func:`world.wan.history.token_velocity`."""
        z, s = self.codec.channels, self.codec.spatial
        x = torch.randn((1, z, frames, self.height // s, self.width // s),
                        generator=self._generator)
        text, uncond, source = self._texts(
            prompt, self.negative_prompt if negative is None else negative)
        concat = self.conditioning == "concat"
        tokens = None
        if history is not None and not concat:
            tokens = self.memory.embed(self.transformer, history)  # clean, the same each step
        if history is not None and concat:
            noise = torch.randn(history.shape, generator=self._generator)
            ones = torch.ones(1, 4, *history.shape[2:])
        image = self.image_embeds if concat else None
        # TI2V: the history is clean (timestep 0); I2V: one timestep, the mask says clean.
        kw = {"history_timestep": None if concat else 0.0, "image": image}
        noisy_at: dict[float, Any] = {}  # I2V: history tokens at the last sigma (cond = uncond)
        passes = {"cond": -1, "uncond": -1}  # sampling passes begun (AAM makes two)
        if self.cache is not None:
            self.cache.reset()

        def cache_call(key: str, sigma: float):
            # Every pass starts at sigma = 1; a residual from the end of one pass must not stand
            # in at the start of the next, so each pass keeps its own residuals.
            if sigma >= 1.0 - 1e-9:
                passes[key] += 1
            return self.cache.call(f"{key}/{max(passes[key], 0)}")

        def velocity(x: torch.Tensor, sigma: float, emb: torch.Tensor) -> torch.Tensor:
            hist = tokens
            if concat:
                if history is not None:
                    # Yume's I2V history: re-noised to the current level in the noisy channels.
                    if sigma not in noisy_at:
                        noisy = (1.0 - sigma) * history + sigma * noise
                        noisy_at.clear()
                        noisy_at[sigma] = self.memory.embed(
                            self.transformer, torch.cat([noisy, ones, history], dim=1))
                    hist = noisy_at[sigma]
                chunk = torch.cat([x, torch.zeros(1, 4, *x.shape[2:]), torch.zeros_like(x)], 1)
            else:
                chunk = x
            call = (None if self.cache is None
                    else cache_call("cond" if emb is text else "uncond", sigma))
            v = token_velocity(self.transformer, hist, chunk, 1000.0 * sigma, emb, cache=call,
                               **kw)
            return v.float().cpu()

        return self.sampler(velocity, x, text, uncond, generator=self._generator), source

    def _text_start(self, prompt: str) -> tuple[np.ndarray, torch.Tensor]:
        """The first frame and its latent, generated from ``prompt`` with no image context."""
        if self.conditioning == "concat":
            raise WorldError("This Wan 2.1 I2V transformer needs a start image or clip and "
                             "cannot start from text alone; pass image= or clip=, or use a "
                             "5B (TI2V) checkpoint.")
        if self.prompts.encode(prompt)[1] == "zeros":
            raise WorldError("Starting from text needs a text encoder or a prompt cache that "
                             "holds this prompt; give the checkpoint a text_encoder/ folder or "
                             "a prompt_embeds.safetensors with it.")
        latent, _ = self._sample_tokens(None, prompt, 1)
        return self.codec.decode(latent)[-1], latent

    # ------------------------------------------------------------------ WorldEngine
    @property
    def pose(self) -> np.ndarray:
        return self._state.pose()

    @property
    def history_tokens(self) -> int:
        """Tokens of the history context the next step uses (bounded when compressed)."""
        if self.history_mode == "recent":
            if self._history is None:
                return 0
            c = self.transformer.config
            n = min(self._history.shape[2], self.context_latent_frames)
            return n * (self._history.shape[3] // c.patch_size[1]) * (
                self._history.shape[4] // c.patch_size[2])
        return self.memory.tokens() if self.memory.started else 0

    def reset(self, seed: int | None = None, image: Any = None, clip: Any = None,
              prompt: str | None = None) -> Chunk:
        """Start from ``image``, a ``clip``, a text ``prompt`` or sandbox scene ``seed``.

        Images and clip frames are centre-cropped to the world's size. A clip's frames are
        VAE-encoded together (causal in time; the oldest are trimmed to ``1 + 4k`` frames) and
        become the history; its last frame is the first frame shown, the camera at the origin.
        Without image or clip, ``prompt`` (default: the constructor's) generates the first
        frame from text alone; without a prompt the first frame is the sandbox's for ``seed``.

        Raises
        ------
        WorldError
            For both an image and a clip, a text start this family or prompt source cannot do.
        """
        frames = check_start(image, clip)
        seed = self.seed if seed is None else int(seed)
        self._generator = torch.Generator().manual_seed(seed)
        prompt = self.prompt if prompt is None else prompt
        info: dict[str, Any] = {"seed": seed}
        if frames is not None:
            stride = self.codec.temporal
            frames = frames[(len(frames) - 1) % stride:]  # 1 + 4k frames, the newest kept
            video = np.stack([fit_image(f, self.height, self.width) for f in frames])
            latents, source = self.codec.encode(video), "clip"
            info["clip_frames"] = len(video)
        elif image is not None:
            video, source = fit_image(image, self.height, self.width)[None], "image"
            latents = self.codec.encode(video)
        elif prompt:
            frame, latents = self._text_start(prompt)
            video, source = frame[None], "text"
            info["prompt"] = prompt
        else:
            from world.mvdt.engine import sandbox_first_frame  # the same seeded first frames

            frame, source = sandbox_first_frame(seed, self.height, self.width)
            video = fit_image(frame, self.height, self.width)[None]
            latents = self.codec.encode(video)
        self._history = latents
        self.memory.reset(latents)
        info.update(source=source, history_frames=int(latents.shape[2]
                                                      if self.history_mode == "recent"
                                                      else len(self.memory)))
        self._state = CameraState()
        self._frame_index = 0
        return Chunk(frames=video[-1:].copy(), timestamps=np.zeros(1),
                     poses=self._state.pose()[None], action=IDLE, info=info)

    def step(self, action: Action | str) -> Chunk:
        """Generate the next ``frames_per_step`` frames under ``action``."""
        if isinstance(action, str):
            try:
                action = parse_action(action)
            except ActionError as err:
                raise WorldError(str(err)) from err
        if not isinstance(action, Action):
            raise WorldError(f"step() needs an Action or a key string such as 'W ->', not "
                             f"{type(action).__name__}.")
        if self._history is None:
            self.reset()
        t0 = time.perf_counter()
        prompt = action_prompt(action, self.template)
        negative = self._negative_prompt(action)
        tokens = self.history_tokens
        if self.history_mode == "recent":
            context = self._history[:, :, -self.context_latent_frames:]
            latents, source = self._sample(context, prompt, negative)
            last, slots = context[:, :, -1:], int(context.shape[2])
            self._history = torch.cat([self._history, latents], dim=2)[
                :, :, -self.context_latent_frames:]
        else:
            slots, last = self.memory.slots(), self.memory.last
            latents, source = self._sample_tokens(self.memory.latents(), prompt,
                                                  self.chunk_latent_frames, negative)
            self.memory.append(latents)
            self._history = latents
        # Decode with the last known latent in front (causal VAE), then drop its picture.
        frames = self.codec.decode(torch.cat([last, latents], dim=2))[1:]
        poses, stamps = [], []
        for _ in range(len(frames)):
            self._state = apply_action(self._state, action, self.motion)
            self._frame_index += 1
            poses.append(self._state.pose())
            stamps.append(self._frame_index / self.frame_rate)
        info = {"generation_time": time.perf_counter() - t0, "prompt": prompt,
                "prompt_source": source, "sampler": self.sampler.name,
                "model_evals": self.sampler.num_evals,
                "context_latent_frames": slots, "history_tokens": tokens,
                "history": self.history_mode, "conditioning": self.conditioning}
        if self.sampler.guidance_scale != 1.0:
            info["negative_prompt"] = negative
        if self.cache is not None:
            info["cache_skipped"] = self.cache.skipped  # block runs reused in this chunk
        return Chunk(frames=frames, timestamps=np.asarray(stamps), poses=np.stack(poses),
                     action=action, info=info)
