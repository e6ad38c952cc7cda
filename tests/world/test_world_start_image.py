"""One start-image loader for all engines: sandbox and MVDT accept and refuse the same images."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from world.base import WorldError
from world.images import MAX_IMAGE_PIXELS, fit_image, load_image
from world.mvdt.engine import MVDTWorld
from world.sandbox import SandboxWorld, image_seed

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 255, (37, 51, 3), dtype=np.uint8)  # odd size, not square


def _png_claiming(path, height: int, width: int) -> None:
    """A valid small PNG whose header announces ``height`` x ``width`` pixels."""
    Image.fromarray(RGB[:8, :8]).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # IHDR checksum
    path.write_bytes(bytes(data))


def _accepted(tmp_path):
    """Odd images both engines must take: (name, image, expected RGB before resizing)."""
    grey16 = RGB[..., 0].astype(np.uint16) * 257
    files = {}
    for name, im in [("grey.png", Image.fromarray(RGB).convert("L")),
                     ("rgba.png", Image.fromarray(RGB).convert("RGBA")),
                     ("palette.png", Image.fromarray(RGB).convert("P")),
                     ("grey16.png", Image.fromarray(grey16)),
                     ("photo.jpg", Image.fromarray(RGB))]:
        files[name] = tmp_path / name
        im.save(files[name])
    grey = np.repeat(RGB[..., :1], 3, axis=-1)
    return [
        ("PIL grayscale", Image.fromarray(RGB).convert("L"),
         np.asarray(Image.fromarray(RGB).convert("L").convert("RGB"))),
        ("PIL RGBA", Image.fromarray(RGB).convert("RGBA"), RGB),
        ("PIL palette", Image.fromarray(RGB).convert("P"),
         np.asarray(Image.fromarray(RGB).convert("P").convert("RGB"))),
        ("PIL 16-bit grey", Image.fromarray(grey16), grey),
        ("grayscale PNG file", files["grey.png"],
         np.asarray(Image.fromarray(RGB).convert("L").convert("RGB"))),
        ("RGBA PNG file", files["rgba.png"], RGB),
        ("palette PNG file", files["palette.png"],
         np.asarray(Image.fromarray(RGB).convert("P").convert("RGB"))),
        ("16-bit PNG file", files["grey16.png"], grey),
        ("JPEG file as text path", str(files["photo.jpg"]), None),
        ("grayscale array", RGB[..., 0], grey),
        ("uint16 array", RGB.astype(np.uint16) * 257, RGB),
        ("float array in [0, 1]", RGB.astype(np.float32) / 255.0, RGB),
        ("RGBA array", np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)]), RGB),
        ("very wide array", np.tile(RGB, (1, 20, 1)), np.tile(RGB, (1, 20, 1))),
        ("8x8, the smallest", RGB[:8, :8], RGB[:8, :8]),
        ("12-megapixel photo", np.broadcast_to(RGB[:1, :1], (3000, 4000, 3)),
         np.broadcast_to(RGB[:1, :1], (3000, 4000, 3))),
    ]


def _refused(tmp_path):
    """Odd images both engines must refuse: (name, image, words of the one sentence)."""
    not_image = tmp_path / "notes.png"
    not_image.write_text("these are not pixels")
    one_pixel = tmp_path / "pixel.png"
    Image.fromarray(RGB[:1, :1]).save(one_pixel)
    bomb = tmp_path / "bomb.png"
    _png_claiming(bomb, 30000, 30000)
    return [
        ("1x1 array", RGB[:1, :1], "too small"),
        ("1x1 PNG file", one_pixel, "too small"),
        ("huge array", np.broadcast_to(np.zeros(3, np.uint8), (10000, 10000, 3)), "too large"),
        ("PNG announcing 30000x30000", bomb, "too large"),
        ("text file named .png", not_image, "Cannot read an image"),
        ("missing file", tmp_path / "nowhere.png", "no such file"),
        ("folder", tmp_path, "is a folder"),
        ("channel-first array", np.zeros((3, 32, 32), np.uint8), "channel-first"),
        ("two channels", np.zeros((32, 32, 2), np.uint8), "shape"),
        ("NaN pixels", np.full((16, 16, 3), np.nan, np.float32), "NaN"),
        ("complex pixels", np.zeros((16, 16, 3), np.complex64), "not supported"),
        ("a list", [[1, 2, 3]], "must be a file path"),
    ]


@pytest.fixture(scope="module")
def engines(tiny):
    mvdt = MVDTWorld(model=tiny, sampler_params={"num_steps": 1, "guidance_scale": 1.0})
    return {"sandbox": SandboxWorld(height=24, width=32), "mvdt": mvdt}


def test_both_engines_accept_the_same_odd_images(engines, tmp_path):
    mvdt, sandbox = engines["mvdt"], engines["sandbox"]
    for name, image, expected in _accepted(tmp_path):
        rgb = load_image(image)
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3, name
        if expected is not None:
            # Grayscale is spread on three channels, alpha dropped, 16 bits scaled to 8.
            assert rgb.shape == expected.shape, name
            assert np.abs(rgb.astype(int) - expected.astype(int)).max() <= 1, name
        first = mvdt.reset(image=image)
        assert first.info["source"] == "image", name
        assert first.frames.shape == (1, mvdt.height, mvdt.width, 3), name
        # MVDT starts from the picture itself, centre-cropped and resized to its resolution.
        np.testing.assert_array_equal(first.frames[0], fit_image(image, mvdt.height, mvdt.width))
        chunk = sandbox.reset(image=image)
        assert chunk.info["from_image"] and chunk.frames.shape == (1, 24, 32, 3), name
        # The sandbox derives its city from the same loaded pixels.
        assert chunk.info["seed"] == image_seed(rgb), name


def test_both_engines_refuse_the_same_images_with_one_sentence(engines, tmp_path):
    for name, image, words in _refused(tmp_path):
        messages = []
        for engine in engines.values():
            with pytest.raises(WorldError) as err:
                engine.reset(image=image)
            messages.append(str(err.value))
        assert messages[0] == messages[1], name
        assert words in messages[0], (name, messages[0])
        assert messages[0].endswith(".") and "\n" not in messages[0], name
        assert messages[0].count(". ") == 0, (name, messages[0])  # one sentence


def test_limits_are_checked_before_pixels_are_decoded(tmp_path):
    # A header announcing 81 megapixels is refused from its size alone: PIL would not even warn
    # below 89 megapixels, and decoding this 8x8 file would fail on its missing pixels instead.
    big = tmp_path / "big.png"
    _png_claiming(big, 9000, 9000)
    with pytest.raises(WorldError, match=f"9000x9000 pixels is too large .more than "
                                         f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels"):
        load_image(big)


def test_fit_image_crops_the_centre_of_non_square_pictures():
    img = np.zeros((10, 30, 3), np.uint8)
    img[:, 10:20] = 255  # the centre third is white
    out = fit_image(img, 8, 8)
    assert out.shape == (8, 8, 3) and out.min() > 200
    tall = fit_image(np.broadcast_to(img.transpose(1, 0, 2), (30, 10, 3)), 16, 8)
    assert tall.shape == (16, 8, 3) and tall.flags.writeable
