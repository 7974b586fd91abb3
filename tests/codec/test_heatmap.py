"""HeatmapCodec: pixel-centre convention, masking, encode -> decode round trips (also at the border), batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spine_kp.codec.heatmap import HeatmapCodec, cells_to_pixels, heatmap_argmax, pixels_to_cells

H, W = 96, 64


def _random_points(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sub-pixel points over the whole image extent, a third of them within 1.5 px of an edge or corner."""
    pts = np.stack([rng.uniform(-0.5, W - 0.5, n), rng.uniform(-0.5, H - 0.5, n)], axis=1)
    m = n // 3
    pts[:m, 0] = np.where(rng.random(m) < 0.5, rng.uniform(-0.5, 1.0, m), rng.uniform(W - 2.0, W - 0.5, m))
    pts[m // 2 : m, 1] = rng.uniform(-0.5, 1.0, m - m // 2)  # some of them near a corner too
    return pts


@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize("refine", ["dark", "soft_argmax"])
@pytest.mark.parametrize("sigma", [1.5, 2.0, 3.0])
def test_round_trip_error_below_a_tenth_of_a_pixel(stride: int, refine: str, sigma: float) -> None:
    rng = np.random.default_rng(stride * 100 + int(sigma * 10))
    codec = HeatmapCodec((H, W), stride=stride, sigma=sigma, refine=refine)
    pts = _random_points(rng, 60)
    heatmaps, weights = codec.encode(pts, np.ones(len(pts), bool))
    coords, scores = codec.decode(heatmaps[None])
    err = np.linalg.norm(coords[0] - pts, axis=1)
    assert weights.min() == 1.0
    assert err.max() < 0.1, f"worst point {pts[err.argmax()]} decoded {coords[0, err.argmax()]}"
    assert np.all((scores > 0.5) & (scores <= 1.0))


def test_border_points_need_the_log_extrapolation() -> None:
    """A point outside the outermost cell centre decodes beyond it (plain Taylor/centroid would stick at the cell)."""
    codec = HeatmapCodec((H, W), stride=4, sigma=2.0)
    pts = np.array([[-0.4, 50.0], [30.0, H - 0.6]])
    coords, _ = codec.decode(codec.encode(pts, np.ones(2, bool))[0][None])
    assert np.abs(coords[0] - pts).max() < 0.05
    assert coords[0, 0, 0] < 1.0  # cell 0 is centred at x = 1.5 at stride 4


def test_pixel_centre_convention() -> None:
    codec = HeatmapCodec((H, W), stride=4, sigma=2.0)
    i, j = 5, 7
    pt = np.array([[(j + 0.5) * 4 - 0.5, (i + 0.5) * 4 - 0.5]])  # the centre of cell (i, j)
    heatmaps, _ = codec.encode(pt, np.array([True]))
    assert heatmaps.shape == (1, H // 4, W // 4)
    assert np.unravel_index(heatmaps[0].argmax(), heatmaps[0].shape) == (i, j)
    assert heatmaps[0, i, j] == pytest.approx(1.0)
    assert np.allclose(pixels_to_cells(pt, 4), [[j, i]])
    assert np.allclose(cells_to_pixels(pixels_to_cells(pt, 4), 4), pt)


def test_refine_none_returns_the_argmax_cell_centre() -> None:
    codec = HeatmapCodec((H, W), stride=4, sigma=2.0, refine="none")
    pt = np.array([[21.3, 40.9]])
    coords, _ = codec.decode(codec.encode(pt, np.array([True]))[0][None])
    cell = np.round(pixels_to_cells(pt, 4))
    assert np.allclose(coords[0], cells_to_pixels(cell, 4))


def test_invisible_outside_and_nan_points_are_masked() -> None:
    codec = HeatmapCodec((H, W), stride=2, sigma=2.0)
    pts = np.array([[10.0, 10.0], [20.0, 30.0], [W + 3.0, 10.0], [np.nan, 5.0], [-0.5, -0.5]])
    vis = np.array([True, False, True, True, True])
    heatmaps, weights = codec.encode(pts, vis)
    assert heatmaps.dtype == np.float32 and weights.dtype == np.float32
    assert weights.tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert heatmaps[0].max() > 0.9 and heatmaps[4].max() > 0.5
    assert not heatmaps[1:4].any()


def test_encode_rejects_mismatched_visibility() -> None:
    codec = HeatmapCodec((H, W), stride=4)
    with pytest.raises(ValueError, match="visibility"):
        codec.encode(np.zeros((3, 2)), np.ones(2, bool))


def test_decode_batch_tensor_and_ndarray() -> None:
    rng = np.random.default_rng(7)
    codec = HeatmapCodec((H, W), stride=4, sigma=2.0)
    pts = np.stack([_random_points(rng, 5) for _ in range(3)])  # (B, K, 2), different points per item
    maps = np.stack([codec.encode(p, np.ones(5, bool))[0] for p in pts])  # (3, 5, h, w)
    coords_np, scores_np = codec.decode(maps)
    coords_t, scores_t = codec.decode(torch.from_numpy(maps))
    assert isinstance(coords_np, np.ndarray) and coords_np.shape == (3, 5, 2) and scores_np.shape == (3, 5)
    assert isinstance(coords_t, torch.Tensor) and coords_t.shape == (3, 5, 2)
    assert np.abs(coords_np - pts).max() < 0.1
    assert np.allclose(coords_t.numpy(), coords_np)
    assert np.allclose(scores_np, maps.reshape(3, 5, -1).max(-1))


def test_decode_of_noise_stays_finite_and_inside_the_image() -> None:
    codec = HeatmapCodec((H, W), stride=4, sigma=2.0)
    torch.manual_seed(0)
    noise = torch.randn(4, 6, H // 4, W // 4)
    noise[0, 0] = 0.0  # a flat map has no proper maximum
    coords, scores = codec.decode(noise)
    assert torch.isfinite(coords).all()
    assert coords[..., 0].min() >= -0.5 and coords[..., 0].max() <= W - 0.5
    assert coords[..., 1].min() >= -0.5 and coords[..., 1].max() <= H - 0.5
    assert torch.allclose(scores, noise.flatten(2).max(-1).values)


def test_heatmap_argmax() -> None:
    maps = torch.zeros(2, 3, 8, 10)
    maps[1, 2, 6, 3] = 2.5
    uv, peaks = heatmap_argmax(maps)
    assert uv[1, 2].tolist() == [3.0, 6.0] and peaks[1, 2].item() == 2.5


def test_dict_round_trip_and_validation() -> None:
    codec = HeatmapCodec((128, 96), stride=2, sigma=1.5, refine="soft_argmax")
    again = HeatmapCodec.from_dict(codec.to_dict())
    assert again.to_dict() == codec.to_dict() and again.heatmap_size == (64, 48)
    with pytest.raises(ValueError, match="unknown key"):
        HeatmapCodec.from_dict({**codec.to_dict(), "typo": 1})
    with pytest.raises(ValueError, match="divisible"):
        HeatmapCodec((100, 96), stride=8)
    with pytest.raises(ValueError, match="refine"):
        HeatmapCodec((96, 96), refine="magic")


def test_refine_cells_refines_any_peak_candidate_and_stays_inside() -> None:
    codec = HeatmapCodec((H, W), stride=4, sigma=2.0)
    pts = np.array([[10.3, 20.7], [50.2, 70.9]])  # two peaks drawn on one map
    maps = codec.encode(pts, np.ones(2, bool))[0].max(axis=0, keepdims=True)
    maps_t = torch.from_numpy(maps).expand(2, -1, -1)
    cells = torch.from_numpy(np.round(pixels_to_cells(pts, 4))).float()
    refined = cells_to_pixels(codec.refine_cells(maps_t, cells), 4)
    assert np.abs(refined.numpy() - pts).max() < 0.1  # the second (non-argmax) peak is refined too
    # A map rising exponentially into the corner has its extrapolated "peak" outside the image.
    i, j = torch.meshgrid(torch.arange(H // 4.0), torch.arange(W // 4.0), indexing="ij")
    corner = torch.exp(-0.5 * (i + j))[None]
    for refine in ("dark", "soft_argmax"):
        uv = HeatmapCodec((H, W), stride=4, refine=refine).refine_cells(corner, torch.zeros(1, 2))
        assert torch.allclose(uv, torch.full((1, 2), -0.5))
