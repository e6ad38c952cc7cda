"""Residual caching of the least important blocks across sampler steps (Yume section 5).

A block's residual ``block(x) - x`` changes slowly between neighbouring sampler steps. For the
``k`` least important blocks the residual computed at a refresh step is reused for the next
``reuse`` calls, so those blocks cost nothing there. Importance is measured on calibration
inputs: how much the model output changes when a block's residual comes from the previous step.

With ``reuse = 0`` every block is computed on every call and the output is bit-identical to the
uncached model. Conditional and unconditional calls (CFG) keep separate residuals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from world.mvdt.samplers import shifted_sigmas


class CacheCall:
    """The cache as seen by one model call: compute-and-store (``refresh``) or reuse."""

    def __init__(self, owner: ResidualCache, store: dict[int, torch.Tensor], refresh: bool):
        self.owner, self.store, self.refresh = owner, store, refresh

    def apply(self, index: int, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
        """Run block ``index`` as ``fn(x)`` or reuse its stored residual."""
        if index not in self.owner.blocks:
            return fn(x)
        if self.refresh or index not in self.store or self.store[index].shape != x.shape:
            out = fn(x)
            self.store[index] = out - x
            return out
        self.owner.skipped += 1
        return x + self.store[index]


class ResidualCache:
    """Reuse the residuals of ``blocks`` for ``reuse`` calls after each refresh.

    Parameters
    ----------
    blocks : iterable of int
        Indices into ``model.blocks`` (inference order) whose residual may be reused.
    reuse : int
        Calls that reuse a residual after each computed one (0 = no caching).

    Use one cache per generated chunk (:meth:`reset` between chunks); calls are counted per
    ``key`` (e.g. ``"cond"`` / ``"uncond"``).
    """

    def __init__(self, blocks: Iterable[int] = (), reuse: int = 0) -> None:
        if reuse < 0:
            raise ValueError("reuse must be >= 0.")
        self.blocks = frozenset(int(b) for b in blocks)
        self.reuse = int(reuse)
        self._stores: dict[str, dict[int, torch.Tensor]] = {}
        self._calls: dict[str, int] = {}
        self.skipped = 0

    def reset(self) -> None:
        self._stores.clear()
        self._calls.clear()
        self.skipped = 0

    def call(self, key: str = "cond") -> CacheCall:
        """Start one model call; returns the object the model's block loop uses."""
        n = self._calls.get(key, 0)
        self._calls[key] = n + 1
        refresh = self.reuse == 0 or n % (self.reuse + 1) == 0
        return CacheCall(self, self._stores.setdefault(key, {}), refresh)

    def __repr__(self) -> str:
        return f"ResidualCache(blocks={sorted(self.blocks)}, reuse={self.reuse})"


@torch.no_grad()
def block_importance(
    model,
    x: torch.Tensor,
    context: torch.Tensor,
    history=None,
    num_steps: int = 50,
    shift: float = 3.0,
    pairs: Sequence[int] | None = None,
) -> torch.Tensor:
    """Importance of each inference block for residual reuse, shape (n_blocks,).

    For step pairs (i, i + 1) of the sampler schedule, the calibration input is brought to
    ``sigma_i`` and ``sigma_{i+1}`` (``x`` is taken as x0, with fixed noise); the score of block b
    is the relative L2 change of the velocity at step i + 1 when b's residual is reused from
    step i, averaged over pairs. Low score = safe to cache.
    """
    model.eval()
    sig = shifted_sigmas(num_steps, shift).tolist()
    if pairs is None:
        pairs = sorted({1, num_steps // 4, num_steps // 2, (3 * num_steps) // 4} - {0})
        pairs = [p for p in pairs if p + 1 < num_steps] or [0]
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=gen).to(x)
    if not hasattr(history, "tokens"):
        history = model.embed_history(history, batch=x.shape[0])
    n_blocks = len(model.blocks)
    scores = torch.zeros(n_blocks, dtype=torch.float64)
    for i in pairs:
        xa = (1 - sig[i]) * x + sig[i] * noise
        xb = (1 - sig[i + 1]) * x + sig[i + 1] * noise
        ref = model(xb, sig[i + 1], context, history)
        for b in range(n_blocks):
            cache = ResidualCache([b], reuse=1)
            model(xa, sig[i], context, history, cache=cache.call())
            out = model(xb, sig[i + 1], context, history, cache=cache.call())
            scores[b] += float((out - ref).norm() / ref.norm().clamp_min(1e-12))
    return scores / len(pairs)


def least_important(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the ``k`` lowest scores, ascending by index."""
    k = max(0, min(int(k), len(scores)))
    return sorted(torch.argsort(scores)[:k].tolist())
