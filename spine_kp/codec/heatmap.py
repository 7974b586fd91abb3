"""Gaussian heatmap codec: training targets and inference decoding in one class (after mmpose ``MSRAHeatmap``).

Coordinate frame (the one convention of this module):
    Keypoints are ``(x, y)`` in input pixels, pixel centres at integer coordinates (pixel ``(r, c)`` is
    centred at ``x = c, y = r``; the image spans ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``).
    At stride ``s`` heatmap cell ``(i, j)`` covers input pixels ``[j*s, (j+1)*s) x [i*s, (i+1)*s)`` and so is
    centred at input pixel ``((j + 0.5) * s - 0.5, (i + 0.5) * s - 0.5)``. Conversions: :func:`pixels_to_cells`
    and :func:`cells_to_pixels`.

``sigma`` is in heatmap cells. Targets are unnormalised Gaussians (value 1 at the continuous centre).
Decoding takes the argmax cell and refines it to sub-cell precision, either with DARK (Zhang et al. 2020: a
second-order Taylor step on the log of the Gaussian-blurred heatmap) or with a local soft-argmax
(:mod:`spine_kp.codec.refine`; border points decode as precisely as interior ones).

Decoding is numpy (float32), so prediction through ONNX Runtime runs without torch; the methods also take torch
tensors and return tensors on the same device. Only :func:`heatmap_argmax` keeps a torch path, for the network's
own argmax in every training step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from spine_kp.codec.refine import refine_dark, refine_soft_argmax

REFINE_METHODS = ("dark", "soft_argmax", "none")


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
]
