"""Image metrics of the world evaluations: PSNR, SSIM and sharpness of uint8 frames.

PSNR and SSIM are kornia's (:mod:`kornia.metrics`), the one implementation every evaluation of
the project uses (:mod:`world.training.evaluate`, :mod:`world.honest_eval`, :mod:`world.vae`, the
benchmarks); these wrappers only fix the conventions (uint8 ``(..., H, W, 3)`` in, float out).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from world.base import WorldError

__all__ = ["pooled_psnr", "psnr", "sharpness", "ssim"]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays (kornia.metrics.psnr); ``inf`` when they are identical."""
    from kornia.metrics import psnr as kpsnr

    x = torch.as_tensor(np.asarray(a, np.float64))
    y = torch.as_tensor(np.asarray(b, np.float64))
    if x.shape != y.shape:
        raise WorldError(f"PSNR needs arrays of one shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}.")
    if torch.equal(x, y):
        return math.inf
    return float(kpsnr(x, y, 255.0))


def pooled_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of the mean squared error pooled over all frames of ``a`` and ``b``.

    Averaging per-frame PSNR breaks when one frame is reproduced exactly (``inf``), which the
    "repeat the last frame" baseline does whenever the camera stood still; pooling the error
    first stays finite unless everything matches.
    """
    return psnr(a, b)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of uint8 images ``(..., H, W, 3)`` (kornia.metrics.ssim).

    Gaussian window 11 / sigma 1.5 (smaller for images under 11 pixels), constants K1 = 0.01,
    K2 = 0.03, per RGB channel, over the valid part of the image (no padding); the mean is
    clipped to [0, 1] (negative SSIM, anti-correlated structure, counts as no similarity).
    Identical images give 1.
    """
    from kornia.metrics import ssim as kssim

    x = torch.from_numpy(np.array(a, dtype=np.float64)).reshape(-1, *np.shape(a)[-3:])
    y = torch.from_numpy(np.array(b, dtype=np.float64)).reshape(-1, *np.shape(b)[-3:])
    if x.shape != y.shape:
        raise WorldError(f"SSIM needs images of one shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}.")
    x, y = x.permute(0, 3, 1, 2), y.permute(0, 3, 1, 2)
    size = min(11, x.shape[-1], x.shape[-2])
    size -= 1 - size % 2  # kornia's window must be odd
    s = kssim(x, y, size, max_val=255.0, padding="valid")
    return float(np.clip(float(s.mean()), 0.0, 1.0))


def sharpness(frames: np.ndarray) -> float:
    """Mean squared Laplacian of the grey frames (drops as frames blur)."""
    grey = torch.as_tensor(np.asarray(frames, np.float32)).reshape(-1, *np.shape(frames)[-3:])
    grey = grey.mean(-1, keepdim=True).permute(0, 3, 1, 2)
    lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).reshape(1, 1, 3, 3)
    return float(F.conv2d(grey, lap).pow(2).mean())
