"""Keypoint-aware training augmentation: configuration and the per-sample augmenter.

Geometric steps (:mod:`spine_kp.data.transforms_geometric`) move the keypoints exactly with the pixels;
intensity steps (:mod:`spine_kp.data.transforms_intensity`) use MONAI. Points that leave the image become
invisible. There is deliberately no vertical flip: it would reverse the cranio-caudal order of the levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from spine_kp.data.transforms_geometric import (
    SpatialTransform,
    centred_affine,
    crop_to_full,
    flip_columns,
    random_crop_box,
    random_displacement,
)
from spine_kp.data.transforms_intensity import IntensityAugment


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and magnitudes of the training augmentation (plain data, loadable from YAML).

    Geometric magnitudes are relative to the network input, so they do not depend on its size.

    Attributes:
        enabled: master switch; False gives the unaugmented samples.
        flip_prob: probability of the anterior-posterior flip (columns mirrored; never rows).
        affine_prob: probability of the random affine about the image centre.
        rotate_deg: rotation drawn from U(-rotate_deg, rotate_deg).
        scale_range: isotropic scale drawn from U(min, max).
        translate_frac: shift drawn from U(-f, f) times the image width / height.
        shear_deg: x-shear angle drawn from U(-shear_deg, shear_deg).
        elastic_prob: probability of the elastic deformation.
        elastic_grid: control points per side of the random displacement lattice.
        elastic_std_frac: standard deviation of the control displacements, fraction of min(H, W).
        crop_prob: probability of the crop around the spine (all visible keypoints kept, zoomed to full size).
        crop_margin_frac: (min, max) margin around the keypoints, fraction of the image size.
        crop_max_zoom: the crop never magnifies more than this.
        fov_cut_prob: probability of a smaller field of view at the same scale: everything outside a random window
            becomes background and the landmarks outside it become invisible (real series often end just below L5
            or start at L1, while phantoms always show the whole chain).
        fov_cut_frac: (min, max) window height and width, fractions of the input drawn independently.
        fov_cut_keep_caudal: probability that a cut keeps the most caudal visible landmark (the last in schema
            order, e.g. L5-S1) and ``fov_cut_caudal_margin`` (fraction of the height) below it: clinical series
            almost always show the sacrum, the anchor levels are counted from, while the top may end anywhere.
        fov_cut_caudal_margin: see ``fov_cut_keep_caudal``.
        bias_prob, bias_coeff: MR bias field (``RandBiasField`` coefficients range).
        gamma_prob, gamma_range: gamma curve (``RandAdjustContrast``).
        contrast_prob, contrast_points: random non-linear contrast curve (``RandHistogramShift``).
        blur_prob, blur_sigma: Gaussian blur sigma range in pixels (``RandGaussianSmooth``).
        noise_prob, noise_std: additive Gaussian noise, std in units of the image std (``RandGaussianNoise``).
    """

    enabled: bool = True
    flip_prob: float = 0.5
    affine_prob: float = 0.8
    rotate_deg: float = 10.0
    scale_range: tuple[float, float] = (0.85, 1.15)
    translate_frac: float = 0.05
    shear_deg: float = 5.0
    elastic_prob: float = 0.3
    elastic_grid: int = 5
    elastic_std_frac: float = 0.015
    crop_prob: float = 0.3
    crop_margin_frac: tuple[float, float] = (0.05, 0.25)
    crop_max_zoom: float = 2.0
    fov_cut_prob: float = 0.0
    fov_cut_frac: tuple[float, float] = (0.55, 1.0)
    fov_cut_keep_caudal: float = 0.0
    fov_cut_caudal_margin: float = 0.1
    bias_prob: float = 0.3
    bias_coeff: tuple[float, float] = (-0.05, 0.05)
    gamma_prob: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    contrast_prob: float = 0.2
    contrast_points: tuple[int, int] = (5, 10)
    blur_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.25, 1.0)
    noise_prob: float = 0.2
    noise_std: float = 0.05

    def __post_init__(self) -> None:
        for name in ("flip_prob", "affine_prob", "elastic_prob", "crop_prob", "fov_cut_prob", "fov_cut_keep_caudal",
                     "bias_prob",
                     "gamma_prob", "contrast_prob", "blur_prob", "noise_prob"):  # fmt: skip
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be in [0, 1], got {p}")
        if not 0.0 < self.fov_cut_frac[0] <= self.fov_cut_frac[1] <= 1.0:
            raise ValueError(f"AugmentConfig.fov_cut_frac must be (min, max) within (0, 1], got {self.fov_cut_frac}")
        for name in ("scale_range", "crop_margin_frac", "bias_coeff", "gamma_range", "contrast_points", "blur_sigma"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"AugmentConfig.{name} must be (min, max), got {(lo, hi)}")
        if self.scale_range[0] <= 0 or self.gamma_range[0] <= 0:
            raise ValueError("AugmentConfig: scale_range and gamma_range must be positive")
        if self.elastic_grid < 2:
            raise ValueError(f"AugmentConfig.elastic_grid must be >= 2, got {self.elastic_grid}")
        if self.crop_max_zoom < 1.0:
            raise ValueError(f"AugmentConfig.crop_max_zoom must be >= 1, got {self.crop_max_zoom}")


def sample_spatial(
    rng: np.random.Generator, cfg: AugmentConfig, size: tuple[int, int], keypoints: np.ndarray, visible: np.ndarray
) -> SpatialTransform:
    """Draw one composed spatial transform for an image of ``size`` (H, W) with these (K, 2) keypoints.

    Order (forward): crop around the visible keypoints, AP flip, random affine, elastic deformation.
    """
    h, w = size
    m = np.eye(3)
    if rng.random() < cfg.crop_prob:
        box = random_crop_box(rng, keypoints, visible, size, cfg.crop_margin_frac, cfg.crop_max_zoom)
        if box is not None:
            m = crop_to_full(box, size) @ m
    if rng.random() < cfg.flip_prob:
        m = flip_columns(w) @ m
    if rng.random() < cfg.affine_prob:
        shift = rng.uniform(-cfg.translate_frac, cfg.translate_frac, 2) * (w, h)
        m = (
            centred_affine(
                size,
                rotate_deg=rng.uniform(-cfg.rotate_deg, cfg.rotate_deg),
                scale=rng.uniform(*cfg.scale_range),
                shear_deg=rng.uniform(-cfg.shear_deg, cfg.shear_deg),
                shift=(float(shift[0]), float(shift[1])),
            )
            @ m
        )
    field = None
    if rng.random() < cfg.elastic_prob and cfg.elastic_std_frac > 0:
        field = random_displacement(rng, size, cfg.elastic_grid, cfg.elastic_std_frac * min(h, w))
    return SpatialTransform(matrix=m, size=(h, w), displacement=field)


def sample_fov_window(
    rng: np.random.Generator,
    cfg: AugmentConfig,
    size: tuple[int, int],
    keypoints: np.ndarray | None = None,
    visible: np.ndarray | None = None,
) -> tuple[int, int, int, int]:
    """A random window ``(top, left, bottom, right)`` (exclusive ends) in an image of ``size`` (H, W).

    With probability ``cfg.fov_cut_keep_caudal`` (and visible ``keypoints`` (K, 2) in cranio-caudal schema order)
    the window reaches ``cfg.fov_cut_caudal_margin`` below the most caudal visible keypoint and contains it.
    """
    h, w = size
    wh = max(1, int(round(h * rng.uniform(*cfg.fov_cut_frac))))
    ww = max(1, int(round(w * rng.uniform(*cfg.fov_cut_frac))))
    top, left = int(rng.integers(0, h - wh + 1)), int(rng.integers(0, w - ww + 1))
    if keypoints is not None and visible is not None and visible.any() and rng.random() < cfg.fov_cut_keep_caudal:
        x, y = keypoints[np.flatnonzero(visible)[-1]]
        bottom = min(h, int(np.ceil(y + 0.5 + cfg.fov_cut_caudal_margin * h)))  # lowest row the window must reach
        top = int(np.clip(min(top, int(np.floor(y))), max(0, bottom - wh), h - wh))
        left = int(np.clip(left, max(0, int(np.ceil(x)) + 1 - ww), min(max(0, int(np.floor(x))), w - ww)))
    return top, left, top + wh, left + ww


def cut_to_window(
    image: torch.Tensor, keypoints: np.ndarray, visible: np.ndarray, window: tuple[int, int, int, int]
) -> tuple[torch.Tensor, np.ndarray]:
    """Blank everything outside ``window`` (to the image minimum) and hide the keypoints outside it.

    Args:
        image: (C, H, W); keypoints: (K, 2) (x, y) input pixels; visible: (K,) bool.
        window: (top, left, bottom, right), exclusive ends.

    Returns:
        (C, H, W) image and the (K,) visibility.
    """
    top, left, bottom, right = window
    out = torch.full_like(image, float(image.min()))
    out[:, top:bottom, left:right] = image[:, top:bottom, left:right]
    x, y = keypoints[:, 0], keypoints[:, 1]
    inside = (x >= left - 0.5) & (x <= right - 0.5) & (y >= top - 0.5) & (y <= bottom - 0.5)
    return out, visible & inside


class Augmenter:
    """Applies an :class:`AugmentConfig` to (image, keypoints, visible) samples.

    Randomness comes from the generator passed to each call, so the caller decides how workers are seeded.
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        self.cfg = cfg
        self.intensity = IntensityAugment(
            bias_prob=cfg.bias_prob,
            bias_coeff=cfg.bias_coeff,
            gamma_prob=cfg.gamma_prob,
            gamma_range=cfg.gamma_range,
            contrast_prob=cfg.contrast_prob,
            contrast_points=cfg.contrast_points,
            blur_prob=cfg.blur_prob,
            blur_sigma=cfg.blur_sigma,
            noise_prob=cfg.noise_prob,
            noise_std=cfg.noise_std,
        )

    def __call__(
        self, rng: np.random.Generator, image: torch.Tensor, keypoints: np.ndarray, visible: np.ndarray
    ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """Augment one sample.

        Args:
            rng: random generator of this process.
            image: (C, H, W) float32 normalized image.
            keypoints: (K, 2) (x, y) in pixels of ``image``.
            visible: (K,) bool.

        Returns:
            (C, H, W) image, (K, 2) moved keypoints, (K,) visibility (False for points moved out of the image).
        """
        if not self.cfg.enabled:
            return image, keypoints, visible
        size = (int(image.shape[-2]), int(image.shape[-1]))
        spatial = sample_spatial(rng, self.cfg, size, keypoints, visible)
        image = spatial.warp(image)
        moved = spatial.move_points(keypoints).astype(np.float32)
        visible = visible & spatial.inside(moved)
        if self.cfg.fov_cut_prob > 0 and rng.random() < self.cfg.fov_cut_prob:
            window = sample_fov_window(rng, self.cfg, size, moved, visible)
            image, visible = cut_to_window(image, moved, visible, window)
        moved[~visible] = 0.0
        self.intensity.set_random_state(int(rng.integers(2**31)))
        return self.intensity(image), moved, visible
