"""Procedural city for the sandbox world: a seeded grid map, its textures and its sky.

The map is a square grid of cells (``cell`` metres each) seen from above; cell ``[ix, iz]``
covers world ``x`` in ``[ix * cell, (ix + 1) * cell)`` and ``z`` in ``[iz * cell, (iz + 1) *
cell)``; the ground is the plane ``y = 0`` and heights are metres above it (world ``-y``).
A cell holds at most one box from ``lo`` to ``hi`` metres (``hi == 0``: open ground; ``lo > 0``:
a floating block such as the lintel of the arch). Streets form a connected grid between city
blocks; blocks hold buildings, plazas or parks, and four plazas hold distinct landmarks (a tall
red tower, a blue pillar, a yellow arch and a fountain) so that places can be recognised.

Everything is drawn from ``numpy.random.default_rng(seed)``, so a seed always gives the same
scene, textures and sky.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from control.motion import CameraState

TEX = 64  # texels per texture side; one texture spans one cell (and one 3 m storey)

# Wall textures: building patterns x colour variants first, then the fixed ones below.
BUILDING_PATTERNS = ("brick", "windows", "stripes", "checker", "panels", "ribs")
N_BUILDING_COLOURS = 3
LANDMARK_TEXTURES = ("tower", "pillar", "arch", "rim", "jet", "border", "hedge")
FLOOR_TEXTURES = ("asphalt", "paving", "grass", "water", "concrete", "sidewalk")
LANDMARKS = ("red tower", "blue pillar", "yellow arch", "fountain")

# Cells whose box starts this low block the walker (the arch lintel floats above heads).
HEADROOM = 2.0


def _wall_id(name: str) -> int:
    return len(BUILDING_PATTERNS) * N_BUILDING_COLOURS + LANDMARK_TEXTURES.index(name)


def _floor_id(name: str) -> int:
    return FLOOR_TEXTURES.index(name)


@dataclass
class Palette:
    """Colours of a scene (RGB floats in [0, 1])."""

    buildings: np.ndarray  # (N_BUILDING_COLOURS, 2, 3): base and accent colour per variant
    zenith: np.ndarray
    horizon: np.ndarray  # also the fog colour, so that fog meets the sky seamlessly
    sun: np.ndarray


@dataclass
class SandboxScene:
    """A generated city: grid map, textures, sky panorama, spawn point and landmarks.

    Attributes
    ----------
    seed : int
        The seed it was generated from.
    size : int
        Cells per side of the square map.
    cell : float
        Cell size in metres.
    hi, lo : ndarray, shape (size, size), float64
        Top and bottom of each cell's box in metres above the ground (``hi == 0``: open).
    wall_tex, floor_tex : ndarray, shape (size, size), int
        Texture index of each cell's walls and of its ground.
    solid : ndarray, shape (size, size), bool
        Cells the camera cannot enter.
    wall_textures, floor_textures : ndarray, shape (n, 64, 64, 3), uint8
        Texture images; row 0 is the bottom of a storey / one edge of a ground cell.
    sky : ndarray, shape (n_elevation, n_azimuth, 3), uint8
        Sky panorama; row 0 is the horizon, the last row the zenith, columns cover 360 degrees
        of azimuth starting at yaw 0 (+z) and turning right.
    fog_colour : ndarray, shape (3,), float
        Colour far objects fade to (equals the sky at the horizon).
    spawn : CameraState
        A free starting point in a street, facing along it.
    landmarks : dict
        Landmark name -> (x, z) world position of its centre.
    """

    seed: int
    size: int
    cell: float
    hi: np.ndarray
    lo: np.ndarray
    wall_tex: np.ndarray
    floor_tex: np.ndarray
    solid: np.ndarray
    wall_textures: np.ndarray
    floor_textures: np.ndarray
    sky: np.ndarray
    fog_colour: np.ndarray
    spawn: CameraState
    landmarks: dict[str, tuple[float, float]] = field(default_factory=dict)

    def cell_of(self, x: float, z: float) -> tuple[int, int]:
        """Grid indices of the cell containing world point (x, z)."""
        return int(np.floor(x / self.cell)), int(np.floor(z / self.cell))

    def is_solid_cell(self, ix: int, iz: int) -> bool:
        """True for a blocking cell; everything outside the map counts as solid."""
        if not (0 <= ix < self.size and 0 <= iz < self.size):
            return True
        return bool(self.solid[ix, iz])


# --------------------------------------------------------------------------- noise helpers


def value_noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]):
    """Smooth periodic noise in [0, 1]: a random lattice, smoothstep-interpolated with wrap."""
    lattice = rng.random(cells)

    def axis(n: int, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.arange(n) * c / n
        i0 = np.floor(pos).astype(int)
        fr = pos - i0
        return i0 % c, (i0 + 1) % c, fr * fr * (3 - 2 * fr)

    r0, r1, fr = axis(shape[0], cells[0])
    c0, c1, fc = axis(shape[1], cells[1])
    rows = lattice[r0] * (1 - fr)[:, None] + lattice[r1] * fr[:, None]
    return rows[:, c0] * (1 - fc)[None, :] + rows[:, c1] * fc[None, :]


def fbm(rng: np.random.Generator, shape=(TEX, TEX), base=(4, 4), octaves: int = 4) -> np.ndarray:
    """Fractal sum of :func:`value_noise` octaves, normalised to [0, 1]."""
    out = np.zeros(shape)
    total = 0.0
    for o in range(octaves):
        w = 0.5**o
        cells = (min(base[0] * 2**o, shape[0]), min(base[1] * 2**o, shape[1]))
        out += w * value_noise(rng, shape, cells)
        total += w
    out /= total
    return (out - out.min()) / max(out.max() - out.min(), 1e-9)


def _grid() -> tuple[np.ndarray, np.ndarray]:
    r = np.arange(TEX)[:, None]
    c = np.arange(TEX)[None, :]
    return r, c


def _rgb(mask_or_val: np.ndarray, colour) -> np.ndarray:
    return np.asarray(mask_or_val, float)[..., None] * np.asarray(colour, float)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, float)
    if t.ndim == 2:
        t = t[..., None]
    return a * (1 - t) + b * t


def _fill(colour) -> np.ndarray:
    return np.broadcast_to(np.asarray(colour, float), (TEX, TEX, 3)).copy()


# --------------------------------------------------------------------------- textures


def building_texture(rng: np.random.Generator, pattern: str, base, accent) -> np.ndarray:
    """A 64x64 facade texture (one 3 m x 3 m panel) of the given pattern and colours."""
    r, c = _grid()
    base, accent = np.asarray(base, float), np.asarray(accent, float)
    grain = 0.88 + 0.24 * fbm(rng, base=(8, 8))[..., None]
    if pattern == "brick":
        bh, bw = 4, 8
        row_i = r // bh
        off = (row_i % 2) * (bw // 2)
        col_i = ((c + off) // bw) % (TEX // bw)
        jitter = 0.8 + 0.4 * rng.random((TEX // bh, TEX // bw))
        brick = _rgb(jitter[row_i, col_i], base)
        mortar = (r % bh == 0) | ((c + off) % bw == 0)
        img = np.where(mortar[..., None], 0.5 * accent + 0.5 * 0.85, brick)
    elif pattern == "windows":
        img = _fill(base)
        frame = (c >= 16) & (c < 48) & (r >= 14) & (r < 50)
        glass = (c >= 18) & (c < 46) & (r >= 16) & (r < 48)
        sky_refl = 0.35 + 0.45 * (r - 16) / 32.0
        glass_col = _rgb(np.broadcast_to(sky_refl, (TEX, TEX)), (0.35, 0.45, 0.6))
        img = np.where(frame[..., None], _fill(accent), img)
        img = np.where(glass[..., None], glass_col, img)
        mullion = glass & ((np.abs(c - 31.5) < 1) | (np.abs(r - 32) < 1))
        img = np.where(mullion[..., None], _fill(accent), img)
        img = np.where((r < 3)[..., None], _fill(0.7 * base), img)  # ledge between storeys
    elif pattern == "stripes":
        img = np.where(((r // 8) % 2 == 0)[..., None], _fill(base), _fill(accent))
    elif pattern == "checker":
        img = np.where((((r // 8) + (c // 8)) % 2 == 0)[..., None], _fill(base), _fill(accent))
    elif pattern == "panels":
        seam = (r % 32 < 1) | (c % 32 < 1)
        img = np.where(seam[..., None], _fill(0.55 * base), _fill(base))
        img = img * (0.85 + 0.3 * fbm(rng, base=(2, 2))[..., None])
    elif pattern == "ribs":
        rib = (c % 8 < 2)
        img = np.where(rib[..., None], _fill(0.6 * base), _fill(base))
        band = (r >= 52) & (r < 58)
        img = np.where(band[..., None], _fill(accent), img)
    else:
        raise ValueError(f"Unknown building pattern {pattern!r}.")
    return np.clip(img * grain, 0, 1)


def landmark_texture(rng: np.random.Generator, name: str) -> np.ndarray:
    """The fixed-colour textures of landmarks, the boundary wall and hedges."""
    r, c = _grid()
    n = fbm(rng, base=(8, 8))[..., None]
    if name == "tower":  # saturated red with a white band per storey and a dark slit window
        img = _fill((0.78, 0.08, 0.07)) * (0.85 + 0.3 * n)
        img = np.where(((r >= 56) & (r < 62))[..., None], _fill((0.95, 0.93, 0.9)), img)
        slit = (c >= 28) & (c < 36) & (r >= 18) & (r < 44)
        img = np.where(slit[..., None], _fill((0.12, 0.05, 0.05)), img)
    elif name == "pillar":  # blue with cylinder-like shading across the face and gold rings
        shade = 0.45 + 0.55 * np.sin(np.pi * (c + 0.5) / TEX)
        img = _rgb(np.broadcast_to(shade, (TEX, TEX)), (0.15, 0.32, 0.9)) * (0.9 + 0.2 * n)
        img = np.where(((r >= 30) & (r < 34))[..., None], _fill((0.95, 0.78, 0.2)) * shade[
            ..., None], img)
    elif name == "arch":  # yellow ashlar
        joint = (r % 16 == 0) | (((c + (r // 16 % 2) * 8) % 16) == 0)
        img = np.where(joint[..., None], _fill((0.6, 0.48, 0.1)), _fill((0.98, 0.82, 0.15)))
        img = img * (0.9 + 0.2 * n)
    elif name == "rim":  # white marble
        veins = np.abs(fbm(rng, base=(4, 4)) - 0.5) < 0.04
        img = np.where(veins[..., None], _fill((0.6, 0.6, 0.62)), _fill((0.93, 0.93, 0.9)))
    elif name == "jet":  # falling water: light cyan with vertical streaks
        streak = value_noise(rng, (TEX, TEX), (2, 16))
        img = _mix(_fill((0.55, 0.8, 0.95)), _fill((0.95, 0.98, 1.0)), streak)
    elif name == "border":  # big grey stone blocks
        joint = (r % 16 == 0) | (((c + (r // 16 % 2) * 16) % 32) == 0)
        img = np.where(joint[..., None], _fill((0.25, 0.25, 0.27)), _fill((0.5, 0.5, 0.52)))
        img = img * (0.85 + 0.3 * n)
    elif name == "hedge":  # leaves
        leaves = fbm(rng, base=(8, 8), octaves=3)
        img = _mix(_fill((0.1, 0.3, 0.08)), _fill((0.35, 0.65, 0.2)), leaves)
    else:
        raise ValueError(f"Unknown landmark texture {name!r}.")
    return np.clip(img, 0, 1)


def floor_texture(rng: np.random.Generator, name: str) -> np.ndarray:
    """Ground textures; one texture covers one cell."""
    r, c = _grid()
    n = fbm(rng, base=(8, 8))[..., None]
    if name == "asphalt":
        speck = (rng.random((TEX, TEX)) < 0.04)[..., None]
        img = _fill((0.26, 0.26, 0.28)) * (0.85 + 0.3 * n) + 0.12 * speck
    elif name == "paving":
        grout = (r % 16 == 0) | (c % 16 == 0)
        tone = 0.85 + 0.3 * rng.random((4, 4))[r // 16, c // 16]
        img = _rgb(tone, (0.74, 0.66, 0.54)) * (0.9 + 0.2 * n)
        img = np.where(grout[..., None], _fill((0.45, 0.42, 0.38)), img)
    elif name == "grass":
        img = _mix(_fill((0.16, 0.38, 0.1)), _fill((0.36, 0.62, 0.22)), fbm(rng, base=(8, 8)))
    elif name == "water":
        ripple = 0.5 + 0.5 * np.sin(2 * np.pi * (r / 16.0 + 0.3 * fbm(rng, base=(4, 4))))
        img = _mix(_fill((0.1, 0.32, 0.62)), _fill((0.35, 0.62, 0.85)), 0.6 * ripple)
    elif name == "concrete":
        img = _fill((0.55, 0.55, 0.56)) * (0.85 + 0.3 * n)
    elif name == "sidewalk":
        grout = (r % 8 == 0) | (c % 8 == 0)
        img = np.where(grout[..., None], _fill((0.45, 0.45, 0.47)), _fill((0.64, 0.64, 0.66)))
        img = img * (0.92 + 0.16 * n)
    else:
        raise ValueError(f"Unknown floor texture {name!r}.")
    return np.clip(img, 0, 1)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- palette and sky


def make_palette(rng: np.random.Generator, tint: np.ndarray | None = None) -> Palette:
    """Seeded building and sky colours, optionally pulled 40 % towards ``tint`` colours.

    ``tint`` is an (k, 3) array of RGB colours in [0, 1] (an image's dominant colours); variant
    ``i`` of the buildings is blended with ``tint[i % k]``, and the horizon with their mean.
    """
    import colorsys

    hues = rng.random(N_BUILDING_COLOURS)
    buildings = np.zeros((N_BUILDING_COLOURS, 2, 3))
    for i, h in enumerate(hues):
        s, v = rng.uniform(0.2, 0.55), rng.uniform(0.55, 0.85)
        buildings[i, 0] = colorsys.hsv_to_rgb(h, s, v)
        buildings[i, 1] = colorsys.hsv_to_rgb((h + rng.uniform(0.3, 0.7)) % 1, s * 0.6, v * 0.9)
    zenith = np.array(colorsys.hsv_to_rgb(rng.uniform(0.55, 0.64), rng.uniform(0.45, 0.7), 0.85))
    horizon = np.array(colorsys.hsv_to_rgb(rng.uniform(0.55, 0.62), rng.uniform(0.08, 0.2), 0.92))
    sun = np.array([1.0, 0.96, 0.85])
    if tint is not None and len(tint):
        tint = np.asarray(tint, float)
        for i in range(N_BUILDING_COLOURS):
            buildings[i] = 0.6 * buildings[i] + 0.4 * tint[i % len(tint)]
        horizon = 0.75 * horizon + 0.25 * tint.mean(axis=0)
    return Palette(buildings=buildings, zenith=zenith, horizon=horizon, sun=sun)


def make_sky(rng: np.random.Generator, palette: Palette, n_el: int = 96, n_az: int = 1024):
    """Sky panorama (rows: elevation 0..90 degrees, columns: azimuth 0..360) with sun and clouds."""
    el = (np.arange(n_el) + 0.5) / n_el * (np.pi / 2)
    az = (np.arange(n_az) + 0.5) / n_az * (2 * np.pi)
    s = (el / (np.pi / 2)) ** 0.5
    sky = palette.horizon * (1 - s[:, None, None]) + palette.zenith * s[:, None, None]
    sky = np.broadcast_to(sky, (n_el, n_az, 3)).copy()
    # Clouds: periodic noise over azimuth, fading out at the horizon and near the zenith.
    cloud = fbm(rng, shape=(n_el, n_az), base=(3, 24), octaves=4)
    cover = rng.uniform(0.45, 0.65)
    amount = np.clip((cloud - cover) / 0.25, 0, 1) * np.clip(el / 0.15, 0, 1)[:, None]
    amount *= np.clip((1.3 - el) / 0.4, 0, 1)[:, None]
    cloud_col = 0.85 + 0.15 * cloud[..., None]
    sky = sky * (1 - amount[..., None]) + cloud_col * amount[..., None]
    # Sun: a disc with a glow.
    sun_az, sun_el = rng.uniform(0, 2 * np.pi), rng.uniform(0.35, 0.8)
    cosang = np.sin(el)[:, None] * np.sin(sun_el) + np.cos(el)[:, None] * np.cos(sun_el) * np.cos(
        az[None, :] - sun_az
    )
    ang = np.arccos(np.clip(cosang, -1, 1))
    glow = 0.5 * np.exp(-ang / 0.12)[..., None]
    sky = sky * (1 - glow) + palette.sun * glow
    sky = np.where((ang < 0.035)[..., None], palette.sun, sky)
    return _to_u8(sky)


# --------------------------------------------------------------------------- layout


def _street_lines(rng: np.random.Generator, n: int) -> np.ndarray:
    """Which rows (or columns) of the map are streets: 1-2 cell streets between 3-6 cell blocks."""
    street = np.zeros(n, bool)
    i = 1
    while i < n - 1:
        w = int(rng.integers(1, 3))
        street[i : i + w] = True
        i += w + int(rng.integers(3, 7))
    street[n - 2] = True  # a street runs along the whole boundary wall
    street[0] = street[n - 1] = False
    return street


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of runs of False inside the border."""
    runs, start = [], None
    for i in range(1, len(mask) - 1):
        if not mask[i] and start is None:
            start = i
        if mask[i] and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(mask) - 1))
    return runs


def generate_scene(
    seed: int, size: int = 64, cell: float = 3.0, tint: np.ndarray | None = None
) -> SandboxScene:
    """Generate the city for ``seed``.

    Parameters
    ----------
    seed : int
        Scene seed (any non-negative integer).
    size : int
        Cells per side (at least 24 so that the four landmark plazas fit).
    cell : float
        Cell size in metres.
    tint : ndarray, shape (k, 3), optional
        RGB colours in [0, 1] that the building and sky palette are pulled towards.
    """
    if size < 24:
        raise ValueError(f"A sandbox map needs at least 24 cells per side, got {size}.")
    rng = np.random.default_rng(seed)
    n = size
    hi = np.zeros((n, n))
    lo = np.zeros((n, n))
    wall_tex = np.zeros((n, n), int)
    floor_tex = np.full((n, n), _floor_id("asphalt"))

    sx, sz = _street_lines(rng, n), _street_lines(rng, n)
    blocks = [(a, b, c, d) for a, b in _runs(sx) for c, d in _runs(sz)]

    # Landmark plazas: the largest blocks of size >= 3 in each quadrant of the map.
    landmark_kinds = [str(k) for k in rng.permutation(LANDMARKS)]
    chosen: dict[int, str] = {}
    for q in range(4):
        qx, qz = q % 2, q // 2
        cands = [
            i for i, (a, b, c, d) in enumerate(blocks)
            if b - a >= 3 and d - c >= 3 and ((a + b) / 2 >= n / 2) == qx
            and ((c + d) / 2 >= n / 2) == qz and i not in chosen
        ]
        if cands:
            chosen[int(rng.choice(cands))] = landmark_kinds[q]

    n_tex = len(BUILDING_PATTERNS) * N_BUILDING_COLOURS
    landmarks: dict[str, tuple[float, float]] = {}
    for i, (a, b, c, d) in enumerate(blocks):
        if i in chosen:
            floor_tex[a:b, c:d] = _floor_id("paving")
            landmarks[chosen[i]] = _place_landmark(chosen[i], (a, b, c, d), hi, lo, wall_tex,
                                                   floor_tex, cell)
            continue
        kind = rng.random()
        if kind < 0.1:  # plaza
            floor_tex[a:b, c:d] = _floor_id("paving")
        elif kind < 0.2:  # park with hedges
            floor_tex[a:b, c:d] = _floor_id("grass")
            trees = rng.random((b - a, d - c)) < 0.15
            hi[a:b, c:d] = np.where(trees, rng.uniform(2.5, 5.0, trees.shape), 0.0)
            wall_tex[a:b, c:d] = _wall_id("hedge")
        else:  # buildings on lots of 1-3 cells
            floor_tex[a:b, c:d] = _floor_id("concrete")
            xs = _split(rng, a, b)
            zs = _split(rng, c, d)
            for x0, x1 in xs:
                for z0, z1 in zs:
                    h = float(np.clip(4.5 + rng.gamma(2.0, 4.5), 4.5, 32.0))
                    hi[x0:x1, z0:z1] = h
                    wall_tex[x0:x1, z0:z1] = int(rng.integers(n_tex))
    # Sidewalks: street cells next to a block.
    street = sx[:, None] | sz[None, :]
    near = np.zeros_like(street)
    blk = ~street
    near[1:, :] |= blk[:-1, :]
    near[:-1, :] |= blk[1:, :]
    near[:, 1:] |= blk[:, :-1]
    near[:, :-1] |= blk[:, 1:]
    side = street & near & (sx[:, None] ^ sz[None, :])  # not at crossings
    # Some streets are paved walkways rather than roads, which makes them easier to tell apart.
    walk = (sx & (rng.random(n) < 0.3))[:, None] | (sz & (rng.random(n) < 0.3))[None, :]
    floor_tex[side & walk] = _floor_id("sidewalk")
    # Boundary wall.
    for sl in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
        hi[sl] = 8.0
        lo[sl] = 0.0
        wall_tex[sl] = _wall_id("border")
    solid = (hi > 0) & (lo < HEADROOM)

    palette = make_palette(rng, tint)
    wall_textures = [
        building_texture(rng, p, palette.buildings[k, 0], palette.buildings[k, 1])
        for p in BUILDING_PATTERNS for k in range(N_BUILDING_COLOURS)
    ] + [landmark_texture(rng, name) for name in LANDMARK_TEXTURES]
    floor_textures = [floor_texture(rng, name) for name in FLOOR_TEXTURES]
    sky = make_sky(rng, palette)

    spawn = _spawn(rng, street & ~solid, solid, cell)
    return SandboxScene(
        seed=int(seed), size=n, cell=float(cell), hi=hi, lo=lo, wall_tex=wall_tex,
        floor_tex=floor_tex, solid=solid,
        wall_textures=_to_u8(np.stack(wall_textures)),
        floor_textures=_to_u8(np.stack(floor_textures)),
        sky=sky, fog_colour=palette.horizon.copy(), spawn=spawn, landmarks=landmarks,
    )


def _split(rng: np.random.Generator, a: int, b: int) -> list[tuple[int, int]]:
    out, i = [], a
    while i < b:
        w = int(min(rng.integers(1, 4), b - i))
        out.append((i, i + w))
        i += w
    return out


def _place_landmark(kind, block, hi, lo, wall_tex, floor_tex, cell) -> tuple[float, float]:
    a, b, c, d = block
    cx, cz = (a + b) // 2, (c + d) // 2
    if kind == "red tower":
        w = 2 if min(b - a, d - c) >= 4 else 1
        hi[cx : cx + w, cz : cz + w] = 48.0
        wall_tex[cx : cx + w, cz : cz + w] = _wall_id("tower")
        return (float((cx + w / 2) * cell), float((cz + w / 2) * cell))
    if kind == "blue pillar":
        hi[cx, cz] = 16.0
        wall_tex[cx, cz] = _wall_id("pillar")
    elif kind == "yellow arch":
        hi[cx - 1 : cx + 2, cz] = 7.0
        lo[cx, cz] = 4.5  # the lintel: the middle cell stays walkable underneath
        wall_tex[cx - 1 : cx + 2, cz] = _wall_id("arch")
    elif kind == "fountain":
        hi[cx - 1 : cx + 2, cz - 1 : cz + 2] = 0.7  # a low rim; its top shows the water floor
        wall_tex[cx - 1 : cx + 2, cz - 1 : cz + 2] = _wall_id("rim")
        floor_tex[cx - 1 : cx + 2, cz - 1 : cz + 2] = _floor_id("water")
        hi[cx, cz] = 3.5
        wall_tex[cx, cz] = _wall_id("jet")
    return (float((cx + 0.5) * cell), float((cz + 0.5) * cell))


def _spawn(rng, free, solid, cell) -> CameraState:
    """A street cell centre, facing the direction with the longest free run."""
    inner = np.zeros_like(free)
    inner[4:-4, 4:-4] = True  # away from the boundary wall, among the city
    cells = np.argwhere(free & inner)
    if len(cells) == 0:
        cells = np.argwhere(free)
    order = rng.permutation(len(cells))
    best = None
    for k in order[:64]:
        ix, iz = cells[k]
        for yaw, (ddx, ddz) in ((0.0, (0, 1)), (np.pi / 2, (1, 0)), (np.pi, (0, -1)),
                                (-np.pi / 2, (-1, 0))):
            run = 0
            while not solid[ix + (run + 1) * ddx, iz + (run + 1) * ddz]:
                run += 1
            if best is None or run > best[0]:
                best = (run, ix, iz, yaw)
        if best[0] >= 6:
            break
    _, ix, iz, yaw = best
    return CameraState(x=float((ix + 0.5) * cell), y=-1.6, z=float((iz + 0.5) * cell),
                       yaw=float(yaw))
