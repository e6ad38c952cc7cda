"""Physical meaning of actions: per-frame steps, pose integration and trajectory quantization.

Poses are camera-to-world 4x4 matrices in the OpenCV convention (x right, y down, z forward; the
world's ``-y`` is up). A camera is described by its position and two angles, ``yaw`` (turn right
is positive, about +y) and ``pitch`` (tilt up is positive, about +x); the rotation is
``R = R_y(yaw) @ R_x(pitch)`` and there is never roll.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from control.actions import Action


@dataclass(frozen=True)
class MotionStep:
    """How far one action moves the camera in one frame.

    Parameters
    ----------
    metres_per_frame : float
        Translation per frame (diagonals move the same distance, split over both axes).
    degrees_per_frame : float
        Yaw and pitch change per frame.
    max_pitch_deg : float
        Tilt is clamped to +/- this angle so the camera never flips over.
    """

    metres_per_frame: float = 0.08
    degrees_per_frame: float = 2.0
    max_pitch_deg: float = 60.0

    def __post_init__(self) -> None:
        if not (self.metres_per_frame >= 0 and self.degrees_per_frame >= 0):
            raise ValueError("MotionStep needs non-negative metres and degrees per frame.")
        if not 0 < self.max_pitch_deg < 90:
            raise ValueError("max_pitch_deg must lie strictly between 0 and 90 degrees.")


@dataclass(frozen=True)
class CameraState:
    """Position (metres, world frame) and orientation (radians) of a roll-free camera."""

    x: float = 0.0
    y: float = -1.6
    z: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0

    @property
    def position(self) -> np.ndarray:
        return np.array([self.x, self.y, self.z], dtype=np.float64)

    def rotation(self) -> np.ndarray:
        """3x3 camera-to-world rotation ``R_y(yaw) @ R_x(pitch)``."""
        return rot_y(self.yaw) @ rot_x(self.pitch)

    def pose(self) -> np.ndarray:
        """4x4 camera-to-world matrix."""
        c = np.eye(4)
        c[:3, :3] = self.rotation()
        c[:3, 3] = self.position
        return c

    def heading(self) -> tuple[np.ndarray, np.ndarray]:
        """Horizontal (forward, right) unit vectors in the world frame."""
        s, c = np.sin(self.yaw), np.cos(self.yaw)
        return np.array([s, 0.0, c]), np.array([c, 0.0, -s])


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def translation_delta(state: CameraState, action: Action, step: MotionStep) -> np.ndarray:
    """World-frame displacement of one frame of ``action`` (horizontal; uses current heading)."""
    ax, az = action.translation_axes
    if ax == 0 and az == 0:
        return np.zeros(3)
    norm = np.hypot(ax, az)
    fwd, right = state.heading()
    return step.metres_per_frame * (az * fwd + ax * right) / norm


def apply_action(
    state: CameraState,
    action: Action,
    step: MotionStep = MotionStep(),
    delta: np.ndarray | None = None,
) -> CameraState:
    """The camera after one frame of ``action``.

    The translation uses the heading at the start of the frame, then the rotation is applied,
    so the relative pose between two frames carries exactly the commanded motion.

    Parameters
    ----------
    delta : ndarray, optional
        World displacement to use instead of the commanded one (a world that resolves collisions
        passes the displacement it allowed).
    """
    d = translation_delta(state, action, step) if delta is None else np.asarray(delta, float)
    yaw_sign, pitch_sign = action.rotation_axes
    rad = np.deg2rad(step.degrees_per_frame)
    limit = np.deg2rad(step.max_pitch_deg)
    pitch = float(np.clip(state.pitch + pitch_sign * rad, -limit, limit))
    return CameraState(
        x=state.x + d[0], y=state.y + d[1], z=state.z + d[2],
        yaw=state.yaw + yaw_sign * rad, pitch=pitch,
    )


def relative_motion(pose_a: np.ndarray, pose_b: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Translation (camera frame of ``pose_a``), yaw and pitch of ``inv(pose_a) @ pose_b``.

    Euler angles are taken in the YXZ order that matches :class:`CameraState` (roll ignored).
    """
    rel = np.linalg.solve(pose_a, pose_b)
    r = rel[:3, :3]
    yaw = float(np.arctan2(r[0, 2], r[2, 2]))
    pitch = float(np.arcsin(np.clip(-r[1, 2], -1.0, 1.0)))
    return rel[:3, 3], yaw, pitch


def pose_angles(pose: np.ndarray) -> tuple[float, float]:
    """World yaw and pitch (radians) of a camera-to-world pose, read from its viewing axis."""
    fwd = np.asarray(pose, dtype=np.float64)[:3, 2]
    return float(np.arctan2(fwd[0], fwd[2])), float(np.arcsin(np.clip(-fwd[1], -1.0, 1.0)))


def quantize_motion(
    pose_a: np.ndarray,
    pose_b: np.ndarray,
    translation_threshold: float = 1e-4,
    rotation_threshold: float = 1e-3,
) -> Action:
    """The vocabulary action that best names the motion from ``pose_a`` to ``pose_b``."""
    t, _, _ = relative_motion(pose_a, pose_b)
    # Turn and tilt are the changes of the world yaw and pitch. (Euler angles of the relative
    # rotation mix them for a tilted camera: a pure pan at 45 degrees pitch would also read as a
    # tilt of (1 - cos(yaw step)) / 2 rad, above the threshold for steps of 6 degrees or more.)
    yaw_a, pitch_a = pose_angles(pose_a)
    yaw_b, pitch_b = pose_angles(pose_b)
    yaw = float((yaw_b - yaw_a + np.pi) % (2 * np.pi) - np.pi)
    pitch = pitch_b - pitch_a
    x, z = t[0], t[2]
    fb = "W" if z > translation_threshold else "S" if z < -translation_threshold else ""
    lr = "D" if x > translation_threshold else "A" if x < -translation_threshold else ""
    translation = "+".join(k for k in (fb, lr) if k) or "·"
    ud = "↑" if pitch > rotation_threshold else "↓" if pitch < -rotation_threshold else ""
    turn = "→" if yaw > rotation_threshold else "←" if yaw < -rotation_threshold else ""
    rotation = (ud + turn) or "·"
    return Action(translation, rotation)


def quantize_trajectory(
    poses: Sequence[np.ndarray] | np.ndarray,
    stride: int = 1,
    translation_threshold: float = 1e-4,
    rotation_threshold: float = 1e-3,
) -> list[Action]:
    """Turn camera-to-world poses into vocabulary actions, as Yume labels its training data.

    For consecutive poses ``C_i``, ``C_{i+stride}`` the relative pose ``inv(C_i) @ C_{i+stride}``
    is split into a horizontal translation (x, z; vertical ignored) and yaw/pitch; each component
    beyond its threshold (scaled by ``stride``) sets a key.

    Parameters
    ----------
    poses : sequence of (4, 4) arrays
        Camera-to-world matrices.
    stride : int
        Compare poses this many frames apart.
    translation_threshold, rotation_threshold : float
        Per-frame thresholds in metres and radians (Yume's code: 1e-4 and 1e-3).

    Returns
    -------
    list of Action
        One action per step, ``(len(poses) - 1) // stride`` of them.
    """
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"poses must have shape (n, 4, 4), got {poses.shape}.")
    if stride < 1:
        raise ValueError("stride must be at least 1.")
    return [
        quantize_motion(
            poses[i], poses[i + stride],
            translation_threshold * stride, rotation_threshold * stride,
        )
        for i in range(0, len(poses) - stride, stride)
    ]


def segment_constant(actions: Sequence[Action], min_length: int = 33) -> list[tuple[int, int]]:
    """(start, stop) index ranges where the action stays constant for at least ``min_length``."""
    runs, start = [], 0
    for i in range(1, len(actions) + 1):
        if i == len(actions) or actions[i] != actions[start]:
            if i - start >= min_length:
                runs.append((start, i))
            start = i
    return runs
