"""The numpy letterbox resize equals torch's antialiased bilinear interpolation (what training used before)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spine_kp.data.preprocess import resize_bilinear


@pytest.mark.parametrize(
    ("shape", "size"),
    [((128, 128), (64, 64)), ((512, 384), (192, 144)), ((100, 77), (192, 148)), ((37, 53), (31, 60)), ((9, 9), (9, 4))],
)
def test_resize_equals_torch_antialiased_bilinear(shape: tuple[int, int], size: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0])
    image = (rng.normal(size=(2, *shape)) * 300).astype(np.float32)  # raw MR intensities
    expected = F.interpolate(torch.from_numpy(image)[None], size=size, mode="bilinear", align_corners=False,
                             antialias=True)[0].numpy()  # fmt: skip
    got = resize_bilinear(image, size)
    assert got.shape == (2, *size) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(image).max())


def test_resize_to_the_same_size_is_the_identity() -> None:
    image = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
    np.testing.assert_array_equal(resize_bilinear(image, (5, 7)), image)
