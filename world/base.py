"""The interface every world engine implements (the procedural sandbox, the MVDT model).

A world starts from a scene seed or an image, then ``step(action)`` returns the next chunk of
frames with their timestamps and camera poses. Engines know the action vocabulary of
``control`` and nothing else of the project.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from control.actions import Action


class WorldError(ValueError):
    """Bad input to a world engine (resolution, image, checkpoint...)."""


@dataclass
class Chunk:
    """Frames generated for one action.

    Attributes
    ----------
    frames : ndarray, shape (n, height, width, 3), uint8
        RGB frames.
    timestamps : ndarray, shape (n,), float64
        World time of each frame in seconds since the world started.
    poses : ndarray, shape (n, 4, 4), float64
        Camera-to-world pose of each frame (OpenCV convention). For generative engines these are
        the poses the action asked for, not measured ones.
    action : Action
        The action that produced the chunk.
    info : dict
        Engine-specific extras (collisions, generation time...).
    """

    frames: np.ndarray
    timestamps: np.ndarray
    poses: np.ndarray
    action: Action
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)


def check_resolution(height: int, width: int) -> tuple[int, int]:
    """Validate a frame size and return it as ints."""
    try:
        h, w = int(height), int(width)
    except (TypeError, ValueError) as err:
        raise WorldError(
            f"Resolution must be two whole numbers, got {height!r}x{width!r}."
        ) from err
    if h <= 0 or w <= 0 or h != height or w != width:
        raise WorldError(
            f"Resolution {height}x{width} is not valid; height and width must be positive "
            "whole numbers such as 256x256."
        )
    if h > 4096 or w > 4096:
        raise WorldError(f"Resolution {h}x{w} is larger than the 4096x4096 this engine supports.")
    return h, w


def check_start(image, clip) -> list | None:
    """Refuse an image together with a clip; returns the clip's frames as a list (or None).

    Raises
    ------
    WorldError
        If both are given, or the clip holds no frames.
    """
    if clip is None:
        return None
    if image is not None:
        raise WorldError("Give a start image or a start clip, not both.")
    frames = list(clip)
    if not frames:
        raise WorldError("The start clip holds no frames; pass at least one RGB frame.")
    return frames


class WorldEngine(abc.ABC):
    """Base class of world engines.

    Subclasses set :attr:`frame_rate`, :attr:`height`, :attr:`width` and
    :attr:`frames_per_step`, and implement :meth:`reset` and :meth:`step`.
    """

    name: str = "world"
    frame_rate: float = 16.0
    height: int = 256
    width: int = 256
    frames_per_step: int = 1

    @abc.abstractmethod
    def reset(self, seed: int | None = None, image: np.ndarray | None = None,
              clip: Sequence[np.ndarray] | None = None) -> Chunk:
        """Start a new world; returns the first frame.

        Parameters
        ----------
        seed : int, optional
            Scene seed (and noise seed of generative engines).
        image : ndarray (H, W, 3) uint8 or anything the engine loads, optional
            A start picture.
        clip : sequence of RGB frames, optional
            A start video, oldest frame first: the world continues from its last frame, and
            engines with a memory keep the frames as their history. Give ``image`` or ``clip``,
            not both (:func:`check_start` refuses both).
        """

    @abc.abstractmethod
    def step(self, action: Action) -> Chunk:
        """Advance by one chunk under ``action``."""

    @property
    def pose(self) -> np.ndarray:
        """Camera-to-world pose of the last frame."""
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional hook, most engines hold nothing
        """Release resources (threads, files); the default has none."""
