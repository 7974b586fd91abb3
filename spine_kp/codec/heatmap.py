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
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

REFINE_METHODS = ("dark", "soft_argmax", "none")
_EPS = 1e-10


def pixels_to_cells(xy: torch.Tensor | np.ndarray, stride: int) -> torch.Tensor | np.ndarray:
    """Input-pixel ``(..., 2)`` xy -> heatmap-cell xy at ``stride`` (see module docstring)."""
    return (xy + 0.5) / stride - 0.5


def cells_to_pixels(uv: torch.Tensor | np.ndarray, stride: int) -> torch.Tensor | np.ndarray:
    """Heatmap-cell ``(..., 2)`` xy at ``stride`` -> input-pixel xy (inverse of :func:`pixels_to_cells`)."""
    return (uv + 0.5) * stride - 0.5


@torch.no_grad()
def heatmap_argmax(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer peak location and value of every map.

    Args:
        heatmaps: (B, K, h, w).

    Returns:
        ``(uv, peaks)``: uv (B, K, 2) float xy of the argmax cell, in heatmap cells; peaks (B, K) the maximum.
    """
    b, k, _, w = heatmaps.shape
    peaks, flat = heatmaps.reshape(b, k, -1).max(dim=-1)
    uv = torch.stack([flat % w, torch.div(flat, w, rounding_mode="floor")], dim=-1).to(heatmaps.dtype)
    return uv, peaks


def _gaussian_kernel1d(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _quad_extrapolate_last(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad the last axis by ``pad`` cells on both sides, continuing each edge with the parabola through its 3 cells."""
    if x.shape[-1] < 3:  # too short to fit a parabola: repeat the edge instead
        return torch.cat([x[..., :1].expand(*x.shape[:-1], pad), x, x[..., -1:].expand(*x.shape[:-1], pad)], dim=-1)
    t = -torch.arange(pad, 0, -1, dtype=x.dtype, device=x.device)  # -pad .. -1, outermost first
    c0, c1, c2 = (t - 1) * (t - 2) / 2, -t * (t - 2), t * (t - 1) / 2  # Lagrange weights for nodes 0, 1, 2

    def side(f0: torch.Tensor, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        return f0[..., None] * c0 + f1[..., None] * c1 + f2[..., None] * c2

    left = side(x[..., 0], x[..., 1], x[..., 2])
    right = side(x[..., -1], x[..., -2], x[..., -3]).flip(-1)
    return torch.cat([left, x, right], dim=-1)


def _extend(heatmaps: torch.Tensor, pad: int) -> torch.Tensor:
    """(N, h, w) -> (N, h + 2 pad, w + 2 pad): interior clamped to >= eps, border continued in the log domain."""
    logs = heatmaps.clamp_min(_EPS).log()
    hi = logs.amax(dim=(-2, -1), keepdim=True)
    ext = _quad_extrapolate_last(logs, pad)
    ext = _quad_extrapolate_last(ext.transpose(-1, -2), pad).transpose(-1, -2)
    # Clamping keeps noisy predicted maps from growing spurious peaks outside the image.
    ext = torch.minimum(ext.clamp_min(math.log(_EPS)), hi)
    return ext.exp()


def _gather(maps: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """maps (N, h, w), flat (N,) or (N, M) -> values at the flat indices, shaped like ``flat``."""
    n = maps.shape[0]
    return maps.reshape(n, -1).gather(1, flat.reshape(n, -1)).reshape(flat.shape)


def refine_dark(heatmaps: torch.Tensor, uv: torch.Tensor, blur_sigma: float) -> torch.Tensor:
    """DARK sub-cell refinement: offset = -H^-1 g of the log of the blurred heatmap at the argmax cell.

    Args:
        heatmaps: (N, h, w).
        uv: (N, 2) integer argmax cell xy (float tensor), or (N, M, 2) several peak cells per map (the map is
            blurred once for all of them).
        blur_sigma: sigma (cells) of the Gaussian modulation that smooths predicted maps before the Taylor step.

    Returns:
        Refined xy in heatmap cells, shaped like ``uv``.
    """
    n, h, w = heatmaps.shape
    kernel = _gaussian_kernel1d(blur_sigma, heatmaps.dtype, heatmaps.device)
    radius = kernel.numel() // 2
    ext = _extend(heatmaps, radius + 1)[:, None]  # (N, 1, h + 2r + 2, w + 2r + 2)
    blurred = F.conv2d(ext, kernel.view(1, 1, 1, -1))
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1))[:, 0]  # (N, h + 2, w + 2): one spare cell per side
    logs = blurred.clamp_min(_EPS).log()
    c = logs[:, 1:-1, 1:-1]
    dx = (logs[:, 1:-1, 2:] - logs[:, 1:-1, :-2]) / 2
    dy = (logs[:, 2:, 1:-1] - logs[:, :-2, 1:-1]) / 2
    dxx = logs[:, 1:-1, 2:] - 2 * c + logs[:, 1:-1, :-2]
    dyy = logs[:, 2:, 1:-1] - 2 * c + logs[:, :-2, 1:-1]
    dxy = (logs[:, 2:, 2:] - logs[:, 2:, :-2] - logs[:, :-2, 2:] + logs[:, :-2, :-2]) / 4
    flat = (uv[..., 1] * w + uv[..., 0]).long()
    gx, gy, hxx, hyy, hxy = (_gather(t, flat) for t in (dx, dy, dxx, dyy, dxy))
    det = hxx * hyy - hxy * hxy
    ok = (det > 1e-12) & (hxx < 0)  # a proper maximum; otherwise keep the integer peak
    safe = torch.where(ok, det, torch.ones_like(det))
    ox = torch.where(ok, -(hyy * gx - hxy * gy) / safe, torch.zeros_like(det))
    oy = torch.where(ok, -(hxx * gy - hxy * gx) / safe, torch.zeros_like(det))
    return uv + torch.stack([ox, oy], dim=-1).clamp(-1.0, 1.0)


def refine_soft_argmax(heatmaps: torch.Tensor, uv: torch.Tensor, radius: int) -> torch.Tensor:
    """Local soft-argmax: the centroid of the (non-negative) heatmap in a window around the argmax cell.

    Args:
        heatmaps: (N, h, w).
        uv: (N, 2) integer argmax cell xy (float tensor).
        radius: window half-size in cells.

    Returns:
        (N, 2) refined xy in heatmap cells.
    """
    ext = _extend(heatmaps, radius)  # window never leaves the (extended) map
    size = 2 * radius + 1
    offs = torch.arange(size, device=heatmaps.device)
    rows = uv[:, 1].long()[:, None] + offs  # (N, size) in extended coordinates
    cols = uv[:, 0].long()[:, None] + offs
    n = heatmaps.shape[0]
    win = ext[torch.arange(n, device=ext.device)[:, None, None], rows[:, :, None], cols[:, None, :]]  # (N, S, S)
    win = (win - win.amin(dim=(-2, -1), keepdim=True)).clamp_min(0)  # remove the pedestal
    total = win.sum(dim=(-2, -1)).clamp_min(_EPS)
    d = (offs - radius).to(heatmaps.dtype)
    ox = (win.sum(dim=-2) * d).sum(-1) / total
    oy = (win.sum(dim=-1) * d).sum(-1) / total
    return uv + torch.stack([ox, oy], dim=-1)


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

    def decode(
        self, heatmaps: torch.Tensor | np.ndarray
    ) -> tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]:
        """Keypoints from a batch of heatmaps (no gradient).

        Args:
            heatmaps: (B, K, h, w) tensor (any device) or ndarray.

        Returns:
            ``(coords (B, K, 2) xy in input pixels, scores (B, K) heatmap peak values)``, as tensors on the input's
            device for a tensor input, else as float32 ndarrays.
        """
        is_numpy = isinstance(heatmaps, np.ndarray)
        hm = torch.from_numpy(np.asarray(heatmaps)) if is_numpy else heatmaps
        if hm.ndim != 4:
            raise ValueError(f"HeatmapCodec.decode: expected (B, K, h, w) heatmaps, got shape {tuple(hm.shape)}")
        with torch.no_grad():
            hm = hm.detach().float()
            b, k, h, w = hm.shape
            uv, peaks = heatmap_argmax(hm)
            flat_uv = self.refine_cells(hm.reshape(b * k, h, w), uv.reshape(b * k, 2))
            coords = cells_to_pixels(flat_uv.reshape(b, k, 2), self.stride)  # inside the image: see refine_cells
        if is_numpy:
            return coords.numpy().astype(np.float32), peaks.numpy().astype(np.float32)
        return coords, peaks

    def refine_cells(self, maps: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        """Sub-cell refinement of given integer cells (the argmax, or any other peak candidate).

        Args:
            maps: (N, h, w) heatmaps.
            uv: (N, 2) integer cell xy (float tensor) of a peak on each map, or (N, M, 2) several peaks per map.

        Returns:
            Refined xy (shaped like ``uv``) in heatmap cells (the configured method; "none" returns ``uv``),
            clamped to the image extent ``[-0.5, w - 0.5] x [-0.5, h - 0.5]``: a refinement step on a border
            peak of a noisy map could otherwise leave the image.
        """
        with torch.no_grad():
            maps, uv = maps.detach().float(), uv.float()
            if self.refine == "dark":
                uv = refine_dark(maps, uv, self.blur_sigma)
            elif self.refine == "soft_argmax":
                m = uv.shape[1] if uv.ndim == 3 else 1
                flat_maps = maps.repeat_interleave(m, dim=0) if m > 1 else maps
                uv = refine_soft_argmax(flat_maps, uv.reshape(-1, 2), max(1, math.ceil(3 * self.sigma))).reshape(
                    uv.shape
                )
            h, w = maps.shape[-2:]
            return torch.stack([uv[..., 0].clamp(-0.5, w - 0.5), uv[..., 1].clamp(-0.5, h - 0.5)], dim=-1)

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
    "cells_to_pixels",
    "heatmap_argmax",
    "pixels_to_cells",
    "refine_dark",
    "refine_soft_argmax",
]
