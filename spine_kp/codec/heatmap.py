"""Gaussian heatmap codec: training targets and inference decoding in one class (after mmpose ``MSRAHeatmap``).

Coordinate frame (the one convention of this module):
    Keypoints are ``(x, y)`` in input pixels, pixel centres at integer coordinates (pixel ``(r, c)`` is
    centred at ``x = c, y = r``; the image spans ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``).
    At stride ``s`` heatmap cell ``(i, j)`` covers input pixels ``[j*s, (j+1)*s) x [i*s, (i+1)*s)`` and so is
    centred at input pixel ``((j + 0.5) * s - 0.5, (i + 0.5) * s - 0.5)``. Conversions: :func:`pixels_to_cells`
    and :func:`cells_to_pixels`.

``sigma`` is in heatmap cells. Targets are unnormalised Gaussians (value 1 at the continuous centre).
Decoding takes the argmax cell and refines it to sub-cell precision, either with DARK (Zhang et al. 2020: a
second-order Taylor step on the log of the Gaussian-blurred heatmap) or with a local soft-argmax. Near the map
border the heatmap is continued by quadratic extrapolation of its log (exact for a Gaussian), so border points
decode as precisely as interior ones.

Decoding is numpy (float32), so prediction through ONNX Runtime runs without torch; the methods also take torch
tensors and return tensors on the same device. Only :func:`heatmap_argmax` keeps a torch path, for the network's
own argmax in every training step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

REFINE_METHODS = ("dark", "soft_argmax", "none")
_EPS = 1e-10


def pixels_to_cells(xy: Any, stride: int) -> Any:
    """Input-pixel ``(..., 2)`` xy -> heatmap-cell xy at ``stride`` (see module docstring); ndarray or tensor."""
    return (xy + 0.5) / stride - 0.5


def cells_to_pixels(uv: Any, stride: int) -> Any:
    """Heatmap-cell ``(..., 2)`` xy at ``stride`` -> input-pixel xy (inverse of :func:`pixels_to_cells`)."""
    return (uv + 0.5) * stride - 0.5


def as_numpy(x: Any) -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
    """A float32 ndarray of ``x`` (ndarray or torch tensor) and a function that turns results back into x's kind.

    Decoding is numpy only, so prediction through ONNX Runtime runs without torch; a tensor caller (validation in
    training, tests) gets float32 tensors back on its own device (``Tensor.new_tensor``, no torch import needed).
    """
    if isinstance(x, np.ndarray):
        return np.asarray(x, dtype=np.float32), lambda a: a
    t = x.detach().float()
    return t.cpu().numpy(), t.new_tensor


def heatmap_argmax(heatmaps: Any) -> tuple[Any, Any]:
    """Integer peak location and value of every map.

    Args:
        heatmaps: (B, K, h, w) ndarray or tensor (a tensor stays on its device: the network grades at the argmax
            in every training step).

    Returns:
        ``(uv, peaks)`` of the input's kind: uv (B, K, 2) float xy of the argmax cell (first one on ties), in
        heatmap cells; peaks (B, K) the maximum.
    """
    b, k, _, w = heatmaps.shape
    if isinstance(heatmaps, np.ndarray):
        flat_maps = heatmaps.reshape(b, k, -1)
        flat = flat_maps.argmax(axis=-1)
        peaks = np.take_along_axis(flat_maps, flat[..., None], axis=-1)[..., 0]
        return np.stack([flat % w, flat // w], axis=-1).astype(heatmaps.dtype), peaks
    import torch  # a tensor was passed in, so torch is loaded already; this module itself does not need it

    with torch.no_grad():
        peaks, flat = heatmaps.reshape(b, k, -1).max(dim=-1)
        uv = torch.stack([flat % w, torch.div(flat, w, rounding_mode="floor")], dim=-1).to(heatmaps.dtype)
    return uv, peaks


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


class HeatmapCodec:
    """Encode keypoints to Gaussian heatmaps and decode heatmaps back to keypoints (frame: module docstring).

    Args:
        input_size: (H, W) of the network input in pixels; each must be divisible by ``stride``.
        stride: heatmap stride w.r.t. the input (1, 2, 4, ...).
        sigma: Gaussian sigma in heatmap cells.
        refine: sub-cell refinement: "dark", "soft_argmax" or "none" (argmax cell centre).
        blur_sigma: DARK modulation sigma in cells (default: ``sigma``); soft-argmax window radius is
            ``ceil(3 * sigma)`` cells.
    """

    def __init__(
        self,
        input_size: tuple[int, int],
        stride: int = 4,
        sigma: float = 2.0,
        refine: str = "dark",
        blur_sigma: float | None = None,
    ) -> None:
        height, width = (int(v) for v in input_size)
        if stride < 1 or height % stride or width % stride:
            raise ValueError(f"HeatmapCodec: input size {(height, width)} is not divisible by stride {stride}")
        if refine not in REFINE_METHODS:
            raise ValueError(f"HeatmapCodec: unknown refine {refine!r}; choose one of {REFINE_METHODS}")
        if sigma <= 0:
            raise ValueError(f"HeatmapCodec: sigma must be positive, got {sigma}")
        self.input_size = (height, width)
        self.stride = int(stride)
        self.sigma = float(sigma)
        self.refine = refine
        self.blur_sigma = float(blur_sigma) if blur_sigma is not None else self.sigma

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """(h, w) of the heatmaps."""
        return self.input_size[0] // self.stride, self.input_size[1] // self.stride

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian target heatmaps for one image.

        Args:
            keypoints: (K, 2) xy in input pixels.
            visible: (K,) bool. Invisible keypoints, non-finite ones and those outside the image get an all-zero
                map and weight 0 (the loss ignores them).

        Returns:
            ``(heatmaps (K, h, w) float32, weights (K,) float32)``.
        """
        kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
        vis = np.asarray(visible, dtype=bool).reshape(-1)
        if vis.shape[0] != kp.shape[0]:
            raise ValueError(f"HeatmapCodec.encode: {kp.shape[0]} keypoints but {vis.shape[0]} visibility flags")
        h, w = self.heatmap_size
        height, width = self.input_size
        finite = np.isfinite(kp).all(axis=1)
        safe = np.where(finite[:, None], kp, 0.0)
        inside = (
            (safe[:, 0] >= -0.5) & (safe[:, 0] <= width - 0.5) & (safe[:, 1] >= -0.5) & (safe[:, 1] <= height - 0.5)
        )
        weights = (vis & finite & inside).astype(np.float32)
        uv = pixels_to_cells(safe, self.stride)
        gx = np.exp(-((np.arange(w)[None, :] - uv[:, :1]) ** 2) / (2 * self.sigma**2))  # (K, w)
        gy = np.exp(-((np.arange(h)[None, :] - uv[:, 1:]) ** 2) / (2 * self.sigma**2))  # (K, h)
        heatmaps = gy[:, :, None] * gx[:, None, :] * weights[:, None, None]
        return heatmaps.astype(np.float32), weights

    def decode(self, heatmaps: Any) -> tuple[Any, Any]:
        """Keypoints from a batch of heatmaps (numpy; no gradient).

        Args:
            heatmaps: (B, K, h, w) ndarray or tensor (any device).

        Returns:
            ``(coords (B, K, 2) xy in input pixels, scores (B, K) heatmap peak values)``, float32 ndarrays for an
            ndarray input, else tensors on the input's device.
        """
        hm, back = as_numpy(heatmaps)
        if hm.ndim != 4:
            raise ValueError(f"HeatmapCodec.decode: expected (B, K, h, w) heatmaps, got shape {tuple(hm.shape)}")
        b, k, h, w = hm.shape
        uv, peaks = heatmap_argmax(hm)
        flat_uv = self.refine_cells(hm.reshape(b * k, h, w), uv.reshape(b * k, 2))
        coords = cells_to_pixels(flat_uv.reshape(b, k, 2), self.stride)  # inside the image: see refine_cells
        return back(coords.astype(np.float32)), back(peaks.astype(np.float32))

    def refine_cells(self, maps: Any, uv: Any) -> Any:
        """Sub-cell refinement of given integer cells (the argmax, or any other peak candidate).

        Args:
            maps: (N, h, w) heatmaps, ndarray or tensor.
            uv: (N, 2) integer cell xy (float) of a peak on each map, or (N, M, 2) several peaks per map.

        Returns:
            Refined xy (shaped like ``uv``, of the kind of ``maps``) in heatmap cells (the configured method; "none"
            returns ``uv``), clamped to the image extent ``[-0.5, w - 0.5] x [-0.5, h - 0.5]``: a refinement step
            on a border peak of a noisy map could otherwise leave the image.
        """
        maps_np, back = as_numpy(maps)
        uv_np = as_numpy(uv)[0]
        if self.refine == "dark":
            uv_np = refine_dark(maps_np, uv_np, self.blur_sigma)
        elif self.refine == "soft_argmax":
            m = uv_np.shape[1] if uv_np.ndim == 3 else 1
            flat_maps = np.repeat(maps_np, m, axis=0) if m > 1 else maps_np
            radius = max(1, math.ceil(3 * self.sigma))
            uv_np = refine_soft_argmax(flat_maps, uv_np.reshape(-1, 2), radius).reshape(uv_np.shape)
        h, w = maps_np.shape[-2:]
        clamped = np.stack([np.clip(uv_np[..., 0], -0.5, w - 0.5), np.clip(uv_np[..., 1], -0.5, h - 0.5)], axis=-1)
        return back(clamped.astype(np.float32))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for checkpoints (:meth:`from_dict` reads it back)."""
        return {
            "input_size": list(self.input_size),
            "stride": self.stride,
            "sigma": self.sigma,
            "refine": self.refine,
            "blur_sigma": self.blur_sigma,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeatmapCodec:
        """Rebuild from :meth:`to_dict` output; unknown keys fail naming them."""
        unknown = set(data) - {"input_size", "stride", "sigma", "refine", "blur_sigma"}
        if unknown:
            raise ValueError(f"HeatmapCodec.from_dict: unknown key(s) {sorted(unknown)}")
        return cls(tuple(data["input_size"]), **{k: v for k, v in data.items() if k != "input_size"})  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"HeatmapCodec({self.to_dict()})"


__all__ = [
    "REFINE_METHODS",
    "HeatmapCodec",
    "as_numpy",
    "cells_to_pixels",
    "heatmap_argmax",
    "pixels_to_cells",
    "refine_dark",
    "refine_soft_argmax",
]
