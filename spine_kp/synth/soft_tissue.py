"""Soft tissues of the phantom around the spine: skin, fat, muscles, abdomen, vessels and the spinal canal.

These follow the spine lines tabulated in :class:`~spine_kp.synth.anatomy.SpineTable`: ``Yb`` is the
horizontal distance behind the smoothed posterior wall line (back side), ``Ya`` the distance behind the
smoothed anterior wall line (negative = in front of the spine), ``N`` the normal distance behind the exact
posterior wall line (canal). Painted before the bones, which then overwrite them.
"""

from __future__ import annotations

import numpy as np

from spine_kp.synth.anatomy import FIRST_SACRAL
from spine_kp.synth.canvas import Box, Canvas


def tube(cv: Canvas, w: np.ndarray, wc: np.ndarray | float, x: np.ndarray, xc: np.ndarray | float,
         rx: np.ndarray | float, rw: np.ndarray | float) -> np.ndarray:  # fmt: skip
    """Coverage of an elliptic tube running cranio-caudally: semi-axes ``rx`` (lateral) and ``rw`` (in ``w``)."""
    rx = np.maximum(rx, np.float32(1e-3))
    half = rw * np.sqrt(np.clip(1.0 - ((x - xc) / rx) ** 2, 0.0, 1.0))
    return cv.soft(np.abs(w - wc) - half) * lat_arr(cv, x, xc, rx)


def lat_arr(cv: Canvas, x: np.ndarray, centre: np.ndarray | float, half: np.ndarray | float) -> np.ndarray:
    """:meth:`Canvas.lat` with array-valued centre / half-width."""
    t = cv.thk
    xr = x - centre
    return np.clip(np.minimum(xr + t / 2, half) - np.maximum(xr - t / 2, -half), 0.0, t) * (1.0 / t)


def paint_outline(cv: Canvas) -> np.ndarray:
    """Skin, subcutaneous fat, paraspinal and abdominal-wall muscles; returns (H, W) depth below the back skin."""
    hab = cv.anatomy.habitus
    x, y = cv.x, cv.y
    yb = y - cv.col("back_y")
    ya = y - cv.col("front_y")
    x2 = x * x
    skin_post = cv.col("skin") - 0.0025 * x2
    abd = hab.abd_depth - 0.004 * x2
    width = 140.0 + hab.fat_post
    outside = np.maximum(np.maximum(yb - skin_post, -(ya + abd)), np.abs(x) - width)
    cv.paint(None, cv.soft(outside), "skin")
    cv.paint(None, cv.soft(outside + 2.5), "fat", texture=0.04)
    # paraspinal muscles: a midline furrow, tapering laterally to meet the transverse processes' plane
    mus_post = cv.col("muscle") - hab.groove * np.exp(-x2 / 200.0) - 0.006 * x2
    muscle = np.maximum(yb - mus_post, (2.0 - 0.002 * x2) - yb)
    cv.paint(None, cv.soft(muscle), "muscle", texture=0.08)
    wall_in = -abd + hab.fat_ant
    cv.paint(None, cv.soft(np.abs(ya - (wall_in + 5.5)) - 5.5), "muscle", texture=0.08)
    _paint_abdomen(cv, ya, wall_in + 11.0)
    return np.maximum(skin_post - yb, 0.0)


def _paint_abdomen(cv: Canvas, ya: np.ndarray, inner: np.ndarray) -> None:
    """Bowel loops (fluid, content, gas), liver, lung bases and bladder in front of the retroperitoneum."""
    hab = cv.anatomy.habitus
    x, z = cv.x, cv.z
    region = cv.soft(np.maximum(ya + 24.0 - 0.004 * x * x, inner - ya)) * cv.lat(x, 0.0, 120.0)
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    if not len(rows):
        return
    box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    region, ya, x, z = region[box], ya[box], x[box], z[box]
    tc, tf = cv.tex_coarse[box], cv.tex_fine[box]
    # loops: content with texture, fluid-filled and gas-filled parts, mesenteric fat between them
    cv.paint(box, region, "bowel", texture=0.2)
    cv.paint(box, region * np.clip((tc - 0.5) * 1.6, 0.0, 0.85), "bowel_fluid", texture=0.1)
    gas_thr = -1.5 + 2.0 * hab.bowel_gas
    cv.paint(box, region * np.clip((gas_thr - tc) * 2.0, 0.0, 0.9), "air")
    cv.paint(box, region * np.clip((tf - 1.0) * 1.2, 0.0, 0.8), "fat")
    liver = region * cv.soft(hab.liver_z + 12.0 * tc - z, 6.0) * cv.soft(x - 45.0, 4.0)
    dome = hab.diaphragm_z + 0.004 * np.square(np.minimum(ya + 30.0, 0.0)) + 4.0 * tc
    lung = region * cv.soft(dome - z, 3.0)
    low = cv.anatomy.bodies[FIRST_SACRAL + 4].frame.z
    bladder = region * cv.soft(
        (np.hypot(np.hypot(x / 40.0, (ya + 90.0) / 35.0), (z - low + 10.0) / 28.0) - 1.0) * 28, 3
    )
    for frac, tissue, tex in ((liver, "liver", 0.05), (lung, "lung", 0.2), (bladder, "bladder", 0.0)):
        if frac.any():
            cv.paint(box, frac, tissue, texture=tex)


def paint_retro(cv: Canvas) -> None:
    """Psoas muscles and the great vessels in front of / beside the vertebral bodies."""
    hab = cv.anatomy.habitus
    x, z = cv.x, cv.z
    ya = cv.y - cv.col("front_y")
    r = cv.col("psoas")
    for s in (-1.0, 1.0):
        xc = s * (20.0 + 0.6 * r)
        cv.paint(None, tube(cv, ya, 12.0 - 0.3 * r, x, xc, 0.85 * r, r), "muscle", texture=0.08)
    split = 0.6 * np.maximum(hab.bifurcation_z - z, 0.0)
    ra = hab.aorta_r * np.where(z > hab.bifurcation_z, np.float32(1.0), np.float32(0.7))
    for s in (-1.0, 1.0):
        cv.paint(None, tube(cv, ya, -(ra + 1.5), x, hab.aorta_x + s * split, ra, ra), "vessel")
    split_v = 0.6 * np.maximum(hab.bifurcation_z - 15.0 - z, 0.0)
    rv = hab.ivc_r * np.where(split_v > 0, np.float32(0.75), np.float32(1.0))
    vein = "vein_slow" if hab.ivc_bright else "vessel"
    for s in (-1.0, 1.0):
        cv.paint(None, tube(cv, ya, -(0.8 * rv + 2.0), x, hab.ivc_x + s * split_v, rv, 0.8 * rv), vein)


def canal_boxes(cv: Canvas, reach: float = 50.0, step: float = 60.0) -> list[tuple[Box, float, float]]:
    """Pixel boxes from the posterior wall to ``reach`` mm behind it, one per ``step`` mm of z: (box, z0, z1)."""
    an, t = cv.anatomy, cv.anatomy.table
    post, cos_phi = t.columns["post_y"], t.columns["cos_phi"]
    zs = t.z0 + t.dz * np.arange(len(post))
    z_lo, z_hi = an.bodies[-1].frame.z - 20.0, an.bodies[0].frame.z + 40.0
    out = []
    for a in np.arange(z_lo, z_hi, step):
        b = min(a + step, z_hi)
        sel = (zs >= a - 5.0) & (zs <= b + 5.0)
        y0 = float(post[sel].min()) - 8.0
        y1 = float(post[sel].max()) + reach / float(cos_phi[sel].min())
        box = cv.box((-30.0, 30.0, y0, y1, float(a), float(b)))
        if box is not None:
            out.append((box, float(a), float(b)))
    return out


def paint_canal(cv: Canvas) -> None:
    """Epidural and foraminal fat, PLL, thecal sac with CSF, cord, cauda equina roots, ligamenta flava."""
    for box, z0, z1 in canal_boxes(cv, reach=24.0):
        _paint_canal(cv, box, z0, z1)
    for box, z0, z1 in canal_boxes(cv, reach=50.0):
        _paint_interspinous(cv, box, z0, z1)


def _paint_canal(cv: Canvas, box: Box, z0: float, z1: float) -> None:
    an = cv.anatomy
    x, z = cv.xs(box), cv.z[box]
    own = ((z >= z0) & (z < z1)).astype(np.float32)  # each pixel belongs to exactly one segment
    n = (cv.y[box] - cv.col("post_y", box)) * cv.col("cos_phi", box)
    canal = cv.col("canal", box)
    s1 = an.bodies[FIRST_SACRAL]
    lumbar = np.clip((z - s1.frame.z - s1.half_height) / 10.0, 0.0, 1.0)
    cv.paint(box, cv.soft(np.maximum(-3.0 - n, n - canal - 1.0)) * cv.lat(x, 0.0, 22.0) * (canal > 0.5) * own, "fat")
    cv.paint(box, cv.soft(np.abs(n + 0.1) - 1.0) * cv.lat(x, 0.0, 13.0) * own, "ligament")
    sac_a, sac_p, sac_w = cv.col("sac_ant", box), cv.col("sac_post", box), cv.col("sac_w", box)
    nc, half = 0.5 * (sac_a + sac_p), 0.5 * (sac_p - sac_a)
    cv.paint(box, tube(cv, n, nc, x, 0.0, sac_w, half) * own, "csf")
    cord = cv.col("cord_r", box)
    if cord.any():
        cv.paint(box, tube(cv, n, nc - 0.5, x, 0.0, 1.25 * cord, cord) * own, "cord")
    x_lo, x_hi = (x, x) if isinstance(x, float) else (float(x.min()), float(x.max()))
    below = np.clip((an.conus_z - z) / 8.0, 0.0, 1.0) * own
    for xr, depth, exit_z, rad in an.roots.tolist():
        if xr + rad + cv.thk < x_lo or xr - rad - cv.thk > x_hi or z0 > an.conus_z or z1 < exit_z:
            continue
        on = below * np.clip((z - exit_z) / 12.0, 0.0, 1.0)
        nr = sac_a + depth * (sac_p - sac_a)
        cv.paint(box, cv.soft(np.abs(n - nr) - rad) * cv.lat(x, xr, rad) * on * (sac_w > 2.0), "nerve")
    lumbar *= own
    cv.paint(box, cv.soft(np.abs(n - canal + 1.2) - 2.0) * cv.lat(x, 0.0, 14.0) * lumbar, "ligament")


def _paint_interspinous(cv: Canvas, box: Box, z0: float, z1: float) -> None:
    """Interspinous ligament and fat in the midline between the spinous processes (lumbar only)."""
    x = cv.xs(box)
    lat = cv.lat(x, 0.0, 2.5)
    if isinstance(lat, float) and lat <= 0.0:
        return
    z = cv.z[box]
    s1 = cv.anatomy.bodies[FIRST_SACRAL]
    lumbar = np.clip((z - s1.frame.z - s1.half_height) / 10.0, 0.0, 1.0) * ((z >= z0) & (z < z1))
    n = (cv.y[box] - cv.col("post_y", box)) * cv.col("cos_phi", box)
    canal = cv.col("canal", box)
    spin = np.maximum(canal + 0.8 - n, n - canal - 28.0)
    cv.paint(box, cv.soft(spin, 3.0) * lat * lumbar, "interspinous", texture=0.1)
