"""MVDT world engine: a Yume-style Masked Video Diffusion Transformer.

Stable API (used by ``world/train.py``, ``world/evaluate.py`` and the distilled student)::

    from world.mvdt import MVDTConfig, MVDTModel, preset, training_loss, get_sampler
    from world.mvdt import MVDTPipeline, save_checkpoint, load_checkpoint, HistoryBuffer

    cfg = preset("small")                       # or "tiny" (tests), MVDTConfig(...) / from_json
    model = MVDTModel(cfg)

Shapes: latents are ``(B, C, F, H, W)`` with ``C = cfg.latent_channels``,
``H, W = cfg.latent_height, cfg.latent_width``; a chunk has ``F = cfg.chunk_latent_frames``.

Training (rectified flow; loss only on the chunk; masked + unmasked pass; CFG prompt drop)::

    batch = {"history": hist,          # (B, C, Fh, H, W) clean latents, oldest first, or None
             "target": x0,             # (B, C, F, H, W) chunk to generate
             "actions": [Action, ...]} # or LongTensor of indices 0-80 (-1 = null prompt)
    loss, logs = training_loss(model, batch, generator=g)   # masked=True, unmasked=True
    loss.backward()

Lower-level: ``context = model.encode_actions(actions)`` (None = null prompt),
``hist = model.embed_history(hist_latents)`` (a :class:`HistoryTokens`, compressed, bounded),
``v = model(x_t, sigma, context, hist, mask=None, cache=None)`` -> velocity ``eps - x0``,
``flow_matching_loss(model, x0, context, hist, mask, t, noise)``; ``add_noise(x0, eps, t)``,
``sample_timesteps(B, shift)``. Distillation: ``x0_hat = x_t - sigma * v``.

Sampling (samplers only see ``velocity(x, sigma, cond)``; sigma is a float)::

    pipe = MVDTPipeline(model, codec, sampler="euler", num_steps=4, guidance_scale=1.0)
    latents = pipe.generate_latents(history_latents, action, generator=g)   # (C, F, H, W)
    sampler = get_sampler("tts-sde", num_steps=50, eta=0.3, interval=2, lookahead=2)
    x0 = sampler(velocity, noise, cond, uncond)

Samplers: ``"euler"`` (default 50 steps, shift 3, CFG 5), ``"tts-sde"``, ``"aam"``; any step count
works (4-step student: ``num_steps=4, guidance_scale=1``).

Checkpoints: ``save_checkpoint(model, dir, dtype=torch.float16)`` writes ``model.safetensors`` +
``config.json``; ``load_checkpoint(dir)`` validates and never runs code. Default shipped folder:
:data:`DEFAULT_CHECKPOINT` (``world/checkpoints/mvdt-warp/``, the model with the geometric memory;
``mvdt-sandbox/`` is the one it was warm-started from).

Codec protocol (frames <-> latents): ``encode(uint8 (n, H, W, 3)) -> Tensor (C, n_lat, h, w)``,
``decode(Tensor (C, n_lat, h, w)) -> uint8 (n, H, W, 3)``. ``cfg.codec`` is data describing it:
``{"type": "pixel", "factor": f}`` is handled here (:class:`PixelCodec`); any other type is
built by ``world.vae.load_codec(cfg.codec, checkpoint_dir)``.

Inference reuse (:mod:`world.mvdt.reuse`): without autograd, what depends only on the prompt,
the noise level, the positions or the chunk's warp (and the warp grids of a repeated camera
motion) is computed once and kept, and guided steps run cond and uncond as one batch; the
frames are the same to the bit. ``YUME_MVDT_REUSE=0`` or ``reuse.disabled()`` turns it off.

History: the first latent frame is always kept, newer frames are compressed by the schedule of
``cfg.history_schedule`` (reference section 3) and older ones dropped (:class:`HistoryBuffer`);
history tokens are clean with per-token timestep 0 (Wan 2.2 TI2V-style modulation).

Engine: :class:`world.mvdt.engine.MVDTWorld` (registry name ``"mvdt"``): ``reset(seed=...)``
renders the first frame with the sandbox, ``reset(image=...)`` takes any image;
``step(action) -> Chunk``. Its sampler comes from an optional ``sampler.json`` in the checkpoint
folder, e.g. ``{"name": "euler", "params": {"num_steps": 4, "guidance_scale": 1.0}}`` for a
distilled student (default: Euler, 50 steps, CFG 5), or from ``sampler=`` / ``sampler_params=``.
"""

from world.mvdt.cache import ResidualCache, block_importance, least_important
from world.mvdt.checkpoint import DEFAULT_CHECKPOINT, save_checkpoint
from world.mvdt.config import PRESETS, MVDTConfig, preset
from world.mvdt.engine import MVDTWorld, prepare_image
from world.mvdt.masking import TokenMask, random_token_mask
from world.mvdt.memory import HistoryBuffer, HistoryTokens, history_plan, history_token_count
from world.mvdt.model import MVDTModel, load_checkpoint
from world.mvdt.pipeline import MVDTPipeline, PixelCodec, codec_from_config
from world.mvdt.samplers import SAMPLERS, Sampler, get_sampler, shifted_sigmas
from world.mvdt.training import (
    add_noise,
    flow_matching_loss,
    sample_timesteps,
    self_generated_history,
    shift_sigma,
    training_loss,
)

__all__ = [
    "DEFAULT_CHECKPOINT", "PRESETS", "SAMPLERS", "HistoryBuffer", "HistoryTokens", "MVDTConfig",
    "MVDTModel", "MVDTPipeline", "MVDTWorld", "PixelCodec", "ResidualCache", "Sampler", "TokenMask",
    "add_noise", "block_importance", "codec_from_config", "flow_matching_loss", "get_sampler",
    "history_plan", "history_token_count", "least_important", "load_checkpoint", "prepare_image",
    "preset",
    "random_token_mask", "sample_timesteps", "save_checkpoint", "shift_sigma", "shifted_sigmas",
    "training_loss", "self_generated_history",
]
