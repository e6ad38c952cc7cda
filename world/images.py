"""Start images for every world engine: one loader, so the sandbox and MVDT accept the same ones.

:func:`load_image` turns a file path, a PIL image of any mode (grayscale, RGBA, palette,
16-bit...) or an array (grayscale, RGB, RGBA; uint8, uint16, bool or float) into an
``(H, W, 3)`` uint8 RGB array; :func:`fit_image` also centre-crops it to an aspect ratio and
resizes it to a frame size. What cannot reasonably become a picture (an empty or 1x1 image, an
image larger than :data:`MAX_IMAGE_PIXELS`, NaNs, channel-first arrays, a file that is not an
image) is refused with one :class:`~world.base.WorldError` sentence saying what to pass.

The module needs numpy and Pillow only (no torch), so the procedural sandbox can use it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from world.base import WorldError

# Fewer pixels per side carry no picture worth starting a world from (a 1x1 image is usually a
# placeholder or tracking pixel saved by mistake).
MIN_IMAGE_SIDE = 8
# About 8192x8192: any camera photo fits, while a decompression bomb or a mistaken raster
# (a 100k x 100k map) is refused before its pixels are decoded.
MAX_IMAGE_PIXELS = 8192 * 8192

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_EXAMPLE = "pass an RGB or grayscale picture such as a PNG or JPEG file"


def _check_size(h: int, w: int, what: str = "The image") -> None:
    if h < MIN_IMAGE_SIDE or w < MIN_IMAGE_SIDE:
        raise WorldError(f"{what} of {h}x{w} pixels is too small to start a world from; pass "
                         f"one of at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels.")
    if h * w > MAX_IMAGE_PIXELS:
        raise WorldError(f"{what} of {h}x{w} pixels is too large (more than "
                         f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels); scale it down first.")


def _open_file(path: Path) -> Image.Image:
    if path.is_dir():
        raise WorldError(f"Cannot read an image from {path}: it is a folder; {_EXAMPLE}.")
    if not path.is_file():
        raise WorldError(f"Cannot read an image from {path}: there is no such file; check the "
                         "path.")
    try:
        with warnings.catch_warnings():
            # Size is checked below against our own limit; PIL's bomb warning would repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                _check_size(h, w, f"The image {path.name}")  # before decoding any pixel
                im.load()
                return im.copy()
    except WorldError:
        raise
    except Image.DecompressionBombError:  # PIL's own, far larger limit, hit while opening
        raise WorldError(f"The image {path.name} is too large (more than "
                         f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels); scale it down "
                         "first.") from None
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise WorldError(f"Cannot read an image from {path} ({err}); {_EXAMPLE}.") from err


def _from_pil(image: Image.Image) -> np.ndarray:
    w, h = image.size
    _check_size(h, w)
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "I":
        # 16-bit grey (PNG, TIFF): scale the full range, not PIL's clipping conversion to "L".
        arr = np.asarray(image, dtype=np.int64)
        top = 65535.0 if image.mode in _SIXTEEN_BIT_MODES or arr.max() > 255 else 255.0
        return np.clip(arr / top * 255.0, 0, 255).round().astype(np.uint8)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    try:
        return np.asarray(image.convert("RGB"))
    except (ValueError, OSError) as err:
        raise WorldError(f"Cannot convert an image of mode {image.mode} to RGB ({err}); "
                         f"{_EXAMPLE}.") from err


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype.kind in "iu":
        # uint16 is 16-bit data; other wide ints are 8-bit values unless they exceed 255.
        top = 65535.0 if arr.dtype == np.uint16 or arr.max() > 255 else 255.0
        return np.clip(arr.astype(np.float64) / top * 255.0, 0, 255).round().astype(np.uint8)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise WorldError("The image contains NaN or infinite values; pass finite pixel "
                             "values.")
        scale = 255.0 if arr.max() <= 1.0 else 1.0  # [0, 1] floats, else 0-255 floats
        return np.clip(arr * scale, 0, 255).round().astype(np.uint8)
    raise WorldError(f"Image pixels of type {arr.dtype} are not supported; use uint8, uint16 "
                     "or float in [0, 1].")


def load_image(image: Any) -> np.ndarray:
    """Any supported start image as an ``(H, W, 3)`` uint8 RGB array (not resized).

    Parameters
    ----------
    image : path-like, PIL image, ndarray or tensor
        A file Pillow reads (PNG, JPEG, TIFF, BMP, GIF...); a PIL image of any mode (``L``,
        ``LA``, ``P``, ``RGBA``, ``I;16``, ``F``...); or an array of shape (H, W), (H, W, 1),
        (H, W, 3) or (H, W, 4) of uint8, uint16 (16-bit), bool or float (in [0, 1] or 0-255).
        Alpha is dropped; grayscale is repeated on three channels.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
        A new contiguous array.

    Raises
    ------
    WorldError
        If the file is missing or not an image, or the image is smaller than
        :data:`MIN_IMAGE_SIDE` or larger than :data:`MAX_IMAGE_PIXELS`, has another shape, NaNs
        or an unsupported pixel type.
    """
    if isinstance(image, (str, Path)):
        image = _open_file(Path(image))
    if isinstance(image, Image.Image):
        image = _from_pil(image)
    elif hasattr(image, "detach") and hasattr(image, "numpy"):  # a torch tensor, without torch
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise WorldError(f"A start image must be a file path, a PIL image or an (H, W, 3) "
                         f"array, not {type(image).__name__}.")
    arr = image
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))):
        raise WorldError(f"A start image array must have shape (H, W), (H, W, 3) or (H, W, 4), "
                         f"got {arr.shape}; channel-first arrays need a transpose to "
                         "(H, W, C).")
    _check_size(arr.shape[0], arr.shape[1])  # before any copy of a huge array
    arr = _to_uint8(arr[..., :3] if arr.ndim == 3 else arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    return np.ascontiguousarray(arr)


def fit_image(image: Any, height: int, width: int) -> np.ndarray:
    """:func:`load_image`, centre-cropped to ``width / height`` and resized to (height, width).

    Returns
    -------
    ndarray, shape (height, width, 3), uint8
        A new, writable, contiguous array.
    """
    arr = load_image(image)
    h, w = arr.shape[:2]
    target = width / height
    if w / h > target:  # too wide: crop columns
        cw = max(1, round(h * target))
        x0 = (w - cw) // 2
        arr = arr[:, x0:x0 + cw]
    elif w / h < target:
        ch = max(1, round(w / target))
        y0 = (h - ch) // 2
        arr = arr[y0:y0 + ch]
    if arr.shape[:2] != (height, width):
        arr = np.asarray(Image.fromarray(np.ascontiguousarray(arr)).resize(
            (width, height), Image.Resampling.BICUBIC))
    return np.array(arr, dtype=np.uint8, copy=True)
