"""Anatomy of the lumbar phantom: a 3-D spine model in an anatomy frame (mm), sampled per study.

Anatomy frame: x lateral (+ = patient left), y antero-posterior (+ = posterior), z cranio-caudal
(+ = superior), origin at the L3 body centre. Bones and discs are laid out in the midsagittal (y, z) plane as
rigid 2-D frames along a lordotic curve; every structure also has a lateral half-width, and bodies/discs get
shallower antero-posteriorly off the midline (the posterior wall stays, the anterior wall recedes, like the
kidney-shaped axial section of a real body), so a sagittal slice at x != 0 really differs from the middle one.
Long structures (canal, thecal sac, cord, muscles, skin) are tabulated against z in :class:`SpineTable`.
``phantom_render`` draws this model; ``phantom`` places it in the scanner (patient LPS frame).

Nothing here knows grade labels: pathology is described by :class:`DiscLook` / :class:`VertebraLook`
numbers that ``synth`` derives from its grade table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d

# Full (height, AP depth, lateral width) in mm of an average adult; scaled per study.
BODY_DIMS: dict[str, tuple[float, float, float]] = {
    "T10": (21.0, 27.0, 34.0), "T11": (22.0, 28.0, 36.0), "T12": (23.5, 29.0, 38.0),
    "L1": (25.0, 30.5, 41.0), "L2": (26.0, 31.5, 43.0), "L3": (26.5, 33.0, 46.0),
    "L4": (26.5, 34.0, 48.0), "L5": (25.5, 34.0, 50.0),
    "S1": (27.0, 38.0, 90.0), "S2": (21.0, 28.0, 70.0), "S3": (17.0, 21.0, 52.0),
    "S4": (13.0, 15.0, 36.0), "S5": (10.0, 11.0, 24.0), "Co1": (8.0, 9.0, 14.0), "Co2": (6.0, 7.0, 10.0),
}  # fmt: skip
LEVELS: tuple[str, ...] = tuple(BODY_DIMS)
FIRST_SACRAL = LEVELS.index("S1")
# Disc below each body: (centre height mm, wedge angle deg). Lumbar wedges are rescaled to the study's lordosis;
# sacral/coccygeal "discs" are fused remnants.
DISC_BELOW: dict[str, tuple[float, float]] = {
    "T10": (5.5, -2.0), "T11": (6.0, -1.0), "T12": (7.0, 1.0), "L1": (8.0, 3.0), "L2": (9.0, 5.0),
    "L3": (10.0, 7.0), "L4": (11.0, 10.0), "L5": (10.5, 16.0), "S1": (2.2, -6.0), "S2": (1.8, -8.0),
    "S3": (1.5, -10.0), "S4": (1.5, -14.0), "S5": (2.0, -20.0), "Co1": (1.5, -15.0),
}  # fmt: skip
# Per level: bony canal AP depth, posterior epidural fat, anterior epidural fat, thecal sac lateral half-width.
CANAL: dict[str, tuple[float, float, float, float]] = {
    "T10": (15.5, 1.2, 0.8, 8.0), "T11": (15.5, 1.4, 0.8, 8.0), "T12": (16.0, 1.8, 0.8, 8.5),
    "L1": (17.0, 2.0, 0.8, 9.0), "L2": (16.5, 2.5, 0.9, 9.5), "L3": (16.0, 3.0, 1.0, 10.0),
    "L4": (16.5, 3.8, 1.2, 10.0), "L5": (18.0, 4.5, 2.0, 9.0), "S1": (14.0, 4.0, 3.5, 5.5),
    "S2": (10.0, 0.0, 0.0, 0.0), "S3": (8.0, 0.0, 0.0, 0.0), "S4": (6.0, 0.0, 0.0, 0.0), "S5": (4.0, 0.0, 0.0, 0.0),
    "Co1": (0.0, 0.0, 0.0, 0.0), "Co2": (0.0, 0.0, 0.0, 0.0),
}  # fmt: skip
# Posterior elements: interpedicular half-distance, pedicle lateral radius, spinous length, spinous droop (deg),
# spinous half-height (mm).
POSTERIOR: dict[str, tuple[float, float, float, float, float]] = {
    "T10": (8.5, 3.0, 34.0, 40.0, 4.5), "T11": (9.0, 3.5, 32.0, 30.0, 5.0), "T12": (9.5, 3.5, 30.0, 18.0, 6.0),
    "L1": (10.5, 4.0, 29.0, 10.0, 8.0), "L2": (11.0, 4.0, 30.0, 8.0, 9.0), "L3": (11.5, 4.5, 30.0, 6.0, 9.0),
    "L4": (12.5, 5.0, 28.0, 5.0, 8.5), "L5": (14.0, 6.0, 22.0, 0.0, 7.0),
}  # fmt: skip


def depth_profile(t: np.ndarray | float) -> np.ndarray | float:
    """Relative AP depth of a body/disc at lateral position ``t = x / half_width`` (1 at the midline, 0 outside)."""
    if isinstance(t, float):
        return min(max(1.0 - t * t, 0.0), 1.0) ** 0.3
    return np.clip(1.0 - np.square(t), 0.0, 1.0) ** 0.3


@dataclass(frozen=True)
class Frame2D:
    """A rigid frame in the midsagittal (y, z) plane: origin and tilt (radians; > 0 leans the caudal end back).

    Local coordinates: u along ``post`` (posterior, +), v along ``up`` (superior, +).
    """

    y: float
    z: float
    tilt: float

    @property
    def up(self) -> np.ndarray:
        return np.array([-math.sin(self.tilt), math.cos(self.tilt)])

    @property
    def post(self) -> np.ndarray:
        return np.array([math.cos(self.tilt), math.sin(self.tilt)])

    def local(self, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(y, z) arrays -> (u, v) local arrays (same shape)."""
        c, s = math.cos(self.tilt), math.sin(self.tilt)
        dy, dz = y - self.y, z - self.z
        return dy * c + dz * s, dz * c - dy * s

    def point(self, u: float, v: float) -> np.ndarray:
        """Local (u, v) -> (y, z)."""
        return np.array([self.y, self.z]) + u * self.post + v * self.up


@dataclass
class VertebraLook:
    """How a vertebral body looks. All zero = normal."""

    modic: float = 0.0  # depth (mm) of the endplate-adjacent marrow signal change
    modic_type: int = 1  # 1: oedema (T1 dark, T2/STIR bright), 2: fatty (T1/T2 bright, STIR dark)
    osteophyte: float = 0.0  # length (mm) of anterior corner spurs
    irregularity: float = 0.0  # amplitude (mm) of endplate waviness


@dataclass
class DiscLook:
    """How a disc looks. Defaults are a normal young disc."""

    degeneration: float = 0.0  # 0 bright nucleus, full height .. 1 dark nucleus, ~45% height loss
    bulge: float = 0.5  # mm beyond the vertebral margins at mid-height (circumferential)
    asymmetry: float = 0.0  # 0 symmetric bulge .. 1 bulge on one side only
    protrusion: float = 0.0  # mm of focal posterior reach beyond the margin
    migration: float = 0.0  # mm the protruded material travels up/down the canal (extrusion)
    schmorl: float = 0.0  # mm depth of disc material pushed into an adjacent endplate


@dataclass
class Body:
    """A vertebral body (or fused sacral / coccygeal segment) in the midsagittal plane."""

    name: str
    frame: Frame2D
    half_height: float
    half_depth: float
    half_width: float
    corner: float
    concavity: float
    waist: float
    fat_fraction: float
    look: VertebraLook
    sacral: bool
    posterior: tuple[float, float, float, float, float] | None  # POSTERIOR row scaled, None for sacrum/coccyx

    def centre(self, x: float) -> np.ndarray:
        """(y, z) centre of the body's cross-section in the sagittal plane at lateral position ``x``."""
        g = float(depth_profile(x / self.half_width))
        return self.frame.point(self.half_depth * (1.0 - g), 0.0)

    def aabb(self, margin: float) -> tuple[float, float, float, float, float, float]:
        """(x0, x1, y0, y1, z0, z1) box around the body and its posterior elements."""
        extra = 0.0 if self.posterior is None else self.posterior[2] + 25.0
        if self.sacral:
            extra = 18.0
        pts = [self.frame.point(u, v) for u in (-self.half_depth, self.half_depth + extra)
               for v in (-self.half_height - 12.0, self.half_height + 12.0)]  # fmt: skip
        ys, zs = [p[0] for p in pts], [p[1] for p in pts]
        w = self.half_width + (40.0 if self.posterior is not None else 0.0)
        return (-w - margin, w + margin, min(ys) - margin, max(ys) + margin, min(zs) - margin, max(zs) + margin)


@dataclass
class Disc:
    """An intervertebral disc between bodies ``upper`` and ``lower`` (indices into ``Anatomy.bodies``)."""

    name: str
    upper: int
    lower: int
    frame: Frame2D  # centre of the disc on the midline, tilt = bisector of the two endplates
    height: float  # centre height (mm)
    half_depth: float
    half_width: float
    look: DiscLook
    fused: bool  # sacral/coccygeal remnant
    side: float = 1.0  # +1: asymmetric bulge / herniation towards patient left
    hern_x: float = 0.0  # lateral centre of a protrusion (mm)
    hern_width: float = 8.0  # lateral half-width of a protrusion (mm)
    hern_dir: float = -1.0  # +1 extrusion migrates cranially, -1 caudally
    schmorl_upper: bool = True  # node in the upper body's inferior endplate (else the lower's superior one)
    schmorl_u: float = 0.0  # AP offset of the node from the disc centre (mm)
    schmorl_x: float = 0.0  # lateral centre of the node (mm)

    def centre(self, x: float) -> np.ndarray:
        """(y, z) centre of the disc's cross-section in the sagittal plane at lateral position ``x``."""
        g = float(depth_profile(x / self.half_width))
        return self.frame.point(self.half_depth * (1.0 - g), 0.0)


@dataclass
class SpineTable:
    """Quantities of the long structures tabulated against z (mm), evaluated per pixel by linear lookup."""

    z0: float
    dz: float
    columns: dict[str, np.ndarray]

    def lookup(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index and weight arrays for :meth:`at` (computed once per slice)."""
        f = (z - self.z0) * (1.0 / self.dz)
        n = len(next(iter(self.columns.values())))
        f = np.clip(f, 0.0, n - 1.001)
        i = f.astype(np.intp)
        return i, (f - i).astype(np.float32)

    def at(self, name: str, idx: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        col = self.columns[name]
        i, w = idx
        a = col[i]
        return a + w * (col[i + 1] - a)

    def scalar(self, name: str, z: float) -> float:
        return float(np.interp(z, self.z0 + self.dz * np.arange(len(self.columns[name])), self.columns[name]))


@dataclass
class Habitus:
    """Body build and soft-tissue layout around the spine."""

    fat_post: float  # posterior subcutaneous fat (mm)
    muscle_back: float  # posterior extent of the paraspinal muscles behind the posterior wall line (mm)
    groove: float  # midline furrow of the muscles (mm)
    abd_depth: float  # anterior skin distance in front of the vertebral bodies (mm)
    fat_ant: float  # anterior subcutaneous fat (mm)
    buttock: float  # extra posterior soft tissue over the sacrum (mm)
    aorta_x: float
    aorta_r: float
    ivc_x: float
    ivc_r: float
    ivc_bright: bool  # slow flow: IVC bright on T2
    bifurcation_z: float
    psoas: float  # psoas size factor
    bowel_gas: float  # share of gas in bowel loops
    liver_z: float  # z below which the liver ends
    diaphragm_z: float  # posterior dome of the diaphragm


@dataclass
class Anatomy:
    """One study's anatomy: bodies and discs cranio-caudally, tables, soft tissues."""

    bodies: list[Body]
    discs: list[Disc]
    table: SpineTable
    habitus: Habitus
    roots: np.ndarray  # (K, 4): lateral x, relative depth in the sac, z where the root leaves, radius
    conus_z: float
    marrow_ff: float
    extras: dict[str, float] = field(default_factory=dict)

    def names(self) -> list[str]:
        """Every drawn structure: bodies and discs, cranio-caudally."""
        out: list[str] = []
        for i, b in enumerate(self.bodies):
            out.append(b.name)
            if i < len(self.discs):
                out.append(self.discs[i].name)
        return out

    def structure(self, name: str) -> Body | Disc:
        for s in (*self.bodies, *self.discs):
            if s.name == name:
                return s
        raise KeyError(f"phantom draws no structure {name!r}; it draws {self.names()}")

    def centre(self, name: str, x: float) -> np.ndarray:
        """(y, z) centre of a body or disc cross-section at lateral position ``x`` (anatomy frame, mm)."""
        return self.structure(name).centre(x)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def sample_anatomy(
    rng: np.random.Generator,
    disc_looks: Mapping[str, DiscLook] | None = None,
    vertebra_looks: Mapping[str, VertebraLook] | None = None,
) -> Anatomy:
    """Draw one study's anatomy.

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
        if look.osteophyte > 0 or look.irregularity > 0:
            h *= _u(rng, 0.9, 0.98)  # degenerative bodies lose a little height
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
                hern_x=_u(rng, -5.0, 5.0),
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
