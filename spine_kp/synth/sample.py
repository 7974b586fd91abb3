"""Draw one study's anatomy: body and disc chain along a random lordotic curve, soft-tissue layout, tables.

See :mod:`spine_kp.synth.anatomy` for the frame and the types. Randomness comes only from the generator
passed in, and every draw happens whatever the looks are, so forcing one structure's look leaves the others
(and their positions) unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy.ndimage import gaussian_filter1d

from spine_kp.synth.anatomy import (
    BODY_DIMS,
    CANAL,
    DISC_BELOW,
    FIRST_SACRAL,
    LEVELS,
    POSTERIOR,
    Anatomy,
    Body,
    Disc,
    DiscLook,
    Frame2D,
    Habitus,
    SpineTable,
    VertebraLook,
)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def sample_anatomy(
    rng: np.random.Generator,
    disc_looks: Mapping[str, DiscLook] | None = None,
    vertebra_looks: Mapping[str, VertebraLook] | None = None,
) -> Anatomy:
    """Draw one study's anatomy.

    Long on purpose: its random draws happen in one fixed order that pins every default phantom byte for byte
    (tests/synth); split into helpers, that order would be hard to see.

    Args:
        rng: the study's random generator.
        disc_looks: appearance per disc name ("L4-L5"); missing discs get a normal look.
        vertebra_looks: appearance per body name ("L4"); missing bodies look normal.

    Returns:
        The anatomy, L3 body centre at the origin of the anatomy frame.
    """
    disc_looks = dict(disc_looks or {})
    vertebra_looks = dict(vertebra_looks or {})
    scale = _u(rng, 0.88, 1.12)
    lordosis = _u(rng, 28.0, 62.0)
    lumbar_wedge = sum(DISC_BELOW[n][1] for n in ("T12", "L1", "L2", "L3", "L4", "L5"))
    marrow_ff = _u(rng, 0.3, 0.65)

    # tilt of every body, built from the disc wedges, then shifted so the lumbar bodies stand upright on average
    tilts = [0.0]
    for name in LEVELS[:-1]:
        wedge = DISC_BELOW[name][1]
        if name in ("T12", "L1", "L2", "L3", "L4", "L5"):
            wedge *= lordosis / lumbar_wedge
        tilts.append(tilts[-1] + math.radians(wedge + rng.normal(0.0, 1.5)))
    lumbar = [tilts[LEVELS.index(n)] for n in ("L1", "L2", "L3", "L4", "L5")]
    shift = float(np.mean(lumbar))
    tilts = [t - shift for t in tilts]

    dims = []
    for name in LEVELS:
        h, d, w = (v * scale * _u(rng, 0.95, 1.05) for v in BODY_DIMS[name])
        look = vertebra_looks.get(name, VertebraLook())
        loss = _u(rng, 0.9, 0.98)  # drawn always: a look must not shift the random stream of other structures
        if look.osteophyte > 0 or look.irregularity > 0:
            h *= loss  # degenerative bodies lose a little height
        dims.append((h, d, w, look))

    bodies: list[Body] = []
    discs: list[Disc] = []
    post_corner = np.zeros(2)  # posterior-superior corner of the current body
    for k, name in enumerate(LEVELS):
        h, d, w, look = dims[k]
        sacral = k >= FIRST_SACRAL
        tilt = tilts[k]
        up, post = _axes(tilt)
        centre = post_corner - (d / 2) * post - (h / 2) * up
        posterior = None
        if name in POSTERIOR:
            ipd, ped, sp_len, droop, sp_h = POSTERIOR[name]
            posterior = (ipd * scale, ped * scale, sp_len * scale * _u(rng, 0.9, 1.1), droop, sp_h * scale)
        bodies.append(
            Body(
                name=name,
                frame=Frame2D(float(centre[0]), float(centre[1]), tilt),
                half_height=h / 2,
                half_depth=d / 2,
                half_width=w / 2,
                corner=min(h, d) * _u(rng, 0.1, 0.16),
                concavity=0.0 if sacral else _u(rng, 0.6, 1.6),
                waist=_u(rng, 0.8, 2.0) if not sacral else 0.5,
                fat_fraction=float(np.clip(marrow_ff + rng.normal(0.0, 0.04), 0.1, 0.9)),
                look=look,
                sacral=sacral,
                posterior=posterior,
            )
        )
        if k == len(LEVELS) - 1:
            break
        nxt = LEVELS[k + 1]
        next_h, next_d, next_w, _ = dims[k + 1]
        disc_name = f"{name}-{nxt}"
        dlook = disc_looks.get(disc_name, DiscLook(degeneration=_u(rng, 0.0, 0.12), bulge=_u(rng, 0.2, 0.8)))
        height = DISC_BELOW[name][0] * scale * _u(rng, 0.9, 1.1) * (1.0 - 0.45 * dlook.degeneration)
        next_tilt = tilts[k + 1]
        mid = 0.5 * (tilt + next_tilt)
        # the disc hinges at its posterior margin: the lordotic wedge opens anteriorly
        post_height = max(height - 0.25 * (d + next_d) * math.tan(next_tilt - tilt), 0.6 if sacral else 2.0)
        disc_up, disc_post = _axes(mid)
        _, next_post = _axes(next_tilt)
        inf_post = post_corner - h * up  # posterior-inferior corner of this body
        post_corner = inf_post - post_height * disc_up  # posterior-superior corner of the next body
        upper_centre = centre - (h / 2) * up
        lower_centre = post_corner - (next_d / 2) * next_post
        m = 0.5 * (upper_centre + lower_centre)
        back = 0.5 * (inf_post + post_corner)
        front = 0.5 * (upper_centre - (d / 2) * post + lower_centre - (next_d / 2) * next_post)
        u_back, u_front = float((back - m) @ disc_post), float((front - m) @ disc_post)
        m = m + 0.5 * (u_back + u_front) * disc_post  # centre between the AP margins
        discs.append(
            Disc(
                name=disc_name,
                upper=k,
                lower=k + 1,
                frame=Frame2D(float(m[0]), float(m[1]), mid),
                height=float(np.linalg.norm(upper_centre - lower_centre)),
                half_depth=0.5 * (u_back - u_front),
                half_width=min(w, next_w) / 2 if k + 1 < FIRST_SACRAL else w / 2,
                look=dlook,
                fused=sacral,
                side=float(rng.choice([-1.0, 1.0])),
                hern_x=_u(rng, -3.0, 3.0),
                hern_width=_u(rng, 6.0, 10.0),
                hern_dir=float(rng.choice([-1.0, 1.0])),
                schmorl_upper=bool(rng.random() < 0.5),
                schmorl_u=_u(rng, -0.45, 0.25) * d / 2,
                schmorl_x=_u(rng, -4.0, 4.0),
            )
        )

    # put the L3 centre at the origin
    ref = bodies[LEVELS.index("L3")].frame
    oy, oz = ref.y, ref.z
    bodies = [_moved(b, oy, oz) for b in bodies]
    discs = [_moved(d, oy, oz) for d in discs]
    habitus = _sample_habitus(rng, bodies)
    conus_z = _conus_z(rng, bodies, discs)
    table = _build_table(rng, bodies, discs, habitus, conus_z, scale)
    roots = _sample_roots(rng, bodies, discs, conus_z)
    return Anatomy(bodies, discs, table, habitus, roots, conus_z, marrow_ff, extras={"scale": scale})


def _axes(tilt: float) -> tuple[np.ndarray, np.ndarray]:
    """(up, post) unit vectors of a frame with this tilt."""
    return np.array([-math.sin(tilt), math.cos(tilt)]), np.array([math.cos(tilt), math.sin(tilt)])


def _moved(s: Body | Disc, oy: float, oz: float) -> Body | Disc:
    f = s.frame
    s.frame = Frame2D(f.y - oy, f.z - oz, f.tilt)
    return s


def _z_of(bodies: list[Body], name: str) -> float:
    return next(b.frame.z for b in bodies if b.name == name)


def _conus_z(rng: np.random.Generator, bodies: list[Body], discs: list[Disc]) -> float:
    """The cord ends between the T12 body and the L1-L2 disc."""
    top = _z_of(bodies, "T12")
    bottom = next(d.frame.z for d in discs if d.name == "L1-L2")
    return _u(rng, bottom, top)


def _sample_habitus(rng: np.random.Generator, bodies: list[Body]) -> Habitus:
    return Habitus(
        fat_post=_u(rng, 8.0, 45.0),
        muscle_back=_u(rng, 58.0, 75.0),
        groove=_u(rng, 6.0, 14.0),
        abd_depth=_u(rng, 110.0, 210.0),
        fat_ant=_u(rng, 8.0, 40.0),
        buttock=_u(rng, 10.0, 40.0),
        aorta_x=_u(rng, 3.0, 14.0),
        aorta_r=_u(rng, 8.0, 12.0),
        ivc_x=-_u(rng, 12.0, 22.0),
        ivc_r=_u(rng, 8.0, 12.0),
        ivc_bright=bool(rng.random() < 0.4),
        bifurcation_z=_z_of(bodies, "L4") + _u(rng, -10.0, 15.0),
        psoas=_u(rng, 0.8, 1.25),
        bowel_gas=_u(rng, 0.1, 0.35),
        liver_z=_z_of(bodies, "L1") + _u(rng, -30.0, 10.0),
        diaphragm_z=_z_of(bodies, "T12") + _u(rng, 0.0, 40.0),
    )


def _sample_roots(rng: np.random.Generator, bodies: list[Body], discs: list[Disc], conus_z: float) -> np.ndarray:
    """Cauda equina roots: lateral position, relative depth in the sac (they lie dependent, posteriorly), exit z."""
    exits = [d.frame.z for d in discs if d.name in ("L2-L3", "L3-L4", "L4-L5", "L5-S1", "S1-S2")]
    k = int(rng.integers(10, 16))
    roots = np.empty((k, 4))
    roots[:, 0] = rng.uniform(-6.5, 6.5, k)
    roots[:, 1] = rng.uniform(0.45, 0.92, k)
    roots[:, 2] = rng.choice(exits, k)
    roots[:, 3] = rng.uniform(0.6, 1.1, k)
    return roots


def _build_table(
    rng: np.random.Generator, bodies: list[Body], discs: list[Disc], hab: Habitus, conus_z: float, scale: float
) -> SpineTable:
    """Tabulate the posterior/anterior wall lines and the canal/soft-tissue layout against z."""
    post_pts: list[tuple[float, float]] = []
    ant_pts: list[tuple[float, float]] = []
    for b in bodies:
        for v in (b.half_height, -b.half_height):
            p = b.frame.point(b.half_depth, v)
            a = b.frame.point(-b.half_depth, v)
            post_pts.append((p[1], p[0]))
            ant_pts.append((a[1], a[0]))
    post_pts.sort()
    ant_pts.sort()
    z_lo = min(p[0] for p in post_pts) - 120.0
    z_hi = max(p[0] for p in post_pts) + 120.0
    dz = 0.5
    z = np.arange(z_lo, z_hi, dz)
    pz, py = np.array(post_pts).T
    az, ay = np.array(ant_pts).T
    post_y = np.interp(z, pz, py)
    ant_y = np.interp(z, az, ay)
    slope = np.gradient(gaussian_filter1d(post_y, 6.0 / dz), dz)
    cos_phi = 1.0 / np.sqrt(1.0 + slope**2)
    back_y = gaussian_filter1d(post_y, 30.0 / dz, mode="nearest")
    front_y = gaussian_filter1d(ant_y, 30.0 / dz, mode="nearest")

    bz = np.array([b.frame.z for b in bodies])[::-1]

    def per_level(values: list[float]) -> np.ndarray:
        return np.interp(z, bz, np.array(values)[::-1])

    jitter = _u(rng, 0.85, 1.15)
    canal = per_level([CANAL[b.name][0] * scale * jitter for b in bodies])
    epi_post = per_level([CANAL[b.name][1] * _u(rng, 0.7, 1.3) for b in bodies])
    epi_ant = per_level([CANAL[b.name][2] for b in bodies])
    sac_w = per_level([CANAL[b.name][3] * scale for b in bodies])
    sac_ant = epi_ant + 0.8
    sac_post = np.maximum(canal - epi_post, sac_ant)
    cord_r = np.clip((z - conus_z) / 18.0, 0.0, 1.0) ** 0.6 * 4.0 * scale
    # soft tissue behind the spine (relative to the smoothed posterior wall line) and in front of it
    s1_z = _z_of(bodies, "S2")
    buttock = hab.buttock * np.clip((s1_z + 20.0 - z) / 60.0, 0.0, 1.0)
    muscle = hab.muscle_back + buttock * 0.5 + np.zeros_like(z)
    skin = muscle + hab.fat_post + buttock * 0.5
    z_t12, z_l5, z_s3 = _z_of(bodies, "T12"), _z_of(bodies, "L5"), _z_of(bodies, "S3")
    grow = np.clip((z_t12 - z) / (z_t12 - z_l5), 0.0, 1.0) ** 0.7
    fade = np.clip((z - z_s3) / (z_l5 - z_s3), 0.0, 1.0) ** 0.5
    psoas = 22.0 * scale * hab.psoas * grow * fade
    return SpineTable(
        z0=float(z[0]),
        dz=dz,
        columns={
            name: np.ascontiguousarray(col, dtype=np.float32)
            for name, col in {
                "post_y": post_y, "ant_y": ant_y, "cos_phi": cos_phi, "back_y": back_y, "front_y": front_y,
                "canal": canal, "sac_ant": sac_ant, "sac_post": sac_post, "sac_w": sac_w, "cord_r": cord_r,
                "muscle": muscle, "skin": skin, "epi_ant": epi_ant, "psoas": psoas,
            }.items()
        },
    )  # fmt: skip
