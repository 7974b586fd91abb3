"""Landmark-centred crops at native resolution, numpy/scipy only (no torch).

Frames. A point is ``(x, y)`` = (column, row) in ORIGINAL pixels of the slice; ``spacing`` is ``(row_mm, col_mm)``.
A crop is a ``size_px`` x ``size_px`` image of a ``window_mm`` square centred on the point, sampled every
``step = window_mm / size_px`` mm. Crop pixel ``(i, j)`` (row, column) has its centre at the offsets

    u = (j - (size_px - 1) / 2) * step     (mm, crop right)
    v = (i - (size_px - 1) / 2) * step     (mm, crop down)

from the point, so the point lies at crop pixel ``((size_px - 1) / 2, (size_px - 1) / 2)``. With an angle
``theta`` (radians), crop-down is the image direction ``(sin theta, cos theta)`` in (x_mm, y_mm) and crop-right is
``(cos theta, -sin theta)``: a rotation (never a mirror), so the anterior/posterior sides of the image stay on their
sides. :func:`spine_axis_angles` gives the angle that makes the local cranio-caudal axis point down in the crop.

Sampling is bilinear (``scipy.ndimage.map_coordinates``, order 1); outside the image the crop reads the low clip
value (what the dark background becomes). Intensities are normalized with the WHOLE slice's statistics, exactly as
the network input (:func:`spine_kp.data.normalization.normalize_intensity`).

Planes. With ``grade_stage.neighbours: n > 0`` a landmark's crop is cut, with the same geometry, on its slice and on
the n neighbouring (parasagittal) slices on each side (:func:`slice_crops`): lateral findings, such as an asymmetric
bulge or a paramedian herniation, are barely visible on the middle slice alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.ndimage import map_coordinates

from spine_kp.data.normalization import (
    DEFAULT_PERCENTILES,
    IntensityStats,
    apply_intensity,
    finite_pixels,
    intensity_stats,
)
from spine_kp.data.preprocess import slice_channels
from spine_kp.types import Slice


def _nearest_finite(finite: np.ndarray, k: int, step: int) -> int | None:
    i = k + step
    while 0 <= i < finite.size:
        if finite[i]:
            return i
        i += step
    return None


def spine_axis_angles(points: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """Angle of the local cranio-caudal axis at each landmark, from its neighbours in schema order.

    The axis at landmark k runs from the nearest finite landmark before it to the nearest finite one after it
    (schema order is cranio-caudal); at a chain end, from the landmark itself to its only neighbour. Measured in mm
    (anisotropic pixels are accounted for) as ``atan2(dx_mm, dy_mm)``: 0 when the axis points straight down the
    image, positive when it leans towards +x.

    Args:
        points: (K, 2) xy in original pixels, schema order; non-finite rows are missing landmarks.
        spacing: (row_mm, col_mm).

    Returns:
        (K,) float64 radians; 0 for a missing landmark or one without a finite neighbour.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    finite = np.isfinite(pts).all(axis=1)
    scale = np.array([float(spacing[1]), float(spacing[0])])  # (x, y) pixels -> mm
    out = np.zeros(len(pts))
    for k in np.flatnonzero(finite):
        before, after = _nearest_finite(finite, int(k), -1), _nearest_finite(finite, int(k), 1)
        a = pts[before] if before is not None else pts[k]
        b = pts[after] if after is not None else pts[k]
        d = (b - a) * scale
        if np.hypot(d[0], d[1]) > 0:
            out[k] = math.atan2(d[0], d[1])
    return out


def crop_coordinates(
    points: np.ndarray, spacing: tuple[float, float], size_px: int, window_mm: float, angles: np.ndarray | None = None
) -> np.ndarray:
    """Where every crop pixel lies in the slice (see the module docstring for the frames).

    Args:
        points: (K, 2) xy original pixels (finite).
        spacing: (row_mm, col_mm).
        size_px, window_mm: crop side in pixels and in mm.
        angles: (K,) radians, None for unrotated crops.

    Returns:
        (2, K, size_px, size_px) float64 (row, column) coordinates, the layout ``map_coordinates`` takes.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    k = len(pts)
    theta = np.zeros(k) if angles is None else np.asarray(angles, dtype=np.float64).reshape(k)
    step = float(window_mm) / int(size_px)
    offsets = (np.arange(int(size_px)) - (int(size_px) - 1) / 2.0) * step
    v, u = np.meshgrid(offsets, offsets, indexing="ij")  # (S, S): v down the crop rows, u along its columns
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    dx_mm = u * cos + v * sin  # u * right_x + v * down_x
    dy_mm = -u * sin + v * cos  # u * right_y + v * down_y
    rows = pts[:, 1, None, None] + dy_mm / float(spacing[0])
    cols = pts[:, 0, None, None] + dx_mm / float(spacing[1])
    return np.stack([rows, cols])


def extract_crops(
    pixels: np.ndarray,
    points: np.ndarray,
    spacing: tuple[float, float],
    size_px: int,
    window_mm: float,
    angles: np.ndarray | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    stats: IntensityStats | None = None,
) -> np.ndarray:
    """Landmark-centred crops of one slice at native resolution, intensity-normalized like the network input.

    Args:
        pixels: (H, W) raw slice intensities.
        points: (K, 2) xy in original pixels; a non-finite row gives an all-zero crop.
        spacing: (row_mm, col_mm) of the slice.
        size_px: crop side in pixels.
        window_mm: crop side in mm.
        angles: (K,) radians the crops are rotated by (e.g. :func:`spine_axis_angles`); None for none.
        percentiles: clip percentiles of the normalization (the network input's by default).
        stats: precomputed statistics of ``pixels`` (saves the percentile pass when cropping one slice twice).

    Returns:
        (K, size_px, size_px) float32.
    """
    image = np.asarray(pixels)
    if image.ndim != 2:
        raise ValueError(f"extract_crops expects (H, W) pixels, got shape {image.shape}")
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    k, s = len(pts), int(size_px)
    if k == 0:
        return np.zeros((0, s, s), np.float32)
    stats = stats if stats is not None else intensity_stats(image, percentiles)
    clean, _ = finite_pixels(image)
    valid = np.isfinite(pts).all(axis=1)
    coords = crop_coordinates(np.where(valid[:, None], pts, 0.0), spacing, s, window_mm, angles)
    raw = map_coordinates(clean, coords.reshape(2, -1), order=1, mode="constant", cval=stats.low, prefilter=False)
    crops = apply_intensity(raw.reshape(k, s, s), stats)
    crops[~valid] = 0.0
    return crops


__all__ = ["crop_coordinates", "extract_crops", "spine_axis_angles"]


def slice_crops(
    slc: Slice,
    points: np.ndarray,
    landmarks: Sequence[int],
    size_px: int,
    window_mm: float,
    align: bool = True,
    neighbours: int = 0,
) -> np.ndarray:
    """The crop stage's input for one slice: every graded landmark's crop on each of its planes.

    The crop geometry (centre, rotation from ALL landmarks' spine axis) comes from the slice's points and is the same
    on every plane; every plane is normalized with the centre slice's statistics, so intensities compare across them.

    Args:
        slc: the decoded slice (with ``stack`` holding at least ``neighbours`` planes per side when > 0).
        points: (K, 2) xy in original pixels, schema order; non-finite rows: missing (all-zero crops).
        landmarks: schema indices of the graded landmarks (L of them).
        size_px, window_mm: crop side in pixels and mm.
        align: rotate each crop so the local spine axis points down.
        neighbours: n parasagittal planes on each side (P = 2n + 1 planes per landmark).

    Returns:
        (L * P, S, S) float32, landmark-major: rows ``l * P .. l * P + P - 1`` are landmark l's planes, lateral order.
    """
    angles = spine_axis_angles(points, slc.spacing) if align else np.zeros(len(points))
    sel = list(landmarks)
    planes = slice_channels(slc, neighbours)  # (P, H, W), lateral order
    stats = intensity_stats(np.asarray(slc.pixels)) if len(planes) > 1 else None
    per_plane = [
        extract_crops(p, points[sel], slc.spacing, size_px, window_mm, angles[sel], stats=stats) for p in planes
    ]  # P x (L, S, S)
    crops = np.stack(per_plane, axis=1)  # (L, P, S, S)
    return np.ascontiguousarray(crops.reshape(-1, size_px, size_px), dtype=np.float32)
