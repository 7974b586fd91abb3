"""Scanner-side geometry of phantom studies: slice stacks in the patient frame and landmark projection.

Patient frame: DICOM LPS (mm). ``orientation`` is ImageOrientationPatient (direction of increasing column
index, then of increasing row index); positions are ImagePositionPatient (centre of the top-left pixel);
spacing is PixelSpacing (row_mm, col_mm). A pixel (x, y) = (column, row) sits at
``IPP + x * col_mm * row_dir + y * row_mm * col_dir``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spine_kp.synth.anatomy import Anatomy
from spine_kp.synth.canvas import PlaneGrid
from spine_kp.synth.phantom import Pose, plane_grid

# Sagittal: columns run anterior -> posterior (+y), rows head -> feet (-z); normal = row x col = -x.
SAGITTAL = (np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0]))
# Coronal localiser: columns towards patient left (+x), rows head -> feet.
CORONAL = (np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0]))


def rotation(axis: int, degrees: float) -> np.ndarray:
    """(3, 3) rotation about patient axis 0 (x), 1 (y) or 2 (z)."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    i, j = [k for k in range(3) if k != axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


@dataclass(frozen=True)
class Stack:
    """Parallel slices sharing orientation, spacing and matrix; positions sorted along the normal."""

    row_dir: np.ndarray
    col_dir: np.ndarray
    positions: np.ndarray  # (N, 3) ImagePositionPatient, ascending along ``normal``
    spacing: tuple[float, float]
    shape: tuple[int, int]
    thickness: float

    @property
    def orientation(self) -> tuple[float, ...]:
        return tuple(float(v) for v in (*self.row_dir, *self.col_dir))

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)

    @classmethod
    def around(
        cls,
        centre: np.ndarray,
        row_dir: np.ndarray,
        col_dir: np.ndarray,
        n: int,
        middle: int,
        gap: float,
        spacing: tuple[float, float],
        shape: tuple[int, int],
        thickness: float,
    ) -> Stack:
        """Stack whose slice ``middle`` has its image centre at ``centre``; slices ``gap`` mm apart."""
        normal = np.cross(row_dir, col_dir)
        h, w = shape
        corner = -(w - 1) / 2 * spacing[1] * row_dir - (h - 1) / 2 * spacing[0] * col_dir
        pos = np.array([centre + (j - middle) * gap * normal + corner for j in range(n)])
        return cls(row_dir, col_dir, pos, spacing, shape, thickness)

    def shifted(self, delta: np.ndarray) -> Stack:
        return Stack(self.row_dir, self.col_dir, self.positions + delta, self.spacing, self.shape, self.thickness)

    def to_pixel(self, j: int, p: np.ndarray) -> tuple[float, float]:
        """(x, y) pixel coordinates of patient point ``p`` projected on slice ``j``."""
        d = np.asarray(p, float) - self.positions[j]
        return float(d @ self.row_dir / self.spacing[1]), float(d @ self.col_dir / self.spacing[0])

    def grid(self, pose: Pose, j: int, render_shape: tuple[int, int], lateral: float | None = None) -> PlaneGrid:
        """Render grid of slice ``j``; ``lateral``: thickness for left-right partial volume (sagittal slices)."""
        mean_px = 0.5 * (self.spacing[0] * self.shape[0] / render_shape[0] + self.spacing[1] * self.shape[1]
                         / render_shape[1])  # fmt: skip
        return plane_grid(pose, self.positions[j], self.orientation, self.spacing, self.shape,
                          lateral if lateral is not None else mean_px, render_shape)  # fmt: skip


def landmark_point(anatomy: Anatomy, pose: Pose, stack: Stack, j: int, name: str) -> np.ndarray:
    """Patient-frame centre of structure ``name``'s cross-section in slice ``j`` (exactly on the slice plane).

    The cross-section centre depends on the lateral position (bodies narrow off the midline), so the lateral
    coordinate is solved by fixed-point iteration onto the plane.
    """
    s = anatomy.structure(name)
    n = stack.normal
    origin = stack.positions[j]
    ex = pose.matrix[:, 0]  # anatomy x axis in the patient frame
    x = 0.0
    p = pose.to_patient(np.array([x, *s.centre(x)]))
    for _ in range(6):
        p = pose.to_patient(np.array([x, *s.centre(x)]))
        dist = float((p - origin) @ n)
        if abs(dist) < 1e-6:
            break
        x -= dist / float(ex @ n)
    return p


def fit_in_view(
    stack: Stack, j: int, points: Sequence[np.ndarray], margin: float, target: tuple[float, float]
) -> Stack:
    """Shift the stack in-plane so the points' bounding box centre lands at ``target`` (fractions of W, H),
    then nudge it so every point keeps ``margin`` (fraction) from the image border."""
    h, w = stack.shape
    pix = np.array([stack.to_pixel(j, p) for p in points])  # (K, 2) x, y
    lo, hi = pix.min(axis=0), pix.max(axis=0)
    want = np.array([target[0] * (w - 1), target[1] * (h - 1)])
    shift = (lo + hi) / 2 - want  # move the image by this many pixels (x, y)
    size = np.array([w - 1, h - 1], float)
    m = margin * size
    lo2, hi2 = lo - shift, hi - shift
    shift += np.minimum(lo2 - m, 0.0) + np.maximum(hi2 - (size - m), 0.0)
    delta = shift[0] * stack.spacing[1] * stack.row_dir + shift[1] * stack.spacing[0] * stack.col_dir
    return stack.shifted(delta)
