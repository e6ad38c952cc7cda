"""Geometry of the sandbox city for navigation tasks: landmarks, shortest paths and routes.

Pure functions over a :class:`world.sandbox.scene.SandboxScene` (nothing here moves a camera).
Points are world ``(x, z)`` ground-plane positions in metres; cells are ``(ix, iz)`` grid
indices (see :meth:`SandboxScene.cell_of`).

* Free space: the non-solid cells. The walker is a small square (the sandbox's collision
  radius, well under half a cell), so it can pass between any two 4-adjacent free cells and
  never diagonally between two solid ones; reachability is 4-connectivity.
* Shortest paths: Dijkstra (``scipy.sparse.csgraph``) on the 8-connected grid of free cells
  (diagonal steps only where both side cells are free, so no corner is cut), then pulled taut
  (a waypoint is dropped whenever the segment that skips it keeps ``clearance`` metres from
  every wall; the test is exact) and tightened round each turning point. The result is a
  short polyline of turning points that a walker of radius below ``clearance`` can follow
  without touching a wall, close to the taut string round the corners of the grid path's
  corridor (0.01 % above it on a hand-made map). It is not a proven lower bound: a walker
  that takes another corridor, or hugs walls closer than ``clearance``, can come in under it.
* Landmarks stand on solid cells (the tower, pillar and fountain rim) except the arch, whose
  middle cell is walkable. A landmark counts as *reached* within :func:`landmark_reach` of its
  centre: the distance of the nearest free cell centre plus a margin, so that each landmark is
  equally easy to reach from a street or plaza.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from control.motion import CameraState
from world.sandbox.scene import LANDMARKS, SandboxScene

DEFAULT_CLEARANCE = 0.3  # metres kept from walls: just over the sandbox walker's 0.25 m radius
DEFAULT_MARGIN = 1.5  # metres beyond the nearest free cell centre that still count as reached

# (dix, diz) of the 8 grid neighbours.
_STEPS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1))

Point = tuple[float, float]


class NavigationError(ValueError):
    """A start, goal or landmark that cannot be navigated; the message says what to change."""


@dataclass(frozen=True)
class Path:
    """A walkable polyline between two ground points.

    Attributes
    ----------
    waypoints : ndarray, shape (n, 2)
        ``(x, z)`` of the start, each turning point and the end (n >= 2 unless start == end).
    cells : tuple of (int, int)
        The grid cells of the underlying grid path, start cell first.
    """

    waypoints: np.ndarray
    cells: tuple[tuple[int, int], ...]

    @property
    def length_m(self) -> float:
        """Length of the polyline in metres."""
        return polyline_length(self.waypoints)

    @property
    def end(self) -> Point:
        return float(self.waypoints[-1, 0]), float(self.waypoints[-1, 1])

    def truncated(self, centre: Point, radius: float) -> Path:
        """The path up to where it first comes within ``radius`` of ``centre``."""
        wp = self.waypoints
        c = np.asarray(centre, float)
        if np.hypot(*(wp[0] - c)) <= radius:
            return Path(wp[:1].copy(), self.cells[:1])
        for i in range(1, len(wp)):
            a, b = wp[i - 1], wp[i]
            if np.hypot(*(b - c)) > radius:
                continue
            # First s in [0, 1] with |a + s (b - a) - c| = radius (a lies outside the circle).
            d, f = b - a, a - c
            qa, qb, qc = d @ d, 2 * f @ d, f @ f - radius**2
            s = (-qb - np.sqrt(max(qb * qb - 4 * qa * qc, 0.0))) / (2 * qa)
            entry = a + float(np.clip(s, 0.0, 1.0)) * d
            return Path(np.vstack([wp[:i], entry]), self.cells)
        return self


@dataclass(frozen=True)
class Route:
    """Shortest walk from a start through landmarks in order.

    Attributes
    ----------
    landmarks : tuple of str
        Landmark names in visiting order.
    legs : tuple of Path
        One path per landmark; each ends where it enters that landmark's reach circle, and the
        next leg starts there.
    """

    landmarks: tuple[str, ...]
    legs: tuple[Path, ...]

    @property
    def length_m(self) -> float:
        """Total length in metres."""
        return float(sum(leg.length_m for leg in self.legs))


def polyline_length(points: np.ndarray) -> float:
    """Sum of the segment lengths of an (n, 2) polyline."""
    p = np.asarray(points, float)
    return float(np.hypot(*np.diff(p, axis=0).T).sum()) if len(p) > 1 else 0.0


def _point(p) -> Point:
    if isinstance(p, CameraState):
        return float(p.x), float(p.z)
    x, z = p
    return float(x), float(z)


# --------------------------------------------------------------------------- landmarks


def landmark_names(scene: SandboxScene) -> tuple[str, ...]:
    """Names of the landmarks this city holds, in the canonical order of ``LANDMARKS``."""
    return tuple(n for n in LANDMARKS if n in scene.landmarks)


def landmark_position(scene: SandboxScene, name: str) -> Point:
    """World ``(x, z)`` of a landmark's centre.

    Raises
    ------
    NavigationError
        If the city has no landmark of that name.
    """
    try:
        x, z = scene.landmarks[name]
    except KeyError:
        raise NavigationError(
            f"Landmark {name!r} is not in this city (it has: "
            f"{', '.join(landmark_names(scene)) or 'none'}); pick one of those."
        ) from None
    return float(x), float(z)


def _cell_centres(cells: np.ndarray, cell: float) -> np.ndarray:
    return (np.asarray(cells, float) + 0.5) * cell


def reachable_cells(scene: SandboxScene, start) -> np.ndarray:
    """Boolean (size, size) mask of the free cells a walker at ``start`` can get to.

    Raises
    ------
    NavigationError
        If ``start`` (a point or CameraState) lies in a solid cell or outside the map.
    """
    sx, sz = _point(start)
    ix, iz = scene.cell_of(sx, sz)
    if scene.is_solid_cell(ix, iz):
        raise NavigationError(
            f"The start ({sx:.2f}, {sz:.2f}) is inside a wall or off the map; start from a "
            "street or plaza (e.g. scene.spawn)."
        )
    labels, _ = ndimage.label(~np.asarray(scene.solid))  # 4-connectivity by default
    return labels == labels[ix, iz]


def _goal_cells(scene: SandboxScene, name: str, margin_m: float,
                reachable: np.ndarray | None) -> tuple[np.ndarray, float]:
    """Free (and, if given, reachable) cells whose centre lies within the landmark's reach."""
    centre = np.asarray(landmark_position(scene, name))
    free = ~np.asarray(scene.solid) if reachable is None else reachable
    cells = np.argwhere(free)
    if len(cells) == 0:
        raise NavigationError(f"No free cell can reach landmark {name!r}.")
    dist = np.hypot(*(_cell_centres(cells, scene.cell) - centre).T)
    nearest_free = float(np.hypot(*(_cell_centres(np.argwhere(~np.asarray(scene.solid)),
                                                  scene.cell) - centre).T).min())
    reach = nearest_free + float(margin_m)
    inside = cells[dist <= reach + 1e-9]
    return inside, reach


def landmark_reach(scene: SandboxScene, name: str, margin_m: float = DEFAULT_MARGIN) -> float:
    """Radius (m) around a landmark's centre within which it counts as reached.

    It is the distance from the centre to the nearest free cell centre, plus ``margin_m``:
    1.5 m for the walk-through arch, about 4.5 m for the pillar, 6 to 7.5 m for the tower and
    the fountain (whose rims are solid), with the default margin.
    """
    if margin_m <= 0:
        raise NavigationError(f"margin_m must be positive, got {margin_m}.")
    return _goal_cells(scene, name, margin_m, None)[1]


def is_reachable(scene: SandboxScene, start, name: str, margin_m: float = DEFAULT_MARGIN) -> bool:
    """True when a walker at ``start`` can get within :func:`landmark_reach` of ``name``."""
    cells, _ = _goal_cells(scene, name, margin_m, reachable_cells(scene, start))
    return len(cells) > 0


# --------------------------------------------------------------------------- grid paths


def _grid_graph(solid: np.ndarray, cell: float) -> csr_matrix:
    """8-connected graph of the free cells, edge weights in metres, no corner cutting."""
    n = solid.shape[0]
    free = ~solid
    rows, cols, weights = [], [], []
    idx = np.arange(n * n).reshape(n, n)
    for dx, dz in _STEPS:
        # Cells (i, j) with (i + dx, j + dz) inside the map.
        xs = slice(max(0, -dx), n - max(0, dx))
        zs = slice(max(0, -dz), n - max(0, dz))
        xt = slice(max(0, dx), n - max(0, -dx))
        zt = slice(max(0, dz), n - max(0, -dz))
        ok = free[xs, zs] & free[xt, zt]
        if dx and dz:  # a diagonal needs both side cells free, or the walker clips a corner
            ok &= free[xt, zs] & free[xs, zt]
        rows.append(idx[xs, zs][ok])
        cols.append(idx[xt, zt][ok])
        weights.append(np.full(int(ok.sum()), cell * np.hypot(dx, dz)))
    return csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n * n, n * n))


def _grid_path(scene: SandboxScene, start_cell: tuple[int, int],
               goal_cells: np.ndarray) -> list[tuple[int, int]]:
    """Cells of the shortest 8-connected path from ``start_cell`` to the nearest goal cell."""
    n = scene.size
    graph = _grid_graph(np.asarray(scene.solid), scene.cell)
    src = start_cell[0] * n + start_cell[1]
    dist, pred = dijkstra(graph, indices=src, return_predecessors=True)
    goals = goal_cells[:, 0] * n + goal_cells[:, 1]
    best = int(goals[np.argmin(dist[goals])])
    if not np.isfinite(dist[best]):
        raise NavigationError("The goal cannot be reached from the start: they lie in parts of "
                              "the city that no street connects.")
    out = [best]
    while out[-1] != src:
        out.append(int(pred[out[-1]]))
    return [divmod(k, n) for k in reversed(out)]


def segment_clear(scene: SandboxScene, a: Point, b: Point,
                  clearance: float = DEFAULT_CLEARANCE) -> bool:
    """True when a square of half-side ``clearance`` slides from ``a`` to ``b`` touching no wall.

    Exact: the segment is tested against every solid cell near it grown by ``clearance`` (the
    configuration-space obstacle of the sandbox's square collision shape); grazing a grown
    cell's edge is allowed. ``clearance`` must stay below half a cell.
    """
    if not 0 < clearance < scene.cell / 2:
        raise NavigationError(f"clearance must lie between 0 and half a cell ({scene.cell / 2} "
                              f"m), got {clearance}.")
    a_, b_ = np.asarray(a, float), np.asarray(b, float)
    lo = np.floor((np.minimum(a_, b_) - clearance) / scene.cell).astype(int)
    hi = np.floor((np.maximum(a_, b_) + clearance) / scene.cell).astype(int)
    if lo.min() < 0 or hi.max() >= scene.size:
        return False  # off the map, which counts as solid
    cells = np.argwhere(np.asarray(scene.solid)[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1]) + lo
    if len(cells) == 0:
        return True
    box_lo = cells * scene.cell - clearance
    box_hi = (cells + 1) * scene.cell + clearance
    d = b_ - a_
    enter, leave = np.zeros(len(cells)), np.ones(len(cells))
    for k in range(2):  # slab test per axis
        if abs(d[k]) < 1e-12:
            inside = (box_lo[:, k] < a_[k]) & (a_[k] < box_hi[:, k])
            leave = np.where(inside, leave, -1.0)
            continue
        t1, t2 = (box_lo[:, k] - a_[k]) / d[k], (box_hi[:, k] - a_[k]) / d[k]
        enter = np.maximum(enter, np.minimum(t1, t2))
        leave = np.minimum(leave, np.maximum(t1, t2))
    # A real overlap has positive length along the segment (or, for a point, strict inside).
    if np.hypot(*d) < 1e-12:
        return not np.any(np.all((box_lo < a_) & (a_ < box_hi), axis=1))
    return not np.any(leave - enter > 1e-9)


def _pull_taut(scene: SandboxScene, points: np.ndarray, clearance: float) -> np.ndarray:
    """Greedy string pulling: from each kept point, go on to the last of the following points
    that are all in clear view (one check per point, so long paths stay cheap)."""
    keep = [0]
    i = 0
    while i < len(points) - 1:
        j = i + 1
        while j + 1 < len(points) and segment_clear(scene, points[i], points[j + 1], clearance):
            j += 1
        keep.append(j)
        i = j
    return points[keep]


def _refine(scene: SandboxScene, points: np.ndarray, clearance: float,
            passes: int = 5) -> np.ndarray:
    """Pull the path tighter round each turning point (grid cell centres keep a wide berth).

    Each interior point B between A and C is replaced by P = B + s (A - B) and Q = B + s (C -
    B) with the largest s (bisection) whose chord PQ is clear; a few passes bring the path close
    to the taut string round the wall corners.
    """
    pts = np.asarray(points, float)
    for _ in range(passes):
        if len(pts) < 3:
            break
        new = [pts[0]]
        for i in range(1, len(pts) - 1):
            a, b, c = new[-1], pts[i], pts[i + 1]
            lo, hi = 0.0, 1.0
            for _ in range(10):
                mid = 0.5 * (lo + hi)
                if segment_clear(scene, b + mid * (a - b), b + mid * (c - b), clearance):
                    lo = mid
                else:
                    hi = mid
            if lo < 1e-3:
                new.append(b)
            else:
                new += [b + lo * (a - b), b + lo * (c - b)]
        new.append(pts[-1])
        before = polyline_length(pts)
        pts = _pull_taut(scene, np.array(new), clearance)
        if before - polyline_length(pts) < 1e-3:
            break
    return pts


def shortest_path(scene: SandboxScene, start, goal,
                  clearance: float = DEFAULT_CLEARANCE) -> Path:
    """Shortest walkable path from ``start`` to ``goal`` (points or CameraStates).

    Parameters
    ----------
    scene : SandboxScene
        The city.
    start, goal : (x, z) or CameraState
        End points; both must lie in free cells of the same connected part of the city.
    clearance : float
        Metres the taut path keeps from walls (more than the walker's collision radius).

    Returns
    -------
    Path
        Starts exactly at ``start`` and ends exactly at ``goal``.

    Raises
    ------
    NavigationError
        If either point is inside a wall or the goal cannot be reached.
    """
    gx, gz = _point(goal)
    goal_cell = scene.cell_of(gx, gz)
    if scene.is_solid_cell(*goal_cell):
        raise NavigationError(f"The goal ({gx:.2f}, {gz:.2f}) is inside a wall or off the map; "
                              "choose a point in a street or plaza.")
    return _path_to_cells(scene, start, np.array([goal_cell]), (gx, gz), clearance)


def _path_to_cells(scene: SandboxScene, start, goal_cells: np.ndarray, end: Point | None,
                   clearance: float, refine: bool = True) -> Path:
    sx, sz = _point(start)
    reachable_cells(scene, (sx, sz))  # raises for a start inside a wall
    cells = _grid_path(scene, scene.cell_of(sx, sz), goal_cells)
    centres = _cell_centres(np.array(cells), scene.cell)
    last = centres[-1] if end is None else np.asarray(end, float)
    # Start and end points replace the centres of their cells.
    pts = np.vstack([[sx, sz], centres[1:-1], last]) if len(cells) > 1 else np.array(
        [[sx, sz], last])
    if not segment_clear(scene, pts[0], pts[min(1, len(pts) - 1)], clearance):
        # A start close to a wall: go to its own cell centre first, which is always clear.
        pts = np.vstack([[sx, sz], centres[:1], pts[1:]])
    pts = pts[np.r_[True, np.any(np.diff(pts, axis=0) != 0, axis=1)]]  # drop repeats
    taut = _pull_taut(scene, pts, clearance)
    if refine:
        taut = _refine(scene, taut, clearance)
    return Path(taut, tuple((int(a), int(b)) for a, b in cells))


def path_to_landmark(scene: SandboxScene, start, name: str,
                     margin_m: float = DEFAULT_MARGIN,
                     clearance: float = DEFAULT_CLEARANCE, refine: bool = True) -> Path:
    """Shortest path from ``start`` to the nearest free cell centre within the landmark's reach.

    ``refine=False`` skips the final tightening round corners (faster, up to a few percent
    longer). The path ends at that cell centre, inside the reach circle; ``path.truncated(
    landmark_position(scene, name), landmark_reach(scene, name, margin_m))`` is the part a
    walker needs.

    Raises
    ------
    NavigationError
        Unknown landmark, start inside a wall, or the landmark cannot be reached from there.
    """
    cells, _ = _goal_cells(scene, name, margin_m, reachable_cells(scene, start))
    if len(cells) == 0:
        sx, sz = _point(start)
        raise NavigationError(f"Landmark {name!r} cannot be reached from ({sx:.1f}, {sz:.1f}); "
                              "choose another landmark or start.")
    return _path_to_cells(scene, start, cells, None, clearance, refine)


def shortest_route(scene: SandboxScene, start, landmarks: Sequence[str],
                   margin_m: float = DEFAULT_MARGIN,
                   clearance: float = DEFAULT_CLEARANCE) -> Route:
    """The shortest walk from ``start`` reaching each of ``landmarks`` in the given order.

    Each leg is :func:`path_to_landmark`, cut where it enters the landmark's reach circle; the
    next leg starts from that entry point.
    """
    legs = []
    here = _point(start)
    for name in landmarks:
        full = path_to_landmark(scene, here, name, margin_m, clearance)
        leg = full.truncated(landmark_position(scene, name), landmark_reach(scene, name, margin_m))
        legs.append(leg)
        here = leg.end
    return Route(tuple(landmarks), tuple(legs))


def default_landmarks(scene: SandboxScene, start=None, n: int | None = None,
                      margin_m: float = DEFAULT_MARGIN) -> tuple[str, ...]:
    """A course through the city's landmarks reachable from ``start`` (default: the spawn).

    Greedy nearest-first by walking distance, so that the same seed always gives the same
    course and no leg doubles back across the whole map; ``n`` limits the number of landmarks.

    Raises
    ------
    NavigationError
        If no landmark can be reached.
    """
    here = _point(scene.spawn if start is None else start)
    todo = [name for name in landmark_names(scene) if is_reachable(scene, here, name, margin_m)]
    if not todo:
        raise NavigationError("No landmark of this city can be reached from the start; try "
                              "another seed.")
    n = len(todo) if n is None else int(n)
    if n < 1:
        raise NavigationError(f"A course needs at least one landmark, got n={n}.")
    course: list[str] = []
    while todo and len(course) < n:
        legs = {name: path_to_landmark(scene, here, name, margin_m, refine=False).truncated(
            landmark_position(scene, name), landmark_reach(scene, name, margin_m))
            for name in todo}
        name = min(todo, key=lambda k: legs[k].length_m)
        course.append(name)
        todo.remove(name)
        here = legs[name].end
    return tuple(course)
