"""The procedural sandbox world: a seeded 3D city rendered on the CPU from a walking camera.

:class:`SandboxWorld` implements :class:`world.base.WorldEngine` without any learned model. It
is the ground truth the video model is trained on and evaluated against: the same seed and the
same actions always give identical frames, and every frame comes with the exact camera pose it
was rendered from.

* Scene: :func:`world.sandbox.scene.generate_scene` (streets, buildings, parks, plazas and four
  landmarks: red tower, blue pillar, yellow arch, fountain, bounded by a wall).
* Rendering: :class:`world.sandbox.render.SandboxRenderer`, a vectorised numpy raycaster. Yaw
  and position are rendered exactly; **pitch is rendered as a vertical shear** of the image
  (see that module).
* Motion: each frame moves the camera with :func:`control.motion.apply_action`; the commanded
  displacement is first resolved against the walls and the allowed one is passed as ``delta``.
* Collisions: the camera is a circle of ``radius`` metres, kept out of walls conservatively by
  its bounding square; blocked motion slides along walls, and ``chunk.info["collided"]`` says
  whether any frame of the chunk was blocked.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict

import numpy as np

from control.actions import IDLE, Action, parse_action
from control.motion import CameraState, MotionStep, apply_action, translation_delta
from world.base import Chunk, WorldEngine, WorldError, check_resolution, check_start
from world.images import load_image
from world.sandbox.render import SandboxRenderer
from world.sandbox.scene import SandboxScene, generate_scene

logger = logging.getLogger(__name__)

_EPS = 1e-9  # gap left between the camera's square and a wall it was pushed against
_DEFAULT_STEP = MotionStep()
_SCENE_CACHE: OrderedDict[tuple, SandboxScene] = OrderedDict()
_SCENE_CACHE_SIZE = 8


def cached_scene(
    seed: int, size: int = 64, cell: float = 3.0, tint: np.ndarray | None = None
) -> SandboxScene:
    """:func:`generate_scene` with a small LRU cache (scenes are immutable: arrays read-only).

    Clip generation and tests build many worlds from the same few seeds; the cache also keeps
    each scene's texture table, so a second world on a seed starts in milliseconds.
    """
    key = (int(seed), int(size), float(cell), None if tint is None else np.asarray(
        tint, np.float64).tobytes())
    scene = _SCENE_CACHE.get(key)
    if scene is None:
        scene = generate_scene(seed, size, cell, tint=tint)
        for name in ("hi", "lo", "wall_tex", "floor_tex", "solid", "wall_textures",
                     "floor_textures", "sky", "fog_colour"):
            getattr(scene, name).setflags(write=False)
        _SCENE_CACHE[key] = scene
        while len(_SCENE_CACHE) > _SCENE_CACHE_SIZE:
            _SCENE_CACHE.popitem(last=False)
    else:
        _SCENE_CACHE.move_to_end(key)
    return scene


def image_seed(rgb: np.ndarray) -> int:
    """A scene seed derived from the image's size and pixel bytes (SHA-256, 63 bits)."""
    h = hashlib.sha256()
    h.update(np.asarray(rgb.shape, np.int64).tobytes())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return int.from_bytes(h.digest()[:8], "little") >> 1


def dominant_colours(rgb: np.ndarray, k: int = 3) -> np.ndarray:
    """The ``k`` most frequent colours of an image, as (k', 3) floats in [0, 1] (k' <= k).

    Pixels (subsampled to at most about 64x64) are binned by the top 3 bits of each channel; the
    mean colour of each of the most populated bins is returned, most frequent first.
    """
    sy = max(1, rgb.shape[0] // 64)
    sx = max(1, rgb.shape[1] // 64)
    px = rgb[::sy, ::sx].reshape(-1, 3).astype(np.int64)
    bins = (px[:, 0] >> 5) * 64 + (px[:, 1] >> 5) * 8 + (px[:, 2] >> 5)
    counts = np.bincount(bins, minlength=512)
    top = np.argsort(-counts, kind="stable")[:k]
    top = top[counts[top] > 0]
    return np.stack([px[bins == b].mean(axis=0) / 255.0 for b in top])


class SandboxWorld(WorldEngine):
    """A seeded procedural city seen by a walking first-person camera.

    Parameters
    ----------
    seed : int
        Scene seed used by :meth:`reset` when no other is given.
    height, width : int
        Frame size in pixels; any positive size up to 4096.
    frames_per_step : int
        Frames rendered per :meth:`step` (one action is held for all of them).
    frame_rate : float
        Frames per second of world time (for the chunk timestamps).
    step : MotionStep
        How far one frame of an action moves and turns the camera.
    map_size : int
        Cells per side of the square map.
    cell_size : float
        Cell size in metres.
    radius : float
        Radius (m) of the camera's collision circle.
    fov_deg : float
        Horizontal field of view in degrees.
    fog_length : float
        Fog distance (m) at camera height.

    Examples
    --------
    >>> world = SandboxWorld(seed=3, height=128, width=128, frames_per_step=4)
    >>> first = world.reset()
    >>> chunk = world.step(parse_action("W ←"))
    >>> chunk.frames.shape, chunk.poses.shape
    ((4, 128, 128, 3), (4, 4, 4))
    """

    name = "sandbox"

    def __init__(
        self,
        seed: int = 0,
        height: int = 256,
        width: int = 256,
        frames_per_step: int = 1,
        frame_rate: float = 16.0,
        step: MotionStep = _DEFAULT_STEP,
        map_size: int = 64,
        cell_size: float = 3.0,
        radius: float = 0.25,
        fov_deg: float = 80.0,
        fog_length: float = 45.0,
    ) -> None:
        self.height, self.width = check_resolution(height, width)
        if int(frames_per_step) != frames_per_step or frames_per_step < 1:
            raise WorldError(f"frames_per_step must be a whole number >= 1, got {frames_per_step}.")
        if not frame_rate > 0:
            raise WorldError(f"frame_rate must be positive, got {frame_rate}.")
        if not isinstance(step, MotionStep):
            raise WorldError("step must be a control.motion.MotionStep.")
        if not 0 < radius < cell_size / 2:
            raise WorldError(f"radius must lie between 0 and half a cell ({cell_size / 2} m).")
        self.frames_per_step = int(frames_per_step)
        self.frame_rate = float(frame_rate)
        self.motion = step
        self.map_size = int(map_size)
        self.cell_size = float(cell_size)
        self.radius = float(radius)
        self.fov_deg = float(fov_deg)
        self.fog_length = float(fog_length)
        self.seed = self._check_seed(seed)
        self._load(self.seed, None)

    # ------------------------------------------------------------------ set-up

    @staticmethod
    def _check_seed(seed) -> int:
        try:
            s = int(seed)
        except (TypeError, ValueError) as err:
            raise WorldError(f"A scene seed must be a whole number, got {seed!r}.") from err
        if s != seed or s < 0:
            raise WorldError(f"A scene seed must be a non-negative whole number, got {seed!r}.")
        return s

    def _load(self, seed: int, tint: np.ndarray | None) -> None:
        try:
            self._scene = cached_scene(seed, self.map_size, self.cell_size, tint=tint)
            self._renderer = SandboxRenderer(
                self._scene, self.height, self.width, fov_deg=self.fov_deg,
                fog_length=self.fog_length,
            )
        except ValueError as err:
            raise WorldError(str(err)) from err
        self.seed = seed
        self._state = self._scene.spawn
        self._frame = 0

    def reset(self, seed: int | None = None, image=None, clip=None) -> Chunk:
        """Start a new walk; returns the first frame (timestamp 0).

        Parameters
        ----------
        seed : int, optional
            Scene seed; default: the world's current seed (so ``reset()`` restarts the same
            city at its spawn point).
        image : path-like, PIL image or ndarray, optional
            A start image, anything :func:`world.images.load_image` accepts (the MVDT world
            accepts the same). The sandbox cannot reproduce the picture;
            instead the scene seed is derived from the image bytes (unless ``seed`` is also
            given) and the buildings' and sky's palette is pulled towards the image's dominant
            colours, so the same image always gives the same, image-coloured city.
        clip : sequence of frames, optional
            A start video: the walk starts from its last frame, exactly as ``image=clip[-1]``.
            The sandbox has no memory of past frames, so the earlier frames are not used.

        Raises
        ------
        WorldError
            For a negative or non-integer seed, an invalid image, or both an image and a clip.
        """
        frames = check_start(image, clip)
        if frames is not None:
            image = frames[-1]
        tint = None
        if image is not None:
            # Not resized to the frame size: the same picture gives the same city at any
            # resolution.
            rgb = load_image(image)
            tint = dominant_colours(rgb)
            if seed is None:
                seed = image_seed(rgb)
        seed = self.seed if seed is None else self._check_seed(seed)
        self._load(seed, tint)
        frame = self._renderer.render(self._state)
        return Chunk(
            frames=frame[None], timestamps=np.zeros(1), poses=self._state.pose()[None],
            action=IDLE,
            info={"seed": seed, "collided": False, "collided_frames": np.zeros(1, bool),
                  "from_image": image is not None},
        )

    # ------------------------------------------------------------------ properties

    @property
    def scene(self) -> SandboxScene:
        """The current city (map, textures, spawn point, landmark positions)."""
        return self._scene

    @property
    def state(self) -> CameraState:
        """Camera state of the last frame."""
        return self._state

    @property
    def pose(self) -> np.ndarray:
        """Camera-to-world pose (4x4, OpenCV convention) of the last frame."""
        return self._state.pose()

    @property
    def time(self) -> float:
        """World time (s) of the last frame."""
        return self._frame / self.frame_rate

    def intrinsics(self) -> np.ndarray:
        """3x3 pinhole intrinsics in pixels of the frames (exact at pitch 0)."""
        return self._renderer.intrinsics()

    def set_state(self, state: CameraState) -> None:
        """Teleport the camera (the world clock keeps running).

        Raises
        ------
        WorldError
            If the camera's collision circle would overlap a wall.
        """
        if not isinstance(state, CameraState):
            raise WorldError("set_state needs a control.motion.CameraState.")
        if not self.is_free(state.x, state.z):
            raise WorldError(
                f"Camera position ({state.x:.2f}, {state.z:.2f}) is inside or touching a wall; "
                "choose a point in a street or plaza (e.g. world.scene.spawn)."
            )
        self._state = state

    def is_free(self, x: float, z: float) -> bool:
        """True when a camera at world (x, z) does not overlap any blocking cell."""
        c, r = self.cell_size, self.radius
        ix0, ix1 = int(np.floor((x - r) / c)), int(np.floor((x + r) / c))
        iz0, iz1 = int(np.floor((z - r) / c)), int(np.floor((z + r) / c))
        return not any(
            self._scene.is_solid_cell(i, j)
            for i in range(ix0, ix1 + 1) for j in range(iz0, iz1 + 1)
        )

    # ------------------------------------------------------------------ motion

    def _move_axis(self, x: float, z: float, d: float, axis: int) -> float:
        """New coordinate along ``axis`` (0: x, 1: z) after moving ``d``, stopped by walls."""
        c, r = self.cell_size, self.radius
        p, q = (x, z) if axis == 0 else (z, x)
        new = p + d
        if d == 0:
            return p
        lead = int(np.floor((new + r) / c)) if d > 0 else int(np.floor((new - r) / c))
        j0, j1 = int(np.floor((q - r) / c)), int(np.floor((q + r) / c))
        blocked = any(
            self._scene.is_solid_cell(lead, j) if axis == 0 else self._scene.is_solid_cell(j, lead)
            for j in range(j0, j1 + 1)
        )
        if not blocked:
            return new
        return lead * c - r - _EPS if d > 0 else (lead + 1) * c + r + _EPS

    def resolve(self, state: CameraState, delta: np.ndarray) -> np.ndarray:
        """The part of world displacement ``delta`` the camera can make from ``state``.

        Motion is split into sub-steps shorter than the collision radius and each is applied
        along x then z, so that a blocked axis stops while the other slides along the wall.
        """
        dx, dz = float(delta[0]), float(delta[2])
        n = max(1, int(np.ceil(max(abs(dx), abs(dz)) / (0.5 * self.radius))))
        x, z = state.x, state.z
        for _ in range(n):
            x = self._move_axis(x, z, dx / n, 0)
            z = self._move_axis(x, z, dz / n, 1)
        return np.array([x - state.x, 0.0, z - state.z])

    def step(self, action: Action | str) -> Chunk:
        """Hold ``action`` for ``frames_per_step`` frames.

        Parameters
        ----------
        action : Action or str
            A vocabulary action (or its key string, e.g. ``"W+A ↑→"``).

        Returns
        -------
        Chunk
            Frames, timestamps, exact poses; ``info["collided"]`` (any frame blocked by a
            wall), ``info["collided_frames"]`` (per frame) and ``info["render_s"]``.
        """
        if isinstance(action, str):
            action = parse_action(action)
        if not isinstance(action, Action):
            raise WorldError(f"step needs a control.actions.Action, not {type(action).__name__}.")
        n = self.frames_per_step
        frames = np.empty((n, self.height, self.width, 3), np.uint8)
        poses = np.empty((n, 4, 4))
        stamps = np.empty(n)
        collided = np.zeros(n, bool)
        t0 = time.perf_counter()
        state = self._state
        for i in range(n):
            wanted = translation_delta(state, action, self.motion)
            allowed = self.resolve(state, wanted) if np.any(wanted) else wanted
            collided[i] = bool(np.any(np.abs(allowed - wanted) > 1e-12))
            state = apply_action(state, action, self.motion, delta=allowed)
            self._frame += 1
            frames[i] = self._renderer.render(state)
            poses[i] = state.pose()
            stamps[i] = self._frame / self.frame_rate
        self._state = state
        return Chunk(
            frames=frames, timestamps=stamps, poses=poses, action=action,
            info={"collided": bool(collided.any()), "collided_frames": collided,
                  "render_s": time.perf_counter() - t0, "seed": self.seed},
        )

    def render(self, state: CameraState | None = None) -> np.ndarray:
        """RGB frame (height, width, 3) uint8 seen from ``state`` (default: the current one).

        Any state may be rendered, also one inside a wall; this is the ground truth for
        comparing generated frames with the real view from a pose.
        """
        if state is None:
            state = self._state
        if not isinstance(state, CameraState):
            raise WorldError("render needs a control.motion.CameraState.")
        return self._renderer.render(state)
