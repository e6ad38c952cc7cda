"""Yume's history compression for a diffusers Wan transformer: a bounded, compressed context.

Diffusers' :meth:`WanTransformer3DModel.forward` patchifies a dense latent video with its own
``patch_embedding`` and cannot take tokens patchified some other way, so this module runs the
transformer's own parts (patch embedding, condition embedder, blocks, output head) on a token
sequence it builds itself:

- the **history** is patchified by :func:`world.mvdt.memory.embed_history` with the plan of
  :func:`world.mvdt.memory.history_plan` (first frame fine, the newest frames at full
  resolution, older ones with larger kernels whose weights are the transformer's
  ``patch_embedding`` interpolated), so however long a world runs the context is a fixed
  number of tokens;
- the **chunk** is patchified with the base kernel, as diffusers does;
- RoPE is evaluated at the tokens' (possibly fractional) ``(t, h, w)`` positions with Wan's
  frequencies (checked against the transformer's own RoPE tables); history slots take
  temporal indices ``0 .. n-1`` and the chunk continues at ``n``.

Yume's checkpoints carry their own, trained history convolutions (``extras`` of
:func:`world.wan.loading.load_transformer`); :func:`trained_kernels` reads them and
:class:`WanHistory` uses them in place of the interpolated kernels of the same size (see
:func:`trained_kernels` for which name is which kernel); interpolation stays the fallback for
every other size. :func:`token_velocity` can reuse the residuals of chosen blocks across
sampler steps (:class:`world.mvdt.cache.ResidualCache`), as the MVDT does.

With a plan that compresses nothing, :func:`token_velocity` gives the numbers of diffusers'
forward on the dense sequence (tested). The code follows diffusers 0.42's ``WanTransformer3DModel``
(its attribute names); a diffusers release that renames them fails loudly there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from world.base import WorldError
from world.mvdt.cache import CacheCall
from world.mvdt.config import MVDTConfig, default_history_schedule
from world.mvdt.memory import (
    HistoryBuffer,
    HistoryTokens,
    effective_kernel,
    embed_history,
    history_plan,
    history_token_count,
    max_history_tokens,
    tokens_per_slot,
)

__all__ = [
    "WanHistory",
    "chunk_positions",
    "history_config",
    "rope_at",
    "token_velocity",
    "trained_kernels",
]

ROPE_THETA = 10000.0  # diffusers' WanTransformer3DModel builds its RoPE with the default theta

# Yume's history convolutions: ``patch_embedding_{m}x`` patchifies m times the base patch.
# ``patch_embedding_2x_f`` (channels to channels, Yume 1.5's channel-compressed branch) is no
# token embedding and does not match.
_TRAINED_NAME = re.compile(r"^patch_embedding_(\d+)x\.(weight|bias)$")


def trained_kernels(extras: Mapping[str, torch.Tensor], transformer
                    ) -> dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor | None]]:
    """Yume's trained history convolutions of ``extras``, by kernel size in latent pixels.

    ``patch_embedding_{m}x`` is the ``(1, m ph, m pw)`` convolution, ``(ph, pw)`` the
    transformer's patch: with Wan's 2x2 patch ``patch_embedding_2x`` is the 4x4 kernel,
    ``_4x`` 8x8, ``_8x`` 16x16, ``_16x`` 32x32 and ``_32x`` 64x64. ``patch_embedding_2x_f``
    and every other extra weight are ignored.

    Parameters
    ----------
    extras : mapping of str to Tensor
        Yume's extra weights (original names), as loading returns them.
    transformer : diffusers.WanTransformer3DModel
        Supplies the patch, width and input channels the convolutions must have.

    Returns
    -------
    dict
        ``{(kh, kw): (weight (dim, in_channels, 1, kh, kw), bias (dim,) or None)}``, on the
        patch embedding's device and dtype.

    Raises
    ------
    WorldError
        If a convolution's weight has another shape than this transformer's kernel of its size,
        or a bias comes without its weight.
    """
    base = transformer.patch_embedding.weight
    d, c, pt, ph, pw = base.shape
    found: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in extras.items():
        match = _TRAINED_NAME.match(name)
        if match:
            found.setdefault(int(match.group(1)), {})[match.group(2)] = tensor
    out: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor | None]] = {}
    for m, parts in sorted(found.items()):
        name = f"patch_embedding_{m}x"
        if "weight" not in parts:
            raise WorldError(f"{name}.bias comes without {name}.weight; the checkpoint's extra "
                             "weights are incomplete, restore them from its download.")
        weight, bias = parts["weight"], parts.get("bias")
        shape = (d, c, pt, m * ph, m * pw)
        if tuple(weight.shape) != shape or (bias is not None and tuple(bias.shape) != (d,)):
            raise WorldError(f"{name}.weight has shape {tuple(weight.shape)}, this transformer's "
                             f"{m * ph}x{m * pw} history kernel needs {shape}; the extra weights "
                             "belong to another model.")
        out[(m * ph, m * pw)] = (weight.to(base.device, base.dtype),
                                 None if bias is None else bias.to(base.device, base.dtype))
    return out


def history_config(latent_height: int, latent_width: int, latent_channels: int,
                   patch: tuple[int, int] = (2, 2),
                   schedule: list[list[int]] | None = None,
                   first_kernel: int | None = None) -> MVDTConfig:
    """The plan settings of :mod:`world.mvdt.memory` for a Wan latent grid.

    Only the fields the memory functions read matter (latent size, patch, first kernel and the
    ``[count, kernel]`` schedule, newest first, Yume's table by default); the rest are the
    dataclass defaults and build no model.
    """
    ph, pw = int(patch[0]), int(patch[1])
    return MVDTConfig(latent_channels=int(latent_channels), latent_height=int(latent_height),
                      latent_width=int(latent_width), patch_size=[1, ph, pw],
                      history_first_kernel=int(first_kernel or ph),
                      history_schedule=[list(r) for r in (schedule or default_history_schedule())])


def rope_at(rope, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Wan RoPE ``(cos, sin)``, each ``(1, L, 1, head_dim)``, at float ``(t, h, w)`` positions.

    The frequencies are Wan's (theta 10000, per-axis split of ``rope``), computed in float64 as
    diffusers does and checked against ``rope``'s own tables at position 1, so integer
    positions reproduce ``WanRotaryPosEmbed``.

    Raises
    ------
    WorldError
        If ``rope``'s tables use other frequencies (a diffusers release that changed them).
    """
    sizes = [rope.t_dim, rope.h_dim, rope.w_dim]
    tables = rope.freqs_sin.split(sizes, dim=1)
    pos = positions.detach().to("cpu", torch.float64)
    cos, sin = [], []
    for axis, dim in enumerate(sizes):
        omega = 1.0 / (ROPE_THETA ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
        if not torch.allclose(omega.sin(), tables[axis][1, 0::2].detach().cpu().double(),
                              atol=1e-6):
            raise WorldError("This Wan transformer's RoPE tables do not use Wan's frequencies; "
                             "the compressed history needs diffusers' WanRotaryPosEmbed.")
        angle = pos[:, axis:axis + 1] * omega[None]
        cos.append(angle.cos().repeat_interleave(2, dim=1))
        sin.append(angle.sin().repeat_interleave(2, dim=1))
    out = (torch.cat(cos, 1)[None, :, None], torch.cat(sin, 1)[None, :, None])
    return tuple(t.to(rope.freqs_cos.device, rope.freqs_cos.dtype) for t in out)


def chunk_positions(start: int, frames: int, height: int, width: int,
                    patch: tuple[int, int]) -> torch.Tensor:
    """(L, 3) float positions of a dense chunk of ``frames`` latent frames from ``start``."""
    nh, nw = height // patch[0], width // patch[1]
    t, h, w = torch.meshgrid(torch.arange(start, start + frames), torch.arange(nh),
                             torch.arange(nw), indexing="ij")
    return torch.stack([t, h, w], -1).reshape(-1, 3).float()


def token_velocity(transformer, history: HistoryTokens | None, chunk: torch.Tensor,
                   timestep: float, text: torch.Tensor, *, history_timestep: float | None = 0.0,
                   image: torch.Tensor | None = None, cache: CacheCall | None = None
                   ) -> torch.Tensor:
    """The transformer's output for ``chunk`` given compressed ``history`` tokens in front.

    Parameters
    ----------
    transformer : diffusers.WanTransformer3DModel
    history : HistoryTokens or None
        Embedded history (:func:`world.mvdt.memory.embed_history` with the transformer's
        ``patch_embedding``); None or empty for no context.
    chunk : Tensor (1, in_channels, F, H, W)
        The chunk's input latents (for I2V transformers: noisy, mask and condition channels).
    timestep : float
        The chunk's timestep (0..1000).
    text : Tensor (1, text_len, text_dim)
    history_timestep : float or None
        Per-token timestep of the history tokens (0: clean, Wan 2.2 TI2V style); None gives the
        whole sequence the one ``timestep`` (Wan 2.1 I2V, whose history carries its
        condition in the mask/condition channels).
    image : Tensor (1, tokens, image_dim), optional
        CLIP image tokens for an I2V transformer.
    cache : CacheCall, optional
        One call of a :class:`world.mvdt.cache.ResidualCache` whose block indices are into
        ``transformer.blocks``: those blocks either run and store their residual or reuse the
        stored one (None: every block runs).

    Returns
    -------
    Tensor (1, out_channels, F, H, W)
    """
    tr = transformer
    pt, ph, pw = tr.config.patch_size
    b, _, f, h, w = chunk.shape
    dtype = tr.patch_embedding.weight.dtype
    device = tr.patch_embedding.weight.device
    x = tr.patch_embedding(chunk.to(device, dtype)).flatten(2).transpose(1, 2)
    n_slots = history.num_slots if history is not None else 0
    pos = chunk_positions(n_slots, f // pt, h, w, (ph, pw))
    n_hist = len(history) if history is not None else 0
    if n_hist:
        x = torch.cat([history.tokens.to(device, dtype), x], dim=1)
        pos = torch.cat([history.positions.cpu(), pos], dim=0)
    x = x.contiguous()
    rotary = rope_at(tr.rope, pos)
    if history_timestep is None or not n_hist:
        steps = torch.full((b,), float(timestep), device=device)
        seq_len = None
    else:
        steps = torch.full((b, x.shape[1]), float(timestep), device=device)
        steps[:, :n_hist] = float(history_timestep)
        seq_len = steps.shape[1]
        steps = steps.flatten()
    temb, proj, text_emb, image_emb = tr.condition_embedder(
        steps, text.to(device, dtype), None if image is None else image.to(device, dtype),
        timestep_seq_len=seq_len)
    proj = proj.unflatten(2, (6, -1)) if seq_len is not None else proj.unflatten(1, (6, -1))
    if image_emb is not None:
        text_emb = torch.cat([image_emb, text_emb], dim=1)
    for i, block in enumerate(tr.blocks):
        if cache is None:
            x = block(x, text_emb, proj, rotary)
        else:
            x = cache.apply(i, lambda h, blk=block: blk(h, text_emb, proj, rotary), x)
    if temb.ndim == 3:  # per-token conditioning
        shift, scale = (tr.scale_shift_table.unsqueeze(0) + temb.unsqueeze(2)).chunk(2, dim=2)
        shift, scale = shift.squeeze(2)[:, n_hist:], scale.squeeze(2)[:, n_hist:]
    else:
        shift, scale = (tr.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
    x = x[:, n_hist:]  # only the chunk's tokens are predicted
    x = (tr.norm_out(x.float()) * (1 + scale) + shift).type_as(x)
    x = tr.proj_out(x)
    x = x.reshape(b, f // pt, h // ph, w // pw, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)


@dataclass
class WanHistory:
    """A Wan world's compressed history: the buffer of clean latents and its plan.

    Parameters
    ----------
    config : MVDTConfig
        From :func:`history_config` (latent grid, patch and schedule).

    Attributes
    ----------
    trained : dict
        Trained kernels by size (:func:`trained_kernels`, set by :meth:`use_trained`); a slot
        whose kernel, clipped to the frame, has one is embedded with its weight and bias, every
        other with the base kernel interpolated and the base bias.
    """

    config: MVDTConfig

    def __post_init__(self) -> None:
        self.buffer = HistoryBuffer(self.config)
        self._kernels: dict = {}
        self.trained: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor | None]] = {}

    def use_trained(self, extras: Mapping[str, torch.Tensor], transformer) -> list[int]:
        """Embed with Yume's trained convolutions of ``extras`` where they exist.

        Returns the kernel sizes (latent pixels) now taken from trained weights, ascending.
        """
        self.trained = trained_kernels(extras, transformer)
        self._kernels = {k: w for k, (w, _) in self.trained.items()}  # interpolated: on demand
        return sorted(k for k, _ in self.trained)

    def reset(self, latents: torch.Tensor) -> None:
        """Start from ``(1, C, F, h, w)`` latents (a start frame, or an encoded clip)."""
        self.buffer.reset(latents[0])

    def append(self, latents: torch.Tensor) -> None:
        """Add a generated chunk's ``(1, C, F, h, w)`` latents."""
        self.buffer.append(latents[0])

    def __len__(self) -> int:
        return len(self.buffer)

    @property
    def started(self) -> bool:
        return len(self.buffer) > 0

    def latents(self) -> torch.Tensor:
        """``(1, C, n, h, w)`` the kept frames, oldest first."""
        return self.buffer.latents()[None]

    @property
    def last(self) -> torch.Tensor:
        """``(1, C, 1, h, w)`` the newest latent frame."""
        return self.buffer.last[None, :, None]

    def slots(self) -> int:
        """History frames the next chunk sees (the plan's length)."""
        return len(history_plan(len(self.buffer), self.config))

    def tokens(self) -> int:
        """Tokens of the context the next chunk sees."""
        return history_token_count(len(self.buffer), self.config)

    def max_tokens(self) -> int:
        """The bound of :meth:`tokens` over any run length."""
        return max_history_tokens(self.config)

    def embed(self, transformer, inputs: torch.Tensor) -> HistoryTokens:
        """Patchify ``inputs`` ``(1, in_channels, n, h, w)`` (this history, in the
        transformer's input channels) with the plan and the transformer's patch embedding."""
        emb = transformer.patch_embedding
        inputs = inputs.to(emb.weight.device, emb.weight.dtype)
        # Trained weights sit in the kernel cache, so embed_history picks them by size; it
        # adds the base bias to every token, corrected here for the trained kernels' slots.
        out = embed_history(inputs, emb.weight, emb.bias, self.config, kernel_cache=self._kernels)
        if not self.trained or not len(out):
            return out
        h, w = inputs.shape[-2:]
        patch = (self.config.patch_size[1], self.config.patch_size[2])
        base = emb.bias if emb.bias is not None else torch.zeros_like(out.tokens[0, 0])
        deltas = []
        for slot in history_plan(inputs.shape[2], self.config):
            n = tokens_per_slot(h, w, slot.kernel, patch)
            trained = self.trained.get(effective_kernel(slot.kernel, h, w, patch))
            if trained is None:
                deltas.append(torch.zeros_like(base).expand(n, -1))
            else:
                bias = trained[1] if trained[1] is not None else torch.zeros_like(base)
                deltas.append((bias - base).expand(n, -1))
        out.tokens = out.tokens + torch.cat(deltas).to(out.tokens)
        return out
