"""Sub-cell refinement of a heatmap peak: DARK and local soft-argmax, numpy (float32), for :class:`HeatmapCodec`.

DARK (Zhang et al. 2020) takes a second-order Taylor step on the log of the Gaussian-blurred heatmap at the argmax
cell; soft-argmax takes the centroid of a window around it. Near the map border the heatmap is continued by quadratic
extrapolation of its log (exact for a Gaussian), so border points decode as precisely as interior ones. Coordinates
are heatmap cells, ``(x, y)`` (the frame: :mod:`spine_kp.codec.heatmap`).
"""

from __future__ import annotations

import math

import numpy as np

_EPS = 1e-10


def _gaussian_kernel1d(sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(3 * sigma))
    t = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (t / np.float32(sigma)) ** 2)
    return (k / k.sum()).astype(np.float32)


def _quad_extrapolate_last(x: np.ndarray, pad: int) -> np.ndarray:
    """Pad the last axis by ``pad`` cells on both sides, continuing each edge with the parabola through its 3 cells."""
    if x.shape[-1] < 3:  # too short to fit a parabola: repeat the edge instead
        shape = (*x.shape[:-1], pad)
        return np.concatenate([np.broadcast_to(x[..., :1], shape), x, np.broadcast_to(x[..., -1:], shape)], axis=-1)
    t = -np.arange(pad, 0, -1, dtype=x.dtype)  # -pad .. -1, outermost first
    c0, c1, c2 = (t - 1) * (t - 2) / 2, -t * (t - 2), t * (t - 1) / 2  # Lagrange weights for nodes 0, 1, 2

    def side(f0: np.ndarray, f1: np.ndarray, f2: np.ndarray) -> np.ndarray:
        return f0[..., None] * c0 + f1[..., None] * c1 + f2[..., None] * c2

    left = side(x[..., 0], x[..., 1], x[..., 2])
    right = side(x[..., -1], x[..., -2], x[..., -3])[..., ::-1]
    return np.concatenate([left, x, right], axis=-1)


def _extend(heatmaps: np.ndarray, pad: int) -> np.ndarray:
    """(N, h, w) -> (N, h + 2 pad, w + 2 pad): interior clamped to >= eps, border continued in the log domain."""
    logs = np.log(np.maximum(heatmaps, np.float32(_EPS)))
    hi = logs.max(axis=(-2, -1), keepdims=True)
    ext = _quad_extrapolate_last(logs, pad)
    ext = _quad_extrapolate_last(ext.swapaxes(-1, -2), pad).swapaxes(-1, -2)
    # Clamping keeps noisy predicted maps from growing spurious peaks outside the image.
    ext = np.minimum(np.maximum(ext, np.float32(math.log(_EPS))), hi)
    return np.exp(ext)


def _gather(maps: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """maps (N, h, w), flat (N,) or (N, M) -> values at the flat indices, shaped like ``flat``."""
    n = maps.shape[0]
    return np.take_along_axis(maps.reshape(n, -1), flat.reshape(n, -1), axis=1).reshape(flat.shape)


def refine_dark(heatmaps: np.ndarray, uv: np.ndarray, blur_sigma: float) -> np.ndarray:
    """DARK sub-cell refinement: offset = -H^-1 g of the log of the blurred heatmap at the argmax cell.

    Args:
        heatmaps: (N, h, w) float32.
        uv: (N, 2) integer argmax cell xy (float array), or (N, M, 2) several peak cells per map (the map is
            blurred once for all of them).
        blur_sigma: sigma (cells) of the Gaussian modulation that smooths predicted maps before the Taylor step.

    Returns:
        Refined xy in heatmap cells, shaped like ``uv``.
    """
    w = heatmaps.shape[-1]
    kernel = _gaussian_kernel1d(blur_sigma)
    radius = kernel.size // 2
    ext = _extend(heatmaps, radius + 1)  # (N, h + 2r + 2, w + 2r + 2)
    # separable blur, "valid" part only: (N, h + 2, w + 2), one spare cell per side for the differences
    blurred = np.lib.stride_tricks.sliding_window_view(ext, kernel.size, axis=-1) @ kernel
    blurred = np.lib.stride_tricks.sliding_window_view(blurred, kernel.size, axis=-2) @ kernel
    logs = np.log(np.maximum(blurred, np.float32(_EPS)))
    c = logs[:, 1:-1, 1:-1]
    dx = (logs[:, 1:-1, 2:] - logs[:, 1:-1, :-2]) / 2
    dy = (logs[:, 2:, 1:-1] - logs[:, :-2, 1:-1]) / 2
    dxx = logs[:, 1:-1, 2:] - 2 * c + logs[:, 1:-1, :-2]
    dyy = logs[:, 2:, 1:-1] - 2 * c + logs[:, :-2, 1:-1]
    dxy = (logs[:, 2:, 2:] - logs[:, 2:, :-2] - logs[:, :-2, 2:] + logs[:, :-2, :-2]) / 4
    flat = (uv[..., 1] * w + uv[..., 0]).astype(np.int64)
    gx, gy, hxx, hyy, hxy = (_gather(t, flat) for t in (dx, dy, dxx, dyy, dxy))
    det = hxx * hyy - hxy * hxy
    ok = (det > 1e-12) & (hxx < 0)  # a proper maximum; otherwise keep the integer peak
    safe = np.where(ok, det, 1.0)
    ox = np.where(ok, -(hyy * gx - hxy * gy) / safe, 0.0)
    oy = np.where(ok, -(hxx * gy - hxy * gx) / safe, 0.0)
    return (uv + np.clip(np.stack([ox, oy], axis=-1), -1.0, 1.0)).astype(np.float32)


def refine_soft_argmax(heatmaps: np.ndarray, uv: np.ndarray, radius: int) -> np.ndarray:
    """Local soft-argmax: the centroid of the (non-negative) heatmap in a window around the argmax cell.

    Args:
        heatmaps: (N, h, w) float32.
        uv: (N, 2) integer argmax cell xy (float array).
        radius: window half-size in cells.

    Returns:
        (N, 2) refined xy in heatmap cells.
    """
    ext = _extend(heatmaps, radius)  # window never leaves the (extended) map
    size = 2 * radius + 1
    offs = np.arange(size)
    rows = uv[:, 1].astype(np.int64)[:, None] + offs  # (N, size) in extended coordinates
    cols = uv[:, 0].astype(np.int64)[:, None] + offs
    win = ext[np.arange(len(ext))[:, None, None], rows[:, :, None], cols[:, None, :]]  # (N, S, S)
    win = np.maximum(win - win.min(axis=(-2, -1), keepdims=True), 0)  # remove the pedestal
    total = np.maximum(win.sum(axis=(-2, -1)), np.float32(_EPS))
    d = (offs - radius).astype(np.float32)
    ox = (win.sum(axis=-2) * d).sum(-1) / total
    oy = (win.sum(axis=-1) * d).sum(-1) / total
    return (uv + np.stack([ox, oy], axis=-1)).astype(np.float32)


__all__ = ["refine_dark", "refine_soft_argmax"]
