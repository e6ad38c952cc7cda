"""The wire protocol of the world service: requests, frames, limits and errors.

Both ends use this module: the server (:mod:`world.service`) and its clients
(:mod:`world.service_client`, :class:`world.remote.RemoteWorld`, the browser viewer's page in
:mod:`world.service_viewer`). It imports neither FastAPI nor uvicorn nor websockets, so a
client loads no server, and the server and its viewer read one definition of the layout.

Requests are JSON text messages with a ``"type"`` (:func:`parse_request`); an ``open``
request is checked against the service's limits by :func:`parse_open`, and its start image or
clip decoded by :func:`decode_image` / :func:`decode_clip`. Frames are binary messages: a
:data:`HEADER` then raw RGB or PNG bytes (:func:`encode_frame`, :func:`stamp_frame`,
:func:`decode_frame`). Every refusal is a :class:`ServiceError` with one sentence.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import struct
import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from control.actions import Action
from world.base import WorldError
from world.images import MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE, load_image

WS_PATH = "/ws"
MAGIC = b"YUMF"
VERSION = 1
FORMATS = {"raw": 0, "png": 1}
_FORMAT_NAMES = {v: k for k, v in FORMATS.items()}
# Little-endian, no padding: magic, version, format, height, width, chunk id, frame index,
# frame within chunk, action index (0-80), world time (s), generated (server Unix time when the
# chunk was ready), sent (server Unix time when the frame was handed to the socket), the 4x4
# camera-to-world pose (row-major), frames this client has lost so far. 177 bytes.
HEADER = struct.Struct("<4sBBHHIIHBddd16dI")
_PREFIX = struct.Struct("<4sBBHHIIHBddd")  # HEADER up to the pose
_SENT_OFFSET = struct.calcsize("<4sBBHHIIHBdd")
_POSE_OFFSET = _PREFIX.size
_DROPPED_OFFSET = HEADER.size - 4
_STAMP = struct.Struct("<d")
_COUNT = struct.Struct("<I")
OPEN_FIELDS = frozenset({"type", "engine", "seed", "height", "width", "image", "clip", "format",
                         "pace", "frame_rate", "frames_per_step"})
MAX_CLIP_FRAMES = 256


class ServiceError(ValueError):
    """A request or a configuration the service refuses, with a sentence saying why."""


class OpenLimits(Protocol):
    """What :func:`parse_open` needs of a service's configuration
    (:class:`world.service.ServiceConfig` has it)."""

    engines: tuple[str, ...]
    max_side: int
    max_upload_bytes: int


def ws_url(host: str, port: int) -> str:
    """The WebSocket address of sessions served on ``host:port`` (a wildcard bind is reached
    on loopback; an IPv6 literal gets its brackets)."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"ws://{host}:{port}{WS_PATH}"


def parse_request(text: str | None) -> dict:
    """A request message (JSON text) as a dict with a string ``"type"``.

    Parameters
    ----------
    text : str or None
        The text of a WebSocket message; None for a binary message.

    Raises
    ------
    ServiceError
        If the message is binary, not JSON, or not an object with a ``"type"``.
    """
    if text is None:
        raise ServiceError("Binary messages are not requests; send JSON text such as "
                           '{"type": "action", "action": "W"}.')
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ServiceError("The message is not valid JSON; send e.g. "
                           '{"type": "action", "action": "W"}.') from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ServiceError('A request is a JSON object with a "type" (open, action, stats '
                           "or close).")
    return data


# ---------------------------------------------------------------------------- frames


def encode_frame(image: np.ndarray, pose: np.ndarray, *, chunk: int, index: int, offset: int,
                 action: Action, world_time: float, generated: float,
                 fmt: str = "raw") -> bytearray:
    """One frame as a binary message: :data:`HEADER` then raw RGB or PNG bytes.

    The message is written into one buffer (the pixels are copied once, the pose without a
    Python float per value). The ``sent`` time and the dropped count are filled in when the
    frame is sent (:func:`stamp_frame`).
    """
    h, w = image.shape[:2]
    if fmt == "png":
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(
            buf, format="PNG", compress_level=1)
        payload = buf.getbuffer()
    else:
        payload = np.ascontiguousarray(image, dtype=np.uint8).data
    out = bytearray(HEADER.size + payload.nbytes)
    _PREFIX.pack_into(out, 0, MAGIC, VERSION, FORMATS[fmt], h, w, chunk, index, offset,
                      action.index, world_time, generated, 0.0)
    out[_POSE_OFFSET:_DROPPED_OFFSET] = np.ascontiguousarray(pose, dtype="<f8").tobytes()
    out[HEADER.size:] = payload  # same length: copied in place, once
    return out


def stamp_frame(data: bytearray, sent: float, dropped: int) -> None:
    """Write the send time and the dropped count into an encoded frame."""
    _STAMP.pack_into(data, _SENT_OFFSET, sent)
    _COUNT.pack_into(data, _DROPPED_OFFSET, min(int(dropped), 2**32 - 1))


@dataclass
class FrameHeader:
    """The decoded :data:`HEADER` of a frame message."""

    format: str
    height: int
    width: int
    chunk: int
    index: int
    offset: int
    action: Action
    world_time: float
    generated: float
    sent: float
    pose: np.ndarray
    dropped: int


def decode_frame(data: bytes) -> tuple[FrameHeader, np.ndarray]:
    """Split a frame message into its header and its ``(H, W, 3)`` uint8 image.

    Raises
    ------
    ServiceError
        If the message is not a frame of this protocol.
    """
    if len(data) < HEADER.size or data[:4] != MAGIC:
        raise ServiceError("The message is not a world frame (bad magic or too short).")
    fields = _PREFIX.unpack_from(data)  # the pose and the dropped count are read apart
    if fields[1] != VERSION:
        raise ServiceError(f"Frame version {fields[1]} is not {VERSION}; update the client.")
    fmt = _FORMAT_NAMES.get(fields[2], "?")
    h, w = fields[3], fields[4]
    payload = memoryview(data)[HEADER.size:]
    if fmt == "raw":
        if len(payload) != h * w * 3:
            raise ServiceError(f"A raw {h}x{w} frame needs {h * w * 3} bytes, got {len(payload)}.")
        image = np.frombuffer(payload, dtype=np.uint8).reshape(h, w, 3)
    elif fmt == "png":
        image = np.asarray(Image.open(io.BytesIO(payload)).convert("RGB"))
    else:
        raise ServiceError(f"Unknown frame format {fields[2]}.")
    pose = np.frombuffer(data, dtype="<f8", count=16, offset=_POSE_OFFSET).reshape(4, 4)
    head = FrameHeader(fmt, h, w, fields[5], fields[6], fields[7], Action.from_index(fields[8]),
                       fields[9], fields[10], fields[11], pose.astype(np.float64),
                       _COUNT.unpack_from(data, _DROPPED_OFFSET)[0])
    return head, image


# ---------------------------------------------------------------------------- requests


def _whole(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ServiceError(f"{name} must be a whole number, got {value!r}.")
    if not low <= int(value) <= high:
        raise ServiceError(f"{name} {int(value)} is out of range; it must lie between {low} and "
                           f"{high}.")
    return int(value)


def _b64(text: Any, what: str, limit: int) -> bytes:
    if not isinstance(text, str):
        raise ServiceError(f"The {what} must be a base64 string, not {type(text).__name__}.")
    if len(text) > 4 * (limit // 3 + 2):  # refuse before decoding anything
        raise ServiceError(f"The {what} is larger than the {limit // 1024} KiB this service "
                           "accepts; send a smaller file.")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ServiceError(f"The {what} is not valid base64; encode the file's bytes with "
                           "base64.") from None
    if len(data) > limit:
        raise ServiceError(f"The {what} is larger than the {limit // 1024} KiB this service "
                           "accepts; send a smaller file.")
    return data


def _open_picture(data: bytes, what: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        raise ServiceError(f"The {what} is not an image file Pillow can read; send a PNG or "
                           "JPEG.") from None
    if h < MIN_IMAGE_SIDE or w < MIN_IMAGE_SIDE or h * w > MAX_IMAGE_PIXELS:
        raise ServiceError(f"The {what} of {w}x{h} pixels is out of range; send one between "
                           f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} and "
                           f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels.")
    return im


def decode_image(data: bytes) -> np.ndarray:
    """Uploaded image bytes as an ``(H, W, 3)`` uint8 array (size checked before decoding)."""
    im = _open_picture(data, "image")
    try:
        im.load()
        return load_image(im)
    except WorldError as err:
        raise ServiceError(str(err)) from None
    except (OSError, ValueError):
        raise ServiceError("The image file is damaged or truncated; send a complete PNG or "
                           "JPEG.") from None


def decode_clip(data: bytes) -> list[np.ndarray]:
    """The frames of an uploaded clip (animated GIF/PNG/WebP, multi-page TIFF)."""
    im = _open_picture(data, "clip")
    frames = []
    try:
        for i, page in enumerate(ImageSequence.Iterator(im)):
            if i >= MAX_CLIP_FRAMES:
                raise ServiceError(f"The clip has more than {MAX_CLIP_FRAMES} frames; send a "
                                   "shorter one.")
            frames.append(load_image(page.convert("RGB")))
    except WorldError as err:
        raise ServiceError(str(err)) from None
    except (OSError, ValueError):
        raise ServiceError("The clip file is damaged or truncated; send a complete animated "
                           "GIF, PNG or WebP.") from None
    return frames


@dataclass
class OpenRequest:
    """A validated ``open`` request."""

    engine: str
    seed: int | None = None
    height: int = 64
    width: int = 64
    image: np.ndarray | None = None
    clip: list[np.ndarray] | None = None
    clip_frames: int = 0
    format: str = "raw"
    pace: bool = True
    engine_kwargs: dict[str, Any] = field(default_factory=dict)


def parse_open(msg: dict, config: OpenLimits) -> OpenRequest:
    """Validate an ``open`` message against the service's limits.

    Raises
    ------
    ServiceError
        With one sentence on the first problem found.
    """
    unknown = set(msg) - OPEN_FIELDS
    if unknown:
        raise ServiceError(f"Unknown open field(s) {', '.join(sorted(unknown))}; the fields are "
                           f"{', '.join(sorted(OPEN_FIELDS - {'type'}))}.")
    engine = str(msg.get("engine", "sandbox")).strip().lower()
    if engine not in config.engines:
        raise ServiceError(f"Unknown engine {msg.get('engine')!r}; this service runs "
                           f"{', '.join(config.engines)}.")
    req = OpenRequest(engine=engine)
    if msg.get("seed") is not None:
        req.seed = _whole(msg["seed"], "seed", 0, 2**31 - 1)
    req.height = _whole(msg.get("height", 64), "height", MIN_IMAGE_SIDE, config.max_side)
    req.width = _whole(msg.get("width", 64), "width", MIN_IMAGE_SIDE, config.max_side)
    fmt = msg.get("format", "raw")
    if fmt not in FORMATS:
        raise ServiceError(f"Unknown frame format {fmt!r}; choose raw or png.")
    req.format = fmt
    pace = msg.get("pace", True)
    if not isinstance(pace, bool):
        raise ServiceError(f"pace must be true or false, got {pace!r}.")
    req.pace = pace
    if msg.get("frame_rate") is not None:
        rate = msg["frame_rate"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 1 <= rate <= 240:
            raise ServiceError(f"frame_rate must be a number of frames per second between 1 "
                               f"and 240, got {rate!r}.")
        req.engine_kwargs["frame_rate"] = float(rate)
    if msg.get("frames_per_step") is not None:
        if engine != "sandbox":
            raise ServiceError("frames_per_step is fixed by the MVDT model; leave it out.")
        req.engine_kwargs["frames_per_step"] = _whole(msg["frames_per_step"], "frames_per_step",
                                                      1, 64)
    if msg.get("image") is not None and msg.get("clip") is not None:
        raise ServiceError("Send a start image or a clip, not both.")
    if msg.get("image") is not None:
        req.image = decode_image(_b64(msg["image"], "image", config.max_upload_bytes))
    elif msg.get("clip") is not None:
        frames = decode_clip(_b64(msg["clip"], "clip", config.max_upload_bytes))
        req.clip, req.clip_frames = frames, len(frames)
    return req
