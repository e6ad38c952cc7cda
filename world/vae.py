"""Latent spaces for the world model: fixed space-to-depth pixels, or a small trained video VAE.

Yume runs its DiT on Wan VAE latents (stride 4x8x8, 16 channels). At 64x64 on a CPU the DiT's
cost is set by its token count, which the DiT's own patch embedding decides, not by the latent
channel count; a trained VAE therefore saves almost no DiT compute while adding encode/decode time
and a reconstruction error. :class:`PixelLatent` is the shipped choice: an exactly invertible
space-to-depth ("patchify into channels") with a fixed affine scaling, so a model's output decodes
to pixels without loss. :class:`WanVideoLatent` wraps diffusers' ``AutoencoderKLWan`` in a small
configuration so the alternative can be trained and measured (:func:`train_wan_vae`,
:func:`reconstruction_psnr`); see the "World model" section of ``BENCHMARKS.md`` for the figures.

Layout: frames are uint8 ``(B, T, H, W, 3)``; latents are float ``(B, C, T, h, w)`` (channels
first, as in diffusers video models).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from world import metrics
from world.base import WorldError

logger = logging.getLogger(__name__)


class LatentError(WorldError):
    """A latent-space configuration or file that cannot be used."""


def frames_to_unit(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 ``(B, T, H, W, 3)`` frames to float ``(B, 3, T, H, W)`` in [-1, 1]."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 5 or x.shape[-1] != 3:
        raise LatentError(
            f"Frames must be uint8 of shape (B, T, H, W, 3), got {tuple(x.shape)} {x.dtype}."
        )
    return x.permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)


def unit_to_frames(x: torch.Tensor) -> torch.Tensor:
    """float ``(B, 3, T, H, W)`` in [-1, 1] to uint8 ``(B, T, H, W, 3)`` (clipped, rounded)."""
    return x.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 4, 1)


@dataclass(frozen=True)
class PixelLatentConfig:
    """Space-to-depth latent space.

    Parameters
    ----------
    factor : int
        Spatial stride: a ``factor x factor`` block of RGB pixels becomes ``3 * factor**2``
        channels at one latent position.
    scale : float
        Latents are ``scale * (pixels in [-1, 1] - shift)``; choose them so that latents have
        roughly unit variance, as diffusion noise schedules assume.
    shift : float
        See ``scale``.
    """

    factor: int = 4
    scale: float = 1.0
    shift: float = 0.0
    type: str = "pixel"

    def __post_init__(self) -> None:
        if self.factor < 1 or self.scale <= 0:
            raise LatentError("PixelLatentConfig needs factor >= 1 and scale > 0.")


class PixelLatent:
    """Exactly invertible space-to-depth latent space (see :class:`PixelLatentConfig`)."""

    def __init__(self, config: PixelLatentConfig | None = None) -> None:
        self.config = config or PixelLatentConfig()

    @property
    def channels(self) -> int:
        return 3 * self.config.factor**2

    @property
    def spatial_stride(self) -> int:
        return self.config.factor

    temporal_stride = 1

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, T, h, w) of the latents of ``frames`` frames of ``height x width``."""
        f = self.config.factor
        if height % f or width % f:
            raise LatentError(
                f"Frames of {height}x{width} do not divide by the latent stride {f}; use a "
                f"resolution that is a multiple of {f}."
            )
        return self.channels, frames, height // f, width // f

    def encode(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 ``(B, T, H, W, 3)`` to latents ``(B, 3*f*f, T, H/f, W/f)``."""
        x = frames_to_unit(frames)
        b, c, t, h, w = x.shape
        self.latent_shape(t, h, w)
        f = self.config.factor
        x = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        z = F.pixel_unshuffle(x, f)
        z = z.reshape(b, t, c * f * f, h // f, w // f).permute(0, 2, 1, 3, 4)
        return (z - self.config.shift) * self.config.scale

    def decode_unit(self, z: torch.Tensor) -> torch.Tensor:
        """Latents to float pixels ``(B, 3, T, H, W)`` in about [-1, 1] (not clipped)."""
        b, c, t, h, w = z.shape
        f = self.config.factor
        if c != self.channels:
            raise LatentError(f"Latents have {c} channels; this space has {self.channels}.")
        x = z / self.config.scale + self.config.shift
        x = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        x = F.pixel_shuffle(x, f).reshape(b, t, 3, h * f, w * f)
        return x.permute(0, 2, 1, 3, 4)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents to uint8 frames ``(B, T, H, W, 3)``."""
        return unit_to_frames(self.decode_unit(z))

    def to_dict(self) -> dict:
        return asdict(self.config)


def fit_pixel_latent(frames: torch.Tensor | np.ndarray, factor: int = 4) -> PixelLatent:
    """A :class:`PixelLatent` whose shift and scale give unit-variance latents on ``frames``."""
    x = frames_to_unit(frames)
    shift, std = float(x.mean()), float(x.std())
    return PixelLatent(PixelLatentConfig(factor=factor, scale=1.0 / max(std, 1e-3), shift=shift))


# --------------------------------------------------------------------------- Wan video VAE
@dataclass(frozen=True)
class WanLatentConfig:
    """A small ``AutoencoderKLWan`` (diffusers) for 64x64 sandbox video.

    ``len(dim_mult) - 1`` spatial halvings; ``temperal_downsample`` flags (diffusers' spelling)
    pick which of them also halve time.
    """

    base_dim: int = 16
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    temperal_downsample: tuple[bool, ...] = (False, False)
    type: str = "wan"


class WanVideoLatent:
    """A trainable Wan-style causal video VAE, in the same interface as :class:`PixelLatent`."""

    def __init__(self, config: WanLatentConfig | None = None) -> None:
        from diffusers import AutoencoderKLWan

        self.config = config or WanLatentConfig()
        c = self.config
        self.model = AutoencoderKLWan(
            base_dim=c.base_dim, z_dim=c.z_dim, dim_mult=list(c.dim_mult),
            num_res_blocks=c.num_res_blocks, temperal_downsample=list(c.temperal_downsample),
            latents_mean=[0.0] * c.z_dim, latents_std=[1.0] * c.z_dim,
        )

    @property
    def channels(self) -> int:
        return self.config.z_dim

    @property
    def spatial_stride(self) -> int:
        return 2 ** (len(self.config.dim_mult) - 1)

    def encode(self, frames: torch.Tensor | np.ndarray, sample: bool = False) -> torch.Tensor:
        dist = self.model.encode(frames_to_unit(frames)).latent_dist
        return dist.sample() if sample else dist.mode()

    def decode_unit(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z).sample

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return unit_to_frames(self.decode_unit(z))

    def save(self, directory: str | Path) -> None:
        """Write ``vae.safetensors`` and ``vae_config.json`` into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()},
                  str(d / "vae.safetensors"))
        (d / "vae_config.json").write_text(json.dumps(asdict(self.config), indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> WanVideoLatent:
        d = Path(directory)
        try:
            cfg = json.loads((d / "vae_config.json").read_text())
            cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
            vae = cls(WanLatentConfig(**cfg))
            vae.model.load_state_dict(load_file(str(d / "vae.safetensors")))
        except (OSError, ValueError, TypeError, RuntimeError) as err:
            raise LatentError(f"Cannot load the VAE from {d}: {err}. Retrain it.") from err
        return vae


def psnr(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images/videos (``inf`` when identical).

    The project's one PSNR (:func:`world.metrics.psnr`, kornia's); kept here under this name
    for the callers of the latent spaces.
    """
    return metrics.psnr(np.asarray(a), np.asarray(b))


def reconstruction_psnr(space, frames: torch.Tensor, batch: int = 4) -> float:
    """Mean reconstruction PSNR (dB) of ``space.decode(space.encode(frames))`` over clips."""
    values = []
    with torch.no_grad():
        for i in range(0, len(frames), batch):
            x = frames[i:i + batch]
            values += [psnr(r, o) for r, o in zip(space.decode(space.encode(x)), x, strict=True)]
    return float(np.mean(values))


def train_wan_vae(
    frames: torch.Tensor,
    config: WanLatentConfig | None = None,
    seconds: float = 300.0,
    max_steps: int = 100_000,
    batch: int = 4,
    clip_frames: int = 5,
    lr: float = 1e-3,
    kl_weight: float = 1e-6,
    seed: int = 0,
    progress: bool = True,
) -> tuple[WanVideoLatent, list[dict]]:
    """Train a small Wan VAE on uint8 clips ``(N, T, H, W, 3)`` for a wall-clock budget.

    Returns the VAE and its log (one dict per step: step, seconds, loss).
    """
    torch.manual_seed(seed)
    vae = WanVideoLatent(config)
    opt = torch.optim.AdamW(vae.model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n, t = frames.shape[:2]
    log, start = [], time.perf_counter()
    bar = tqdm(total=max_steps, desc="vae", disable=not progress)
    for step in range(max_steps):
        idx = torch.randint(n, (batch,), generator=gen)
        t0 = int(torch.randint(max(t - clip_frames, 0) + 1, (1,), generator=gen))
        x = frames_to_unit(frames[idx, t0:t0 + clip_frames])
        dist = vae.model.encode(x).latent_dist
        rec = vae.model.decode(dist.sample()).sample
        loss = F.l1_loss(rec, x) + kl_weight * dist.kl().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        elapsed = time.perf_counter() - start
        log.append({"step": step + 1, "seconds": elapsed, "loss": float(loss.detach())})
        bar.update(1)
        if elapsed > seconds:
            break
    bar.close()
    vae.model.eval()
    return vae, log


def latent_space_from_dict(cfg: dict, directory: str | Path | None = None):
    """Build the latent space an MVDT config's ``codec`` describes (``type``: pixel or wan)."""
    kind = cfg.get("type", "pixel")
    if kind == "pixel":
        known = {"factor", "scale", "shift"}
        return PixelLatent(PixelLatentConfig(**{k: v for k, v in cfg.items() if k in known}))
    if kind == "wan":
        if directory is None:
            raise LatentError("A Wan VAE latent space needs the folder holding vae.safetensors.")
        return WanVideoLatent.load(directory)
    raise LatentError(f"Unknown latent space type {kind!r}; use 'pixel' or 'wan'.")
