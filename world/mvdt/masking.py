"""MAE-style token masking of the generated chunk (training only).

After patch embedding a random subset of the chunk's tokens is dropped; the encoder half of the
DiT sees the history and the kept tokens only, the side-interpolator fills the dropped positions
(learnable mask token + one transformer block, written only at masked positions) and the decoder
half runs on the full sequence. History tokens are never masked. Inference never masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TokenMask:
    """Which chunk tokens the encoder half sees.

    Attributes
    ----------
    keep : Tensor (B, n_keep) int64
        Indices of kept chunk tokens, sorted ascending (so a ratio of 0 is the identity).
    num_tokens : int
        Chunk tokens before masking.
    ratio : float
        Requested mask ratio.
    """

    keep: torch.Tensor
    num_tokens: int
    ratio: float

    @property
    def num_keep(self) -> int:
        return self.keep.shape[1]

    @property
    def num_masked(self) -> int:
        return self.num_tokens - self.num_keep

    def dropped(self) -> torch.Tensor:
        """(B, num_tokens) float: 1 at masked (dropped) positions, 0 at kept ones."""
        m = torch.ones(self.keep.shape[0], self.num_tokens, device=self.keep.device)
        return m.scatter(1, self.keep, 0.0)


def random_token_mask(
    batch: int,
    num_tokens: int,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> TokenMask:
    """Drop ``round(ratio * num_tokens)`` random tokens per sample (at least one kept).

    Every sample keeps the same number of tokens so the batch stays rectangular.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"Mask ratio must lie in [0, 1), got {ratio}.")
    n_drop = min(int(round(ratio * num_tokens)), num_tokens - 1)
    n_keep = num_tokens - n_drop
    noise = torch.rand(batch, num_tokens, generator=generator)
    keep = noise.argsort(dim=1)[:, :n_keep].sort(dim=1).values
    return TokenMask(keep.to(device) if device is not None else keep, num_tokens, float(ratio))


def sample_mask_ratio(low: float, high: float, generator: torch.Generator | None = None) -> float:
    """Mask ratio ~ U[low, high] (Yume's code: U[0.3, 0.5])."""
    u = torch.rand((), generator=generator).item()
    return low + (high - low) * u


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[b, index[b]] for x of shape (B, L, ...)."""
    idx = index.reshape(*index.shape, *([1] * (x.ndim - 2))).expand(-1, -1, *x.shape[2:])
    return torch.gather(x, 1, idx)


def scatter_tokens(base: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A copy of ``base`` (B, L, D) with ``values`` (B, n, D) written at ``index`` (B, n)."""
    idx = index.unsqueeze(-1).expand(-1, -1, base.shape[-1])
    return base.scatter(1, idx, values)
