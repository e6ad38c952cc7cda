"""Self-forcing context for MVDT training: histories the model rolled out itself (issue 16).

Teacher forcing trains every chunk on the clip's *true* history, but at run time the model
continues from its own frames, softer and with other errors; in long drives those errors
compound into a pale smear. As in Self-Forcing, Yume 1.5 and Matrix-Game 2.0, a fraction of the
training batches here are drawn at chunk ``k`` of their clips and get, instead of the true
history, the model's own rollout of chunks ``0 .. k-1`` from the clip's true first frame under
the clip's actions. The sandbox clips hold the true chunk ``k`` for exactly those actions, so
the target stays the truth (DAgger-style: the model learns to get back to the truth from where
its own rollout has taken it).

The rollout is the evaluation's own generator (:class:`world.mvdt.warp.WarpRollout` for a model
with geometric memory, :class:`world.training.evaluate.BatchedRollout` otherwise) with a
checkpoint's ``sampler.json`` settings. The generated frames replace the clip's frames before
:class:`~world.training.train.ChunkSampler` encodes them, so the history holds the frames as
shown, re-encoded, and the warp's newest frame is the last generated one, as in the live
engine (:class:`world.mvdt.engine.MVDTWorld`, ``feedback="shown"``); the start frame and the
target chunk are the clip's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from control.actions import Action
from world.base import WorldError

# Multipliers of the per-step seeds, unlike those of the loop's other per-step streams.
_PLAN_SEED, _NOISE_SEED = 1_000_037, 1_000_039


def rollout_sampler_spec(spec: dict[str, Any] | None = None,
                         init_from: str | Path = "") -> dict[str, Any]:
    """The sampler spec (``{"name", "params", "negative"}``) that rolls the history out.

    ``spec`` when given (non-empty); else the ``sampler.json`` of the warm start's checkpoint
    folder ``init_from`` if it has one; else the shipped checkpoint's, so a rolled history is
    made the way the live engine makes frames.
    """
    if spec:
        return dict(spec)
    from world.mvdt.checkpoint import DEFAULT_CHECKPOINT
    from world.mvdt.engine import SAMPLER_FILE

    for folder in (init_from, DEFAULT_CHECKPOINT):
        path = Path(folder) / SAMPLER_FILE if folder else None
        if path is not None and path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    return {"name": "euler", "params": {}, "negative": "null"}


class RolloutHistory:
    """Replaces the history frames of a batch by the model's own rollout.

    Parameters
    ----------
    model : MVDTModel
        The weights that roll out (the training loop passes its EMA model); run under
        ``torch.no_grad``, never trained through.
    codec : object
        The model's codec (core protocol).
    sampler_spec : dict
        ``{"name", "params", "negative"}`` as in a checkpoint's ``sampler.json``
        (:func:`rollout_sampler_spec`).
    fraction : float
        Share of training batches that are rolled out (0 = none).
    max_chunks : int
        Largest chunk position ``k`` of a rolled batch (the rollout costs ``k`` chunk
        generations, so this bounds a step's time).
    seed : int
        Seed of the per-step choices and of the rollout noise.
    depth_model : world.mvdt.depth.DepthNet, optional
        The learned memory depth the run trains with (``TrainConfig.warp_depth``): the rollout
        warps its memory as the batches and the engine do.
    """

    def __init__(self, model, codec, sampler_spec: dict[str, Any], fraction: float = 0.5,
                 max_chunks: int = 8, seed: int = 0, depth_model=None) -> None:
        from world.mvdt import get_sampler
        from world.mvdt.pipeline import split_sampler_spec

        if not 0.0 <= float(fraction) <= 1.0:
            raise WorldError(f"own_rollout must be a fraction in [0, 1], got {fraction}.")
        if int(max_chunks) < 1:
            raise WorldError(f"own_rollout_chunks must be at least 1, got {max_chunks}.")
        self.fraction, self.max_chunks, self.seed = float(fraction), int(max_chunks), int(seed)
        name, params, negative = split_sampler_spec(sampler_spec)
        sampler = get_sampler(name, **params)
        if getattr(model.config, "warp_sources", None):
            from world.mvdt.warp import WarpRollout

            self.rollout = WarpRollout(model, codec, sampler, negative=negative,
                                       depth_model=depth_model)
        else:
            from world.training.evaluate import BatchedRollout

            self.rollout = BatchedRollout(model, codec, sampler, negative=negative)
        self.fps = model.config.frames_per_chunk

    def plan(self, step: int, chunks: int) -> int | None:
        """Chunk position ``k`` of training step ``step``'s batch if it is rolled out, else None.

        Drawn from a generator seeded by the step alone, so a resumed run makes the same
        choices and the data sampler's own random stream is untouched. ``k`` is uniform over
        ``1 .. min(max_chunks, chunks - 1)`` (``k = 0`` has no history to roll out).
        """
        top = min(self.max_chunks, chunks - 1)
        if self.fraction <= 0 or top < 1:
            return None
        g = torch.Generator().manual_seed(self.seed * _PLAN_SEED + int(step))
        if float(torch.rand(1, generator=g)) >= self.fraction:
            return None
        self.rollout.generator = torch.Generator().manual_seed(
            self.seed * _NOISE_SEED + int(step))
        return 1 + int(torch.randint(top, (1,), generator=g))

    @torch.no_grad()
    def __call__(self, clips: torch.Tensor, actions: torch.Tensor, k: int) -> torch.Tensor:
        """``clips`` with frames ``1 .. k * fps`` (the history after the start frame) generated.

        Parameters
        ----------
        clips : uint8 tensor (B, T, H, W, 3)
            The batch's clips (already mirrored where the sampler mirrors).
        actions : LongTensor (B, chunks)
            Their action indices; chunks ``0 .. k-1`` drive the rollout.
        k : int
            Chunk position of the batch's target.

        Returns
        -------
        uint8 tensor (B, T, H, W, 3)
            A copy: frame 0 and every frame from chunk ``k`` on are the clip's.
        """
        end = 1 + int(k) * self.fps
        model = self.rollout.model
        was_training = model.training
        self.rollout.reset(clips[:, 0].cpu().numpy())
        chunks = [self.rollout.step([Action.from_index(int(a)) for a in actions[:, j]])
                  for j in range(int(k))]
        model.train(was_training)
        out = clips.clone()
        out[:, 1:end] = torch.from_numpy(np.concatenate(chunks, axis=1)).to(out)
        return out
