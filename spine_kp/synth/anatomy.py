"""Anatomy of the lumbar phantom: a 3-D spine model in an anatomy frame (mm), sampled per study.

Anatomy frame: x lateral (+ = patient left), y antero-posterior (+ = posterior), z cranio-caudal
(+ = superior), origin at the L3 body centre. Bones and discs are laid out in the midsagittal (y, z) plane as
rigid 2-D frames along a lordotic curve; every structure also has a lateral half-width, and bodies/discs get
shallower antero-posteriorly off the midline (the posterior wall stays, the anterior wall recedes, like the
kidney-shaped axial section of a real body), so a sagittal slice at x != 0 really differs from the middle one.
Long structures (canal, thecal sac, cord, muscles, skin) are tabulated against z in :class:`SpineTable`.
``render`` draws this model; ``phantom`` places it in the scanner (patient LPS frame).

Nothing here knows grade labels: pathology is described by :class:`DiscLook` / :class:`VertebraLook`
numbers that ``synth`` derives from its grade table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

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
        return min(max(1.0 - t * t, 0.0), 1.0) ** 0.45
    return np.clip(1.0 - np.square(t), 0.0, 1.0) ** 0.45


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
