"""Rasterise the phantom anatomy on one image plane: a vectorised painter's algorithm in numpy.

Every structure is a signed distance (mm, < 0 inside) of its cross-section in the plane, anti-aliased over one
pixel, times the share of the slice thickness it fills laterally (partial volume across the slab). Painting
blends the structure's per-contrast signal into a (C, H, W) canvas, so T1, T2 and STIR of the same geometry
come out of one pass. Bones and discs are evaluated only inside their projected bounding box.

Coordinates: the canvas knows the anatomy-frame position (x, y, z) of every pixel centre (see
``phantom_anatomy``); arrays are ``(H, W)`` = (row, col) of the render grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from spine_kp.io.phantom_anatomy import Anatomy, Body, Disc, depth_profile

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
        self._normal = normal / np.linalg.norm(normal)

    # ------------------------------------------------------------------ primitives
    def col(self, name: str, box: Box | None = None) -> np.ndarray:
        """Table column ``name`` at every pixel (or inside ``box``)."""
        if box is None:
            return self.anatomy.table.at(name, self.idx)
        return self.anatomy.table.at(name, (self.idx[0][box], self.idx[1][box]))

    def soft(self, sdf: np.ndarray, blur: float = 1.0) -> np.ndarray:
        """In-plane coverage of a pixel from a signed distance (mm): a one-pixel ramp (``blur`` pixels)."""
        return np.clip(0.5 - sdf * (1.0 / (self.px * blur)), 0.0, 1.0)

    def lat(self, x: np.ndarray | float, centre: float, half: float) -> np.ndarray | float:
        """Share of the slab thickness around ``x`` inside the lateral interval ``centre +- half``."""
        t = self.thk
        if isinstance(x, float):
            if half <= 0:
                return 0.0
            return min(max(min(x - centre + t / 2, half) - max(x - centre - t / 2, -half), 0.0), t) / t
        if half <= 0:
            return np.zeros_like(x)
        xr = x - centre
        return np.clip(np.minimum(xr + t / 2, half) - np.maximum(xr - t / 2, -half), 0.0, t) * (1.0 / t)

    def xs(self, box: Box) -> np.ndarray | float:
        """Lateral coordinate inside ``box``: a float when it is constant there (a true sagittal plane)."""
        g = self.grid
        rr = (box[0].start, box[0].stop - 1)
        cc = (box[1].start, box[1].stop - 1)
        corners = [g.origin[0] + r * g.d_row[0] + c * g.d_col[0] for r in rr for c in cc]
        if max(corners) - min(corners) < 0.02:
            return float(0.5 * (max(corners) + min(corners)))
        return self.x[box]

    def box(self, aabb: tuple[float, float, float, float, float, float]) -> Box | None:
        """Pixel box covering the projection of an anatomy-frame box, or None when the plane misses it."""
        g = self.grid
        corners = np.array([[x, y, z] for x in aabb[0:2] for y in aabb[2:4] for z in aabb[4:6]]) - g.origin
        dist = corners @ self._normal
        margin = self.thk
        if (dist > margin).all() or (dist < -margin).all():
            return None
        rr = corners @ g.d_row / float(g.d_row @ g.d_row)
        cc = corners @ g.d_col / float(g.d_col @ g.d_col)
        h, w = g.shape
        r0, r1 = max(int(math.floor(rr.min())) - 1, 0), min(int(math.ceil(rr.max())) + 2, h)
        c0, c1 = max(int(math.floor(cc.min())) - 1, 0), min(int(math.ceil(cc.max())) + 2, w)
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
            target = target * (1.0 + texture * tex)
        region += frac * (target - region)
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


def _local(cv: Canvas, s: Body | Disc, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray | float]:
    u, v = s.frame.local(cv.y[box], cv.z[box])
    return u, v, cv.xs(box)


def missed(lat: np.ndarray | float) -> bool:
    """True when a (scalar) lateral coverage says the slab misses a structure."""
    return isinstance(lat, float) and lat <= 0.0


def _f(v: np.ndarray | float) -> np.ndarray | float:
    """Keep scalars as Python floats (a NumPy float64 scalar would promote float32 arrays)."""
    return float(v) if np.ndim(v) == 0 else v


# ---------------------------------------------------------------------- discs
def paint_disc(cv: Canvas, an: Anatomy, d: Disc, label: int) -> None:
    """Annulus, nucleus (T2 signal falls with degeneration), bulge and focal herniation of one disc."""
    up, lo = an.bodies[d.upper], an.bodies[d.lower]
    reach = d.look.protrusion + d.look.migration + 6.0
    half = max(d.half_depth, d.height) + reach + 8.0
    y, z = d.frame.y, d.frame.z
    box = cv.box((-d.half_width - 2, d.half_width + 2, y - half, y + half, z - half, z + half))
    if box is None:
        return
    u, v, x = _local(cv, d, box)
    lat = cv.lat(x, 0.0, d.half_width)
    if missed(lat):
        return
    _, vu = up.frame.local(cv.y[box], cv.z[box])
    _, vl = lo.frame.local(cv.y[box], cv.z[box])
    g = depth_profile(x / d.half_width)
    depth = 2.0 * d.half_depth * g
    u_post = d.half_depth
    u_ant = u_post - depth
    t2 = np.clip(v / (0.5 * d.height), -1.0, 1.0) ** 2
    look = d.look
    side = _f(np.clip(0.5 + 0.5 * np.tanh(d.side * x / 6.0), 0.0, 1.0))
    bulge = look.bulge * ((1.0 - look.asymmetry) + 2.0 * look.asymmetry * side) * (1.0 - t2)
    sdf_ap = np.maximum(u - (u_post + bulge), (u_ant - 0.7 * bulge) - u)
    overlap = 2.5
    sdf = np.maximum(np.maximum((vu + up.half_height) - overlap, (lo.half_height - vl) - overlap), sdf_ap)
    if look.protrusion > 0:
        lat_w = _f(np.sqrt(np.clip(1.0 - ((x - d.hern_x) / d.hern_width) ** 2, 0.0, 1.0)))
        reach_x = look.protrusion * lat_w + 1e-3
        hu = u - u_post
        dome = ellipse(hu, v, reach_x, 0.5 * d.height + 0.5)
        if look.migration > 0:
            vc = d.hern_dir * look.migration
            frag = ellipse(hu - 0.55 * reach_x, v - vc, 0.6 * reach_x, 0.35 * d.height + 0.6 * look.migration)
            neck = ellipse(hu, v - 0.4 * vc, 0.8 * reach_x, 0.3 * d.height + 0.4 * look.migration)
            dome = np.minimum(dome, np.minimum(frag, neck))
        sdf = np.minimum(sdf, np.where(reach_x > 0.3, dome, np.float32(1e3)))
    frac = cv.soft(sdf) * lat
    if d.fused:
        cv.paint(box, frac, "remnant", label=label)
        return
    cv.paint(box, frac, "annulus", label=label, texture=0.05)
    deg = look.degeneration
    nuc = ellipse(u - (u_post - 0.55 * depth), v, 0.33 * depth + 1e-3, (0.32 - 0.08 * deg) * d.height)
    nfrac = cv.soft(nuc, blur=2.5) * cv.lat(x, 0.0, 0.7 * d.half_width) * (1.0 - 0.35 * deg)
    cv.paint(box, nfrac, cv.mix("nucleus", "nucleus_degen", deg), texture=0.06)
    if deg < 0.5:  # intranuclear cleft of the adult disc
        cv.paint(box, nfrac * cv.soft(np.abs(v) - 0.45) * 0.45, "annulus")
    if look.protrusion > 0:
        core = cv.soft(np.where(reach_x > 1.0, dome + 0.8, np.float32(1e3)), blur=1.5) * (u > u_post - 1.0)
        cv.paint(box, core * cv.lat(x, d.hern_x, d.hern_width), cv.mix("nucleus", "annulus", 0.35 + 0.3 * deg))


def paint_schmorl(cv: Canvas, an: Anatomy, d: Disc, label: int) -> None:
    """Disc material pushed into an endplate (intravertebral herniation) with a sclerotic rim."""
    b = an.bodies[d.upper] if d.schmorl_upper else an.bodies[d.lower]
    depth = d.look.schmorl
    sign = -1.0 if d.schmorl_upper else 1.0
    vc = sign * (b.half_height - 0.45 * depth)
    cu, cz = b.frame.point(d.schmorl_u, vc)
    r = depth + 6.0
    box = cv.box((d.schmorl_x - 8, d.schmorl_x + 8, cu - r, cu + r, cz - r, cz + r))
    if box is None:
        return
    u, v, x = _local(cv, b, box)
    lat = cv.lat(x, d.schmorl_x, 4.5)
    if missed(lat):
        return
    node = ellipse(u - d.schmorl_u, v - vc, 0.45 * depth + 1.8, 0.55 * depth)
    cv.paint(box, cv.soft(node - 1.3) * lat, "cortex")
    cv.paint(box, cv.soft(node) * lat, cv.mix("nucleus", "annulus", 0.3), label=label)
    cv.paint(box, cv.soft(node - 1.3) * (1.0 - cv.soft(node)) * lat * 0.7, "cortex")


# ---------------------------------------------------------------------- vertebral bodies
def paint_body(cv: Canvas, b: Body, label: int) -> None:
    """Cortical shell, endplates, marrow, degenerative change (Modic, spurs, irregular endplates)."""
    look = b.look
    ext = b.half_height + 4.0 + look.osteophyte
    ry = b.half_depth + 4.0 + look.osteophyte
    y, z = b.frame.y, b.frame.z
    box = cv.box((-b.half_width, b.half_width, y - ry - ext, y + ry + ext, z - ry - ext, z + ry + ext))
    if box is None:
        return
    u, v, x = _local(cv, b, box)
    lat = cv.lat(x, 0.0, b.half_width)
    if missed(lat):
        return
    g = depth_profile(x / b.half_width)
    half_u = b.half_depth * g + 1e-3
    uc = b.half_depth - half_u
    du = u - uc
    hv = b.half_height
    bow = np.clip(1.0 - (v / hv) ** 2, 0.0, 1.0)
    waist = b.waist * bow * np.where(du < 0, np.float32(1.0), np.float32(0.3))
    dish = b.concavity * np.clip(1.0 - (du / half_u) ** 2, 0.0, 1.0)
    if look.irregularity > 0:
        dish = dish + look.irregularity * np.sin(du * 0.9 + 2.0 * np.sign(v) + b.frame.z) * (np.abs(du) < half_u)
    r = min(b.corner, 0.45 * float(np.min(half_u)) + 0.5)
    if isinstance(half_u, float):
        half_u = np.float32(half_u)
    qu = np.abs(du) - (half_u - r) + waist
    qv = np.abs(v) - (hv - r) + dish
    sdf = np.hypot(np.maximum(qu, 0.0), np.maximum(qv, 0.0)) + np.minimum(np.maximum(qu, qv), 0.0) - r
    cv.paint(box, cv.soft(sdf) * lat, "cortex", label=label)
    rim = 0.9 if not b.sacral else 1.3
    inner = cv.soft(sdf + rim) * cv.lat(x, 0.0, b.half_width - rim)
    cv.paint(box, inner, cv.marrow(b.fat_fraction), texture=0.14)
    if look.modic > 0:
        band = cv.soft(hv - np.abs(v) - look.modic, blur=3.0) * inner
        water, ff = ("modic1", 0.12) if look.modic_type == 1 else ("marrow_water", 0.85)
        cv.paint(box, band, cv.marrow(ff, water), texture=0.1)
    if look.osteophyte > 0:
        length = look.osteophyte
        for sv in (-1.0, 1.0):
            ang = math.radians(35.0)
            pu, pv = du + half_u + 0.15 * length, v - sv * (hv - 0.5)
            su = pu * math.cos(ang) - sv * pv * math.sin(ang)
            sv2 = pu * math.sin(ang) + sv * pv * math.cos(ang)
            spur = ellipse(su, sv2 - 0.35 * length, 1.8, 0.6 * length)
            cv.paint(box, cv.soft(spur) * cv.lat(x, 0.0, 0.8 * b.half_width), "cortex")
            if length > 3.5:
                cv.paint(box, cv.soft(spur + 1.0) * lat, cv.marrow(b.fat_fraction + 0.2))
    if not b.sacral:  # basivertebral vein entering the posterior wall
        vein = rounded_box(du - (half_u - 3.0), v, 2.5, 0.6, 0.3)
        cv.paint(box, cv.soft(vein, 1.5) * cv.lat(x, 0.0, 2.0) * 0.6, "vein_slow")


def paint_posterior(cv: Canvas, b: Body, below: Disc | None, above: Disc | None) -> None:
    """Pedicles, articular pillars, lamina, spinous and transverse processes, exiting root (lumbar/thoracic)."""
    if b.posterior is None:
        return
    ipd, ped_r, sp_len, droop, sp_h = b.posterior
    hd, hv = b.half_depth, b.half_height
    canal = cv.anatomy.table.scalar("canal", b.frame.z)
    d_below = below.height if below is not None else 8.0
    d_above = above.height if above is not None else 8.0
    box = cv.box(b.aabb(4.0))
    if box is None:
        return
    u, v, x = _local(cv, b, box)
    ax = abs(x) if isinstance(x, float) else np.abs(x)
    fat = cv.marrow(b.fat_fraction)

    def bone(sdf: Callable[[], np.ndarray], xc: float, half: float, mirror: bool = True) -> None:
        xx = ax if mirror else x
        lat = cv.lat(xx, xc, half)
        if missed(lat):
            return  # the slab misses this element: skip its distance field
        d = sdf()
        cv.paint(box, cv.soft(d) * lat, "cortex")
        cv.paint(box, cv.soft(d + 1.2) * cv.lat(xx, xc, half - 1.0), fat, texture=0.12)

    x_ped = ipd + ped_r
    x_art = x_ped + 1.5
    # exiting nerve root in the upper foramen, just below the pedicle
    lat = cv.lat(ax, x_ped + 1.0, 3.0)
    if not missed(lat):
        root = ellipse(u - (hd + 0.45 * canal), v + 0.3 * hv, 2.8, 3.2)
        cv.paint(box, cv.soft(root, 1.5) * lat, "nerve")

    def pedicle() -> np.ndarray:  # an oval bar from the body to the articular pillar, upper half of the body
        ph = _f(0.5 * hv * np.sqrt(np.clip(1.0 - ((ax - x_ped) / ped_r) ** 2, 0.0, 1.0)))
        return np.maximum(np.abs(v - 0.25 * hv) - ph, np.abs(u - (hd + 0.3 * canal)) - (0.35 * canal + 2.0))

    def pillar() -> np.ndarray:  # superior process up to the disc above, inferior process down to the disc below
        top, bot = hv + 0.3 * d_above, -hv - 0.7 * d_below
        return ellipse(u - (hd + 0.9 * canal), v - 0.5 * (top + bot), 6.5, 0.5 * (top - bot))

    def lamina() -> np.ndarray:  # plate behind the canal, its upper edge more anterior
        return rounded_box(u - (hd + canal + 2.0) + 0.25 * v, v + 0.15 * hv, 3.0, 0.7 * hv, 1.5)

    def spinous() -> np.ndarray:  # drooping tip, club-shaped
        dr = math.radians(droop)
        pu, pv = u - (hd + canal + 1.0), v + 0.2 * hv
        s = pu * math.cos(dr) - pv * math.sin(dr)
        t = pu * math.sin(dr) + pv * math.cos(dr)
        return rounded_box(s - 0.5 * sp_len, t, 0.5 * sp_len, sp_h * (0.8 + 0.25 * np.clip(s / sp_len, 0, 1)), 3.0)

    def transverse() -> np.ndarray:
        return ellipse(u - (hd + 0.4 * canal), v - 0.25 * hv, 4.0, 4.5)

    bone(pedicle, x_ped, ped_r)
    bone(pillar, x_art, 6.0)
    bone(lamina, 0.0, ipd + 1.0, mirror=False)
    bone(spinous, 0.0, 3.2, mirror=False)
    bone(transverse, x_art + 16.0, 13.0)


def paint_sacral_plate(cv: Canvas, b: Body) -> None:
    """Fused laminae behind the sacral canal."""
    canal = cv.anatomy.table.scalar("canal", b.frame.z)
    if canal <= 0:
        return
    box = cv.box(b.aabb(4.0))
    if box is None:
        return
    u, v, x = _local(cv, b, box)
    plate = rounded_box(u - (b.half_depth + canal + 3.0), v, 3.5, b.half_height + 1.5, 1.5)
    lat = cv.lat(x, 0.0, 0.6 * b.half_width)
    cv.paint(box, cv.soft(plate) * lat, "cortex")
    cv.paint(box, cv.soft(plate + 1.2) * lat, cv.marrow(b.fat_fraction), texture=0.12)
