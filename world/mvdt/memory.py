"""History memory: compressing past latent frames so the token count stays bounded.

The clean history latents are put in front of the noisy chunk. Following Yume (FramePack style,
spatial only), older frames are patchified with larger kernels whose weights are interpolated from
the base patch embedding; the first (initial) frame keeps a fine kernel. Frames beyond the
schedule are dropped (the first frame is always kept), so however long a world runs, the history
is at most ``1 + config.max_history_frames`` frames and a fixed number of tokens.

Positions: history frames get sequential temporal RoPE indices ``0 .. n-1`` (oldest first) and
the chunk continues at ``n``; a compressed token sits at the centre of its kernel, measured in
base-token units, i.e. on a coarse grid aligned with the chunk's grid.

Timestep conditioning (a choice): history tokens are clean and carry their own per-token timestep
``t = 0`` (Wan 2.2 TI2V style per-token modulation), instead of Wan 2.1 I2V's extra conditioning
channels; the chunk tokens carry the current noise level.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from world.mvdt.config import MVDTConfig


@dataclass(frozen=True)
class HistorySlot:
    """One history frame kept in the context: its index in the history and its kernel."""

    frame: int
    kernel: int
    level: int  # row of the schedule (0 = first frame / finest), used for a level embedding


def history_plan(n_frames: int, config: MVDTConfig) -> list[HistorySlot]:
    """Which history frames enter the context, oldest first, and with which kernel.

    Parameters
    ----------
    n_frames : int
        Number of history latent frames available (index 0 is the initial frame).
    config : MVDTConfig
        Supplies the first-frame kernel and the schedule (newest first).
    """
    if n_frames <= 0:
        return []
    slots = [HistorySlot(0, config.history_first_kernel, 0)]
    recent: list[HistorySlot] = []
    j = n_frames - 1  # newest frame first
    for level, (count, kernel) in enumerate(config.history_schedule, start=1):
        for _ in range(count):
            if j < 1:
                break
            recent.append(HistorySlot(j, kernel, level))
            j -= 1
    return slots + recent[::-1]


def effective_kernel(
    kernel: int, height: int, width: int, patch: tuple[int, int]
) -> tuple[int, int]:
    """Kernel clipped to the (patch-padded) frame: a kernel larger than the frame is one token."""
    ph, pw = patch
    hmax = -(-height // ph) * ph
    wmax = -(-width // pw) * pw
    return min(kernel, hmax), min(kernel, wmax)


def _linear_resize_matrix(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) matrix of 1-D linear resizing (``align_corners=False``)."""
    eye = torch.eye(n_in, dtype=like.dtype, device=like.device).unsqueeze(1)  # (n_in, 1, n_in)
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[:, 0].T


def interpolated_kernel(base_weight: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """Patch-embedding weight resized to a (1, kh, kw) kernel.

    The base Conv3d weight ``(dim, C, 1, ph, pw)`` is resized bilinearly and scaled by the area
    ratio so that a constant input gives the same embedding at every kernel size. Bilinear
    resizing is separable, so it is done as two small matrix products (the same numbers as
    ``F.interpolate(..., mode="bilinear")``, many times faster on thousands of channels).
    """
    d, c, pt, ph, pw = base_weight.shape
    if (kh, kw) == (ph, pw):
        return base_weight
    rh = _linear_resize_matrix(ph, kh, base_weight)
    rw = _linear_resize_matrix(pw, kw, base_weight)
    return (rh * ((ph * pw) / (kh * kw))) @ base_weight @ rw.T


def patch_embed(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Non-overlapping (1, kh, kw) patch embedding as one matmul: (B, C, T, H, W) -> (B, L, D).

    Same result as ``Conv3d`` with stride = kernel, without CPU conv3d's slow large-kernel path.
    """
    b, c, t, h, w = x.shape
    d, _, _, kh, kw = weight.shape
    nh, nw = h // kh, w // kw
    patches = x.reshape(b, c, t, nh, kh, nw, kw).permute(0, 2, 3, 5, 1, 4, 6)
    out = patches.reshape(b, t * nh * nw, c * kh * kw) @ weight.reshape(d, -1).T
    return out + bias if bias is not None else out


def slot_positions(
    t_index: int, height: int, width: int, kh: int, kw: int, patch: tuple[int, int],
    device: torch.device | None = None,
) -> torch.Tensor:
    """(n_tokens, 3) float (t, h, w) RoPE positions of a frame patchified with (kh, kw)."""
    ph, pw = patch
    nh, nw = -(-height // kh), -(-width // kw)
    hs = (torch.arange(nh, dtype=torch.float32, device=device) * kh + (kh - ph) / 2) / ph
    ws = (torch.arange(nw, dtype=torch.float32, device=device) * kw + (kw - pw) / 2) / pw
    grid_h, grid_w = torch.meshgrid(hs, ws, indexing="ij")
    t = torch.full_like(grid_h, float(t_index))
    return torch.stack([t, grid_h, grid_w], dim=-1).reshape(-1, 3)


def tokens_per_slot(height: int, width: int, kernel: int, patch: tuple[int, int]) -> int:
    kh, kw = effective_kernel(kernel, height, width, patch)
    return (-(-height // kh)) * (-(-width // kw))


def history_token_count(n_frames: int, config: MVDTConfig) -> int:
    """Tokens the history of ``n_frames`` latent frames occupies in the context."""
    p = (config.patch_size[1], config.patch_size[2])
    return sum(
        tokens_per_slot(config.latent_height, config.latent_width, s.kernel, p)
        for s in history_plan(n_frames, config)
    )


def max_history_tokens(config: MVDTConfig) -> int:
    """Upper bound of :func:`history_token_count` over any history length."""
    return history_token_count(1 + config.max_history_frames, config)


@dataclass
class HistoryTokens:
    """Embedded history, ready to be put in front of the chunk tokens.

    Attributes
    ----------
    tokens : Tensor (B, L, dim)
    positions : Tensor (L, 3)
        Float (t, h, w) RoPE positions.
    num_slots : int
        Temporal positions used; the chunk's first frame sits at this temporal index.
    reference : Tensor (B, C, H, W) or None
        The newest clean history latent frame, uncompressed (for the model's refiner).
    """

    tokens: torch.Tensor
    positions: torch.Tensor
    num_slots: int
    reference: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.tokens.shape[1]

    def repeat(self, batch: int) -> HistoryTokens:
        """The same history for a batch of ``batch`` (used for classifier-free guidance)."""
        if self.tokens.shape[0] == batch:
            return self
        ref = None if self.reference is None else self.reference.expand(batch, -1, -1, -1)
        return HistoryTokens(self.tokens.expand(batch, -1, -1), self.positions, self.num_slots,
                             ref)


def embed_history(
    latents: torch.Tensor,
    base_weight: torch.Tensor,
    base_bias: torch.Tensor | None,
    config: MVDTConfig,
    level_embed: torch.Tensor | None = None,
    kernel_cache: dict | None = None,
    frame_memo=None,
) -> HistoryTokens:
    """Patchify history latents ``(B, C, F, H, W)`` with the compression schedule.

    Frames sharing a kernel are embedded with one matrix product. Frames the plan does not keep
    are never touched, so the cost is bounded too. ``kernel_cache`` (inference only) keeps the
    interpolated kernels between calls. ``frame_memo`` (inference only, a
    :class:`world.mvdt.reuse.InferenceMemo` whose owner clears it when the weights change)
    keeps the token positions of each plan and the first frame's tokens by its exact values
    (the first frame stays, so it is embedded once per run instead of once per chunk). The
    other groups change at every chunk; their frames are not memoised one by one, as a
    product of one row need not give the bits the same row gives in a product of several.
    """
    b, _, n, h, w = latents.shape
    patch = (config.patch_size[1], config.patch_size[2])
    plan = history_plan(n, config)
    tokens, positions = [], []
    # Group consecutive slots of equal kernel (the plan is ordered oldest first).
    groups: list[list[tuple[int, HistorySlot]]] = []
    for t_index, slot in enumerate(plan):
        prev = groups[-1][-1][1] if groups else None
        if prev is not None and (prev.kernel, prev.level) == (slot.kernel, slot.level):
            groups[-1].append((t_index, slot))
        else:
            groups.append([(t_index, slot)])

    def group_tokens(group) -> torch.Tensor:
        kernel, level = group[0][1].kernel, group[0][1].level
        kh, kw = effective_kernel(kernel, h, w, patch)
        frames = latents[:, :, [s.frame for _, s in group]]
        pad_h, pad_w = (-h) % kh, (-w) % kw
        if pad_h or pad_w:
            frames = F.pad(frames, (0, pad_w, 0, pad_h, 0, 0), mode="replicate")
        if kernel_cache is not None and (kh, kw) in kernel_cache:
            weight = kernel_cache[(kh, kw)]
        else:
            weight = interpolated_kernel(base_weight, kh, kw)
            if kernel_cache is not None:
                kernel_cache[(kh, kw)] = weight
        emb = patch_embed(frames, weight, base_bias)  # (B, g * nh * nw, D), frame-major
        if level_embed is not None:
            emb = emb + level_embed[level]
        return emb

    def group_positions(group) -> list[torch.Tensor]:
        kh, kw = effective_kernel(group[0][1].kernel, h, w, patch)
        return [slot_positions(t_index, h, w, kh, kw, patch, latents.device)
                for t_index, _ in group]

    for group in groups:
        if frame_memo is None:
            tokens.append(group_tokens(group))
            positions.extend(group_positions(group))
            continue
        s0 = group[0][1]
        if s0.level == 0:  # the first frame: the same values all run long
            values = latents[:, :, s0.frame].detach().cpu().numpy().tobytes()
            tokens.append(frame_memo.get(
                ("first", values, tuple(latents.shape[:2]), s0.kernel, latents.dtype,
                 str(latents.device)), lambda group=group: group_tokens(group)))
        else:  # frames that move on every chunk
            tokens.append(group_tokens(group))
        positions.extend(frame_memo.get(
            ("positions", tuple(group), h, w, str(latents.device)),
            lambda group=group: group_positions(group)))
    if not tokens:
        d = base_weight.shape[0]
        return HistoryTokens(latents.new_zeros(b, 0, d), latents.new_zeros(0, 3), 0)
    return HistoryTokens(torch.cat(tokens, 1), torch.cat(positions, 0), len(plan),
                         latents[:, :, -1])


class HistoryBuffer:
    """Bounded store of clean history latents for autoregressive generation.

    Keeps the first (initial) latent frame and the newest ``config.max_history_frames``; older
    frames would be dropped by :func:`history_plan` anyway, so memory stays flat.

    Parameters
    ----------
    config : MVDTConfig
    """

    def __init__(self, config: MVDTConfig) -> None:
        self.config = config
        self._first: torch.Tensor | None = None
        self._recent: list[torch.Tensor] = []
        self.total_frames = 0

    def reset(self, first: torch.Tensor) -> None:
        """Start from latents ``(C, F, H, W)`` (the encoded first frame or frames)."""
        self._first = None
        self._recent = []
        self.total_frames = 0
        self.append(first)

    def append(self, latents: torch.Tensor) -> None:
        """Add latent frames ``(C, F, H, W)`` (a generated chunk)."""
        if latents.ndim != 4:
            raise ValueError(
                f"History latents must be (C, F, H, W), got shape {tuple(latents.shape)}.")
        frames = list(latents.detach().unbind(1))
        self.total_frames += len(frames)
        if self._first is None:
            self._first = frames.pop(0)
        self._recent.extend(frames)
        keep = self.config.max_history_frames
        if len(self._recent) > keep:
            self._recent = self._recent[len(self._recent) - keep:] if keep else []

    def __len__(self) -> int:
        return (self._first is not None) + len(self._recent)

    def latents(self) -> torch.Tensor:
        """(C, F, H, W) the kept frames, oldest first."""
        if self._first is None:
            raise ValueError("The history is empty; call reset() with the first frame's latents.")
        return torch.stack([self._first, *self._recent], dim=1)

    @property
    def last(self) -> torch.Tensor:
        """(C, H, W) the newest latent frame."""
        return self._recent[-1] if self._recent else self._first
