"""Spatial augmentation that moves keypoints exactly with the pixels.

All geometric steps (crop around the spine, anterior-posterior flip, random affine, elastic deformation) are
composed into ONE sampling map and the image is resampled once with MONAI's ``Resample``, so there is a single
interpolation and the points go through the very same map:

    output pixel u samples the input at   M^-1 (u + d(u))

with ``M`` the forward affine (input px -> output px, 3x3 on (x, y, 1)) and ``d`` a smooth displacement field on
the output grid (U-Net paper: random vectors on a coarse grid, bicubic interpolation). An input point q appears
where ``u + d(u) = M q``; that equation is solved by fixed-point iteration ``u <- M q - d(u)``, which converges
because ``d`` is capped to a Lipschitz constant below 1 (which also keeps the deformation invertible).

MONAI's ``Rand2DElasticd`` resamples pixels but cannot move points through its field, and
``ApplyTransformToPointsd`` handles affine maps only; that is why the maps are composed here.

Coordinates: (x, y) = (column, row) pixels, origin at the centre of the top-left pixel. No step ever flips
vertically: that would reverse the cranio-caudal order of the levels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import Resample
from scipy import ndimage

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

MAX_LIPSCHITZ = 0.5  # cap on |grad d|: keeps u + d(u) invertible and the fixed-point iteration contracting


def translation(tx: float, ty: float) -> np.ndarray:
    """(3, 3) translation by (tx, ty) pixels."""
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def centred_affine(
    size: tuple[int, int], rotate_deg: float = 0.0, scale: float = 1.0, shear_deg: float = 0.0, shift=(0.0, 0.0)
) -> np.ndarray:
    """(3, 3) forward affine about the image centre: scale, x-shear, rotation, then a shift of (dx, dy) px."""
    cx, cy = (size[1] - 1) / 2.0, (size[0] - 1) / 2.0
    a, t = math.radians(rotate_deg), math.tan(math.radians(shear_deg))
    rot = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    shear = np.array([[1.0, t, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    zoom = np.diag([scale, scale, 1.0])
    return translation(cx + shift[0], cy + shift[1]) @ rot @ shear @ zoom @ translation(-cx, -cy)


def flip_columns(width: int) -> np.ndarray:
    """(3, 3) mirror of the columns, x -> W-1-x: the anterior-posterior flip of a sagittal image."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def crop_to_full(box: tuple[float, float, float, float], size: tuple[int, int]) -> np.ndarray:
    """(3, 3) map of the box (x0, y0, w, h), given by its outer pixel edges, onto the whole (H, W) image."""
    x0, y0, bw, bh = box
    return np.array(
        [[size[1] / bw, 0.0, -x0 * size[1] / bw - 0.5], [0.0, size[0] / bh, -y0 * size[0] / bh - 0.5], [0, 0, 1.0]]
    )


def random_crop_box(
    rng: np.random.Generator,
    keypoints: np.ndarray,
    visible: np.ndarray,
    size: tuple[int, int],
    margin_frac: tuple[float, float],
    max_zoom: float,
) -> tuple[float, float, float, float] | None:
    """A random box with the image's aspect ratio that contains every visible keypoint plus a margin.

    Args:
        keypoints: (K, 2) points in pixels; visible: (K,) bool.
        size: (H, W) of the image.
        margin_frac: (min, max) margin around the keypoints' bounding box, as a fraction of the image size.
        max_zoom: the box is never smaller than the image divided by this.

    Returns:
        (x0, y0, w, h) with x0, y0 the outer edges, or None when no keypoint is visible or the box would not be
        smaller than the image.
    """
    pts = keypoints[visible]
    if len(pts) == 0:
        return None
    h, w = size
    m = rng.uniform(*margin_frac)
    lo = pts.min(axis=0) - (m * w, m * h)
    hi = pts.max(axis=0) + (m * w, m * h)
    bw, bh = hi - lo
    bw, bh = max(bw, bh * w / h), max(bh, bw * h / w)
    zoom = min(w / bw, max_zoom)
    if zoom <= 1.0:
        return None
    bw, bh = w / zoom, h / zoom
    origin = []
    for lo_k, hi_k, b, n in ((lo[0], hi[0], bw, w), (lo[1], hi[1], bh, h)):
        start, stop = hi_k - b, lo_k  # box start range that keeps the keypoints inside
        start, stop = max(start, -0.5), min(stop, n - 0.5 - b)  # ... and the box inside the image
        if start > stop:  # impossible: keep the keypoints
            start, stop = hi_k - b, lo_k
        origin.append(rng.uniform(start, max(start, stop)))  # max: round-off when the box just fits
    return (float(origin[0]), float(origin[1]), float(bw), float(bh))


def random_displacement(
    rng: np.random.Generator, size: tuple[int, int], grid: int, std: float, max_lipschitz: float = MAX_LIPSCHITZ
) -> np.ndarray:
    """Smooth random displacement field (U-Net): N(0, std) vectors on a grid x grid lattice, bicubic upsampled.

    Returns:
        (2, H, W) float32 (dx, dy) in pixels, scaled down if needed so that its Lipschitz constant is at most
        ``max_lipschitz``.
    """
    coarse = torch.from_numpy(rng.normal(0.0, std, size=(1, 2, grid, grid)))
    field = F.interpolate(coarse, size=size, mode="bicubic", align_corners=True)[0].numpy()
    dxdy = [np.gradient(c) for c in field]  # each: (d/drow, d/dcol)
    frob = np.sqrt(sum(g**2 for comp in dxdy for g in comp))  # >= spectral norm of the Jacobian
    lip = float(frob.max())
    if lip > max_lipschitz:
        field *= max_lipschitz / lip
    return field.astype(np.float32)


@dataclass(frozen=True, eq=False)
class SpatialTransform:
    """A composed spatial transform (see the module docstring).

    Attributes:
        matrix: (3, 3) forward affine, input (x, y, 1) -> output pixels.
        size: (H, W) of the output.
        displacement: optional (2, H, W) field (dx, dy) on the output grid, in output pixels.
    """

    matrix: np.ndarray
    size: tuple[int, int]
    displacement: np.ndarray | None = None

    def source_coords(self) -> np.ndarray:
        """(2, H, W) input (x, y) sampled by every output pixel."""
        h, w = self.size
        ys, xs = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
        if self.displacement is not None:
            xs, ys = xs + self.displacement[0], ys + self.displacement[1]
        inv = np.linalg.inv(self.matrix)
        sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
        sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
        return np.stack([sx, sy])

    def warp(self, image: ArrayT, mode: str = "bilinear", fill: float | None = None) -> ArrayT:
        """Resample a (C, H_in, W_in) image; ``mode="nearest"`` for label masks.

        Args:
            image: (C, H_in, W_in) numpy or torch.
            mode: "bilinear" or "nearest".
            fill: value outside the input; default each channel's minimum (the MR background), use 0 for masks.

        Returns:
            (C, H, W) of the same type (numpy or torch) and dtype as ``image``.
        """
        is_numpy = isinstance(image, np.ndarray)
        img = torch.as_tensor(image)
        h_in, w_in = int(img.shape[-2]), int(img.shape[-1])
        src = self.source_coords()
        # MONAI grid: homogeneous (row, col, 1), centred on the input image (norm_coords=True, align_corners=False)
        grid = np.stack([src[1] - (h_in - 1) / 2.0, src[0] - (w_in - 1) / 2.0, np.ones(self.size)])
        x = img.to(torch.float32)
        # pad with the background, not with zero (which is the mean intensity after the z-score)
        fill_t = x.amin(dim=(-2, -1), keepdim=True) if fill is None else torch.full((1, 1, 1), float(fill))
        out = Resample(mode=mode, padding_mode="zeros", norm_coords=True, align_corners=False, dtype=torch.float32)(
            x - fill_t, torch.from_numpy(grid).to(torch.float32)
        )
        out = torch.as_tensor(out).as_subclass(torch.Tensor) + fill_t
        if not img.is_floating_point():  # integer label masks: undo float round-off of the fill shift
            out = out.round()
        out = out.to(img.dtype)
        return out.numpy() if is_numpy else out

    def move_points(self, xy: np.ndarray, iterations: int = 50, tol: float = 1e-4) -> np.ndarray:
        """Map (K, 2) input points to output pixels, exactly as ``warp`` moves the pixels under them."""
        pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        target = pts @ self.matrix[:2, :2].T + self.matrix[:2, 2]  # M q
        if self.displacement is None:
            return target
        u = target.copy()
        for _ in range(iterations):
            coords = [u[:, 1], u[:, 0]]  # map_coordinates wants (row, col)
            d = np.stack([ndimage.map_coordinates(c, coords, order=1, mode="nearest") for c in self.displacement], 1)
            nxt = target - d
            done = np.abs(nxt - u).max() < tol if len(u) else True
            u = nxt
            if done:
                break
        return u

    def inside(self, xy: np.ndarray) -> np.ndarray:
        """(K,) bool: points within the output image (pixel edges included)."""
        h, w = self.size
        x, y = xy[:, 0], xy[:, 1]
        return np.isfinite(xy).all(axis=1) & (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
