"""Robust intensity normalization, numpy only (no torch), so every consumer normalizes the same way.

The network input (:func:`spine_kp.data.preprocess.prepare_slice`) and the landmark crops of the grading stage
(:mod:`spine_kp.grading.crops`) both clip an image to percentiles of the WHOLE image and z-score it with the
clipped image's mean and standard deviation. :func:`intensity_stats` computes those numbers once;
:func:`apply_intensity` applies them to any array cut from that image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_PERCENTILES: tuple[float, float] = (0.5, 99.5)


@dataclass(frozen=True)
class IntensityStats:
    """Clip range and z-score of one image: ``(clip(x, low, high) - mean) / std``; ``std`` 0 for a constant image.

    Attributes:
        low, high: clip limits (the image's percentiles), raw units.
        mean, std: of the clipped image, raw units.
        fill: replacement of non-finite pixels (median of the finite ones), raw units.
    """

    low: float
    high: float
    mean: float
    std: float
    fill: float = 0.0


def finite_pixels(pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """float32 copy of ``pixels`` with non-finite values replaced by the median of the finite ones (or 0).

    A corrupt pixel must not poison the statistics.

    Returns:
        (the cleaned array, the fill value used).
    """
    x = np.asarray(pixels, dtype=np.float32)
    finite = np.isfinite(x)
    if finite.all():
        return x, 0.0
    fill = float(np.median(x[finite])) if finite.any() else 0.0
    return np.where(finite, x, fill).astype(np.float32), fill


def intensity_stats(
    pixels: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES, eps: float = 1e-6
) -> IntensityStats:
    """Clip limits and z-score statistics of an image (any shape; all values pooled).

    Args:
        pixels: raw intensities, e.g. (H, W) or (C, H, W) (channels pooled, so neighbouring slices keep their
            relative brightness).
        percentiles: (low, high) clip percentiles.
        eps: a standard deviation below this counts as a constant image (``std`` becomes 0).
    """
    x, fill = finite_pixels(pixels)
    lo, hi = (float(v) for v in np.percentile(x, percentiles))
    clipped = np.clip(x, lo, hi)
    mean, std = float(clipped.mean()), float(clipped.std())
    return IntensityStats(lo, hi, mean, std if std >= eps else 0.0, fill)


def apply_intensity(values: np.ndarray, stats: IntensityStats) -> np.ndarray:
    """Normalize raw ``values`` (any shape, cut from the image ``stats`` describes) to float32.

    Non-finite values become ``stats.fill`` first; a constant image gives all zeros.
    """
    x = np.asarray(values, dtype=np.float32)
    x = np.where(np.isfinite(x), x, np.float32(stats.fill))
    if stats.std == 0.0:
        return np.zeros_like(x, dtype=np.float32)
    return ((np.clip(x, stats.low, stats.high) - stats.mean) / stats.std).astype(np.float32)


def normalize_intensity(
    pixels: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES, eps: float = 1e-6
) -> np.ndarray:
    """Robust per-image normalization: clip to percentiles, then z-score.

    The statistics are taken over all channels together so that neighbouring slices keep their relative
    brightness. A constant image becomes all zeros.

    Args:
        pixels: (C, H, W) raw intensities.
        percentiles: (low, high) clip percentiles.
        eps: standard deviations below this count as a constant image.

    Returns:
        (C, H, W) float32, zero mean and unit variance after clipping.
    """
    x = np.asarray(pixels, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"normalize_intensity expects (C, H, W), got shape {x.shape}")
    return apply_intensity(x, intensity_stats(x, percentiles, eps))


__all__ = [
    "DEFAULT_PERCENTILES",
    "IntensityStats",
    "apply_intensity",
    "finite_pixels",
    "intensity_stats",
    "normalize_intensity",
]
