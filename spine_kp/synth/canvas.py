"""Rasterise the phantom anatomy on one image plane: a vectorised painter's algorithm in numpy.

Every structure is a signed distance (mm, < 0 inside) of its cross-section in the plane, anti-aliased over one
pixel, times the share of the slice thickness it fills laterally (partial volume across the slab). Painting
blends the structure's per-contrast signal into a (C, H, W) canvas, so T1, T2 and STIR of the same geometry
come out of one pass. Bones and discs are evaluated only inside their projected bounding box.

Coordinates: the canvas knows the anatomy-frame position (x, y, z) of every pixel centre (see
``anatomy``); arrays are ``(H, W)`` = (row, col) of the render grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spine_kp.synth.anatomy import Anatomy

Box = tuple[slice, slice]


@dataclass(frozen=True)
class PlaneGrid:
    """An image plane in the anatomy frame: pixel (r, c) centre = origin + r * d_row + c * d_col (mm).

    Attributes:
        origin: (3,) anatomy-frame position of the centre of pixel (0, 0).
        d_row: (3,) step per row; d_col: (3,) step per column.
        shape: (H, W).
        thickness: slab thickness across which structures are averaged laterally (partial volume), mm.
    """

    origin: np.ndarray
    d_row: np.ndarray
    d_col: np.ndarray
    shape: tuple[int, int]
    thickness: float

    @property
    def px(self) -> float:
        return float(0.5 * (np.linalg.norm(self.d_row) + np.linalg.norm(self.d_col)))

    def halved(self) -> PlaneGrid:
        """The same plane at half resolution: pixel (i, j) covers pixels (2i..2i+1, 2j..2j+1) of this grid."""
        return PlaneGrid(
            origin=self.origin + 0.5 * (self.d_row + self.d_col),
            d_row=2.0 * self.d_row,
            d_col=2.0 * self.d_col,
            shape=((self.shape[0] + 1) // 2, (self.shape[1] + 1) // 2),
            thickness=self.thickness,
        )


class Canvas:
    """Per-contrast image, structure label map and pixel coordinates of one plane."""

    def __init__(
        self,
        grid: PlaneGrid,
        anatomy: Anatomy,
        signals: dict[str, np.ndarray],
        textures: np.ndarray,
    ) -> None:
        """Args: grid; anatomy; signals: tissue -> (C,) signal per contrast; textures: (2, H, W) fine/coarse."""
        h, w = grid.shape
        r = np.arange(h, dtype=np.float32)[:, None]
        c = np.arange(w, dtype=np.float32)[None, :]
        o, dr, dc = (np.asarray(v, dtype=np.float32) for v in (grid.origin, grid.d_row, grid.d_col))
        self.x, self.y, self.z = (o[i] + r * dr[i] + c * dc[i] for i in range(3))  # (H, W) each
        self.grid = grid
        self.anatomy = anatomy
        self.signals = signals
        self.tex_fine, self.tex_coarse = textures[0], textures[1]
        n_c = len(next(iter(signals.values())))
        self.img = np.zeros((n_c, h, w), dtype=np.float32)
        self.label = np.zeros((h, w), dtype=np.int16)
        self.px = grid.px
        self.thk = max(grid.thickness, self.px)
        self.idx = anatomy.table.lookup(self.z)
        normal = np.cross(grid.d_row, grid.d_col)
        normal = normal / np.linalg.norm(normal)
        # row, column and plane distance as linear functions of an anatomy-frame point: (size, a, b)
        self._proj = tuple(
            (size, tuple(float(v) for v in a), float(-(a @ grid.origin)))
            for size, a in ((h, grid.d_row / (grid.d_row @ grid.d_row)), (w, grid.d_col / (grid.d_col @ grid.d_col)),
                            (0, normal))
        )  # fmt: skip

    # ------------------------------------------------------------------ primitives
    def col(self, name: str, box: Box | None = None) -> np.ndarray:
        """Table column ``name`` at every pixel (or inside ``box``)."""
        if box is None:
            return self.anatomy.table.at(name, self.idx)
        return self.anatomy.table.at(name, (self.idx[0][box], self.idx[1][box]))

    def soft(self, sdf: np.ndarray, blur: float = 1.0) -> np.ndarray:
        """In-plane coverage of a pixel from a signed distance (mm): a one-pixel ramp (``blur`` pixels)."""
        t = np.multiply(sdf, np.float32(-1.0 / (self.px * blur)), dtype=np.float32)
        t += np.float32(0.5)
        np.maximum(t, np.float32(0.0), out=t)
        return np.minimum(t, np.float32(1.0), out=t)

    def lat(self, x: np.ndarray | float, centre: float, half: float) -> np.ndarray | float:
        """Share of the slab thickness around ``x`` inside the lateral interval ``centre +- half``."""
        t = self.thk
        if isinstance(x, float):
            if half <= 0:
                return 0.0
            return min(max(min(x - centre + t / 2, half) - max(x - centre - t / 2, -half), 0.0), t) / t
        if half <= 0:
            return np.zeros_like(x)
        xr = x - np.float32(centre)
        hi = np.minimum(xr + np.float32(t / 2), np.float32(half))
        hi -= np.maximum(xr - np.float32(t / 2), np.float32(-half))
        np.maximum(hi, np.float32(0.0), out=hi)
        np.minimum(hi, np.float32(t), out=hi)
        hi *= np.float32(1.0 / t)
        return hi

    def xs(self, box: Box) -> np.ndarray | float:
        """Lateral coordinate inside ``box``: a float when it is constant there (a true sagittal plane)."""
        g = self.grid
        rr = (box[0].start, box[0].stop - 1)
        cc = (box[1].start, box[1].stop - 1)
        corners = [g.origin[0] + r * g.d_row[0] + c * g.d_col[0] for r in rr for c in cc]
        if max(corners) - min(corners) < self.thk:  # within the slab averaging: treat as constant
            return float(0.5 * (max(corners) + min(corners)))
        return self.x[box]

    def box(self, aabb: tuple[float, float, float, float, float, float]) -> Box | None:
        """Pixel box covering the projection of an anatomy-frame box, or None when the plane misses it."""
        x0, x1, y0, y1, z0, z1 = aabb
        c = (0.5 * (x0 + x1), 0.5 * (y0 + y1), 0.5 * (z0 + z1))
        h = (0.5 * (x1 - x0), 0.5 * (y1 - y0), 0.5 * (z1 - z0))
        # a linear function a.p + b ranges over the box as a.c + b +- sum |a_i| h_i
        (nr, ar, br), (nc, ac, bc), (nn, an, bn) = self._proj
        dist = an[0] * c[0] + an[1] * c[1] + an[2] * c[2] + bn
        spread = abs(an[0]) * h[0] + abs(an[1]) * h[1] + abs(an[2]) * h[2] + self.thk
        if abs(dist) > spread:
            return None
        rm = ar[0] * c[0] + ar[1] * c[1] + ar[2] * c[2] + br
        rs = abs(ar[0]) * h[0] + abs(ar[1]) * h[1] + abs(ar[2]) * h[2]
        cm = ac[0] * c[0] + ac[1] * c[1] + ac[2] * c[2] + bc
        cs = abs(ac[0]) * h[0] + abs(ac[1]) * h[1] + abs(ac[2]) * h[2]
        r0, r1 = max(int(math.floor(rm - rs)) - 1, 0), min(int(math.ceil(rm + rs)) + 2, nr)
        c0, c1 = max(int(math.floor(cm - cs)) - 1, 0), min(int(math.ceil(cm + cs)) + 2, nc)
        if r0 >= r1 or c0 >= c1:
            return None
        return (slice(r0, r1), slice(c0, c1))

    def paint(
        self,
        box: Box | None,
        frac: np.ndarray | float,
        tissue: str | np.ndarray,
        label: int = 0,
        texture: float = 0.0,
        coarse: bool = False,
    ) -> None:
        """Blend ``tissue`` (name or (C,) signal) into the canvas with coverage ``frac`` (shape of ``box``).

        ``texture`` is the relative amplitude of the fine (or ``coarse``) texture field modulating the signal.
        """
        if isinstance(frac, float):
            if frac <= 0.0:
                return
            frac = np.full(self.img.shape[1:] if box is None else self.label[box].shape, frac, np.float32)
        sig = self.signals[tissue] if isinstance(tissue, str) else tissue
        sl = (slice(None), slice(None)) if box is None else box
        region = self.img[(slice(None), *sl)]
        target = sig[:, None, None]
        if texture:
            tex = (self.tex_coarse if coarse else self.tex_fine)[sl]
            target = target * (np.float32(texture) * tex + np.float32(1.0))
        delta = np.subtract(target, region)
        delta *= frac
        region += delta
        if label:
            self.label[sl][frac > 0.5] = label

    def mix(self, a: str, b: str, t: float) -> np.ndarray:
        """(C,) signal of a tissue mixture: (1 - t) * a + t * b."""
        return (1.0 - t) * self.signals[a] + t * self.signals[b]

    def marrow(self, ff: float, water: str = "marrow_water") -> np.ndarray:
        """(C,) signal of bone marrow with fat fraction ``ff``."""
        return self.mix(water, "fat", ff)


def rounded_box(u: np.ndarray, v: np.ndarray, half_u: np.ndarray | float, half_v: np.ndarray | float,
                r: float) -> np.ndarray:  # fmt: skip
    """Signed distance of a box centred at 0 with rounded corners (radius ``r``)."""
    qu = np.abs(u) - (half_u - r)
    qv = np.abs(v) - (half_v - r)
    return np.hypot(np.maximum(qu, 0.0), np.maximum(qv, 0.0)) + np.minimum(np.maximum(qu, qv), 0.0) - r


def ellipse(u: np.ndarray, v: np.ndarray, ru: np.ndarray | float, rv: np.ndarray | float) -> np.ndarray:
    """Approximate signed distance of an axis-aligned ellipse centred at 0."""
    ru = max(float(ru), 1e-3) if np.isscalar(ru) else np.maximum(ru, np.float32(1e-3))
    rv = max(float(rv), 1e-3) if np.isscalar(rv) else np.maximum(rv, np.float32(1e-3))
    small = min(ru, rv) if np.isscalar(ru) and np.isscalar(rv) else np.minimum(ru, rv)
    return (np.hypot(u / ru, v / rv) - 1.0) * small
