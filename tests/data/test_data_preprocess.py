"""Preprocessing shared with the predictor: normalization, letterbox geometry, slice preparation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spine_kp.data.preprocess import Geometry, fit_to_size, normalize_intensity, prepare_slice, to_original
from spine_kp.types import Slice


def blob(shape: tuple[int, int], xy: tuple[float, float], sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.exp(-((xx - xy[0]) ** 2 + (yy - xy[1]) ** 2) / (2 * sigma**2)).astype(np.float32)


def centroid(img: np.ndarray) -> np.ndarray:
    w = np.clip(img - 0.01 * img.max(), 0, None)  # ignore the faint tail that padding would cut
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    return np.array([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])


def test_normalize_is_robust_zscore_over_all_channels() -> None:
    rng = np.random.default_rng(0)
    img = rng.normal(100.0, 10.0, size=(3, 64, 64)).astype(np.float32)
    img[1] += 20.0  # a brighter neighbour slice must stay brighter
    out = normalize_intensity(img)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert abs(out.mean()) < 1e-4 and abs(out.std() - 1.0) < 1e-3
    assert out[1].mean() > out[0].mean() + 1.0
    # one extreme pixel is clipped at the 99.5th percentile, so it barely moves the rest
    spiked = img.copy()
    spiked[0, 0, 0] = 1e6
    out2 = normalize_intensity(spiked)
    assert out2[0, 0, 0] < 5.0
    np.testing.assert_allclose(out2[:, 1:, 1:], out[:, 1:, 1:], atol=0.02)


def test_normalize_constant_and_nan() -> None:
    assert not normalize_intensity(np.full((1, 8, 8), 7.0)).any()
    img = np.arange(64, dtype=np.float32).reshape(1, 8, 8)
    img[0, 3, 3] = np.nan
    out = normalize_intensity(img)
    assert np.isfinite(out).all()
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        normalize_intensity(np.zeros((8, 8)))


@pytest.mark.parametrize("shape", [(96, 160), (200, 120), (64, 64), (40, 50)])
def test_fit_to_size_letterbox_maps_points_exactly(shape: tuple[int, int]) -> None:
    size = (64, 64)
    xy = (shape[1] * 0.37, shape[0] * 0.61)
    img, geom = fit_to_size(blob(shape, xy, sigma=max(shape) / 40)[None], size, spacing=(0.5, 0.6))
    assert img.shape == (1, 64, 64) and img.dtype == np.float32
    assert geom.orig_shape == shape and geom.input_shape == size
    # aspect preserved: equal scales up to the rounding of the resized size (< 1 px over the image)
    assert abs(geom.scale_x * shape[1] - geom.scale_y * shape[1]) < 1.0
    # the blob's centre moves exactly as Geometry says
    np.testing.assert_allclose(centroid(img[0]), geom.to_input(np.array(xy)), atol=0.05)
    # round trip is exact
    pts = np.array([[0.0, 0.0], [shape[1] - 1.0, shape[0] - 1.0], xy])
    np.testing.assert_allclose(geom.to_original(geom.to_input(pts)), pts, atol=1e-9)
    np.testing.assert_allclose(geom.input_spacing, (0.5 / geom.scale_y, 0.6 / geom.scale_x))


def test_fit_to_size_pads_with_background_centred() -> None:
    img = np.ones((1, 32, 64), np.float32)
    img[0, :, :] = 5.0
    img[0, 0, 0] = 1.0
    out, geom = fit_to_size(img, (64, 64))
    assert geom.scale_x == 1.0 and geom.scale_y == 1.0 and geom.offset_y == 16.0
    assert (out[0, :16] == 1.0).all() and (out[0, 48:] == 1.0).all()  # padding = image minimum
    assert out[0, 16, 0] == 1.0 and out[0, 20, 5] == 5.0


def test_geometry_numpy_and_torch_agree() -> None:
    g = Geometry(scale_x=0.5, scale_y=0.25, offset_x=3.0, offset_y=-1.0, orig_shape=(10, 20), spacing=(1.0, 2.0))
    pts = np.array([[[4.0, 8.0], [0.0, 0.0]]])
    t = torch.tensor(pts, dtype=torch.float32)
    np.testing.assert_allclose(g.to_input(pts), [[[5.0, 1.0], [3.0, -1.0]]])
    assert isinstance(g.to_input(t), torch.Tensor) and g.to_input(t).dtype == torch.float32
    np.testing.assert_allclose(g.to_original(g.to_input(t)).numpy(), pts)
    np.testing.assert_allclose(g.to_mm(g.to_input(pts)), pts * [2.0, 1.0])


def test_to_original_batch_uses_each_geometry() -> None:
    g1 = Geometry(1.0, 1.0, 0.0, 0.0, (8, 8))
    g2 = Geometry(2.0, 4.0, 1.0, 2.0, (8, 8))
    coords = torch.tensor([[[3.0, 3.0]], [[3.0, 6.0]]])
    out = to_original(coords, [g1, g2])
    np.testing.assert_allclose(out.numpy(), [[[3.0, 3.0]], [[1.0, 1.0]]])
    np.testing.assert_allclose(to_original(coords.numpy(), g2), [[[1.0, 0.25]], [[1.0, 1.0]]])
    with pytest.raises(ValueError, match="2 coordinate sets but 1"):
        to_original(coords, [g1])


def _slice(stack: np.ndarray | None, pixels: np.ndarray) -> Slice:
    return Slice(pixels=pixels, spacing=(0.7, 0.7), study_uid="1.2", series_uid="1.2.3", instance_uid="1.2.3.4",
                 z_index=4, num_slices=9, stack=stack)  # fmt: skip


def test_prepare_slice_channels_and_geometry() -> None:
    rng = np.random.default_rng(1)
    stack = rng.normal(size=(5, 48, 96)).astype(np.float32) * 10 + np.arange(5)[:, None, None] * 5
    slc = _slice(stack, stack[2])
    image, geom = prepare_slice(slc, (64, 64), neighbours=1)
    assert isinstance(image, torch.Tensor) and image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert geom.spacing == (0.7, 0.7) and geom.orig_shape == (48, 96)
    # channels ordered by position: the brighter later slices stay brighter after normalization
    assert image[0].mean() < image[1].mean() < image[2].mean()
    single, _ = prepare_slice(slc, (64, 64), neighbours=0)
    assert single.shape == (1, 64, 64)
    with pytest.raises(ValueError, match="load it with neighbours=1"):
        prepare_slice(_slice(None, stack[2]), (64, 64), neighbours=1)


# ---------------------------------------------------------------- target spacing (mm per input pixel)
def _bar_image(fov_mm: float, spacing: float, bar_mm: float = 30.0) -> np.ndarray:
    """(1, H, W) image of a ``bar_mm`` tall bright bar centred in a square ``fov_mm`` field of view."""
    n = int(round(fov_mm / spacing))
    img = np.zeros((1, n, n), np.float32)
    half = int(round(bar_mm / spacing / 2))
    img[0, n // 2 - half : n // 2 + half, n // 2 - 2 : n // 2 + 2] = 1.0
    return img


@pytest.mark.parametrize("fov, spacing", [(220.0, 1.0), (300.0, 0.6), (280.0, 0.73)])
def test_target_spacing_gives_anatomy_one_size_whatever_the_field_of_view(fov: float, spacing: float) -> None:
    out, geom = fit_to_size(_bar_image(fov, spacing), (192, 192), spacing=(spacing, spacing), target_spacing=1.6)
    assert geom.input_spacing == pytest.approx((1.6, 1.6), rel=0.01)
    rows = np.nonzero(out[0].max(axis=1) > 0.5)[0]
    assert rows.max() - rows.min() + 1 == pytest.approx(30.0 / 1.6, abs=1.5)  # 30 mm is ~19 input pixels
    # the mapping stays exact both ways
    pts = np.array([[10.0, 20.0], [50.5, 100.25]])
    np.testing.assert_allclose(geom.to_original(geom.to_input(pts)), pts, atol=1e-9)


def test_target_spacing_shrinks_a_field_of_view_that_does_not_fit() -> None:
    img = _bar_image(420.0, 0.82)  # 420 mm > 192 px * 1.6 mm
    out, geom = fit_to_size(img, (192, 192), spacing=(0.82, 0.82), target_spacing=1.6)
    assert out.shape == (1, 192, 192)
    assert geom.input_spacing[0] == pytest.approx(420.0 / 192, rel=0.02)
    plain, g2 = fit_to_size(img, (192, 192), spacing=(0.82, 0.82))
    assert geom.scale_x == g2.scale_x


def test_target_spacing_needs_the_pixel_spacing() -> None:
    with pytest.raises(ValueError, match="spacing"):
        fit_to_size(_bar_image(220.0, 1.0), (64, 64), target_spacing=1.6)
