"""The Masked Video Diffusion Transformer (Yume-style) built on diffusers' Wan blocks.

Reused from ``diffusers.models.transformers.transformer_wan``: :class:`WanTransformerBlock`
(self-attention with RoPE, text cross-attention, FFN, AdaLN modulation incl. the per-token
Wan 2.2 TI2V path), :class:`WanTimeTextImageEmbedding` (sinusoidal time embedding + text
projection) and Wan's output head layout. Written here because Wan's cannot do it:
:func:`rope_from_positions` (3D RoPE from explicit, possibly fractional, per-token (t, h, w)
positions, needed for the compressed history tokens and for masked token subsets; on a regular
grid it equals :class:`WanRotaryPosEmbed`), the history patchification and the MAE masking path.

Sequence layout: ``[history tokens | chunk tokens]``. History tokens are clean (per-token
timestep 0); chunk tokens carry the noise level ``sigma``. Only chunk tokens are projected out.
With ``refiner_channels`` set, :class:`ChunkRefiner` corrects the projected x0 prediction from
the newest history frame at full latent resolution (texture that cannot pass through the
transformer's narrow tokens).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import (
    WanTimeTextImageEmbedding,
    WanTransformerBlock,
)
from torch import nn

from world.mvdt.action_encoder import ActionEncoder, ActionLike, ActionTokenizer
from world.mvdt.checkpoint import load_into, save_checkpoint
from world.mvdt.config import MVDTConfig
from world.mvdt.masking import TokenMask, gather_tokens, scatter_tokens
from world.mvdt.memory import HistoryTokens, embed_history, patch_embed


def rope_from_positions(
    positions: torch.Tensor, head_dim: int, theta: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Wan's 3D RoPE (same split and interleaving) for explicit positions.

    Parameters
    ----------
    positions : Tensor (L, 3) or (B, L, 3)
        (t, h, w) per token; may be fractional.
    head_dim : int
        Attention head size; split as Wan does: h = w = 2 * (head_dim // 6), t = the rest.

    Returns
    -------
    (cos, sin) : Tensors (B or 1, L, 1, head_dim), float32
    """
    if positions.ndim == 2:
        positions = positions.unsqueeze(0)
    hw = 2 * (head_dim // 6)
    dims = (head_dim - 2 * hw, hw, hw)
    pos = positions.to(torch.float64)
    angles = []
    for axis, d in enumerate(dims):
        freqs = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64, device=pos.device) / d))
        angles.append(pos[..., axis : axis + 1] * freqs)  # (B, L, d/2)
    ang = torch.cat(angles, dim=-1).repeat_interleave(2, dim=-1)
    return ang.cos().float().unsqueeze(2), ang.sin().float().unsqueeze(2)


def grid_positions(frames: int, height: int, width: int, t0: int = 0,
                   device: torch.device | None = None) -> torch.Tensor:
    """(frames*height*width, 3) integer (t, h, w) positions in frame-major order."""
    t = torch.arange(t0, t0 + frames, device=device)
    h = torch.arange(height, device=device)
    w = torch.arange(width, device=device)
    grid = torch.stack(torch.meshgrid(t, h, w, indexing="ij"), dim=-1)
    return grid.reshape(-1, 3).float()


class ChunkRefiner(nn.Module):
    """Convolutional correction of the coarse x0 prediction at latent resolution.

    Input per chunk frame: the coarse prediction, the newest clean history frame (the reference),
    the noisy chunk frame and the noise level as one constant channel. Three 3x3 convolutions
    (receptive field 7 latent pixels) cover the few-pixel shifts one chunk of camera motion makes.
    The last layer starts at zero, so a fresh refiner leaves the transformer's output unchanged
    (a checkpoint without it can be fine-tuned into one).

    With ``cond_dim`` > 0 the refiner also knows which action it renders and where in the chunk
    the frame lies: the frame's position is one more constant channel, and the pooled action-
    prompt embedding modulates the first layer (scale and shift, as SD3 and Flux add the pooled
    prompt to their modulation vector), so a step forward can be drawn as a zoom of the reference.
    """

    def __init__(self, channels: int, hidden: int, cond_dim: int = 0,
                 warp_sources: int = 0, gate_bias: float = -3.0) -> None:
        super().__init__()
        self.cond_dim = cond_dim
        self.warp_sources = int(warp_sources)
        extra = 2 if cond_dim else 1
        self.net = nn.Sequential(
            nn.Conv2d(3 * channels + extra, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, channels, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        if cond_dim:
            self.film = nn.Linear(cond_dim, 2 * hidden)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        if self.warp_sources:
            # Geometric memory (world.mvdt.warp): the warps enter the first layer (zero-initialised,
            # so a warm start from a refiner without them begins where it was) and a gate head
            # blends each warp into the output where it is valid.
            s = self.warp_sources
            self.warp_in = nn.Conv2d(s * (channels + 1), hidden, 3, padding=1, bias=False)
            nn.init.zeros_(self.warp_in.weight)
            self.gate = nn.Conv2d(hidden, s * channels, 3, padding=1)
            nn.init.zeros_(self.gate.weight)
            nn.init.constant_(self.gate.bias, float(gate_bias))

    def forward(self, coarse: torch.Tensor, reference: torch.Tensor | None, noisy: torch.Tensor,
                sigma: torch.Tensor, action: torch.Tensor | None = None,
                warp: torch.Tensor | None = None) -> torch.Tensor:
        """``coarse``, ``noisy``: (B, C, F, H, W); ``reference``: (B, C, H, W) or None;
        ``action``: pooled action-prompt embedding (B, cond_dim), used when ``cond_dim`` > 0;
        ``warp``: (B, S (C + 1), F, H, W) geometric-memory conditioning (each source: encoded
        warp then validity), used when the refiner has warp sources (None = all zeros)."""
        b, c, f, h, w = coarse.shape
        ref = (torch.zeros_like(coarse) if reference is None
               else reference.to(coarse).unsqueeze(2).expand(-1, -1, f, -1, -1))
        parts = [coarse, ref, noisy.to(coarse),
                 sigma.to(coarse).reshape(b, 1, 1, 1, 1).expand(b, 1, f, h, w)]
        if self.cond_dim:
            where = torch.arange(1, f + 1, dtype=coarse.dtype, device=coarse.device) / f
            parts.append(where.reshape(1, 1, f, 1, 1).expand(b, 1, f, h, w))
        x = torch.cat(parts, dim=1).transpose(1, 2).reshape(b * f, -1, h, w)
        first, rest = self.net[0], self.net[1:]
        y = first(x)
        wp = None
        if self.warp_sources:
            s = self.warp_sources
            if warp is None:
                warp = coarse.new_zeros(b, s * (c + 1), f, h, w)
            wp = warp.to(coarse).transpose(1, 2).reshape(b * f, s * (c + 1), h, w)
            y = y + self.warp_in(wp)
        if self.cond_dim:
            scale, shift = self.film(action.to(y)).repeat_interleave(f, 0).chunk(2, dim=1)
            y = y * (1 + scale[..., None, None]) + shift[..., None, None]
        if wp is None:
            return coarse + rest(y).reshape(b, f, c, h, w).transpose(1, 2)
        feats = self.net[1:4](y)
        refined = coarse.transpose(1, 2).reshape(b * f, c, h, w) + self.net[4](feats)
        # Residual over the warp, as a blend: per position and channel a softmax over the
        # model's own estimate (logit 0) and each warp (learnt logit + log of its validity), so
        # a warp never counts where it samples outside its source frame.
        parts = wp.reshape(b * f, s, c + 1, h, w)
        warps, valid = parts[:, :, :c], parts[:, :, c:]
        weight_log = torch.where(valid > 0, valid.clamp_min(1e-12).log(), -1e4)
        logits = self.gate(feats).reshape(b * f, s, c, h, w) + weight_log
        logits = torch.cat([logits.new_zeros(b * f, 1, c, h, w), logits], dim=1)
        weights = logits.softmax(dim=1)
        out = weights[:, 0] * refined + (weights[:, 1:] * warps).sum(dim=1)
        return out.reshape(b, f, c, h, w).transpose(1, 2)


X0_SIGMA_MIN = 0.05  # smallest sigma divided by when converting an x0 prediction to velocity


class MVDTModel(nn.Module):
    """Video DiT predicting the flow velocity ``eps - x0`` of the next chunk.

    Parameters
    ----------
    config : MVDTConfig

    Notes
    -----
    ``forward(x, sigma, context, history=None, mask=None, cache=None)``:

    - ``x``: noisy chunk latents ``(B, C, F, H, W)``;
    - ``sigma``: noise level in [0, 1], ``(B,)`` or scalar;
    - ``context``: action tokens from :meth:`encode_actions` ``(B, S, action_dim)``;
    - ``history``: clean history latents ``(B, C, Fh, H, W)`` or pre-embedded
      :class:`HistoryTokens` (:meth:`embed_history`, done once per chunk when sampling);
    - ``mask``: a :class:`TokenMask` for the masked training pass (None = no masking);
    - ``cache``: a :class:`world.mvdt.cache.CacheCall` for residual caching at inference;
    - ``warp``: geometric-memory conditioning ``(B, S (C + 1), F, H, W)`` of a model with
      ``config.warp_sources`` (:mod:`world.mvdt.warp`): added to the chunk tokens through a
      zero-initialised patch embedding and blended into the x0 estimate by the refiner's gate.
    """

    def __init__(self, config: MVDTConfig) -> None:
        super().__init__()
        self.config = config
        c, d = config.latent_channels, config.dim
        patch = tuple(config.patch_size)
        self.tokenizer = ActionTokenizer(
            config.action_vocab, config.action_max_tokens, config.action_template)
        self.action_encoder = ActionEncoder(
            len(config.action_vocab), config.action_max_tokens, config.action_dim,
            config.action_layers, config.action_heads, config.action_ffn_dim,
        )
        self.patch_embedding = nn.Conv3d(c, d, kernel_size=patch, stride=patch)
        self.history_level_embed = nn.Parameter(torch.zeros(len(config.history_schedule) + 1, d))
        self.condition_embedder = WanTimeTextImageEmbedding(
            dim=d, time_freq_dim=config.freq_dim, time_proj_dim=6 * d,
            text_embed_dim=config.action_dim,
        )

        def block() -> WanTransformerBlock:
            return WanTransformerBlock(
                d, config.ffn_dim, config.num_heads, "rms_norm_across_heads", True, config.eps)

        self.encoder_blocks = nn.ModuleList(block() for _ in range(config.num_encoder_blocks))
        self.interpolator = block()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        nn.init.normal_(self.mask_token, std=0.02)
        self.decoder_blocks = nn.ModuleList(block() for _ in range(config.num_decoder_blocks))
        self.norm_out = FP32LayerNorm(d, config.eps, elementwise_affine=False)
        self.proj_out = nn.Linear(d, c * math.prod(patch))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, d) / d**0.5)
        self.refiner = (ChunkRefiner(c, config.refiner_channels,
                                     d if config.refiner_action else 0,
                                     len(config.warp_sources), config.warp_gate_bias)
                        if config.refiner_channels else None)
        # Token-level view of the geometric memory: zero-initialised, so a warm start from a
        # model without it begins with that model's behaviour.
        self.warp_embedding = None
        if config.warp_sources:
            self.warp_embedding = nn.Conv3d(config.warp_channels, d, kernel_size=patch,
                                            stride=patch, bias=False)
            nn.init.zeros_(self.warp_embedding.weight)
        self._kernel_cache: dict = {}
        self._kernel_cache_key: tuple | None = None

    # ------------------------------------------------------------------ inputs
    @property
    def blocks(self) -> list[WanTransformerBlock]:
        """Blocks run at inference, in order (encoder then decoder); cache indices refer here."""
        return [*self.encoder_blocks, *self.decoder_blocks]

    @property
    def device(self) -> torch.device:
        return self.proj_out.weight.device

    def encode_actions(self, actions: Sequence[ActionLike] | torch.Tensor) -> torch.Tensor:
        """Action-prompt tokens ``(B, S, action_dim)``.

        ``actions``: a list of :class:`~control.actions.Action`, prompt strings or ``None`` (the
        null prompt for classifier-free guidance), or a LongTensor of action indices (0-80,
        ``-1`` = null prompt).
        """
        if isinstance(actions, torch.Tensor):
            from control.actions import Action

            actions = [None if int(i) < 0 else Action.from_index(int(i)) for i in actions.tolist()]
        ids = self.tokenizer(list(actions)).to(self.device)
        return self.action_encoder(ids)

    def embed_history(
        self, history: torch.Tensor | None, batch: int | None = None
    ) -> HistoryTokens:
        """Embed clean history latents ``(B, C, Fh, H, W)`` with the compression schedule."""
        if history is None or history.shape[2] == 0:
            b = batch if batch is not None else (1 if history is None else history.shape[0])
            return HistoryTokens(
                torch.zeros(b, 0, self.config.dim, device=self.device),
                torch.zeros(0, 3, device=self.device), 0)
        if history.ndim == 4:
            history = history.unsqueeze(0)
        self._check_latents(history, "history")
        weight = self.patch_embedding.weight
        cache = None
        if not torch.is_grad_enabled():
            # Interpolated kernels depend only on the weights: reuse them while those are unchanged.
            key = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
            if self._kernel_cache_key != key:
                self._kernel_cache, self._kernel_cache_key = {}, key
            cache = self._kernel_cache
        return embed_history(
            history, weight, self.patch_embedding.bias, self.config, self.history_level_embed,
            cache,
        )

    def _check_latents(self, x: torch.Tensor, what: str) -> None:
        cfg = self.config
        if x.ndim != 5 or x.shape[1] != cfg.latent_channels or x.shape[3:] != (
                cfg.latent_height, cfg.latent_width):
            raise ValueError(
                f"{what} latents must have shape (B, {cfg.latent_channels}, F, "
                f"{cfg.latent_height}, {cfg.latent_width}), got {tuple(x.shape)}.")

    # ------------------------------------------------------------------ forward pieces
    def _conditioning(self, sigma: torch.Tensor, context: torch.Tensor):
        """Time projections for the chunk (sigma) and history (t = 0), and projected context."""
        b = sigma.shape[0]
        t = torch.cat([sigma * self.config.timestep_scale, sigma.new_zeros(1)])
        temb, tproj, ctx, _ = self.condition_embedder(t, context)
        tproj = tproj.unflatten(1, (6, -1))
        return temb[:b], temb[b:], tproj[:b], tproj[b:], ctx

    @staticmethod
    def _token_temb(t_hist: torch.Tensor, t_chunk: torch.Tensor, n_hist: int, n_chunk: int):
        """Per-token modulation (B, L, 6, D): history tokens at t = 0, chunk tokens at sigma."""
        b = t_chunk.shape[0]
        parts = []
        if n_hist:
            parts.append(t_hist.unsqueeze(1).expand(b, n_hist, -1, -1))
        parts.append(t_chunk.unsqueeze(1).expand(-1, n_chunk, -1, -1))
        return torch.cat(parts, dim=1)

    def _run_blocks(self, blocks, start: int, x, ctx, temb, rope, cache):
        for i, blk in enumerate(blocks):
            if cache is None:
                x = blk(x, ctx, temb, rope)
            else:
                x = cache.apply(start + i, lambda h, blk=blk: blk(h, ctx, temb, rope), x)
        return x

    def side_interpolate(
        self, encoded: torch.Tensor, mask: TokenMask, n_hist: int, ctx, temb, rope,
    ) -> torch.Tensor:
        """Fill dropped chunk positions (side-interpolator) and return the full sequence.

        ``encoded``: (B, n_hist + n_keep, D) encoder output. The mask token is placed at dropped
        positions, one extra block runs on the full sequence, and its output is kept only at
        masked positions: ``x = y * m + (1 - m) * x_before``.
        """
        b, _, d = encoded.shape
        hist, kept = encoded[:, :n_hist], encoded[:, n_hist:]
        full = self.mask_token.to(encoded.dtype).expand(b, mask.num_tokens, d)
        before = torch.cat([hist, scatter_tokens(full, mask.keep, kept)], dim=1)
        y = self.interpolator(before, ctx, temb, rope)
        m = torch.cat([before.new_zeros(b, n_hist), mask.dropped().to(before)], dim=1).unsqueeze(-1)
        return y * m + (1 - m) * before

    def forward(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor | float,
        context: torch.Tensor,
        history: torch.Tensor | HistoryTokens | None = None,
        mask: TokenMask | None = None,
        cache=None,
        warp: torch.Tensor | None = None,
    ) -> torch.Tensor:
        cfg = self.config
        self._check_latents(x, "chunk")
        b, _, f, h, w = x.shape
        _, ph, pw = cfg.patch_size
        gh, gw = h // ph, w // pw
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(b)
        if context.shape[0] != b:
            context = context.expand(b, -1, -1)
        if not isinstance(history, HistoryTokens):
            history = self.embed_history(history, batch=b)
        history = history.repeat(b)
        if mask is not None and cache is not None:
            raise ValueError("Residual caching is for inference; it cannot run with a token mask.")

        chunk = patch_embed(x, self.patch_embedding.weight, self.patch_embedding.bias)
        if warp is not None and self.warp_embedding is None:
            raise ValueError("This model has no geometric memory (config.warp_sources is "
                             "empty); call it without warp=.")
        if warp is not None:
            if warp.shape[0] != b:
                warp = warp.repeat(b // warp.shape[0], 1, 1, 1, 1)
            if warp.shape[1:] != (cfg.warp_channels, f, h, w):
                raise ValueError(f"warp conditioning must have shape (B, {cfg.warp_channels}, "
                                 f"{f}, {h}, {w}), got {tuple(warp.shape)}.")
            warp = warp.to(x)
            chunk = chunk + patch_embed(warp, self.warp_embedding.weight, None)
        n_hist, n_chunk = len(history), chunk.shape[1]
        pos_chunk = grid_positions(f, gh, gw, history.num_slots, x.device)
        pos_all = torch.cat([history.positions.to(x.device), pos_chunk], dim=0)
        temb_c, _, tp_chunk, tp_hist, ctx = self._conditioning(sigma, context)
        temb = self._token_temb(tp_hist, tp_chunk, n_hist, n_chunk)
        rope_full = rope_from_positions(pos_all, cfg.head_dim, cfg.rope_theta)

        if mask is None:
            hidden = torch.cat([history.tokens, chunk], dim=1)
            hidden = self._run_blocks(self.encoder_blocks, 0, hidden, ctx, temb, rope_full, cache)
        else:
            if mask.keep.shape[0] != b or mask.num_tokens != n_chunk:
                raise ValueError(f"Token mask is for {mask.keep.shape[0]} x {mask.num_tokens} "
                                 f"tokens but the chunk has {b} x {n_chunk}.")
            keep = mask.keep.to(x.device)
            kept = gather_tokens(chunk, keep)
            pos_enc = torch.cat(
                [history.positions.to(x.device).expand(b, -1, -1), pos_chunk[keep]], dim=1)
            rope_enc = rope_from_positions(pos_enc, cfg.head_dim, cfg.rope_theta)
            temb_enc = self._token_temb(tp_hist, tp_chunk, n_hist, mask.num_keep)
            hidden = torch.cat([history.tokens, kept], dim=1)
            hidden = self._run_blocks(self.encoder_blocks, 0, hidden, ctx, temb_enc, rope_enc, None)
            hidden = self.side_interpolate(hidden, mask, n_hist, ctx, temb, rope_full)
        hidden = self._run_blocks(
            self.decoder_blocks, len(self.encoder_blocks), hidden, ctx, temb, rope_full, cache)

        # Output head on chunk tokens only (Wan's norm_out + scale/shift + proj_out).
        out = hidden[:, n_hist:]
        shift, scale = (self.scale_shift_table + temb_c.unsqueeze(1)).chunk(2, dim=1)
        out = (self.norm_out(out.float()) * (1 + scale) + shift).type_as(out)
        out = self.proj_out(out)
        c = cfg.latent_channels
        out = out.reshape(b, f, gh, gw, 1, ph, pw, c).permute(0, 7, 1, 4, 2, 5, 3, 6)
        out = out.reshape(b, c, f, gh * ph, gw * pw)
        if cfg.prediction == "x0":
            # x-prediction: the head gives the clean chunk; the velocity follows from x_t. The
            # floor on sigma keeps the 1/sigma factor bounded near the data end (as in JiT).
            if self.refiner is not None:
                pooled = ctx.mean(dim=1) if cfg.refiner_action else None
                out = self.refiner(out, history.reference, x, sigma, pooled, warp)
            s = sigma.reshape(-1, 1, 1, 1, 1).to(out.dtype).clamp_min(X0_SIGMA_MIN)
            out = (x - out) / s
        return out

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # diffusers-style conveniences over world.mvdt.checkpoint
    def save_pretrained(self, directory, dtype: torch.dtype = torch.float32):
        """Write ``config.json`` + ``model.safetensors`` (see :func:`save_checkpoint`)."""
        return save_checkpoint(self, directory, dtype)

    @classmethod
    def from_pretrained(cls, directory, **kwargs) -> MVDTModel:
        """Load a checkpoint folder safely (see :func:`load_checkpoint`)."""
        return load_into(directory, cls, **kwargs)


def load_checkpoint(
    directory: str | Path,
    expected_config: MVDTConfig | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> MVDTModel:
    """Build the MVDT model of ``directory/config.json`` and load its weights (eval mode).

    Parameters
    ----------
    directory : path
        Checkpoint folder with ``config.json`` and ``model.safetensors``.
    expected_config : MVDTConfig, optional
        If given, the checkpoint's config must equal it.
    device, dtype
        Where and in which precision to put the model.

    Raises
    ------
    WorldError
        Missing files, invalid config, config mismatch, corrupt/truncated/non-safetensors
        weights, or weights of another architecture (see :func:`~world.mvdt.checkpoint.load_into`).
    """
    return load_into(directory, MVDTModel, expected_config, device, dtype)
