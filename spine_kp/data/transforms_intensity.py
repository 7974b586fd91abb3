"""Intensity augmentation with MONAI transforms, on images already normalized by ``normalize_intensity``.

Only changes that per-image normalization cannot undo are used (a linear brightness/contrast change would be
removed again by the z-score the predictor applies): bias field (coil inhomogeneity), gamma, a random
non-linear contrast curve (``RandHistogramShift``), Gaussian blur and Gaussian noise. The result is rescaled
to the mean and standard deviation the image had before, so training inputs keep the statistics that the
predictor's preprocessing produces.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import (
    RandAdjustContrast,
    RandBiasField,
    RandGaussianNoise,
    RandGaussianSmooth,
    RandHistogramShift,
    Randomizable,
)


class IntensityAugment:
    """Random intensity changes of a (C, H, W) image; the channels (neighbouring slices) change together.

    Args:
        bias_prob, bias_coeff: probability and coefficient range of a degree-3 polynomial log bias field.
        gamma_prob, gamma_range: probability and range of the gamma curve.
        contrast_prob, contrast_points: probability and (min, max) control points of a random contrast curve.
        blur_prob, blur_sigma: probability and sigma range (pixels) of a Gaussian blur.
        noise_prob, noise_std: probability and maximum standard deviation of additive Gaussian noise
            (in units of the normalized image, i.e. of its standard deviation).
    """

    def __init__(
        self,
        bias_prob: float,
        bias_coeff: tuple[float, float],
        gamma_prob: float,
        gamma_range: tuple[float, float],
        contrast_prob: float,
        contrast_points: tuple[int, int],
        blur_prob: float,
        blur_sigma: tuple[float, float],
        noise_prob: float,
        noise_std: float,
    ) -> None:
        self.bias = RandBiasField(degree=3, coeff_range=tuple(bias_coeff), prob=bias_prob)
        self.steps: list[Randomizable] = [
            RandAdjustContrast(prob=gamma_prob, gamma=tuple(gamma_range)),
            RandHistogramShift(num_control_points=tuple(contrast_points), prob=contrast_prob),
            RandGaussianSmooth(sigma_x=tuple(blur_sigma), sigma_y=tuple(blur_sigma), prob=blur_prob),
            RandGaussianNoise(prob=noise_prob, mean=0.0, std=noise_std),
        ]

    def set_random_state(self, seed: int) -> None:
        """Seed every MONAI transform from one integer (each gets its own stream)."""
        seeds = np.random.SeedSequence(seed).generate_state(len(self.steps) + 1)
        for t, s in zip([self.bias, *self.steps], seeds):
            t.set_random_state(seed=int(s))

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Augment a (C, H, W) float32 image; returns (C, H, W) float32 with the input's mean and std."""
        x = image.to(torch.float32)
        mean, std = x.mean(), x.std()
        floor = x.min()
        # the bias field multiplies the MR signal, which is non-negative: apply it above the background level
        x = torch.as_tensor(self.bias(x - floor)).as_subclass(torch.Tensor) + floor
        for t in self.steps:
            x = torch.as_tensor(t(x)).as_subclass(torch.Tensor)
        x = x.to(torch.float32)
        new_std = x.std()
        if not torch.isfinite(new_std) or new_std < 1e-6 or not torch.isfinite(std):
            return image.to(torch.float32)
        return (x - x.mean()) / new_std * std + mean
