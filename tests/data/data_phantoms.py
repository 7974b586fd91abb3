"""A tiny in-memory sagittal spine phantom with a structure label mask (for augmentation tests)."""

from __future__ import annotations

import math

import numpy as np

BODY, DISC = 1, 2


def spine_phantom(
    size: int = 128, levels: int = 6, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vertebral bodies and discs stacked along a lordotic curve.

    Returns:
        image (1, H, W) float32, label mask (H, W) int64 (0 background, BODY, DISC), keypoints (2*levels, 2)
        (x, y) centres in cranio-caudal order (body, disc, body, disc, ...), and their kinds (2*levels,) of
        BODY / DISC.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    label = np.zeros((size, size), np.int64)
    body_h, disc_h, width = 0.11 * size, 0.045 * size, 0.22 * size
    step = body_h + disc_h
    y0 = 0.5 * size - levels * step / 2 + body_h / 2
    centres, kinds = [], []
    for i in range(2 * levels):
        is_body = i % 2 == 0
        y = y0 + (i // 2) * step + (0 if is_body else (body_h + disc_h) / 2)
        x = 0.5 * size + 0.06 * size * math.sin(math.pi * (y / size - 0.2))  # lordosis
        tilt = math.radians(8.0 * math.cos(math.pi * y / size))
        u = (xx - x) * math.cos(tilt) + (yy - y) * math.sin(tilt)
        v = -(xx - x) * math.sin(tilt) + (yy - y) * math.cos(tilt)
        half_h = (body_h if is_body else disc_h) / 2
        inside = (np.abs(u) <= width / 2) & (np.abs(v) <= half_h)
        label[inside & (label == 0)] = BODY if is_body else DISC
        centres.append((x, y))
        kinds.append(BODY if is_body else DISC)
    image = np.where(label == BODY, 0.6, np.where(label == DISC, 1.0, 0.1))
    image = image + rng.normal(0.0, 0.05, size=image.shape)
    return image[None].astype(np.float32), label, np.array(centres), np.array(kinds)
