"""Bones and discs of the phantom: vertebral bodies, discs with their pathology, posterior elements.

Each painter evaluates a signed distance only inside the structure's projected box (see
:class:`~spine_kp.synth.canvas.Canvas`), in the structure's own midsagittal frame (u posterior,
v superior), with the lateral coordinate treated as a scalar whenever the plane is sagittal.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from spine_kp.synth.anatomy import Anatomy, Body, Disc, depth_profile
from spine_kp.synth.canvas import Box, Canvas, ellipse, rounded_box


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
    nuc = ellipse(u - (u_post - 0.55 * depth), v, 0.37 * depth + 1e-3, (0.36 - 0.1 * deg) * d.height)
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
    node = ellipse(u - d.schmorl_u, v - vc, 0.5 * depth + 2.5, 0.55 * depth)
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
    vein_lat = cv.lat(x, 0.0, 2.0)
    if not b.sacral and not missed(vein_lat):  # basivertebral vein entering the posterior wall
        vbox = _frame_box(cv, b, (b.half_depth - 7.0, b.half_depth), (-2.0, 2.0), (-2.0, 2.0))
        if vbox is not None:
            vu, vv = b.frame.local(cv.y[vbox], cv.z[vbox])
            vein = rounded_box(vu - (b.half_depth - 3.0), vv, 2.5, 0.6, 0.3)
            cv.paint(vbox, cv.soft(vein, 1.5) * (cv.lat(cv.xs(vbox), 0.0, 2.0) * 0.6), "vein_slow")


def _frame_box(cv: Canvas, s: Body | Disc, u: tuple[float, float], v: tuple[float, float],
               x: tuple[float, float]) -> Box | None:  # fmt: skip
    """Pixel box of a region given in a body's local (u, v) ranges and lateral range x."""
    f = s.frame
    c, sn = math.cos(f.tilt), math.sin(f.tilt)
    ys = [f.y + uu * c - vv * sn for uu in u for vv in v]
    zs = [f.z + uu * sn + vv * c for uu in u for vv in v]
    return cv.box((x[0] - cv.thk, x[1] + cv.thk, min(ys) - 1.0, max(ys) + 1.0, min(zs) - 1.0, max(zs) + 1.0))


def paint_posterior(cv: Canvas, b: Body, below: Disc | None, above: Disc | None) -> None:
    """Pedicles, articular pillars, lamina, spinous and transverse processes, exiting root (lumbar/thoracic).

    Long on purpose: the elements share a dozen dimensions of the one body; the local ``element`` painter is the unit.
    """
    if b.posterior is None:
        return
    ipd, ped_r, sp_len, droop, sp_h = b.posterior
    hd, hv = b.half_depth, b.half_height
    canal = cv.anatomy.table.scalar("canal", b.frame.z)
    d_below = below.height if below is not None else 8.0
    d_above = above.height if above is not None else 8.0
    fat = cv.marrow(b.fat_fraction)
    x_ped = ipd + ped_r
    x_art = x_ped + 1.5

    def element(
        u: tuple[float, float], v: tuple[float, float], xc: float, half: float, mirror: bool,
        sdf: Callable[[np.ndarray, np.ndarray, np.ndarray | float], np.ndarray], tissue: str | None = None,
    ) -> None:  # fmt: skip
        reach = abs(xc) + half
        box = _frame_box(cv, b, u, v, (-reach, reach) if mirror else (xc - half, xc + half))
        if box is None:
            return
        x = cv.xs(box)
        xx = (abs(x) if isinstance(x, float) else np.abs(x)) if mirror else x
        lat = cv.lat(xx, xc, half)
        if missed(lat):
            return  # the slab misses this element: skip its distance field
        uu, vv = b.frame.local(cv.y[box], cv.z[box])
        d = sdf(uu, vv, xx)
        if tissue is not None:
            cv.paint(box, cv.soft(d, 1.5) * lat, tissue)
            return
        cv.paint(box, cv.soft(d) * lat, "cortex")
        cv.paint(box, cv.soft(d + 1.2) * cv.lat(xx, xc, half - 1.0), fat, texture=0.12)

    # exiting nerve root in the upper foramen, just below the pedicle
    uc = hd + 0.45 * canal
    element((uc - 4, uc + 4), (-0.3 * hv - 4.5, -0.3 * hv + 4.5), x_ped + 1.0, 3.0, True,
            lambda u, v, x: ellipse(u - uc, v + 0.3 * hv, 2.8, 3.2), "nerve")  # fmt: skip

    def pedicle(u: np.ndarray, v: np.ndarray, ax: np.ndarray | float) -> np.ndarray:
        ph = _f(0.5 * hv * np.sqrt(np.clip(1.0 - ((ax - x_ped) / ped_r) ** 2, 0.0, 1.0)))
        return np.maximum(np.abs(v - 0.25 * hv) - ph, np.abs(u - (hd + 0.3 * canal)) - (0.35 * canal + 2.0))

    element((hd - 0.05 * canal - 3, hd + 0.65 * canal + 3), (-0.25 * hv - 1, 0.75 * hv + 1), x_ped, ped_r, True,
            pedicle)  # fmt: skip
    # articular pillar: superior process up to the disc above, inferior process down to the disc below
    top, bot = hv + 0.3 * d_above, -hv - 0.7 * d_below
    ua = hd + 0.9 * canal
    element((ua - 7.5, ua + 7.5), (bot - 1, top + 1), x_art, 6.0, True,
            lambda u, v, x: ellipse(u - ua, v - 0.5 * (top + bot), 6.5, 0.5 * (top - bot)))  # fmt: skip
    # lamina: plate behind the canal between the pillars, its upper edge more anterior
    ul = hd + canal + 2.0
    element((ul - 4 - 0.25 * hv, ul + 4 + 0.25 * hv), (-0.85 * hv - 2, 0.55 * hv + 2), 0.0, ipd + 1.0, False,
            lambda u, v, x: rounded_box(u - ul + 0.25 * v, v + 0.15 * hv, 3.0, 0.7 * hv, 1.5))  # fmt: skip
    # spinous process: drooping, club-shaped tip
    dr = math.radians(droop)
    cd, sd = math.cos(dr), math.sin(dr)
    us, vs = hd + canal + 1.0, -0.2 * hv

    def spinous(u: np.ndarray, v: np.ndarray, x: np.ndarray | float) -> np.ndarray:
        pu, pv = u - us, v - vs
        s, t = pu * cd - pv * sd, pu * sd + pv * cd
        return rounded_box(s - 0.5 * sp_len, t, 0.5 * sp_len, sp_h * (0.8 + 0.25 * np.clip(s / sp_len, 0, 1)), 3.0)

    reach = sp_len + 2.0
    element((us - 3, us + reach * cd + 1.1 * sp_h * sd + 3), (vs - reach * sd - 1.1 * sp_h - 3, vs + 1.1 * sp_h + 3),
            0.0, 3.2, False, spinous)  # fmt: skip
    # transverse process, seen only far laterally
    ut = hd + 0.4 * canal
    element((ut - 5, ut + 5), (0.25 * hv - 5.5, 0.25 * hv + 5.5), x_art + 16.0, 13.0, True,
            lambda u, v, x: ellipse(u - ut, v - 0.25 * hv, 4.0, 4.5))  # fmt: skip


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
