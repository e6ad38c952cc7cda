"""Shortest paths and landmark courses over the sandbox city's grid (world.navigation)."""

import numpy as np
import pytest

from control.motion import CameraState
from world.navigation import (
    NavigationError,
    default_landmarks,
    is_reachable,
    landmark_names,
    landmark_position,
    landmark_reach,
    path_to_landmark,
    reachable_cells,
    segment_clear,
    shortest_path,
    shortest_route,
)
from world.sandbox import cached_scene
from world.sandbox_scene import LANDMARKS, SandboxScene


def tiny_scene(solid: np.ndarray, cell: float = 1.0) -> SandboxScene:
    """A hand-made map: only the grid matters for navigation, the textures are blank."""
    n = solid.shape[0]
    hi = np.where(solid, 3.0, 0.0)
    return SandboxScene(
        seed=0, size=n, cell=cell, hi=hi, lo=np.zeros((n, n)), wall_tex=np.zeros((n, n), int),
        floor_tex=np.zeros((n, n), int), solid=solid.copy(),
        wall_textures=np.zeros((1, 64, 64, 3), np.uint8),
        floor_textures=np.zeros((1, 64, 64, 3), np.uint8),
        sky=np.zeros((2, 4, 3), np.uint8), fog_colour=np.zeros(3),
        spawn=CameraState(x=1.5, z=1.5), landmarks={})


@pytest.fixture
def wall_map():
    # 7 x 7 cells of 1 m, a boundary wall, and a wall at ix = 3 from iz = 1 to 4: the only way
    # from the left half to the right half is the gap at iz = 5.
    solid = np.zeros((7, 7), bool)
    solid[0, :] = solid[-1, :] = solid[:, 0] = solid[:, -1] = True
    solid[3, 1:5] = True
    return tiny_scene(solid)


def test_shortest_path_goes_round_the_wall_on_the_taut_line(wall_map):
    path = shortest_path(wall_map, (1.5, 1.5), (5.5, 1.5), clearance=0.3)
    # The taut string passes the wall's end at its two corners (3, 5) and (4, 5), kept 0.3 m
    # away: (2.7, 5.3) and (4.3, 5.3).
    expected = 2 * np.hypot(1.2, 3.8) + 1.6
    # Segment tests are exact, so the path never comes closer than the clearance: never
    # shorter than the taut string, and the tightening brings it to within 1 cm of it.
    assert expected - 1e-9 <= path.length_m <= expected + 0.01
    assert path.length_m > 4.0 + 1.0  # far longer than the straight line through the wall
    np.testing.assert_allclose(path.waypoints[0], [1.5, 1.5])
    np.testing.assert_allclose(path.waypoints[-1], [5.5, 1.5])
    assert path.waypoints[:, 1].max() > 5.0  # through the gap
    assert (3, 5) in path.cells and not any(wall_map.solid[c] for c in path.cells)
    for a, b in zip(path.waypoints[:-1], path.waypoints[1:], strict=True):
        assert segment_clear(wall_map, a, b, 0.25)  # the walker's radius is 0.25 m
    # The grid path is 8-connected without cutting corners, so its cells are neighbours.
    steps = np.abs(np.diff(np.array(path.cells), axis=0))
    assert steps.max() == 1


def test_straight_line_when_in_clear_view(wall_map):
    path = shortest_path(wall_map, (1.5, 1.5), (1.5, 5.5))
    assert len(path.waypoints) == 2
    assert path.length_m == pytest.approx(4.0)


def test_unreachable_goal_and_bad_points_are_refused(wall_map):
    closed = wall_map.solid.copy()
    closed[3, 5] = True  # close the gap
    scene = tiny_scene(closed)
    free = reachable_cells(scene, (1.5, 1.5))
    assert free[1, 1] and not free[5, 1]
    with pytest.raises(NavigationError, match="no street connects"):
        shortest_path(scene, (1.5, 1.5), (5.5, 1.5))
    with pytest.raises(NavigationError, match="inside a wall"):
        shortest_path(scene, (3.5, 2.5), (1.5, 5.5))
    with pytest.raises(NavigationError, match="inside a wall"):
        shortest_path(scene, (1.5, 1.5), (3.5, 2.5))


def test_real_city_paths_avoid_walls_and_chain_through_every_landmark():
    scene = cached_scene(0)
    course = default_landmarks(scene)
    assert sorted(course) == sorted(LANDMARKS) == sorted(landmark_names(scene))
    route = shortest_route(scene, scene.spawn, course)
    assert len(route.legs) == 4
    here = np.array([scene.spawn.x, scene.spawn.z])
    for name, leg in zip(course, route.legs, strict=True):
        np.testing.assert_allclose(leg.waypoints[0], here)  # legs chain
        centre, reach = np.array(landmark_position(scene, name)), landmark_reach(scene, name)
        # It ends on the reach circle, and no point of it is in a wall.
        assert np.hypot(*(leg.waypoints[-1] - centre)) == pytest.approx(reach, abs=1e-6)
        for a, b in zip(leg.waypoints[:-1], leg.waypoints[1:], strict=True):
            assert segment_clear(scene, a, b, 0.25)
        assert not any(scene.solid[c] for c in leg.cells)
        assert leg.length_m >= np.hypot(*(centre - here)) - reach - 1e-9
        here = leg.waypoints[-1]
    assert route.length_m == pytest.approx(sum(leg.length_m for leg in route.legs))
    # A straight line through the city crosses buildings; the route does not, so it is longer.
    assert route.length_m > 100.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_landmarks_of_other_seeds_are_reachable_from_the_spawn(seed):
    scene = cached_scene(seed)
    names = landmark_names(scene)
    assert len(names) == 4
    for name in names:
        assert is_reachable(scene, scene.spawn, name)
        # The reach circle holds a free cell centre, and the arch's middle cell is walkable.
        path = path_to_landmark(scene, scene.spawn, name)
        end = path.waypoints[-1]
        assert np.hypot(*(end - landmark_position(scene, name))) <= landmark_reach(scene, name)
    assert landmark_reach(scene, "yellow arch") == pytest.approx(1.5)
    assert default_landmarks(scene, n=2) == default_landmarks(scene)[:2]


def test_unknown_landmark_names_the_ones_there():
    scene = cached_scene(0)
    with pytest.raises(NavigationError, match="fountain"):
        landmark_position(scene, "eiffel tower")
