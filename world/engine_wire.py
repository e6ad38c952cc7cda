"""The messages between the world service and its engine processes, as data only.

A message is a tree of JSON values, numpy arrays, bytes, :class:`~control.actions.Action`,
:class:`~world.base.Chunk` and paths. :func:`encode` writes it as a 4-byte length, a JSON
header in which every array and byte string is a numbered placeholder, then those buffers as
they are (an 8-byte length each); :func:`decode` reads it back. Nothing in a message can
name code to run (unlike a pickle), so a corrupted or foreign message can only fail to decode.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from control.actions import Action
from world.base import Chunk

__all__ = ["WireError", "decode", "encode"]

_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")


class WireError(ValueError):
    """A message that cannot be encoded or decoded."""


def encode(obj: Any) -> bytes:
    """``obj`` as one message (see the module docstring)."""
    blobs: list[memoryview] = []

    def tree(x: Any) -> Any:
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            a = np.ascontiguousarray(x)
            blobs.append(memoryview(a).cast("B"))
            return {"$nd": len(blobs) - 1, "dtype": a.dtype.str, "shape": list(a.shape)}
        if isinstance(x, (bytes, bytearray, memoryview)):
            blobs.append(memoryview(x).cast("B"))
            return {"$b": len(blobs) - 1}
        if isinstance(x, Action):
            return {"$action": x.index}
        if isinstance(x, Chunk):
            return {"$chunk": [tree(x.frames), tree(x.timestamps), tree(x.poses),
                               tree(x.action), tree(x.info)]}
        if isinstance(x, PurePath):
            return {"$path": str(x)}
        if isinstance(x, (list, tuple)):
            return [tree(v) for v in x]
        if isinstance(x, dict):
            if not all(isinstance(k, str) for k in x):
                raise WireError("Only dicts with string keys can be sent to an engine process.")
            return {"$dict": {k: tree(v) for k, v in x.items()}}
        raise WireError(f"A {type(x).__name__} cannot be sent to an engine process.")

    head = json.dumps(tree(obj), separators=(",", ":")).encode()
    parts = [_U32.pack(len(head)), head]
    for blob in blobs:
        parts += [_U64.pack(blob.nbytes), blob]
    return b"".join(parts)


def decode(data: bytes | bytearray | memoryview) -> Any:
    """The object of one message written by :func:`encode`.

    Raises
    ------
    WireError
        If the bytes are not such a message.
    """
    view = memoryview(data).cast("B")
    try:
        (n,) = _U32.unpack_from(view, 0)
        node = json.loads(bytes(view[4:4 + n]))
        blobs, pos = [], 4 + n
        while pos < len(view):
            (size,) = _U64.unpack_from(view, pos)
            blobs.append(view[pos + 8:pos + 8 + size])
            pos += 8 + size
        return _value(node, blobs)
    except (struct.error, ValueError, KeyError, IndexError, TypeError) as err:
        raise WireError(f"A message from the engine process could not be read ({err}).") from None


def _value(x: Any, blobs: list[memoryview]) -> Any:
    if isinstance(x, list):
        return [_value(v, blobs) for v in x]
    if not isinstance(x, dict):
        return x
    if "$nd" in x:
        return np.frombuffer(blobs[x["$nd"]], dtype=np.dtype(x["dtype"])).reshape(
            x["shape"]).copy()
    if "$b" in x:
        return bytearray(blobs[x["$b"]])  # writable: the service stamps frames in place
    if "$action" in x:
        return Action.from_index(int(x["$action"]))
    if "$chunk" in x:
        frames, stamps, poses, action, info = (_value(v, blobs) for v in x["$chunk"])
        return Chunk(frames=frames, timestamps=stamps, poses=poses, action=action, info=info)
    if "$path" in x:
        return Path(x["$path"])
    return {k: _value(v, blobs) for k, v in x["$dict"].items()}
