"""The procedural sandbox world: determinism, exact poses, collisions, rendering, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from control.actions import Action, parse_action, vocabulary
from control.motion import CameraState, MotionStep
from world.base import Chunk, WorldEngine, WorldError
from world.registry import WORLDS, available_worlds, make_world
from world.sandbox import SandboxWorld, dominant_colours, image_seed
from world.sandbox_scene import LANDMARKS


def _walk(world: SandboxWorld, actions: list[str]) -> list[Chunk]:
    return [world.step(parse_action(a)) for a in actions]


def _solid_at(world: SandboxWorld, x: float, z: float) -> bool:
    ix, iz = world.scene.cell_of(x, z)
    return world.scene.is_solid_cell(ix, iz)


def _wall_clearance(world: SandboxWorld, x: float, z: float) -> float:
    """Distance from (x, z) to the nearest blocking cell (inf-norm lower bound per cell box)."""
    sc = world.scene
    best = np.inf
    ix, iz = sc.cell_of(x, z)
    for i in range(ix - 2, ix + 3):
        for j in range(iz - 2, iz + 3):
            if sc.is_solid_cell(i, j):
                cx = np.clip(x, i * sc.cell, (i + 1) * sc.cell)
                cz = np.clip(z, j * sc.cell, (j + 1) * sc.cell)
                best = min(best, float(np.hypot(x - cx, z - cz)))
    return best


SCRIPT = ["W", "W →", "W+A", "↑", "S ←", "W+D ↓→", "·", "D", "W ↑←"]


def test_interface_and_chunk_contents():
    world = SandboxWorld(seed=2, height=48, width=64, frames_per_step=3, frame_rate=10.0)
    assert isinstance(world, WorldEngine)
    first = world.reset()
    assert first.frames.shape == (1, 48, 64, 3) and first.frames.dtype == np.uint8
    np.testing.assert_array_equal(first.timestamps, [0.0])
    np.testing.assert_allclose(first.poses[0], world.scene.spawn.pose())
    chunk = world.step(parse_action("W →"))
    assert len(chunk) == 3 and chunk.frames.shape == (3, 48, 64, 3)
    assert chunk.poses.shape == (3, 4, 4)
    np.testing.assert_allclose(chunk.timestamps, [0.1, 0.2, 0.3])
    np.testing.assert_allclose(chunk.poses[-1], world.pose)
    np.testing.assert_allclose(world.state.pose(), world.pose)
    assert chunk.action == parse_action("W →")
    assert chunk.info["collided_frames"].shape == (3,)
    # Poses are rigid camera-to-world transforms with the documented rotation.
    r = chunk.poses[:, :3, :3]
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape),
                               atol=1e-12)
    # The chunk's frames are exactly what render() gives for the chunk's final state.
    np.testing.assert_array_equal(chunk.frames[-1], world.render(world.state))


def test_same_seed_and_actions_give_identical_frames():
    a = SandboxWorld(seed=7, height=40, width=56, frames_per_step=2)
    b = SandboxWorld(seed=7, height=40, width=56, frames_per_step=2)
    ca, cb = a.reset(), b.reset()
    np.testing.assert_array_equal(ca.frames, cb.frames)
    for x, y in zip(_walk(a, SCRIPT), _walk(b, SCRIPT), strict=True):
        np.testing.assert_array_equal(x.frames, y.frames)
        np.testing.assert_array_equal(x.poses, y.poses)
    # reset() with the same seed replays the same walk.
    a.reset(seed=7)
    again = _walk(a, SCRIPT)
    b.reset(seed=7)
    np.testing.assert_array_equal(again[-1].frames, _walk(b, SCRIPT)[-1].frames)


def test_different_seeds_give_different_worlds():
    frames = [SandboxWorld(seed=s, height=32, width=32).reset().frames[0] for s in (0, 1, 2)]
    assert not np.array_equal(frames[0], frames[1])
    assert not np.array_equal(frames[1], frames[2])
    scenes = [SandboxWorld(seed=s, height=8, width=8).scene for s in (0, 1)]
    assert not np.array_equal(scenes[0].hi, scenes[1].hi)


def _open_world() -> SandboxWorld:
    """A world whose spawn has room for a few metres of walking in every direction."""
    for seed in range(50):
        world = SandboxWorld(seed=seed, height=16, width=16)
        sp = world.scene.spawn
        if _wall_clearance(world, sp.x, sp.z) > 1.2:
            return world
    raise AssertionError("no spawn with 1.2 m clearance in 50 seeds")


def test_forward_then_backward_returns_to_start_pose():
    world = _open_world()
    start = world.pose
    n = 12  # 12 * 0.08 m < 1.2 m clearance - radius, so no wall is touched
    chunks = _walk(world, ["W"] * n)
    assert not any(c.info["collided"] for c in chunks)
    moved = world.pose
    assert np.linalg.norm(moved[:3, 3] - start[:3, 3]) == pytest.approx(n * 0.08, abs=1e-9)
    chunks = _walk(world, ["S"] * n)
    assert not any(c.info["collided"] for c in chunks)
    np.testing.assert_allclose(world.pose, start, atol=1e-9)
    # Strafing and diagonals too.
    _walk(world, ["D"] * 5 + ["W+A"] * 4 + ["S+D"] * 4 + ["A"] * 5)
    np.testing.assert_allclose(world.pose, start, atol=1e-9)


def test_turns_cancel_exactly():
    world = _open_world()
    start = world.pose
    _walk(world, ["←"] * 30)
    assert world.state.yaw == pytest.approx(world.scene.spawn.yaw - np.deg2rad(60), abs=1e-9)
    _walk(world, ["→"] * 30)
    np.testing.assert_allclose(world.pose, start, atol=1e-9)
    _walk(world, ["↑"] * 10 + ["↓→"] * 10 + ["↑←"] * 10 + ["↓"] * 10)
    np.testing.assert_allclose(world.pose, start, atol=1e-9)


def test_walking_into_walls_never_enters_them():
    fast = MotionStep(metres_per_frame=0.4, degrees_per_frame=7.0)
    world = SandboxWorld(seed=3, height=12, width=12, frames_per_step=25, step=fast)
    world.reset()
    collided = False
    positions = []
    for action in ["W", "W", "W", "W", "W", "W →", "W+A", "W+D", "S+A ←", "D", "W", "W", "A"]:
        chunk = world.step(parse_action(action))
        collided |= chunk.info["collided"]
        positions += [(p[0, 3], p[2, 3]) for p in chunk.poses]
        # Poses say the truth: the camera really is where the state is.
        np.testing.assert_allclose(chunk.poses[-1], world.state.pose())
    assert collided, "a 100 m straight walk must reach a wall"
    for x, z in positions:
        assert not _solid_at(world, x, z)
        assert _wall_clearance(world, x, z) >= world.radius - 1e-6


def test_collision_slides_along_wall():
    world = SandboxWorld(seed=4, height=8, width=8, step=MotionStep(metres_per_frame=0.3))
    world.reset()
    sp = world.scene.spawn
    # Walk straight ahead until blocked, then push diagonally into the wall: one axis slides.
    for _ in range(1000):
        if world.step(Action("W")).info["collided"]:
            break
    else:
        raise AssertionError("never reached a wall")
    before = world.state
    chunk = world.step(Action("W+D"))
    after = world.state
    assert chunk.info["collided"]
    moved = np.hypot(after.x - before.x, after.z - before.z)
    assert 0 < moved < 0.3
    assert after.yaw == sp.yaw


def test_spawn_is_free_and_set_state():
    for seed in range(6):
        world = SandboxWorld(seed=seed, height=8, width=8)
        sp = world.scene.spawn
        assert world.is_free(sp.x, sp.z)
        assert _wall_clearance(world, sp.x, sp.z) >= 1.0
        assert set(world.scene.landmarks) == set(LANDMARKS)
    x, z = world.scene.landmarks["red tower"]
    with pytest.raises(WorldError, match="inside or touching a wall"):
        world.set_state(CameraState(x=x, z=z))
    free = CameraState(x=sp.x, z=sp.z, yaw=1.0, pitch=0.2)
    world.set_state(free)
    assert world.state == free
    np.testing.assert_allclose(world.pose, free.pose())


def test_frames_are_not_blank_and_change_when_moving():
    world = SandboxWorld(seed=1, height=64, width=64)
    f0 = world.reset().frames[0].astype(int)
    assert f0.std() > 10  # real content, not a flat colour
    assert len(np.unique(f0.reshape(-1, 3), axis=0)) > 50
    sky, ground = f0[:8].mean(axis=(0, 1)), f0[-8:].mean(axis=(0, 1))
    assert np.abs(sky - ground).sum() > 20
    for action in ["W", "→", "↑", "A"]:
        w = SandboxWorld(seed=1, height=64, width=64)
        w.reset()
        f1 = w.step(parse_action(action)).frames[0].astype(int)
        assert np.abs(f1 - f0).mean() > 0.5, action
    # Standing still changes nothing.
    w.reset()
    np.testing.assert_array_equal(w.step(Action()).frames[0], f0.astype(np.uint8))


def test_landmarks_are_distinct_from_nearby():
    world = SandboxWorld(seed=0, height=64, width=64)
    x, z = world.scene.landmarks["red tower"]
    # Stand 12 m south of the tower looking at it (+z), in the plaza around it.
    for dz in (12.0, 10.0, 8.0):
        if world.is_free(x, z - dz):
            break
    frame = world.render(CameraState(x=x, z=z - dz, yaw=0.0)).astype(int)
    centre = frame[16:40, 28:36].reshape(-1, 3)
    redness = centre[:, 0] - (centre[:, 1] + centre[:, 2]) / 2
    assert np.median(redness) > 60


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (17, 31), (64, 64), (90, 160), (128, 96)])
def test_any_resolution(shape):
    world = SandboxWorld(seed=0, height=shape[0], width=shape[1], frames_per_step=2)
    world.reset()
    chunk = world.step(parse_action("W+A ↑→"))
    assert chunk.frames.shape == (2, *shape, 3)
    assert chunk.frames.dtype == np.uint8


@pytest.mark.parametrize("shape", [(0, 64), (64, 0), (-1, 64), (64, -8), (2.5, 64)])
def test_bad_resolution_raises(shape):
    with pytest.raises(WorldError):
        SandboxWorld(height=shape[0], width=shape[1])


def test_every_action_and_extreme_pitch_render():
    world = SandboxWorld(seed=5, height=24, width=24, frames_per_step=1)
    world.reset()
    for action in vocabulary():
        frame = world.step(action).frames[0]
        assert frame.shape == (24, 24, 3)
    for pitch in (-1.04, 1.04):
        assert world.render(CameraState(x=world.state.x, z=world.state.z, pitch=pitch)).std() > 0


def test_reset_from_image_is_deterministic_and_tinted():
    rng = np.random.default_rng(0)
    red = np.zeros((40, 30, 3), np.uint8)
    red[...] = (200, 30, 20)
    red[:10] = rng.integers(0, 255, (10, 30, 3))
    world = SandboxWorld(height=32, width=32)
    a = world.reset(image=red)
    b = world.reset(image=Image.fromarray(red))  # PIL image, same pixels -> same world
    assert a.info["seed"] == b.info["seed"] == image_seed(red)
    np.testing.assert_array_equal(a.frames, b.frames)
    rgba = np.concatenate([red, np.full((40, 30, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(world.reset(image=rgba).frames, a.frames)
    other = red.copy()
    other[0, 0] = (0, 0, 0)
    assert world.reset(image=other).info["seed"] != a.info["seed"]
    # The dominant colour leads the tint and shows in the buildings' palette.
    dom = dominant_colours(red)
    np.testing.assert_allclose(dom[0], np.array([200, 30, 20]) / 255, atol=0.01)
    tinted = SandboxWorld(height=8, width=8)
    tinted.reset(seed=a.info["seed"], image=red)
    plain = SandboxWorld(seed=a.info["seed"], height=8, width=8)
    t_tex = tinted.scene.wall_textures[:18].astype(int)
    p_tex = plain.scene.wall_textures[:18].astype(int)
    assert (t_tex[..., 0] - t_tex[..., 2]).mean() > (p_tex[..., 0] - p_tex[..., 2]).mean()


@pytest.mark.parametrize(
    "image",
    [
        # Grayscale and float pictures are accepted now (world.images, shared with MVDT).
        np.zeros((10, 10, 2), np.uint8),
        np.full((10, 10, 3), np.nan, np.float32),
        np.zeros((0, 10, 3), np.uint8),
        "picture.png",
        [[1, 2, 3]],
    ],
)
def test_invalid_image_raises(image):
    world = SandboxWorld(height=8, width=8)
    with pytest.raises(WorldError, match="image"):
        world.reset(image=image)


def test_bad_arguments_raise():
    with pytest.raises(WorldError):
        SandboxWorld(frames_per_step=0)
    with pytest.raises(WorldError):
        SandboxWorld(seed=-1)
    world = SandboxWorld(height=8, width=8)
    with pytest.raises(WorldError):
        world.reset(seed=1.5)
    with pytest.raises(WorldError):
        world.step(3)
    with pytest.raises(ValueError):
        world.step("Q")


def test_registry():
    assert "sandbox" in available_worlds()
    assert WORLDS["sandbox"] is SandboxWorld
    world = make_world("sandbox", seed=1, height=16, width=24)
    assert isinstance(world, SandboxWorld) and (world.height, world.width) == (16, 24)
    with pytest.raises(WorldError, match="Unknown world"):
        make_world("minecraft")


def test_pitch0_projection_is_exact():
    """Wall edges land where the pinhole camera of intrinsics() and the pose projects them."""
    world = SandboxWorld(seed=0, height=64, width=96)
    sp = world.scene.spawn
    state = CameraState(x=sp.x + 0.3, z=sp.z - 0.2, yaw=sp.yaw + 0.3)
    k, pose = world.intrinsics(), state.pose()
    renderer = world._renderer
    hits = renderer._trace(state, 1.6, 32.0, renderer._fog_tables(1.6)[1])
    for col in (5, 40, 77):
        # Walk the column's ray to the first solid cell (the nearest face).
        ray = pose[:3, :3] @ np.linalg.solve(k, [col + 0.5, 32.0, 1.0])
        d = 0.0
        while not _solid_at(world, state.x + d * ray[0], state.z + d * ray[2]):
            d += 0.01
        a, b = d - 0.01, d  # bisect the entry point of the first solid cell
        for _ in range(30):
            mid = 0.5 * (a + b)
            a, b = (a, mid) if _solid_at(world, state.x + mid * ray[0], state.z + mid * ray[2]) \
                else (mid, b)
        d = b
        (nearest,) = np.flatnonzero((hits["col"] == col) & (hits["rank"] == 1))
        assert hits["t"][nearest] == pytest.approx(d, abs=1e-3)
        # Its foot (y = 0) and top (y = -hi) project to the rows the raycaster fills.
        ix, iz = world.scene.cell_of(state.x + d * ray[0], state.z + d * ray[2])
        for y_world, rows in ((0.0, hits["bot"]), (-world.scene.hi[ix, iz], hits["top"])):
            p = np.linalg.solve(pose, [state.x + d * ray[0], y_world, state.z + d * ray[2], 1.0])
            assert p[2] == pytest.approx(d, abs=1e-3)
            assert rows[nearest] == pytest.approx(k[1, 1] * p[1] / p[2] + k[1, 2], abs=0.05)


@pytest.mark.parametrize("seed", [0, 11])
def test_streets_connect_spawn_to_every_landmark(seed):
    from collections import deque

    from world.sandbox_scene import FLOOR_TEXTURES

    sc = SandboxWorld(seed=seed, height=8, width=8).scene
    free = ~sc.solid
    start = sc.cell_of(sc.spawn.x, sc.spawn.z)
    seen = np.zeros_like(free)
    seen[start] = True
    queue = deque([start])
    while queue:
        i, j = queue.popleft()
        for a, b in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
            if free[a, b] and not seen[a, b]:
                seen[a, b] = True
                queue.append((a, b))
    road = np.isin(sc.floor_tex, [FLOOR_TEXTURES.index("asphalt"),
                                  FLOOR_TEXTURES.index("sidewalk")]) & free
    assert seen[road].all(), "every street cell is reachable from the spawn point"
    for name, (x, z) in sc.landmarks.items():
        ix, iz = sc.cell_of(x, z)
        assert seen[ix - 3 : ix + 4, iz - 3 : iz + 4].any(), name
    assert not sc.solid[1:-1, 1:-1].all() and sc.solid[0].all() and sc.solid[:, -1].all()


def test_render_any_state_and_scene_is_read_only():
    world = SandboxWorld(seed=0, height=20, width=30)
    x, z = world.scene.landmarks["blue pillar"]
    for state in (CameraState(x=-40.0, z=-40.0, yaw=0.8), CameraState(x=x, z=z),
                  CameraState(x=x + 20, y=-25.0, z=z, pitch=-0.8), CameraState(y=0.0)):
        frame = world.render(state)
        assert frame.shape == (20, 30, 3) and frame.dtype == np.uint8
    with pytest.raises(ValueError):
        world.scene.hi[5, 5] = 3.0  # cached scenes are shared between worlds
    with pytest.raises(WorldError):
        world.render("north")
