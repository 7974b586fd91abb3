"""Crop geometry: a bright dot at a known mm offset from the point lands at the expected crop pixel."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from spine_kp.data.normalization import intensity_stats, normalize_intensity
from spine_kp.grading.crops import extract_crops, spine_axis_angles

S, WINDOW = 41, 41.0  # 1 mm per crop pixel; the point sits on crop pixel (20, 20)
C = (S - 1) // 2


def _noise_image(shape, seed=0, value=1000.0):
    """Noise around 10 with a bright band along the bottom rows (far from every crop), so that the 99.5th
    percentile clip sits at ``value`` and a dot of that value keeps standing out after normalization."""
    img = 10.0 + np.random.default_rng(seed).normal(0, 1.0, shape).astype(np.float32)
    img[-10:] = value
    return img


def _dot_image(shape, at_xy, value=1000.0):
    img = _noise_image(shape, value=value)
    img[at_xy[1], at_xy[0]] = value
    return img


def _brightest(crop):
    r, c = np.unravel_index(int(np.argmax(crop)), crop.shape)
    return int(r), int(c)


def _centroid(crop):
    w = crop - np.median(crop)
    w = np.where(w > 0.1 * w.max(), w, 0.0)  # the dot only, not the background noise
    rows, cols = np.indices(crop.shape)
    return float((w * rows).sum() / w.sum()), float((w * cols).sum() / w.sum())


@pytest.mark.parametrize(
    ("spacing", "dot_px", "expected_rc"),
    [
        ((1.0, 1.0), (6, 3), (C + 3, C + 6)),  # 6 mm right, 3 mm down
        ((0.5, 1.0), (6, 6), (C + 3, C + 6)),  # anisotropic: 6 rows of 0.5 mm are 3 mm
        ((1.0, 0.5), (-8, 5), (C + 5, C - 4)),  # 8 columns of 0.5 mm to the left are 4 mm
    ],
)
def test_dot_lands_at_its_mm_offset(spacing, dot_px, expected_rc):
    point = np.array([[60.0, 50.0]])
    img = _dot_image((120, 130), (60 + dot_px[0], 50 + dot_px[1]))
    crop = extract_crops(img, point, spacing, S, WINDOW)[0]
    assert crop.shape == (S, S) and crop.dtype == np.float32
    assert _brightest(crop) == expected_rc


def test_rotation_by_a_quarter_turn_maps_right_to_up():
    """theta = 90 deg: crop-down is image +x, crop-right is image -y (a rotation, never a mirror)."""
    img = _dot_image((120, 130), (60 + 6, 50 + 3))  # 6 mm right, 3 mm down in the image
    crop = extract_crops(img, np.array([[60.0, 50.0]]), (1.0, 1.0), S, WINDOW, angles=np.array([math.pi / 2]))[0]
    assert _brightest(crop) == (C + 6, C - 3)  # u = d . right = -3, v = d . down = 6


def test_aligned_crop_puts_the_next_landmark_straight_below_on_anisotropic_pixels():
    """Landmarks on a tilted line: with the axis angles, a dot 10 mm further along the axis is straight below."""
    spacing = (0.5, 0.8)  # (row_mm, col_mm)
    direction_mm = np.array([math.sin(0.4), math.cos(0.4)])  # 0.4 rad off vertical, in mm
    scale = np.array([spacing[1], spacing[0]])
    start = np.array([40.0, 30.0])
    points = np.stack([start + i * 25.0 * direction_mm / scale for i in range(3)])  # 25 mm apart
    angles = spine_axis_angles(points, spacing)
    np.testing.assert_allclose(angles, 0.4, atol=1e-9)
    dot = points[1] + 10.0 * direction_mm / scale
    img = _noise_image((200, 160), seed=1, value=4000.0)
    r0, c0 = int(np.floor(dot[1])), int(np.floor(dot[0]))
    for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)):  # bilinear splat of a sub-pixel dot
        wr, wc = 1 - abs(dot[1] - (r0 + dr)), 1 - abs(dot[0] - (c0 + dc))
        img[r0 + dr, c0 + dc] += 4000.0 * wr * wc
    crop = extract_crops(img, points, spacing, S, WINDOW, angles)[1]
    row, col = _centroid(crop)
    assert abs(row - (C + 10)) < 0.6 and abs(col - C) < 0.6


def test_axis_angles_skip_missing_neighbours_and_handle_chain_ends():
    pts = np.array([[10.0, 0.0], [np.nan, np.nan], [10.0, 20.0], [30.0, 40.0], [np.nan, np.nan]])
    angles = spine_axis_angles(pts, (1.0, 1.0))
    assert angles[1] == 0.0 and angles[4] == 0.0  # missing landmarks
    assert angles[0] == pytest.approx(0.0)  # end: from itself to the nearest finite neighbour (index 2)
    assert angles[2] == pytest.approx(math.atan2(20.0, 40.0))  # from index 0 to index 3
    assert angles[3] == pytest.approx(math.atan2(20.0, 20.0))  # end: from index 2 to itself
    assert spine_axis_angles(np.array([[5.0, 5.0]]), (1.0, 1.0))[0] == 0.0  # no neighbour at all


def test_non_finite_point_gives_an_all_zero_crop_and_outside_reads_background():
    img = _dot_image((64, 64), (10, 10))
    crops = extract_crops(img, np.array([[np.nan, 5.0], [0.0, 0.0], [np.inf, np.inf]]), (1.0, 1.0), 16, 16.0)
    assert crops.shape == (3, 16, 16)
    assert not crops[0].any() and not crops[2].any()
    stats = intensity_stats(img)
    low = (stats.low - stats.mean) / stats.std
    assert crops[1][0, 0] == pytest.approx(low, abs=1e-5)  # the top-left corner is outside the image


def test_intensity_is_normalized_with_the_whole_slice_like_the_network_input():
    rng = np.random.default_rng(3)
    img = rng.gamma(2.0, 100.0, size=(50, 60)).astype(np.float32)
    img[5, 7] = np.nan  # a corrupt pixel must not change the statistics
    # a 60 mm window on a 1 mm grid, centred on the image centre, samples exactly the pixel centres
    crop = extract_crops(img, np.array([[29.5, 24.5]]), (1.0, 1.0), 60, 60.0)[0]
    reference = normalize_intensity(img[None])[0]
    np.testing.assert_allclose(crop[5:55], reference, atol=1e-5)  # crop rows 5..54 are image rows 0..49
    assert np.allclose(crop[:5], reference.min()) and np.allclose(crop[55:], reference.min())  # outside: background


def test_crops_do_not_import_torch():
    import subprocess

    code = "import sys, spine_kp.grading.crops; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def _slice_with_stack(planes: np.ndarray):
    from spine_kp.types import Slice

    centre = planes.shape[0] // 2
    return Slice(planes[centre], (1.0, 1.0), "1.2.3", "1.2.3.1", "1.2.3.1.1", 7, 15, stack=planes)


def test_slice_crops_cut_every_plane_with_the_centre_geometry_and_statistics():
    from spine_kp.grading.crops import slice_crops

    rng = np.random.default_rng(4)
    planes = rng.gamma(2.0, 100.0, size=(5, 64, 64)).astype(np.float32)  # a 2-neighbour stack
    planes[3] *= 2.0  # one lateral plane twice as bright: stays twice as bright (centre statistics)
    points = np.array([[20.0, 20.0], [30.0, 35.0], [40.0, 50.0]])
    slc = _slice_with_stack(planes)
    single = slice_crops(slc, points, [0, 2], 16, 24.0)
    multi = slice_crops(slc, points, [0, 2], 16, 24.0, neighbours=1)
    assert single.shape == (2, 16, 16) and multi.shape == (6, 16, 16)
    np.testing.assert_allclose(multi[1], single[0], atol=1e-6)  # landmark-major: rows 0..2 are landmark 0's planes
    np.testing.assert_allclose(multi[4], single[1], atol=1e-6)
    stats = intensity_stats(planes[2])
    angles = spine_axis_angles(points, (1.0, 1.0))
    lateral = extract_crops(planes[3], points[[0, 2]], (1.0, 1.0), 16, 24.0, angles[[0, 2]], stats=stats)
    np.testing.assert_allclose(multi[2], lateral[0], atol=1e-6)
    np.testing.assert_allclose(multi[5], lateral[1], atol=1e-6)


def test_slice_crops_without_decoded_neighbours_name_the_study():
    from spine_kp.grading.crops import slice_crops

    slc = _slice_with_stack(np.zeros((1, 32, 32), np.float32))
    with pytest.raises(ValueError, match="1.2.3"):
        slice_crops(slc, np.array([[10.0, 10.0]]), [0], 8, 16.0, neighbours=1)
