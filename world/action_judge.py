"""A training-free action classifier: which commanded motion explains the pixels best.

:mod:`world.training.idm` reads actions with a CNN trained on sandbox clips, and one of its
siblings was the world model's training critic, so its reading of generated video is no longer
independent.
This judge learns nothing and so cannot have leaked into any training run: for a chunk it warps
the frame before the chunk into the camera that each of the 81 actions would reach
(:class:`world.baselines.CameraWarp`: homography for turning and tilting, the fixed ground-plane
depth prior for walking) and picks the action whose synthetic view is closest to the chunk's
last frame (analysis by synthesis). Depth above the horizon is unknown, so every action is tried
with several depths for it and keeps its best fit.

Both images are blurred before they are compared, because generated frames are blurrier than
the sandbox's and a blur-sensitive comparison would then prefer the hypotheses that smear most;
a margin of the frame is left out, where the hypotheses differ in what they have to invent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from control.actions import ROTATIONS, TRANSLATIONS, Action
from control.motion import CameraState, MotionStep
from world.baselines import CameraWarp, SandboxCamera, commanded_states

N_ACTIONS = len(TRANSLATIONS) * len(ROTATIONS)


class GeometricJudge:
    """Nearest-synthetic-view action classifier (no learning, no data).

    Parameters
    ----------
    camera : SandboxCamera
        Frame size and camera model.
    frames_per_chunk : int
        Frames an action is held for (the motion the hypotheses integrate).
    step : MotionStep, optional
        Motion per frame (the sandbox's default).
    far_depths : sequence of float
        Depths (m) tried above the horizon; each action keeps its best.
    margin : float
        Fraction of the width/height left out on every side of the comparison.
    blur_sigma : float
        Gaussian blur (pixels of the judged size) of both images.
    downsample : int
        Both frames are box-averaged by this factor first: the motions differ by several
        pixels at 64 px, so a 32 px comparison still separates them at a quarter of the cost.
    batch : int
        Pairs judged per batch (memory: ``batch * 81 * len(far_depths)`` warped images).
    """

    def __init__(self, camera: SandboxCamera, frames_per_chunk: int,
                 step: MotionStep | None = None,
                 far_depths: Sequence[float] = (3.0, 6.0, 16.0), margin: float = 0.125,
                 blur_sigma: float = 0.5, downsample: int = 2, batch: int = 32) -> None:
        self.camera = camera
        self.fpc = int(frames_per_chunk)
        self.downsample = max(1, int(downsample))
        if camera.height % self.downsample or camera.width % self.downsample:
            raise ValueError(f"A {camera.height}x{camera.width} frame does not divide by "
                             f"downsample={downsample}.")
        # Box-averaging pixel pairs keeps the pinhole model: the renderer's pixel-centre
        # coordinates just scale, so the same field of view at the smaller size is exact.
        self.small = SandboxCamera(camera.height // self.downsample,
                                   camera.width // self.downsample, camera.fov_deg,
                                   camera.camera_height)
        self.warper = CameraWarp(self.small, step)
        self.far_depths = tuple(float(d) for d in far_depths)
        self.margin = float(margin)
        self.blur_sigma = float(blur_sigma)
        self.batch = int(batch)
        self._actions = [Action.from_index(i) for i in range(N_ACTIONS)]
        self._grid_cache: dict[float, torch.Tensor] = {}

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        from kornia.filters import gaussian_blur2d

        if self.blur_sigma <= 0:
            return x
        k = 2 * int(np.ceil(2.5 * self.blur_sigma)) + 1
        s = self.blur_sigma
        return gaussian_blur2d(x, (k, k), (s, s), border_type="replicate")

    def _prepare(self, frames: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
        if self.downsample > 1:
            x = F.avg_pool2d(x, self.downsample)
        return self._blur(x)

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        mh = int(round(self.margin * self.small.height))
        mw = int(round(self.margin * self.small.width))
        return x[..., mh:x.shape[-2] - mh, mw:x.shape[-1] - mw]

    @torch.no_grad()
    def errors(self, before: np.ndarray, after: np.ndarray,
               pitch: Sequence[float] | None = None) -> np.ndarray:
        """Mean squared error of each action's synthetic view; ``(N, 81)``.

        Parameters
        ----------
        before, after : ndarray (N, H, W, 3) uint8
            The frame before each chunk and the chunk's last frame.
        pitch : sequence of float, optional
            Camera tilt of each ``before`` frame in radians (default level). The evaluation
            passes the tilt integrated from the commanded actions *before* the chunk: in the
            sandbox's shear camera it places the horizon and so the ground plane, and it says
            nothing about the chunk being judged.
        """
        n = len(before)
        pitch = np.zeros(n) if pitch is None else np.asarray(pitch, float)
        out = np.empty((n, N_ACTIONS))
        for lo in range(0, n, self.batch):
            hi = min(n, lo + self.batch)
            out[lo:hi] = self._errors(before[lo:hi], after[lo:hi], pitch[lo:hi])
        return out

    def _grids(self, pitch: float) -> torch.Tensor:
        """Sampling grids of all 81 actions x depths from a camera at ``pitch``, cached.

        The hypotheses' geometry depends only on the starting tilt, which the commanded walk
        quantises to whole steps, so a handful of grids serve a whole evaluation.
        """
        key = round(float(pitch), 6)
        grid = self._grid_cache.get(key)
        if grid is None:
            start = CameraState(y=-self.small.camera_height, pitch=float(pitch))
            ends = [commanded_states([a], self.fpc, start, self.warper.step)[-1]
                    for a in self._actions]
            grid = torch.cat([self.warper.sampling_grid([start] * N_ACTIONS, ends, depth)
                              for depth in self.far_depths])
            self._grid_cache[key] = grid
        return grid

    def _errors(self, before: np.ndarray, after: np.ndarray, pitch: np.ndarray) -> np.ndarray:
        b, n_hyp = len(before), N_ACTIONS * len(self.far_depths)
        # Blurring before the warp instead of after it is the same up to resampling for these
        # near-rigid motions, and blurs N images instead of 81 N per depth.
        x = self._prepare(before)
        y = self._crop(self._prepare(after))
        grid = torch.cat([self._grids(p) for p in pitch])
        syn = F.grid_sample(x.repeat_interleave(n_hyp, dim=0), grid, mode="bilinear",
                            padding_mode="border", align_corners=True)
        syn = self._crop(syn).reshape(b, len(self.far_depths), N_ACTIONS, *y.shape[1:])
        err = (syn - y[:, None, None]).pow(2).mean((3, 4, 5))
        # Each action keeps the depth that explains the frame best.
        return err.amin(1).numpy()

    def predict(self, before: np.ndarray, after: np.ndarray,
                pitch: Sequence[float] | None = None) -> np.ndarray:
        """(translation class, rotation class) per pair, ``(N, 2)`` int (IDM's convention)."""
        idx = self.errors(before, after, pitch).argmin(1)
        return np.stack(np.divmod(idx, len(ROTATIONS)), axis=1)


def judge_scores(pred: np.ndarray, actions: np.ndarray) -> dict:
    """Translation / rotation / both right, overall and per key, of predicted classes.

    Parameters
    ----------
    pred : ndarray (N, 2) int
        (translation class, rotation class) read from the video.
    actions : ndarray (N,) int
        Commanded :attr:`control.actions.Action.index` of each chunk.
    """
    want = np.stack(np.divmod(np.asarray(actions, np.int64), len(ROTATIONS)), axis=1)
    ok = np.asarray(pred) == want
    per_t = {key: {"n": int((want[:, 0] == i).sum()), "accuracy": float(ok[want[:, 0] == i, 0]
                                                                         .mean())}
             for i, key in enumerate(TRANSLATIONS) if (want[:, 0] == i).any()}
    per_r = {key: {"n": int((want[:, 1] == i).sum()), "accuracy": float(ok[want[:, 1] == i, 1]
                                                                         .mean())}
             for i, key in enumerate(ROTATIONS) if (want[:, 1] == i).any()}
    return {"n": int(len(want)), "action": float(ok.all(1).mean()) if len(want) else float("nan"),
            "translation": float(ok[:, 0].mean()) if len(want) else float("nan"),
            "rotation": float(ok[:, 1].mean()) if len(want) else float("nan"),
            "by_translation_key": per_t, "by_rotation_key": per_r}
