"""Lumbar MRI phantom: tissue physics, scanner placement, rendering of planes and acquisition effects.

Pipeline for one series: the anatomy (``anatomy``) is placed in the patient frame by a :class:`Pose`;
each image plane becomes a :class:`~spine_kp.synth.render.PlaneGrid` on a coarse "acquisition" grid
(about 1 mm pixels); :func:`render_plane` paints every contrast of that plane at once; :func:`acquire`
applies the coil bias field and Rician noise and interpolates to the reconstructed matrix (windowed sinc, like
zero-filled k-space). Signals come from spin-echo / inversion-recovery equations with each tissue's
(PD, T1, T2), so TE/TR/TI in the DICOM tags and the contrast agree: fat bright on T1 and T2-TSE and dark on
STIR, CSF dark on T1 and bright on T2/STIR, a normal nucleus bright on T2.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.ndimage import gaussian_filter

from spine_kp.synth.anatomy import FIRST_SACRAL, Anatomy
from spine_kp.synth.canvas import Canvas, PlaneGrid
from spine_kp.synth.render import (
    paint_body,
    paint_disc,
    paint_posterior,
    paint_sacral_plate,
    paint_schmorl,
)
from spine_kp.synth.soft_tissue import paint_canal, paint_outline, paint_retro

# Apparent (PD, T1 ms, T2 ms) at 1.5 T. Fat's T2 is its apparent value in turbo spin echo (J-coupling).
TISSUES: dict[str, tuple[float, float, float]] = {
    "air": (0.0, 1000.0, 1.0), "fat": (1.0, 260.0, 130.0), "skin": (0.7, 700.0, 40.0),
    "muscle": (0.8, 900.0, 48.0), "csf": (1.0, 3500.0, 1500.0), "cord": (0.8, 800.0, 85.0),
    "nerve": (0.75, 850.0, 65.0), "annulus": (0.65, 900.0, 42.0), "nucleus": (0.95, 1150.0, 190.0),
    "nucleus_degen": (0.7, 850.0, 40.0), "remnant": (0.5, 800.0, 35.0), "cortex": (0.06, 600.0, 8.0),
    "ligament": (0.3, 600.0, 14.0), "interspinous": (0.75, 450.0, 75.0), "marrow_water": (0.85, 1000.0, 50.0),
    "modic1": (0.95, 1400.0, 110.0), "vessel": (0.07, 1200.0, 150.0), "vein_slow": (0.9, 1300.0, 220.0),
    "liver": (0.8, 500.0, 42.0), "bowel": (0.78, 950.0, 70.0), "bowel_fluid": (0.95, 2500.0, 400.0),
    "lung": (0.05, 1200.0, 30.0), "bladder": (1.0, 3000.0, 1200.0),
}  # fmt: skip


@dataclass(frozen=True)
class MRSequence:
    """Timing of a (turbo) spin-echo sequence, optionally with an inversion pulse (STIR). Times in ms."""

    te: float
    tr: float
    ti: float | None = None
    fat_scale: float = 1.0  # < 1: spectral fat suppression / water image (fat signal scaled, others unchanged)

    def signal(self, pd: float, t1: float, t2: float) -> float:
        """Magnitude signal of a tissue."""
        if self.ti is None:
            m = 1.0 - math.exp(-self.tr / t1)
        else:
            m = abs(1.0 - 2.0 * math.exp(-self.ti / t1) + math.exp(-self.tr / t1))
        return pd * m * math.exp(-self.te / t2)


def fat_null_ti(tr: float, t1_fat: float = TISSUES["fat"][1]) -> float:
    """Inversion time (ms) that nulls fat for repetition time ``tr``."""
    return t1_fat * math.log(2.0 / (1.0 + math.exp(-tr / t1_fat)))


def tissue_signals(
    sequences: Sequence[MRSequence], rng: np.random.Generator | None = None, jitter: float = 0.05
) -> dict[str, np.ndarray]:
    """Per-tissue signal in each sequence: name -> (C,) float32, with a per-study jitter of PD and T2."""
    out = {}
    for name, (pd, t1, t2) in TISSUES.items():
        if rng is not None and jitter > 0:
            pd *= float(np.exp(rng.normal(0.0, jitter)))
            t2 *= float(np.exp(rng.normal(0.0, jitter)))
        out[name] = np.array(
            [s.signal(pd, t1, t2) * (s.fat_scale if name == "fat" else 1.0) for s in sequences], dtype=np.float32
        )
    return out


@dataclass(frozen=True)
class Pose:
    """Placement of the anatomy in the patient frame (LPS, mm): ``p = matrix @ a + offset``."""

    matrix: np.ndarray
    offset: np.ndarray

    @classmethod
    def make(cls, roll_deg: float, coronal_tilt: float, offset: Sequence[float]) -> Pose:
        """Rotation about the left-right axis (sagittal in-plane rotation) and a small coronal lean (x += t*z)."""
        a = math.radians(roll_deg)
        rot = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(a), -math.sin(a)], [0.0, math.sin(a), math.cos(a)]])
        shear = np.array([[1.0, 0.0, coronal_tilt], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        return cls(rot @ shear, np.asarray(offset, dtype=float))

    def to_patient(self, a: np.ndarray) -> np.ndarray:
        """(..., 3) anatomy-frame points -> patient LPS."""
        return np.asarray(a, dtype=float) @ self.matrix.T + self.offset

    def to_anatomy(self, p: np.ndarray) -> np.ndarray:
        """(..., 3) patient LPS points -> anatomy frame."""
        return (np.asarray(p, dtype=float) - self.offset) @ np.linalg.inv(self.matrix).T


def plane_grid(
    pose: Pose,
    position: np.ndarray,
    orientation: Sequence[float],
    spacing: tuple[float, float],
    shape: tuple[int, int],
    thickness: float,
    render_shape: tuple[int, int] | None = None,
) -> PlaneGrid:
    """Render grid of a DICOM image plane, in the anatomy frame.

    Args:
        pose: anatomy placement.
        position: ImagePositionPatient of the output image (centre of its top-left pixel).
        orientation: ImageOrientationPatient (row direction cosines, then column direction cosines).
        spacing: PixelSpacing (row_mm, col_mm) of the output image; shape: its (H, W).
        thickness: slice thickness (lateral partial volume).
        render_shape: coarser (H, W) covering the same field of view (pixel edges aligned); default ``shape``.
    """
    rs = shape if render_shape is None else render_shape
    o = np.asarray(orientation, dtype=float)
    row_dir, col_dir = o[:3], o[3:]
    sr = spacing[0] * shape[0] / rs[0]
    sc = spacing[1] * shape[1] / rs[1]
    start = np.asarray(position, float) + (sr - spacing[0]) / 2 * col_dir + (sc - spacing[1]) / 2 * row_dir
    inv = np.linalg.inv(pose.matrix)
    return PlaneGrid(
        origin=inv @ (start - pose.offset),
        d_row=inv @ (col_dir * sr),
        d_col=inv @ (row_dir * sc),
        shape=(int(rs[0]), int(rs[1])),
        thickness=float(thickness),
    )


@functools.lru_cache(maxsize=64)
def resample_matrix(n_in: int, n_out: int, lobes: int = 3) -> sparse.csr_matrix:
    """(n_out, n_in) sparse Lanczos interpolation between grids covering the same extent (pixel edges aligned)."""
    if n_in == n_out:
        return sparse.identity(n_in, dtype=np.float32, format="csr")
    pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    base = np.floor(pos).astype(int)
    scale = min(1.0, n_out / n_in)  # widen the kernel when shrinking (anti-aliasing)
    reach = int(math.ceil(lobes / scale))
    ks = np.arange(-reach + 1, reach + 1)
    cols = base[:, None] + ks[None, :]
    t = (pos[:, None] - cols) * scale
    w = np.sinc(t) * np.sinc(t / lobes) * (np.abs(t) < lobes)
    w /= w.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(n_out), len(ks))
    mat = sparse.csr_matrix((w.ravel(), (rows, np.clip(cols, 0, n_in - 1).ravel())), shape=(n_out, n_in))
    return mat.astype(np.float32)


def resample(img: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """(..., H, W) -> (..., H', W') windowed-sinc interpolation over the same field of view."""
    lead, (h, w) = img.shape[:-2], img.shape[-2:]
    if (h, w) == tuple(out_shape):
        return img
    a = img.reshape(-1, h, w)
    n = a.shape[0]
    mr, mc = resample_matrix(h, out_shape[0]), resample_matrix(w, out_shape[1])
    t = (mr @ a.transpose(1, 0, 2).reshape(h, n * w)).reshape(out_shape[0], n, w)  # (H', n, w)
    t = (mc @ t.transpose(2, 1, 0).reshape(w, n * out_shape[0])).reshape(out_shape[1], n, out_shape[0])
    return np.ascontiguousarray(t.transpose(1, 2, 0), dtype=np.float32).reshape(*lead, *out_shape)


def nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """(n_out,) source index of each output pixel for nearest-neighbour resampling (pixel edges aligned)."""
    pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    return np.clip(np.rint(pos), 0, n_in - 1).astype(np.intp)


def make_textures(rng: np.random.Generator, n: int, shape: tuple[int, int], px: float, gap: float) -> np.ndarray:
    """(n, 2, H, W) smooth unit-variance noise (fine ~3 mm, coarse ~10 mm) correlated across ``n`` parallel planes."""
    h, w = shape
    out = np.empty((n, 2, h, w), dtype=np.float32)
    for ch, (step, sigma) in enumerate(((2.0, 0.8), (5.0, 1.6))):
        hl, wl = max(int(h * px / step) + 2, 4), max(int(w * px / step) + 2, 4)
        field = rng.standard_normal((n, hl, wl)).astype(np.float32)
        along = (2.0 * step * sigma) / max(gap, 1e-3) if n > 1 else 0.0
        field = gaussian_filter(field, (along, sigma, sigma), mode="wrap")
        field /= field.std() + 1e-6
        out[:, ch] = resample(field, (h, w))
    return out


@dataclass(frozen=True)
class BiasField:
    """Receive-coil sensitivity: strongest at the back (spine coil), falling off anteriorly, gently modulated."""

    floor: float = 0.3
    length: float = 120.0
    ripple: float = 0.08
    phase: float = 0.0

    def __call__(self, depth: np.ndarray, z: np.ndarray) -> np.ndarray:
        b = self.floor + (1.0 - self.floor) * np.exp(-depth * (1.0 / self.length))
        return b * (1.0 + self.ripple * np.sin(z * (1.0 / 70.0) + self.phase))


def render_plane(
    grid: PlaneGrid,
    anatomy: Anatomy,
    signals: dict[str, np.ndarray],
    textures: np.ndarray,
    label_ids: Mapping[str, int],
    bias: BiasField,
) -> tuple[np.ndarray, np.ndarray]:
    """Paint one plane.

    Args:
        grid: render grid of the plane (anatomy frame).
        anatomy: the study's anatomy.
        signals: tissue -> (C,) signal per contrast (:func:`tissue_signals`).
        textures: (2, H, W) fine/coarse texture fields.
        label_ids: structure name ("L4", "L4-L5") -> label value in the label map (missing: unlabelled).
        bias: coil sensitivity applied to the signal.

    Returns:
        ``(img, label)``: (C, H, W) float32 noise-free signal, (H, W) int16 label map.
    """
    h, w = grid.shape
    half = Canvas(grid.halved(), anatomy, signals, textures[:, ::2, ::2])
    depth = paint_outline(half)  # smooth soft tissues: half resolution is plenty
    paint_retro(half)
    up = ((h + 1) // 2 * 2, (w + 1) // 2 * 2)
    gain = resample(bias(depth, half.z), up)[:h, :w]
    cv = Canvas(grid, anatomy, signals, textures)
    cv.img[:] = resample(half.img, up)[:, :h, :w]
    paint_canal(cv)
    discs = anatomy.discs
    for i, b in enumerate(anatomy.bodies):
        if i >= FIRST_SACRAL:
            paint_sacral_plate(cv, b)
        else:
            paint_posterior(cv, b, discs[i] if i < len(discs) else None, discs[i - 1] if i > 0 else None)
    for d in discs:
        paint_disc(cv, anatomy, d, label_ids.get(d.name, 0))
    for b in anatomy.bodies:
        paint_body(cv, b, label_ids.get(b.name, 0))
    for d in discs:
        if d.look.schmorl > 0:
            paint_schmorl(cv, anatomy, d, label_ids.get(d.name, 0))
    cv.img *= gain[None]
    return cv.img, cv.label


def acquire(
    img: np.ndarray, sigma: float, noise: tuple[np.ndarray, np.ndarray], out_shape: tuple[int, int]
) -> np.ndarray:
    """Rician noise on the acquisition grid, then windowed-sinc interpolation to the reconstructed matrix.

    Args:
        img: (N, H, W) noise-free magnitude of one contrast.
        sigma: noise standard deviation.
        noise: two (N, H, W) standard normal fields (real and imaginary channel noise).
        out_shape: reconstructed (H', W').

    Returns:
        (N, H', W') float32, non-negative.
    """
    s = np.float32(sigma)
    noisy = np.multiply(noise[0], s)
    noisy += img
    np.square(noisy, out=noisy)
    quad = np.multiply(noise[1], s)
    np.square(quad, out=quad)
    noisy += quad
    np.sqrt(noisy, out=noisy)  # magnitude of complex signal + noise: Rician
    out = resample(noisy, out_shape)
    return np.maximum(out, 0.0, out=out)
