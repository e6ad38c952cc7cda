"""Geometric memory: remembered frames reprojected into the cameras of the chunk to generate.

The quantized camera motion says exactly where every generated frame's camera is. A rotation
moves the image by a homography, exactly; a step forward moves it by a parallax that needs
depth. :class:`world.baselines.CameraWarp` (the honest evaluation's baseline, kornia's
geometry) does both, the translation with a fixed ground-plane depth prior; this module feeds
its output to the MVDT instead of making the model rediscover the geometry from the action
prompt. Each source in ``config.warp_sources`` gives, for every frame of the chunk, the source
frame warped into that frame's commanded camera (encoded by the model's codec) and the fraction
of each latent position whose pixels see inside the source frame (the rest is border padding):

- ``"first"``: the start frame (the world's anchor): a view seen before comes back when the
  camera returns to it, and what the start frame shows never drifts;
- ``"last"``: the newest frame (generated or observed): what came into view lately.

The model takes the conditioning twice (:class:`world.mvdt.model.MVDTModel`): as extra channels
of a zero-initialised patch embedding added to the chunk tokens, and in the refiner, whose gate
blends each valid warp into the x0 estimate (a learnt residual over the warp).

The camera states are the commanded ones (:func:`control.motion.apply_action`, walls ignored),
the same in training as at run time, so the model learns how far to trust them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from control.actions import Action
from control.motion import CameraState, MotionStep, apply_action
from world.baselines import CameraWarp, SandboxCamera
from world.mvdt import reuse
from world.mvdt.config import MVDTConfig


def camera_warp(config: MVDTConfig, step: MotionStep | None = None) -> CameraWarp:
    """The :class:`~world.baselines.CameraWarp` of a model config (frame size, ``warp_camera``,
    ``warp_interpolation``)."""
    cam_keys = {k: v for k, v in config.warp_camera.items() if k in ("fov_deg", "camera_height")}
    depth_keys = {k: v for k, v in config.warp_camera.items() if k in ("max_depth", "far_depth")}
    cam = SandboxCamera(config.frame_height, config.frame_width, **cam_keys)
    return CameraWarp(cam, step, interpolation=config.warp_interpolation, **depth_keys)


def encode_batch(codec, frames: np.ndarray) -> torch.Tensor:
    """Latents ``(B, C, T, h, w)`` of uint8 frames ``(B, T, H, W, 3)`` (any codec of the core)."""
    space = getattr(codec, "space", None)  # a batched latent space: one call
    if space is not None:
        return space.encode(torch.as_tensor(np.ascontiguousarray(frames)))
    return torch.stack([codec.encode(np.ascontiguousarray(f)) for f in frames])


def chunk_states(start: CameraState, action: Action, frames: int,
                 step: MotionStep | None = None) -> list[CameraState]:
    """Commanded camera after each of the ``frames`` frames of ``action`` from ``start``."""
    step = step or MotionStep()
    out, state = [], start
    for _ in range(frames):
        state = apply_action(state, action, step)
        out.append(state)
    return out


def _geometry_key(warp: CameraWarp, src: Sequence[CameraState],
                  dst: Sequence[CameraState]) -> tuple:
    """Everything :meth:`CameraWarp.sampling_grid` reads, as it reads it: the relative poses and
    intrinsics in float32 (the precision its kornia geometry runs in) and the pitches of the
    depth prior, so equal keys mean bit-equal grids."""
    cam = warp.camera
    rel = np.stack([warp._relative(s, d) for s, d in zip(src, dst, strict=True)])
    k_src = np.stack([cam.intrinsics(s.pitch) for s in src])
    k_dst = np.stack([cam.intrinsics(d.pitch) for d in dst])
    return (rel.astype(np.float32).tobytes(), k_src.astype(np.float32).tobytes(),
            k_dst.astype(np.float32).tobytes(), tuple(float(d.pitch) for d in dst),
            warp.max_depth, warp.far_depth, cam.height, cam.width)


def _warp_with_mask(warp: CameraWarp, frames: np.ndarray, src: Sequence[CameraState],
                    dst: Sequence[CameraState], grids: reuse.InferenceMemo | None):
    """:meth:`CameraWarp.warp_with_mask`, its sampling grids (which depend on the cameras only)
    taken from ``grids`` when the same geometry came before."""
    if grids is None or not reuse.switched_on() or not isinstance(warp, CameraWarp):
        # A learned depth (world.mvdt.depth.DepthWarp) makes the grid depend on the frames.
        return warp.warp_with_mask(frames, src, dst)
    grid = grids.get(("grid", _geometry_key(warp, src, dst)),
                     lambda: warp.sampling_grid(src, dst))
    return warp.resample(frames, grid)


def warp_condition(config: MVDTConfig, codec, warp: CameraWarp,
                   sources: dict[str, tuple[np.ndarray, Sequence[CameraState]]],
                   targets: Sequence[Sequence[CameraState]],
                   grids: reuse.InferenceMemo | None = None) -> torch.Tensor:
    """The conditioning tensor ``(B, S (C + 1), F, h, w)`` of one chunk.

    Parameters
    ----------
    config : MVDTConfig
        Gives the source order (``warp_sources``) and the latent size.
    codec : object
        The model's codec (frames -> latents).
    warp : CameraWarp
        Geometry (:func:`camera_warp`).
    sources : dict
        For each name of ``config.warp_sources``: ``(frames uint8 (B, H, W, 3), states)``, the
        remembered frame of each episode and the camera it was seen from.
    targets : sequence of B sequences of F CameraState
        The commanded camera of every frame of the chunk, per episode.
    grids : InferenceMemo, optional
        Keeps the sampling grids by camera geometry (:mod:`world.mvdt.reuse`): a walk repeats
        the same relative motion from the newest frame chunk after chunk.
    """
    b, f = len(targets), len(targets[0])
    h, w = config.latent_height, config.latent_width
    parts = []
    for name in config.warp_sources:
        frames, states = sources[name]
        frames = np.asarray(frames, np.uint8)
        if len(frames) != b or len(states) != b:
            raise ValueError(f"warp source {name!r} has {len(frames)} frames and {len(states)} "
                             f"cameras for {b} episodes; give one of each per episode.")
        src = [states[i] for i in range(b) for _ in range(f)]
        dst = [t for row in targets for t in row]
        warped, valid = _warp_with_mask(warp, np.repeat(frames, f, axis=0), src, dst, grids)
        z = encode_batch(codec, warped.reshape(b, f, *warped.shape[1:])).float()
        v = F.adaptive_avg_pool2d(valid.float()[:, None], (h, w)).reshape(b, f, 1, h, w)
        parts += [z, v.permute(0, 2, 1, 3, 4).to(z)]
    return torch.cat(parts, dim=1)


class WarpMemory:
    """The geometric memory of B episodes during autoregressive generation.

    Keeps each episode's start frame and newest frame with their commanded cameras, and
    turns the next chunk's actions into the model's conditioning (:func:`warp_condition`).

    Parameters
    ----------
    config : MVDTConfig
    codec : object
        The model's codec.
    step : MotionStep, optional
        Motion per frame of an action (the sandbox's by default, as the engine reports).
    depth_model : world.mvdt.depth.DepthNet, optional
        Warp with the depth it predicts for each remembered frame instead of the fixed prior
        (:class:`world.mvdt.depth.DepthWarp`).
    """

    def __init__(self, config: MVDTConfig, codec, step: MotionStep | None = None,
                 depth_model=None) -> None:
        self.config, self.codec = config, codec
        self.step = step or MotionStep()
        self.warp = camera_warp(config, self.step)
        if depth_model is not None:
            from world.mvdt.depth import DepthWarp

            self.warp = DepthWarp(self.warp, depth_model)
        self.grids = reuse.InferenceMemo(64)
        self.first: np.ndarray | None = None
        self.first_states: list[CameraState] = []
        self.last: np.ndarray | None = None
        self.states: list[CameraState] = []
        self._pending: list[list[CameraState]] | None = None

    def reset(self, first_frames: np.ndarray, states: Sequence[CameraState] | None = None) -> None:
        """Start every episode from its frame, uint8 ``(B, H, W, 3)``, seen from ``states``
        (default: level cameras at the origin)."""
        first = np.asarray(first_frames, np.uint8)
        states = list(states) if states is not None else [CameraState() for _ in first]
        self.first, self.first_states = first.copy(), list(states)
        self.last, self.states = first.copy(), list(states)
        self._pending = None

    def condition(self, actions: Sequence[Action]) -> torch.Tensor:
        """Conditioning ``(B, S (C + 1), F, h, w)`` for the next chunk under ``actions``."""
        if self.first is None:
            raise ValueError("The warp memory is empty; call reset() with the first frames.")
        if len(actions) != len(self.states):
            raise ValueError(f"Got {len(actions)} actions for {len(self.states)} episodes.")
        f = self.config.frames_per_chunk
        targets = [chunk_states(s, a, f, self.step) for s, a in zip(self.states, actions,
                                                                     strict=True)]
        self._pending = targets
        sources = {"first": (self.first, self.first_states), "last": (self.last, self.states)}
        return warp_condition(self.config, self.codec, self.warp, sources, targets, self.grids)

    def advance(self, chunk_frames: np.ndarray) -> None:
        """Record the chunk generated after :meth:`condition`: uint8 ``(B, F, H, W, 3)``."""
        if self._pending is None:
            raise ValueError("advance() follows condition(): no chunk is pending.")
        self.last = np.asarray(chunk_frames, np.uint8)[:, -1].copy()
        self.states = [row[-1] for row in self._pending]
        self._pending = None


class WarpRollout:
    """Batched autoregressive generation of a model with geometric memory.

    The counterpart of :class:`world.training.evaluate.BatchedRollout` that keeps a
    :class:`WarpMemory`.
    The history holds the re-encoded decoded frames (what is shown), so latents outside the
    codec's range never feed back into the next chunk.

    Parameters
    ----------
    model : MVDTModel
    codec : object
    sampler : str or Sampler
    generator : torch.Generator, optional
    negative : {"null", "still"}
    context_noise : float
        Standard deviation of Gaussian noise added to the history latents at inference
        (GameNGen / DIAMOND style; 0 = off).
    depth_model : world.mvdt.depth.DepthNet, optional
        The memory's learned depth (:class:`WarpMemory`).
    """

    def __init__(self, model, codec, sampler, generator: torch.Generator | None = None,
                 negative: str = "null", context_noise: float = 0.0,
                 depth_model=None) -> None:
        from world.mvdt.pipeline import MVDTPipeline

        self.model, self.codec = model, codec
        self.pipeline = MVDTPipeline(model, codec, sampler, negative=negative,
                                     context_noise=context_noise)
        self.generator = generator or torch.Generator().manual_seed(0)
        self.memory = WarpMemory(model.config, codec, depth_model=depth_model)
        self.history: torch.Tensor | None = None
        model.eval()

    def reset(self, first_frames: np.ndarray) -> None:
        """Start every episode from its first frame, uint8 ``(B, H, W, 3)``."""
        first = np.asarray(first_frames, np.uint8)
        self.history = encode_batch(self.codec, first[:, None]).float()
        self.memory.reset(first)

    @torch.no_grad()
    def step(self, actions: Sequence[Action]) -> np.ndarray:
        """Generate the next chunk of every episode; uint8 ``(B, F, H, W, 3)``."""
        cond = self.memory.condition(list(actions))
        latents = self.pipeline.generate_latents(self.history, list(actions),
                                                 generator=self.generator, warp=cond)
        frames = np.stack([self.codec.decode(z) for z in latents])
        self.memory.advance(frames)
        self.history = torch.cat([self.history, encode_batch(self.codec, frames).float()
                                  .to(self.history)], dim=2)
        keep = self.model.config.max_history_frames
        if self.history.shape[2] > 1 + keep:
            self.history = torch.cat([self.history[:, :, :1], self.history[:, :, -keep:]], 2)
        return frames
