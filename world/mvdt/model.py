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
from torch.nn import functional as F

from world.mvdt import reuse
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


def _rope_halves(rope: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The cosines and sines Wan's rotary embedding reads (even and odd lanes), contiguous."""
    cos, sin = rope
    return cos[..., 0::2].contiguous(), sin[..., 1::2].contiguous()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's ``apply_rotary_emb`` on (B, L, heads, head_dim): the same products and sums."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


def _modulation(table: torch.Tensor, temb: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A Wan block's per-token AdaLN terms: ``(1 + scale, shift, gate)`` of the attention and
    of the feed-forward, as ``WanTransformerBlock.forward`` derives them from ``temb``."""
    shift, scale, gate, c_shift, c_scale, c_gate = (
        m.squeeze(2) for m in (table.unsqueeze(0) + temb.float()).chunk(6, dim=2))
    return 1 + scale, shift, gate, 1 + c_scale, c_shift, c_gate


def _cross_kv(attn, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values of the prompt in a cross-attention (what ``WanAttnProcessor`` computes
    from the encoder states), laid out (B, heads, S, head_dim) for the attention kernel."""
    key = attn.norm_k(attn.to_k(ctx)).unflatten(2, (attn.heads, -1))
    value = attn.to_v(ctx).unflatten(2, (attn.heads, -1))
    return key.permute(0, 2, 1, 3), value.permute(0, 2, 1, 3)


def _attend(attn, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Diffusers' native attention backend and Wan's output projection; query (B, L, heads, d),
    key and value already (B, heads, S, d)."""
    out = F.scaled_dot_product_attention(query.permute(0, 2, 1, 3), key, value,
                                         attn_mask=None, dropout_p=0.0, is_causal=False)
    out = out.permute(0, 2, 1, 3).flatten(2, 3).type_as(query)
    return attn.to_out[1](attn.to_out[0](out))


def _fused_qkv(attn) -> tuple[torch.Tensor, torch.Tensor]:
    """The query, key and value projections of a self-attention as one weight and bias (each
    output column is the same dot product as in its own projection)."""
    return (torch.cat([attn.to_q.weight, attn.to_k.weight, attn.to_v.weight]),
            torch.cat([attn.to_q.bias, attn.to_k.bias, attn.to_v.bias]))


def _wan_block(blk: WanTransformerBlock, h: torch.Tensor, mod, rope, kv, qkv,
               first_row: int = 0) -> torch.Tensor:
    """``WanTransformerBlock.forward`` with per-token modulation, given its modulation terms
    (:func:`_modulation`), the RoPE halves (:func:`_rope_halves`), the prompt's keys and values
    (:func:`_cross_kv`) and the fused query/key/value weights (:func:`_fused_qkv`): the same
    operations on the same numbers, minus the ones whose results are given.

    ``first_row`` > 0 returns only the rows from there on (the chunk tokens of the last block):
    every row but those is still a key and a value of the self-attention, the rest of the block
    works row by row and the discarded rows' results are never computed.
    """
    scale1, shift1, gate1, scale3, shift3, gate3 = mod
    cos, sin = rope
    a1, a2 = blk.attn1, blk.attn2
    # 1. Self-attention.
    x = (blk.norm1(h.float()) * scale1 + shift1).type_as(h)
    q, k, v = F.linear(x, *qkv).chunk(3, dim=-1)
    if first_row:
        q, cos_q, sin_q = q[:, first_row:], cos[:, first_row:], sin[:, first_row:]
        h, gate1 = h[:, first_row:], gate1[:, first_row:]
        scale3, shift3, gate3 = scale3[:, first_row:], shift3[:, first_row:], gate3[:, first_row:]
    else:
        cos_q, sin_q = cos, sin
    q = _rotate(a1.norm_q(q).unflatten(2, (a1.heads, -1)), cos_q, sin_q)
    k = _rotate(a1.norm_k(k).unflatten(2, (a1.heads, -1)), cos, sin)
    v = v.unflatten(2, (a1.heads, -1))
    out = _attend(a1, q, k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3))
    h = (h.float() + out * gate1).type_as(h)
    # 2. Cross-attention to the prompt.
    x = blk.norm2(h.float()).type_as(h)
    q = a2.norm_q(a2.to_q(x)).unflatten(2, (a2.heads, -1))
    h = h + _attend(a2, q, *kv)
    # 3. Feed-forward.
    x = (blk.norm3(h.float()) * scale3 + shift3).type_as(h)
    return (h.float() + blk.ffn(x).float() * gate3).type_as(h)


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
                 warp_sources: int = 0, gate_bias: float = -3.0, trust: float = 0.0) -> None:
        super().__init__()
        # Added to the warp logits in eval mode only: training keeps learning the gate as is.
        self.trust = float(trust)
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

    def warp_inputs(self, warp: torch.Tensor, like: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the refiner derives from the warp conditioning alone: the first layer's warp
        term, the warps ``(B F, S, C, H, W)`` and the log-validity of the gate's blend.

        ``like``: a tensor of the dtype and device of the coarse prediction. They are the same
        for every sampler step of a chunk, so inference computes them once
        (:mod:`world.mvdt.reuse`).
        """
        b, sc, f, h, w = warp.shape
        s = self.warp_sources
        c = sc // s - 1
        wp = warp.to(like).transpose(1, 2).reshape(b * f, s * (c + 1), h, w)
        parts = wp.reshape(b * f, s, c + 1, h, w)
        warps, valid = parts[:, :, :c], parts[:, :, c:]
        weight_log = torch.where(valid > 0, valid.clamp_min(1e-12).log(), -1e4)
        return self.warp_in(wp), warps, weight_log

    def forward(self, coarse: torch.Tensor, reference: torch.Tensor | None, noisy: torch.Tensor,
                sigma: torch.Tensor, action: torch.Tensor | None = None,
                warp: torch.Tensor | None = None,
                warp_inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                ) -> torch.Tensor:
        """``coarse``, ``noisy``: (B, C, F, H, W); ``reference``: (B, C, H, W) or None;
        ``action``: pooled action-prompt embedding (B, cond_dim), used when ``cond_dim`` > 0;
        ``warp``: (B, S (C + 1), F, H, W) geometric-memory conditioning (each source: encoded
        warp then validity), used when the refiner has warp sources (None = all zeros);
        ``warp_inputs``: :meth:`warp_inputs` of ``warp``, computed before (it then replaces
        ``warp``)."""
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
        if self.warp_sources:
            s = self.warp_sources
            if warp_inputs is None:
                if warp is None:
                    warp = coarse.new_zeros(b, s * (c + 1), f, h, w)
                warp_inputs = self.warp_inputs(warp, coarse)
            warp_term, warps, weight_log = warp_inputs
            y = y + warp_term
        if self.cond_dim:
            scale, shift = self.film(action.to(y)).repeat_interleave(f, 0).chunk(2, dim=1)
            y = y * (1 + scale[..., None, None]) + shift[..., None, None]
        if not self.warp_sources:
            return coarse + rest(y).reshape(b, f, c, h, w).transpose(1, 2)
        feats = self.net[1:4](y)
        refined = coarse.transpose(1, 2).reshape(b * f, c, h, w) + self.net[4](feats)
        # Residual over the warp, as a blend: per position and channel a softmax over the
        # model's own estimate (logit 0) and each warp (learnt logit + log of its validity), so
        # a warp never counts where it samples outside its source frame.
        logits = self.gate(feats).reshape(b * f, s, c, h, w) + weight_log
        if self.trust and not self.training:
            logits = logits + self.trust
        logits = torch.cat([logits.new_zeros(b * f, 1, c, h, w), logits], dim=1)
        weights = logits.softmax(dim=1)
        out = weights[:, 0] * refined + (weights[:, 1:] * warps).sum(dim=1)
        return out.reshape(b, f, c, h, w).transpose(1, 2)


# PyTorch's CPU flash attention splits the queries into blocks of 32 rows below 192 of them
# (larger blocks above): the last block of inference keeps its query rows from a multiple of 32
# in such sequences only, so that each row is computed in the same block, and to the same bits,
# as with all rows.
_QUERY_BLOCK, _QUERY_BLOCK_MAX_LEN = 32, 192

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
                                     len(config.warp_sources), config.warp_gate_bias,
                                     config.warp_trust)
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
        # Inference reuse (world.mvdt.reuse): results keyed by their exact inputs; small ones
        # (prompts, noise levels, positions) for the whole run, the chunk's warp for a few.
        self._memo = reuse.InferenceMemo(256)
        self._chunk_memo = reuse.InferenceMemo(8)
        self._modulation_memo = reuse.InferenceMemo(48)  # per block and noise level
        # History tokens of the first frame and positions (memory.embed_history).
        self._frame_memo = reuse.InferenceMemo(32)
        self._frame_memo_key: tuple | None = None

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
        ids = self.tokenizer(list(actions))
        if not self._reusing():
            return self.action_encoder(ids.to(self.device))
        # The prompt tokens depend only on the prompts and the weights: one encoding per action.
        key = ("actions", tuple(map(tuple, ids.tolist())), reuse.weights_key(self.action_encoder))
        return self._memo.get(key, lambda: self.action_encoder(ids.to(self.device)))

    def stack_contexts(self, *contexts: torch.Tensor) -> torch.Tensor:
        """Action-prompt tokens of several calls as one batch (the same tensor for the same
        inputs while reuse is on, so what the model derives from it is reused too)."""
        if not self._reusing():
            return torch.cat(contexts)
        return self._memo.get(("stack", *contexts), lambda: torch.cat(contexts))

    def _reusing(self) -> bool:
        """Whether this call may reuse results (:mod:`world.mvdt.reuse`): inference only."""
        return not self.training and reuse.enabled()

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
        cache = frame_memo = None
        if not torch.is_grad_enabled():
            # Interpolated kernels depend only on the weights: reuse them while those are unchanged.
            key = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
            if self._kernel_cache_key != key:
                self._kernel_cache, self._kernel_cache_key = {}, key
            cache = self._kernel_cache
            if self._reusing():
                # The first frame's tokens and the positions, while the weights stay the same.
                wkey = reuse.weights_key(self.patch_embedding) + (
                    (self.history_level_embed.data_ptr(), reuse.version(self.history_level_embed)),)
                if self._frame_memo_key != wkey:
                    self._frame_memo.clear()
                    self._frame_memo_key = wkey
                frame_memo = self._frame_memo
        return embed_history(
            history, weight, self.patch_embedding.bias, self.config, self.history_level_embed,
            cache, frame_memo,
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
        if not isinstance(history, HistoryTokens):
            history = self.embed_history(history, batch=b)
        history = history.repeat(b)
        if mask is not None and cache is not None:
            raise ValueError("Residual caching is for inference; it cannot run with a token mask.")
        if mask is None and self._reusing():
            return self._forward_reusing(x, sigma, context, history, cache, warp)
        if context.shape[0] != b:
            context = context.expand(b, -1, -1)

        chunk = patch_embed(x, self.patch_embedding.weight, self.patch_embedding.bias)
        warp = self._check_warp(warp, b, f, h, w, x)
        if warp is not None:
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
        return self._head(hidden[:, n_hist:], temb_c, x, sigma, ctx, history, warp)

    def _check_warp(self, warp, b, f, h, w, x):
        """The warp conditioning checked, batched to ``b`` and cast like ``x`` (or None)."""
        cfg = self.config
        if warp is not None and self.warp_embedding is None:
            raise ValueError("This model has no geometric memory (config.warp_sources is "
                             "empty); call it without warp=.")
        if warp is None:
            return None
        if warp.shape[0] != b:
            warp = warp.repeat(b // warp.shape[0], 1, 1, 1, 1)
        if warp.shape[1:] != (cfg.warp_channels, f, h, w):
            raise ValueError(f"warp conditioning must have shape (B, {cfg.warp_channels}, "
                             f"{f}, {h}, {w}), got {tuple(warp.shape)}.")
        return warp.to(x)

    def _head(self, out, temb_c, x, sigma, ctx, history, warp, warp_inputs=None):
        """Output head on the chunk tokens (Wan's norm_out + scale/shift + proj_out), then the
        refiner and the x0 -> velocity conversion."""
        cfg = self.config
        b, _, f, h, w = x.shape
        _, ph, pw = cfg.patch_size
        gh, gw = h // ph, w // pw
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
                out = self.refiner(out, history.reference, x, sigma, pooled, warp,
                                   warp_inputs=warp_inputs)
            s = sigma.reshape(-1, 1, 1, 1, 1).to(out.dtype).clamp_min(X0_SIGMA_MIN)
            out = (x - out) / s
        return out

    # ------------------------------------------------------------------ inference with reuse
    def _forward_reusing(self, x, sigma, context, history, cache, warp):
        """:meth:`forward` without a mask and without autograd, reusing what does not change.

        The same operations on the same numbers as the plain path, so the same result to the
        bit; what depends only on the prompt, the noise level, the positions or the chunk's
        warp conditioning comes from the model's memo (:mod:`world.mvdt.reuse`) instead of
        being computed again at every sampler step and every chunk.
        """
        cfg, memo, per_chunk = self.config, self._memo, self._chunk_memo
        b, _, f, h, w = x.shape
        _, ph, pw = cfg.patch_size
        gh, gw = h // ph, w // pw
        chunk = patch_embed(x, self.patch_embedding.weight, self.patch_embedding.bias)
        raw_warp = warp
        if warp is not None:
            warp = per_chunk.get(("warp", raw_warp, b, x.dtype, x.device),
                                 lambda: self._check_warp(raw_warp, b, f, h, w, x))
            chunk = chunk + per_chunk.get(
                ("warp_tokens", warp, reuse.weights_key(self.warp_embedding)),
                lambda: patch_embed(warp, self.warp_embedding.weight, None))
        n_hist, n_chunk = len(history), chunk.shape[1]
        rope_full = memo.get(
            ("rope", history.positions.cpu().numpy().tobytes(), history.num_slots, f, gh, gw,
             str(x.device)),
            lambda: rope_from_positions(torch.cat([
                history.positions.to(x.device),
                grid_positions(f, gh, gw, history.num_slots, x.device)], dim=0),
                cfg.head_dim, cfg.rope_theta))
        raw_context = context
        if context.shape[0] != b:
            context = memo.get(("context", raw_context, b),
                               lambda: raw_context.expand(b, -1, -1))
        # The noise level's and the prompt's embeddings apart (Wan computes them side by side,
        # independently), so the prompt's projection is one tensor for every step and chunk.
        ce = self.condition_embedder
        temb_c, tp_chunk, tp_hist = memo.get(
            ("time", tuple(sigma.tolist()), sigma.dtype, context.dtype,
             reuse.weights_key(ce.time_embedder, ce.time_proj)),
            lambda: self._time_conditioning(sigma, context.dtype))
        ctx = memo.get(("text", context, reuse.weights_key(ce.text_embedder)),
                       lambda: ce.text_embedder(context))
        temb = memo.get(("token_temb", tp_hist, tp_chunk, n_hist, n_chunk),
                        lambda: self._token_temb(tp_hist, tp_chunk, n_hist, n_chunk))
        rope = memo.get(("rope_halves", rope_full), lambda: (rope_full, _rope_halves(rope_full)))
        hidden = torch.cat([history.tokens, chunk], dim=1)
        blocks = self.blocks
        for i, blk in enumerate(blocks):
            # Only the chunk tokens leave the last block (residual caching needs all rows).
            first_row = 0
            if cache is None and i == len(blocks) - 1 and hidden.shape[1] < _QUERY_BLOCK_MAX_LEN:
                first_row = n_hist - n_hist % _QUERY_BLOCK
            fn = self._fast_block(i, blk, ctx, temb, rope, first_row)
            hidden = fn(hidden) if cache is None else cache.apply(i, fn, hidden)
        hidden = hidden[:, hidden.shape[1] - n_chunk:]
        warp_inputs = None
        if warp is not None and self.refiner is not None and self.refiner.warp_sources:
            refiner = self.refiner
            warp_inputs = per_chunk.get(("refiner_warp", warp, x.dtype,
                                         reuse.weights_key(refiner.warp_in)),
                                        lambda: refiner.warp_inputs(warp, x))
        return self._head(hidden, temb_c, x, sigma, ctx, history, warp, warp_inputs)

    def _fast_block(self, index: int, blk: WanTransformerBlock, ctx, temb, rope,
                    first_row: int = 0):
        """``blk(h, ctx, temb, rope)`` as a function of ``h`` with the prompt's cross-attention
        keys/values and the block's modulation taken from the memo (Wan's block, same maths)."""
        if blk.attn2.add_k_proj is not None or temb.ndim != 4:
            if first_row:
                return lambda h: blk(h, ctx, temb, rope[0])[:, first_row:]
            return lambda h: blk(h, ctx, temb, rope[0])
        # The modulation depends on the noise level only (temb is one tensor per level).
        table = blk.scale_shift_table
        mod = self._modulation_memo.get(
            ("modulation", index, temb, (table.data_ptr(), reuse.version(table))),
            lambda: _modulation(table, temb))
        a1, a2 = blk.attn1, blk.attn2
        kv = self._memo.get(
            ("cross_kv", index, ctx, reuse.weights_key(a2.to_k, a2.to_v, a2.norm_k)),
            lambda: _cross_kv(a2, ctx))
        qkv = self._memo.get(
            ("qkv", index, reuse.weights_key(a1.to_q, a1.to_k, a1.to_v)),
            lambda: _fused_qkv(a1))
        return lambda h: _wan_block(blk, h, mod, rope[1], kv, qkv, first_row)

    def _time_conditioning(self, sigma: torch.Tensor, dtype: torch.dtype):
        """The time half of :meth:`_conditioning` (Wan's ``WanTimeTextImageEmbedding`` path
        for the timesteps, unchanged): ``(temb_chunk, tproj_chunk, tproj_history)``."""
        ce = self.condition_embedder
        b = sigma.shape[0]
        t = torch.cat([sigma * self.config.timestep_scale, sigma.new_zeros(1)])
        timestep = ce.timesteps_proj(t)
        embed_dtype = next(iter(ce.time_embedder.parameters())).dtype
        if timestep.dtype != embed_dtype and embed_dtype != torch.int8:
            timestep = timestep.to(embed_dtype)
        temb = ce.time_embedder(timestep).to(dtype)
        tproj = ce.time_proj(ce.act_fn(temb)).unflatten(1, (6, -1))
        return temb[:b], tproj[:b], tproj[b:]

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
