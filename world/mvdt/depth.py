"""A learned depth for the geometric memory: how far away each pixel of a remembered frame is.

The warp of the memory (:class:`world.baselines.CameraWarp`) needs depth to move a frame by a
step of the camera. Its fixed prior (the ground plane, everything above the horizon at 16 m)
is right for open streets and wrong for every wall: walking towards a house, the prior keeps
it 16 m away and it barely grows. Measured on fresh scenes, the start frame warped with the
*true* depth of each target view gains 1.0 / 1.5 / 2.3 / 2.5 dB PSNR at h1 / h4 / h8 / h16 over
the prior (BENCHMARKS.md, "A learned depth for the memory"), so depth is worth learning.

:class:`DepthNet` reads one frame and predicts its depth (trained on the sandbox's exact depth,
:meth:`world.sandbox.render.SandboxRenderer.render_depth`, by :mod:`world.training.depth`). A
warp samples the *source* frame for every *target* pixel, so it needs the target view's depth;
:func:`target_depth` gets it from the source depth by fixed-point iteration: start from the
prior, find where each target pixel lands in the source, read the source depth there, move
that point into the target camera, take its ``z``, repeat. Target pixels that land outside the
source frame keep the prior.

Weights are safetensors with a JSON config (``depth.safetensors``, ``depth.json``); nothing is
unpickled.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from control.motion import CameraState
from world.baselines import MAX_DEPTH, CameraWarp

WEIGHTS, CONFIG = "depth.safetensors", "depth.json"


@dataclass(frozen=True)
class DepthConfig:
    """Size of a :class:`DepthNet` and the depth range it predicts.

    Parameters
    ----------
    width : int
        Channels of the first level, at half the frame's resolution (doubled at each of the
        two coarser levels); the log depth is upsampled to full size at the end.
    min_depth, max_depth : float
        Depth range in metres; the net predicts ``log`` depth inside it (the sky is
        ``max_depth``).
    """

    width: int = 32
    min_depth: float = 0.3
    max_depth: float = 200.0


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(4, c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, 1, 1), nn.GroupNorm(4, c_out), nn.SiLU())


class DepthNet(nn.Module):
    """A small U-Net: RGB frame (and the row coordinate) -> log depth per pixel.

    The row coordinate is an input because depth in a street depends on the row (the ground
    plane); the frame itself says where the horizon is.
    """

    def __init__(self, config: DepthConfig | None = None) -> None:
        super().__init__()
        self.config = config or DepthConfig()
        c = self.config.width
        chans = [c, 2 * c, 4 * c]
        # Half resolution from the first layer on: on one CPU thread the full-resolution
        # level cost more than the other three together, for depth that is smooth anyway.
        self.down = nn.ModuleList([_block(4, chans[0], stride=2)] + [
            _block(chans[i - 1], chans[i], stride=2) for i in range(1, 3)])
        self.up = nn.ModuleList([_block(chans[i] + chans[i - 1], chans[i - 1])
                                 for i in range(2, 0, -1)])
        self.head = nn.Conv2d(chans[0], 1, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Log depth ``(B, H, W)`` of uint8-range frames ``(B, 3, H, W)`` (0-255)."""
        b, _, h, w = frames.shape
        rows = torch.linspace(-1.0, 1.0, h, device=frames.device, dtype=frames.dtype)
        x = torch.cat([frames / 127.5 - 1.0, rows.view(1, 1, h, 1).expand(b, 1, h, w)], 1)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        lo, hi = np.log(self.config.min_depth), np.log(self.config.max_depth)
        out = F.interpolate(self.head(x), size=(h, w), mode="bilinear", align_corners=False)
        return lo + (hi - lo) * torch.sigmoid(out[:, 0])

    @torch.no_grad()
    def predict(self, frames: np.ndarray) -> torch.Tensor:
        """Depth in metres ``(B, H, W)`` of uint8 frames ``(B, H, W, 3)``."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
        return self(x).exp()


def save_depth_model(model: DepthNet, folder: str | Path, meta: dict | None = None) -> Path:
    """Write ``depth.safetensors`` and ``depth.json`` (config and ``meta``) into ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / WEIGHTS)
    (folder / CONFIG).write_text(json.dumps({"config": asdict(model.config), **(meta or {})},
                                            indent=1), encoding="utf-8")
    return folder


def load_depth_model(folder: str | Path) -> DepthNet:
    """The :class:`DepthNet` saved in ``folder`` (safetensors; nothing runs from the file)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        raise FileNotFoundError(f"{folder} holds no depth model ({WEIGHTS} and {CONFIG}); "
                                "train one with `python -m world.training.depth`.")
    meta = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    model = DepthNet(DepthConfig(**meta["config"]))
    model.load_state_dict(load_file(folder / WEIGHTS))
    return model.eval()


def memory_depth(checkpoint_dir: str | Path | None) -> DepthNet | None:
    """The depth model of a checkpoint's geometric memory (its ``depth/`` folder), or None
    when it ships none (the memory then warps with the fixed prior, as before)."""
    if checkpoint_dir is None or not (Path(checkpoint_dir) / "depth" / WEIGHTS).is_file():
        return None
    return load_depth_model(Path(checkpoint_dir) / "depth")


def target_depth(warp: CameraWarp, source_depth: torch.Tensor, src: Sequence[CameraState],
                 dst: Sequence[CameraState], iterations: int = 3) -> torch.Tensor:
    """Depth of each destination view ``(N, H, W)`` from the depth of its source frame.

    Parameters
    ----------
    warp : CameraWarp
        The geometry (its fixed prior is the starting point and the fallback).
    source_depth : tensor (N, H, W)
        Depth (metres) of each source frame, seen from ``src[i]``.
    src, dst : sequences of N CameraState
    iterations : int
        Fixed-point steps (3 reach within 0.1 dB of many more on the sandbox).
    """
    from kornia.geometry.depth import depth_to_3d_v2
    from kornia.geometry.linalg import transform_points

    cam = warp.camera
    n, h, w = source_depth.shape
    k_src = torch.from_numpy(np.stack([cam.intrinsics(s.pitch) for s in src])).float()
    src_t_dst = np.stack([warp._relative(s, d) for s, d in zip(src, dst, strict=True)])
    dst_t_src = torch.from_numpy(np.linalg.inv(src_t_dst)).float()
    pts = depth_to_3d_v2(source_depth.float().clamp(1e-2, MAX_DEPTH), k_src)  # source frame
    z = transform_points(dst_t_src, pts.reshape(n, -1, 3))[..., 2].reshape(n, 1, h, w)
    fallback = warp.prior_depth([d.pitch for d in dst])
    depth = None
    for _ in range(max(int(iterations), 1)):
        grid = warp.sampling_grid(src, dst, depth=depth)
        inside = (grid.abs() <= 1.0).all(dim=-1)
        sampled = F.grid_sample(z, grid, mode="nearest", padding_mode="border",
                                align_corners=True)[:, 0]
        # Outside the source frame, or behind the target camera: the prior.
        depth = torch.where(inside & (sampled > 1e-2), sampled, fallback)
    return depth


class DepthWarp:
    """:class:`~world.baselines.CameraWarp` with the depth of each frame predicted by a
    :class:`DepthNet` instead of the fixed prior (rotations are unchanged: they need none).

    Parameters
    ----------
    warp : CameraWarp
        Camera model and the prior (the fallback where a target pixel lands outside the source).
    model : DepthNet
    iterations : int
        Fixed-point steps of :func:`target_depth`.
    """

    def __init__(self, warp: CameraWarp, model: DepthNet, iterations: int = 3) -> None:
        self.warp, self.model, self.iterations = warp, model.eval(), int(iterations)
        self.camera, self.step = warp.camera, warp.step
        self._memo: OrderedDict[bytes, torch.Tensor] = OrderedDict()

    def source_depth(self, frames: np.ndarray) -> torch.Tensor:
        """Predicted depth ``(N, H, W)`` of uint8 frames ``(N, H, W, 3)``; the last few answers
        are kept (the memory asks for the same start frame every chunk)."""
        frames = np.ascontiguousarray(frames, np.uint8)
        key = frames.tobytes()
        if key not in self._memo:
            with torch.no_grad():
                self._memo[key] = self.model.predict(frames)
            while len(self._memo) > 4:
                self._memo.popitem(last=False)
        self._memo.move_to_end(key)
        return self._memo[key]

    def target_depth(self, frames: np.ndarray, src: Sequence[CameraState],
                     dst: Sequence[CameraState]) -> torch.Tensor:
        """Depth ``(N, H, W)`` of each ``dst[i]`` from the learned depth of ``frames[i]``."""
        frames = np.asarray(frames, np.uint8)
        # Identical source frames (a chunk's frames all warp the same one) share one forward;
        # found by their bytes (np.unique over rows costs more than the net itself).
        index: dict[bytes, int] = {}
        inverse, firsts = [], []
        for i, f in enumerate(frames):
            k = index.setdefault(f.tobytes(), len(index))
            if k == len(firsts):
                firsts.append(i)
            inverse.append(k)
        depth = self.source_depth(frames[firsts])[torch.tensor(inverse)]
        return target_depth(self.warp, depth, src, dst, self.iterations)

    def sampling_grid(self, frames: np.ndarray, src: Sequence[CameraState],
                      dst: Sequence[CameraState]) -> torch.Tensor:
        """Where each pixel of ``dst[i]`` samples ``frames[i]`` (seen from ``src[i]``)."""
        return self.warp.sampling_grid(src, dst, depth=self.target_depth(frames, src, dst))

    def warp_with_mask(self, frames: np.ndarray, src: Sequence[CameraState],
                       dst: Sequence[CameraState]) -> tuple[np.ndarray, torch.Tensor]:
        """As :meth:`CameraWarp.warp_with_mask`, with the learned depth."""
        return self.warp.warp_with_mask(frames, src, dst,
                                        depth=self.target_depth(frames, src, dst))

    def predict(self, first: np.ndarray, actions: np.ndarray, frames_per_chunk: int
                ) -> np.ndarray:
        """As :meth:`CameraWarp.predict` (every frame warped from ``first``, level start)."""
        from control.actions import Action
        from world.baselines import commanded_states

        first = np.asarray(first, np.uint8)
        b, n = np.asarray(actions).shape
        fpc, out = int(frames_per_chunk), []
        start = CameraState(y=-self.camera.camera_height)
        for i in range(b):
            dst = commanded_states([Action.from_index(int(a)) for a in actions[i]], fpc, start,
                                   self.step)
            warped, _ = self.warp_with_mask(np.repeat(first[i:i + 1], len(dst), 0),
                                            [start] * len(dst), dst)
            out.append(warped)
        return np.stack(out)
