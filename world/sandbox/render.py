"""Vectorised CPU raycaster for the sandbox city (numpy only).

How a frame is made (all steps are whole-array numpy operations, no per-pixel Python):

1. **Rays per column.** Column ``c`` of a ``W``-wide image looks along the horizontal direction
   ``forward + u_c * right`` with ``u_c = (c + 0.5 - W / 2) / f`` and ``f = (W / 2) /
   tan(fov / 2)``. Distances along that ray are depths ``z`` in the camera frame, so yaw and
   position are rendered exactly as a pinhole camera with intrinsics :meth:`intrinsics` sees them.
2. **Grid traversal (DDA).** Every crossing of the ray with a grid line up to ``max_distance``
   is computed at once for all columns, sorted by depth, and each crossing's entered cell is
   looked up. A crossing shows a wall face when the entered cell's box is taller than the one
   it leaves (or floats at another height, like the arch lintel). Faces are kept front to back
   while they rise above everything nearer (a running minimum of face tops), so taller
   buildings and landmarks appear above nearer, lower ones.
3. **Per-pixel shading.** Visible faces become vertical row spans; the spans of faces standing
   on the ground never overlap within a column, so all of them are painted at once with a
   difference image (cumulative sum down the rows); floating faces are painted over them. Each
   wall pixel's height above the ground gives the texture row, the hit position along the face
   the texture column. Pixels below the horizon that no wall covers are ground, cast per pixel
   from their row's depth; those above are sky, looked up in a panorama by azimuth and
   elevation. Textures come pre-filtered at several blur levels (chosen by the texel footprint,
   a cheap mip-map against shimmering), with faces along x and along z lit differently, and are
   packed one RGBA word per texel so that a pixel costs one gather.
4. **Fog.** Exponential height fog: the optical depth of a ray is ``distance / fog_length``
   scaled by the mean fog density between camera and point, whose density falls off as
   ``exp(-height / fog_height)``. Near the ground everything fades to the horizon colour; tall
   landmarks stay visible from far away. Wall fog comes from a table over (distance, height) in
   0.25 m bins; the blend with the fog colour is fixed-point.

**Pitch is approximate:** tilting the camera is rendered as a vertical shear of the pitch-0
image (every row moves by ``f * tan(pitch)``; verticals stay vertical), as classic raycasters
do, not as a true rotation of the image plane. At pitch 0 the image is an exact pinhole
projection of the scene from the pose. With pitch, the horizon and the point at the image
centre land where the true projection puts them, but rows in between and beyond are off (at
256x256 with the default 80 degree field of view: about 6 pixels at 15 degrees elevation for a
30 degree tilt, tens of pixels near the 60 degree limit), and the converging verticals of a
tilted camera are missing. The poses in a chunk are still the exact tilted ones. Other
simplifications: the tops of boxes (roofs) are not drawn (only the fountain rim is lower than
the camera; its top shows the water texture of the ground inside it), and the underside of the
floating arch lintel is not drawn (looking up from right under it shows sky).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from control.motion import CameraState
from world.base import check_resolution
from world.sandbox.scene import TEX, SandboxScene

MIP_LEVELS = 7
_DIST_BIN = 0.25  # metres per distance bin of the wall fog table
_HEIGHT_BIN = 0.25  # metres per height bin of the wall fog table
_N_HEIGHT = 256  # height bins (0-64 m)
SIDE_SHADE = (1.0, 0.78)  # brightness of faces crossed along x and along z


def _pack(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) -> uint32 (...) whose bytes are R, G, B, 255 (little-endian view)."""
    rgba = np.concatenate([rgb, np.full(rgb.shape[:-1] + (1,), 255, np.uint8)], axis=-1)
    return np.ascontiguousarray(rgba).view(np.uint32)[..., 0]


def build_atlas(scene: SandboxScene) -> tuple[np.ndarray, int, int]:
    """Packed texture table ``(MIP_LEVELS, n_textures, 64, 64)`` uint32, plus index offsets.

    Textures are ordered: walls lit as x-faces, walls lit as z-faces, ground. Level ``k`` is the
    texture blurred (periodically, by FFT) with a Gaussian of ``2 ** (k - 2)`` texels (level 0:
    unfiltered). The table depends only on the scene, so it is computed once per scene.
    """
    cached = getattr(scene, "_atlas", None)
    if cached is not None:
        return cached
    walls = scene.wall_textures.astype(np.float32)
    tex = np.concatenate(
        [walls * SIDE_SHADE[0], walls * SIDE_SHADE[1], scene.floor_textures.astype(np.float32)]
    )
    # Channels first so that the FFTs run over contiguous 64x64 planes.
    spectrum = scipy.fft.rfft2(np.ascontiguousarray(tex.transpose(0, 3, 1, 2)))
    fy = np.fft.fftfreq(TEX)[:, None]
    fx = np.fft.rfftfreq(TEX)[None, :]
    levels = [_pack(np.clip(np.round(tex), 0, 255).astype(np.uint8))]
    for k in range(1, MIP_LEVELS):
        sigma = 2.0 ** (k - 2)
        gain = np.exp(-2 * (np.pi * sigma) ** 2 * (fx**2 + fy**2)).astype(np.float32)
        blurred = scipy.fft.irfft2(spectrum * gain, s=(TEX, TEX)).transpose(0, 2, 3, 1)
        levels.append(_pack(np.clip(np.round(blurred), 0, 255).astype(np.uint8)))
    n_walls = len(walls)
    result = (np.stack(levels), n_walls, 2 * n_walls)
    scene._atlas = result
    return result


class SandboxRenderer:
    """Render a :class:`SandboxScene` at a fixed resolution from any camera state.

    Parameters
    ----------
    scene : SandboxScene
        The city to draw.
    height, width : int
        Frame size in pixels (any positive size).
    fov_deg : float
        Horizontal field of view in degrees.
    fog_length : float
        Distance (m) over which fog at camera height reaches 63 %.
    fog_height : float
        Height (m) over which the fog density falls by a factor e.
    max_distance : float
        Walls beyond this distance (m) are not traced.
    """

    def __init__(
        self,
        scene: SandboxScene,
        height: int,
        width: int,
        fov_deg: float = 80.0,
        fog_length: float = 45.0,
        fog_height: float = 12.0,
        max_distance: float = 180.0,
    ) -> None:
        self.height, self.width = check_resolution(height, width)
        if not 10.0 <= fov_deg <= 150.0:
            raise ValueError(f"fov_deg must lie between 10 and 150 degrees, got {fov_deg}.")
        self.scene = scene
        self.fov_deg = float(fov_deg)
        self.fog_length = float(fog_length)
        self.fog_height = float(fog_height)
        self.max_distance = float(max_distance)
        self.focal = 0.5 * self.width / np.tan(np.deg2rad(fov_deg) / 2)
        self._u = (np.arange(self.width) + 0.5 - self.width / 2) / self.focal
        self._norm = np.sqrt(1.0 + self._u**2)  # ray length per unit depth, per column
        self._row = (np.arange(self.height) + 0.5).astype(np.float64)
        self._cols = np.arange(self.width)
        self._k = np.arange(int(np.ceil(max_distance / scene.cell)) + 1)
        n = scene.size
        # Map tables with one extra "outside" entry (open ground) at index n * n.
        self._hi = np.append(scene.hi.ravel(), 0.0)
        self._lo = np.append(scene.lo.ravel(), 0.0)
        self._wtex = np.append(scene.wall_tex.ravel(), 0)
        atlas, self._side1, self._floor0 = build_atlas(scene)
        self._ftex = scene.floor_tex.ravel().astype(np.intp) + self._floor0
        self._n_tex = atlas.shape[1]
        self._sky0 = atlas.size
        self._sky_shape = scene.sky.shape[:2]
        self._table = np.concatenate([atlas.ravel(), _pack(scene.sky).ravel()])
        fog_rgb = np.clip(np.round(scene.fog_colour * 255.0), 0, 255).astype(np.uint8)
        fog_word = int(_pack(fog_rgb[None])[0])
        self._fog_rb = np.uint32(fog_word & 0x00FF00FF)
        self._fog_ga = np.uint32((fog_word >> 8) & 0x00FF00FF)
        self._tpm = TEX / scene.cell  # texels per metre
        self._n = n
        self._atan_u = np.arctan(self._u)
        self._norm32 = self._norm.astype(np.float32)[None, :]
        self._n_dist = int(np.ceil(self.max_distance * self._norm.max() / _DIST_BIN)) + 1
        self._fog_cache: tuple | None = None

    def intrinsics(self) -> np.ndarray:
        """3x3 pinhole intrinsics (pixels) of the rendered frames at pitch 0."""
        return np.array(
            [[self.focal, 0.0, self.width / 2], [0.0, self.focal, self.height / 2],
             [0.0, 0.0, 1.0]]
        )

    # ------------------------------------------------------------------ helpers

    def _mip(self, depth: np.ndarray) -> np.ndarray:
        """Blur level for surfaces at ``depth`` metres (texels per pixel, log2, clipped)."""
        footprint = np.maximum(depth * (self._tpm / self.focal), 1e-6)
        return np.clip(np.floor(np.log2(footprint) + 1.0), 0, MIP_LEVELS - 1).astype(np.intp)

    def _fog_density(self, dh: np.ndarray) -> np.ndarray:
        """Mean relative fog density along a ray climbing ``dh`` metres (1 at camera height)."""
        x = np.asarray(dh, np.float64) / self.fog_height
        small = np.abs(x) < 1e-4
        safe = np.where(small, 1.0, x)
        return np.where(small, 1.0 - 0.5 * x, -np.expm1(-safe) / safe)

    def _fog_tables(self, cam_h: float):
        """Per camera height: fog look-up (distance bin x height bin) and per-cell fog reach."""
        if self._fog_cache is not None and self._fog_cache[0] == cam_h:
            return self._fog_cache[1:]
        dist = (np.arange(self._n_dist) + 0.5) * _DIST_BIN
        height = (np.arange(_N_HEIGHT) + 0.5) * _HEIGHT_BIN
        tau = dist[:, None] / self.fog_length * self._fog_density(height - cam_h)[None, :]
        lut = (-np.expm1(-tau)).astype(np.float32).ravel()
        # Beyond this distance a cell's box is fogged out even at its top (fog > 99.3 %).
        reach = 5.0 * self.fog_length / self._fog_density(self._hi - cam_h)
        reach = np.where(self._hi > 0, np.minimum(reach, self.max_distance), 0.0)
        self._fog_cache = (cam_h, lut, reach)
        return lut, reach

    # ------------------------------------------------------------------ rendering

    def _trace(self, state: CameraState, cam_h: float, horizon: float, reach: np.ndarray):
        """Visible wall faces, nearest first per column.

        Returns ``None`` when no face is visible, else a dict of 1-D arrays over visible faces
        (``col``, ``rank`` (1 = nearest in its column), ``top``, ``bot`` (rows, continuous),
        ``t`` (depth), ``base`` (texture index without the row), ``floating``) and ``m``, the
        largest number of faces in one column.
        """
        sc = self.scene
        cell, n = sc.cell, self._n
        sy, cy = np.sin(state.yaw), np.cos(state.yaw)
        dx = sy + self._u * cy
        dz = cy - self._u * sy
        px, pz = float(state.x), float(state.z)
        # Trace only as far as the farthest ray stays inside the map.
        span = n * cell
        with np.errstate(divide="ignore", invalid="ignore"):
            ex = np.where(dx > 0, (span - px) / dx, np.where(dx < 0, -px / dx, np.inf))
            ez = np.where(dz > 0, (span - pz) / dz, np.where(dz < 0, -pz / dz, np.inf))
        inside_map = 0 <= px < span and 0 <= pz < span
        far = float(np.max(np.minimum(ex, ez))) if inside_map else self.max_distance * 2
        nk = int(min(len(self._k), np.ceil(min(far, self.max_distance * 2) / cell) + 2))
        k = self._k[None, :nk]

        def crossings(p, d):
            # Depths of the grid lines crossed along one axis, and the index entered there.
            pos = d >= 0
            safe = np.where(np.abs(d) < 1e-12, np.where(pos, 1e-12, -1e-12), d)
            b = np.floor(p / cell) + pos[:, None] + np.where(pos, 1, -1)[:, None] * k
            return (b * cell - p) / safe[:, None], b - (~pos)[:, None]

        tx, ix_x = crossings(px, dx)
        tz, iz_z = crossings(pz, dz)
        iz_x = np.floor((pz + dz[:, None] * tx) / cell)
        ix_z = np.floor((px + dx[:, None] * tz) / cell)
        ix = np.concatenate([ix_x, ix_z], axis=1)
        iz = np.concatenate([iz_x, iz_z], axis=1)
        inside = (ix >= 0) & (ix < n) & (iz >= 0) & (iz < n)
        cid = np.where(inside, ix * n + iz, n * n).astype(np.intp)
        side = np.zeros(cid.shape, np.intp)
        side[:, nk:] = 1
        t = np.concatenate([tx, tz], axis=1)
        order = np.argsort(t, axis=1)
        t = np.take_along_axis(t, order, 1)
        packed = np.take_along_axis(cid * 2 + side, order, 1)
        cid = packed >> 1

        cix, ciz = sc.cell_of(px, pz)
        cam_cell = cix * n + ciz if (0 <= cix < n and 0 <= ciz < n) else n * n
        hi_b, lo_b = self._hi[cid], self._lo[cid]
        first = np.full((len(t), 1), 0.0)
        hi_a = np.concatenate([first + self._hi[cam_cell], hi_b[:, :-1]], axis=1)
        lo_a = np.concatenate([first + self._lo[cam_cell], lo_b[:, :-1]], axis=1)
        face = (hi_b > 0) & ((hi_b > hi_a) | (lo_b != lo_a))
        face &= t * self._norm[:, None] < reach[cid]  # also drops faces beyond max_distance
        t = np.maximum(t, 1e-3)
        inv = self.focal / t
        top = horizon + (cam_h - hi_b) * inv
        bot = horizon + (cam_h - lo_b) * inv
        # Ground-standing faces hide everything farther that is lower on screen.
        occ = np.minimum.accumulate(np.where(face & (lo_b <= 0), top, np.inf), axis=1)
        occ_prev = np.concatenate([np.full((len(t), 1), np.inf), occ[:, :-1]], axis=1)
        bot = np.minimum(bot, occ_prev)
        vis = face & (top < occ_prev) & (top < self.height) & (bot > 0) & (bot > top)
        col, j = np.nonzero(vis)
        if len(col) == 0:
            return None
        counts = np.bincount(col, minlength=self.width)
        rank = np.arange(len(col)) - (np.cumsum(counts) - counts)[col] + 1
        t_v = t[col, j]
        side_v = packed[col, j] & 1
        cid_v = cid[col, j]
        # Texture column: position of the hit along the face.
        along = np.where(side_v == 1, px + dx[col] * t_v, pz + dz[col] * t_v) / cell
        u = (np.floor((along - np.floor(along)) * TEX).astype(np.intp)) & (TEX - 1)
        tex = self._wtex[cid_v] + side_v * self._side1
        base = ((self._mip(t_v) * self._n_tex + tex) * TEX) * TEX + u
        return {
            "col": col, "rank": rank, "top": top[col, j], "bot": bot[col, j], "t": t_v,
            "base": base, "dist": t_v * self._norm[col], "floating": lo_b[col, j] > 0,
            "m": int(counts.max()),
        }

    def render(self, state: CameraState) -> np.ndarray:
        """RGB frame (height, width, 3) uint8 seen from ``state``."""
        h_px, w_px, f = self.height, self.width, self.focal
        cam_h = max(-float(state.y), 0.05)  # camera height above the ground (y is down)
        horizon = h_px / 2 + f * np.tan(float(state.pitch))
        row = self._row
        r0 = int(np.clip(np.searchsorted(row, horizon, side="right"), 0, h_px))
        lut, reach = self._fog_tables(cam_h)
        sy, cy = np.sin(state.yaw), np.cos(state.yaw)

        # Background: sky above the horizon, ground below.
        idx = np.empty((h_px, w_px), np.intp)
        fog = np.zeros((h_px, w_px), np.float32)
        if r0 > 0:
            n_el, n_az = self._sky_shape
            el = np.arctan((horizon - row[:r0]) / f)
            eli = np.clip((el * (2 * n_el / np.pi)).astype(np.intp), 0, n_el - 1)
            az = (state.yaw + self._atan_u) / (2 * np.pi)
            azi = (np.floor((az - np.floor(az)) * n_az).astype(np.intp)) % n_az
            idx[:r0] = (self._sky0 + eli * n_az)[:, None] + azi[None, :]
        if r0 < h_px:
            depth = cam_h * f / (row[r0:] - horizon)  # (rows,)
            cell = self.scene.cell
            dx = ((sy + self._u * cy) / cell).astype(np.float32)
            dz = ((cy - self._u * sy) / cell).astype(np.float32)
            d32 = depth.astype(np.float32)[:, None]
            gx = np.float32(state.x / cell) + d32 * dx
            gz = np.float32(state.z / cell) + d32 * dz
            fx, fz = np.floor(gx), np.floor(gz)
            u = ((gx - fx) * TEX).astype(np.intp) & (TEX - 1)
            v = ((gz - fz) * TEX).astype(np.intp) & (TEX - 1)
            n = self._n
            np.clip(fx, 0, n - 1, out=fx)
            np.clip(fz, 0, n - 1, out=fz)
            cell_id = (fx * n + fz).astype(np.intp)
            tex = self._ftex[cell_id]
            base = (self._mip(depth) * self._n_tex * TEX * TEX)[:, None]
            idx[r0:] = base + (tex * TEX + v) * TEX + u
            dens = float(self._fog_density(np.array(-cam_h)))
            tau = (depth * (dens / self.fog_length)).astype(np.float32)[:, None] * self._norm32
            fog[r0:] = -np.expm1(-tau)

        hits = self._trace(state, cam_h, horizon, reach)
        if hits is not None:
            self._shade_walls(hits, idx, fog, cam_h, horizon, lut)

        return self._blend(self._table[idx], fog)

    def _blend(self, packed: np.ndarray, fog: np.ndarray) -> np.ndarray:
        """Mix packed RGBA texels with the fog colour by ``fog`` in [0, 1]; (H, W, 3) uint8.

        Fixed-point, two channels per 32-bit word (R and B, then G and A, in 16-bit lanes), so
        the blend runs on one word per pixel instead of three floats.
        """
        a = (fog * np.float32(256.0) + np.float32(0.5)).astype(np.uint32)
        ia = np.uint32(256) - a
        lanes = np.uint32(0x00FF00FF)
        rb = packed & lanes
        rb *= ia
        rb += self._fog_rb * a + np.uint32(0x00800080)
        rb >>= np.uint32(8)
        rb &= lanes
        ga = (packed >> np.uint32(8)) & lanes
        ga *= ia
        ga += self._fog_ga * a + np.uint32(0x00800080)
        ga &= np.uint32(0xFF00FF00)
        rb |= ga
        rgba = rb.view(np.uint8).reshape(*packed.shape, 4)
        out = np.empty((*packed.shape, 3), np.uint8)
        for ch in range(3):  # per-channel copies beat one strided (..., :3) copy by ~5x
            out[..., ch] = rgba[..., ch]
        return out

    def render_depth(self, state: CameraState) -> np.ndarray:
        """Depth of every pixel of :meth:`render`'s frame from ``state``: ``(H, W)`` float32.

        Depth is the camera-frame ``z`` in metres (distance along the optical axis of the
        pitch-0 camera; pitch is the renderer's shear), ``inf`` for the sky. The geometric
        memory's depth model learns from it (:mod:`world.mvdt.depth`); nothing at run time
        reads it.
        """
        f = self.focal
        cam_h = max(-float(state.y), 0.05)
        horizon = self.height / 2 + f * np.tan(float(state.pitch))
        with np.errstate(divide="ignore"):
            ground = np.where(self._row > horizon, cam_h * f / (self._row - horizon), np.inf)
        depth = np.repeat(ground.astype(np.float32)[:, None], self.width, axis=1)
        _, reach = self._fog_tables(cam_h)
        hits = self._trace(state, cam_h, horizon, reach)
        if hits is not None:
            layer, wall = self._wall_layers(hits)
            t_s = np.ones((hits["m"] + 1, self.width), np.float32)
            t_s[hits["rank"], hits["col"]] = hits["t"]
            np.copyto(depth, t_s.ravel()[layer * self.width + self._cols], where=wall)
        return depth

    def _wall_layers(self, hits) -> tuple[np.ndarray, np.ndarray]:
        """Per pixel, the rank of the wall face it shows (0: none), and the wall mask."""
        h_px, w_px = self.height, self.width
        col, rank = hits["col"], hits["rank"]
        start = np.clip(np.ceil(hits["top"] - 0.5), 0, h_px).astype(np.intp)
        stop = np.clip(np.ceil(hits["bot"] - 0.5), 0, h_px).astype(np.intp)
        # Ground-standing faces of a column cover disjoint row spans: paint them all at once
        # with a difference image (+rank where a span starts, -rank where it ends, cumsum).
        # (Empty spans are dropped, so starts, and stops, are unique per column.)
        g = ~hits["floating"] & (stop > start)
        diff = np.zeros((2, (h_px + 1) * w_px), np.intp)
        diff[0, start[g] * w_px + col[g]] = rank[g]
        diff[1, stop[g] * w_px + col[g]] = rank[g]
        diff = (diff[0] - diff[1]).reshape(h_px + 1, w_px)[:h_px]
        layer = np.cumsum(diff, axis=0)
        # Floating faces (the arch lintel) cover ground faces behind them: paint them last,
        # farthest first so that the nearest wins.
        for i in np.flatnonzero(hits["floating"])[::-1]:
            layer[start[i] : stop[i], col[i]] = rank[i]
        return layer, layer > 0

    def _shade_walls(self, hits, idx, fog, cam_h, horizon, lut) -> None:
        """Write the texture index and fog of every wall pixel into ``idx`` and ``fog``."""
        w_px = self.width
        m = hits["m"]
        col, rank = hits["col"], hits["rank"]
        layer, wall = self._wall_layers(hits)
        # Per-face tables of shape (m + 1, W); row 0 stands for "no face".
        t_s = np.ones((m + 1, w_px), np.float32)
        base_s = np.zeros((m + 1, w_px), np.intp)
        dbin_s = np.zeros((m + 1, w_px), np.intp)
        t_s[rank, col] = hits["t"]
        base_s[rank, col] = hits["base"]
        dbin = np.minimum((hits["dist"] / _DIST_BIN).astype(np.intp), self._n_dist - 1)
        dbin_s[rank, col] = dbin * _N_HEIGHT
        key = layer * w_px + self._cols
        t_p = t_s.ravel()[key]
        height = cam_h - self._srow(horizon) * t_p
        v = (height * np.float32(self._tpm)).astype(np.intp) & (TEX - 1)
        hb = np.clip((height * np.float32(1.0 / _HEIGHT_BIN)).astype(np.intp), 0, _N_HEIGHT - 1)
        np.copyto(idx, base_s.ravel()[key] + v * TEX, where=wall)
        np.copyto(fog, lut[dbin_s.ravel()[key] + hb], where=wall)

    def _srow(self, horizon: float) -> np.ndarray:
        """(row - horizon) / focal per row, as a float32 column."""
        return ((self._row - horizon) / self.focal).astype(np.float32)[:, None]
