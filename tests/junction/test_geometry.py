"""The lumbosacral junction check's geometry (:mod:`spine_kp.junction.geometry`) and its predict-time layout helpers
(:class:`~spine_kp.inference.junction_check.JunctionLayout`, :func:`~spine_kp.inference.junction_check.crop_angle`).

Expected values are worked out by hand from the module docstring's formulas.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from spine_kp.inference.junction_check import JunctionLayout, crop_angle
from spine_kp.junction.geometry import (
    HYPOTHESES,
    MAX_TURN,
    N_CANDIDATES,
    OFFSETS,
    RATIO_RANGE,
    candidate_classes,
    chain_hypothesis,
    choose_hypothesis,
    disc_candidates,
    hypothesis_log_likelihoods,
    relabel_chain,
    snap,
)
from spine_kp.schema import load_schema

ATOL = 1e-9


def _unit(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([math.cos(a), math.sin(a)])


def _chain(c0, len0: float, deg0: float, len1: float, deg1: float) -> np.ndarray:
    """Three discs: c0, then a step of ``len0`` at ``deg0`` degrees, then one of ``len1`` at ``deg1``."""
    c0 = np.asarray(c0, dtype=np.float64)
    c1 = c0 + len0 * _unit(deg0)
    c2 = c1 + len1 * _unit(deg1)
    return np.stack([c0, c1, c2])


def _angle_deg(v: np.ndarray) -> float:
    return math.degrees(math.atan2(v[1], v[0]))


# ---------------------------------------------------------------------------------------------------------- constants


def test_constants_match_the_docstring():
    assert OFFSETS == (-2, -1, 0, 1, 2)
    assert HYPOTHESES == (-1, 0, 1)
    assert N_CANDIDATES == 5
    assert MAX_TURN == pytest.approx(math.radians(20.0))
    assert RATIO_RANGE == (0.8, 1.25)


# ---------------------------------------------------------------------------------------------------- disc_candidates


def test_straight_evenly_spaced_chain_extrapolates_the_same_step():
    cand = disc_candidates(np.array([[100, 100], [100, 130], [100, 160]]))
    assert cand is not None
    assert cand.shape == (5, 2)
    assert cand.dtype == np.float64
    np.testing.assert_allclose(cand, [[100, 100], [100, 130], [100, 160], [100, 190], [100, 220]], rtol=0, atol=ATOL)


def test_only_the_three_lowest_discs_are_used():
    # the cranial discs are far off the line: they must not change anything
    discs = np.array([[5, 0], [300, 40], [100, 100], [100, 130], [100, 160]], dtype=np.float64)
    cand = disc_candidates(discs)
    np.testing.assert_allclose(cand, [[100, 100], [100, 130], [100, 160], [100, 190], [100, 220]], rtol=0, atol=ATOL)


def test_accepts_a_flat_list_of_pairs_and_does_not_modify_the_input():
    discs = np.array([[100.0, 100.0], [100.0, 130.0], [100.0, 160.0]])
    before = discs.copy()
    disc_candidates(discs)
    np.testing.assert_array_equal(discs, before)
    np.testing.assert_allclose(disc_candidates([100, 100, 100, 130, 100, 160])[3], [100, 190], atol=ATOL)


def test_constant_turn_keeps_turning_and_scaling():
    # step 20 px straight down (90 deg), then 24 px at 100 deg: turn 10 deg, ratio 1.2 (both under the caps)
    discs = _chain((100, 100), 20, 90, 24, 100)
    cand = disc_candidates(discs)
    np.testing.assert_allclose(cand[:3], discs, rtol=0, atol=ATOL)
    s1 = discs[2] - discs[1]
    step3, step4 = cand[3] - cand[2], cand[4] - cand[3]
    # c3 - c2 = R(turn) s1 * ratio: direction 110 deg, length 24 * 1.2
    assert _angle_deg(step3) == pytest.approx(_angle_deg(s1) + 10.0)
    assert _angle_deg(step3) == pytest.approx(110.0)
    assert np.hypot(*step3) == pytest.approx(28.8)
    # c4 - c3 = R(2 turn) s1 * ratio^2: direction 120 deg, length 24 * 1.44
    assert _angle_deg(step4) == pytest.approx(120.0)
    assert np.hypot(*step4) == pytest.approx(34.56)
    np.testing.assert_allclose(cand[3], discs[2] + 28.8 * _unit(110), rtol=0, atol=1e-9)
    np.testing.assert_allclose(cand[4], discs[2] + 28.8 * _unit(110) + 34.56 * _unit(120), rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    ("deg1", "deg3", "deg4"),
    [
        (135.0, 155.0, 175.0),  # +45 deg turn, capped at +20
        (45.0, 25.0, 5.0),  # -45 deg turn, capped at -20
        (110.0, 130.0, 150.0),  # exactly +20: unchanged
    ],
)
def test_turn_is_capped_at_20_degrees(deg1, deg3, deg4):
    discs = _chain((200, 100), 30, 90, 30, deg1)
    cand = disc_candidates(discs)
    np.testing.assert_allclose(cand[3], discs[2] + 30 * _unit(deg3), rtol=0, atol=1e-9)
    np.testing.assert_allclose(cand[4], cand[3] + 30 * _unit(deg4), rtol=0, atol=1e-9)


def test_turn_is_taken_the_short_way_round():
    # 170 deg then 185 deg (atan2 says -175): a +15 deg turn, not -345 deg (which would cap to -20)
    discs = _chain((200, 100), 30, 170, 30, 185)
    cand = disc_candidates(discs)
    np.testing.assert_allclose(cand[3], discs[2] + 30 * _unit(200), rtol=0, atol=1e-9)
    np.testing.assert_allclose(cand[4], cand[3] + 30 * _unit(215), rtol=0, atol=1e-9)


def test_length_ratio_is_capped_above_at_1_25():
    # steps 10 then 30: ratio 3 -> 1.25
    cand = disc_candidates(np.array([[100, 100], [100, 110], [100, 140]]))
    np.testing.assert_allclose(cand[3], [100, 140 + 30 * 1.25], rtol=0, atol=ATOL)  # 177.5
    np.testing.assert_allclose(cand[4], [100, 177.5 + 30 * 1.25**2], rtol=0, atol=ATOL)  # 224.375


def test_length_ratio_is_capped_below_at_0_8():
    # steps 30 then 10: ratio 1/3 -> 0.8
    cand = disc_candidates(np.array([[100, 100], [100, 130], [100, 140]]))
    np.testing.assert_allclose(cand[3], [100, 148], rtol=0, atol=ATOL)
    np.testing.assert_allclose(cand[4], [100, 154.4], rtol=0, atol=ATOL)


def test_turn_and_ratio_caps_together():
    # 10 px down, then 30 px at 150 deg: turn 60 -> 20, ratio 3 -> 1.25
    discs = _chain((200, 100), 10, 90, 30, 150)
    cand = disc_candidates(discs)
    np.testing.assert_allclose(cand[3], discs[2] + 30 * 1.25 * _unit(170), rtol=0, atol=1e-9)
    np.testing.assert_allclose(cand[4], cand[3] + 30 * 1.25**2 * _unit(190), rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "discs",
    [
        np.zeros((0, 2)),
        np.array([[100, 100], [100, 130]]),  # two discs
        np.array([[100, 100], [100, 130], [100, 130]]),  # zero last step
        np.array([[100, 100], [100, 100], [100, 130]]),  # zero first step
        np.array([[100, 100], [100, np.nan], [100, 160]]),
        np.array([[100, 100], [100, 130], [np.inf, 160]]),
        np.array([[0, 0], [100, 100], [100, 130], [100, 130]]),  # zero step among the last three of four
    ],
)
def test_degenerate_chains_give_none(discs):
    assert disc_candidates(discs) is None


# ------------------------------------------------------------------------------------------------ candidate_classes


@pytest.mark.parametrize(
    ("junction", "expected"),
    [
        (2, [0, 1, 2, 3, 4]),
        (3, [0, 0, 1, 2, 3]),
        (1, [1, 2, 3, 4, 4]),
        (0, [2, 3, 4, 4, 4]),
        (4, [0, 0, 0, 1, 2]),
    ],
)
def test_candidate_classes(junction, expected):
    classes = candidate_classes(junction)
    assert np.issubdtype(classes.dtype, np.integer)
    np.testing.assert_array_equal(classes, expected)
    # the class of the junction candidate itself is offset 0
    assert OFFSETS[classes[junction]] == 0


# ---------------------------------------------------------------------------------------- hypothesis_log_likelihoods


def _junction_at_3_table() -> np.ndarray:
    """(5, 5) log-probs whose argmax per row is the class the candidate has when candidate 3 is the junction
    (``[0, 0, 1, 2, 3]``); every entry distinct so the hand sums below pick out exactly which were read."""
    p = np.full((5, 5), 0.02)
    p += np.arange(25).reshape(5, 5) * 1e-4  # distinct entries
    for i, c in enumerate([0, 0, 1, 2, 3]):
        p[i, c] = 0.8 + i * 0.01
    p /= p.sum(axis=1, keepdims=True)
    return np.log(p)


def test_hypothesis_plus_one_wins_when_the_crops_say_candidate_3():
    lp = _junction_at_3_table()
    assert list(lp.argmax(axis=1)) == [0, 0, 1, 2, 3]
    ll = hypothesis_log_likelihoods(lp)
    assert set(ll) == {-1, 0, 1}
    assert all(isinstance(v, float) for v in ll.values())
    assert max(ll, key=ll.get) == 1
    # hand sums: o -> classes of candidate_classes(2 + o), one entry per row
    assert ll[1] == pytest.approx(lp[0, 0] + lp[1, 0] + lp[2, 1] + lp[3, 2] + lp[4, 3], abs=1e-12)
    assert ll[0] == pytest.approx(lp[0, 0] + lp[1, 1] + lp[2, 2] + lp[3, 3] + lp[4, 4], abs=1e-12)
    assert ll[-1] == pytest.approx(lp[0, 1] + lp[1, 2] + lp[2, 3] + lp[3, 4] + lp[4, 4], abs=1e-12)


def test_hypothesis_log_likelihoods_on_an_integer_table():
    # lp[i, c] = -(10 i + c): every sum is an exact integer
    lp = -(10.0 * np.arange(5)[:, None] + np.arange(5)[None, :])
    ll = hypothesis_log_likelihoods(lp)
    assert ll[-1] == -(0 + 1) - (10 + 2) - (20 + 3) - (30 + 4) - (40 + 4)  # -114
    assert ll[0] == -(0 + 0) - (10 + 1) - (20 + 2) - (30 + 3) - (40 + 4)  # -110
    assert ll[1] == -(0 + 0) - (10 + 0) - (20 + 1) - (30 + 2) - (40 + 3)  # -106


# ------------------------------------------------------------------------------------------------- chain_hypothesis

DISCS = (1, 3, 5, 7, 9, 11)


@pytest.mark.parametrize(
    ("placed", "expected"),
    [
        ([1, 3, 5, 7, 9, 11], 0),
        ([11], 0),
        ([11, 3], 0),  # unordered: the caudal-most counts
        ([1, 3, 5, 7, 9], 1),
        ([5, 9], 1),
        ([1, 3, 5, 7], None),
        ([1], None),
        ([], None),
    ],
)
def test_chain_hypothesis(placed, expected):
    assert chain_hypothesis(placed, DISCS) == expected


def test_chain_hypothesis_accepts_arrays():
    assert chain_hypothesis(np.array([3, 5, 7, 9]), DISCS) == 1
    assert chain_hypothesis(np.array([], dtype=int), DISCS) is None


# ------------------------------------------------------------------------------------------------ choose_hypothesis


def test_choose_hypothesis_keeps_the_current_one_unless_beaten_by_more_than_the_margin():
    ll = {-1: -5.0, 0: -3.0, 1: -2.0}  # best +1, beating 0 by exactly 1.0
    assert choose_hypothesis(ll, 0, margin=1.5) == 0
    assert choose_hypothesis(ll, 0, margin=1.0) == 0  # "by margin or less": a tie with the margin keeps it
    assert choose_hypothesis(ll, 0, margin=0.5) == 1
    assert choose_hypothesis(ll, 0, margin=0.0) == 1
    assert choose_hypothesis(ll, -1, margin=2.5) == 1  # beats -1 by 3.0
    assert choose_hypothesis(ll, -1, margin=3.0) == -1
    assert choose_hypothesis(ll, 1, margin=0.0) == 1


def test_choose_hypothesis_without_a_current_one_takes_the_best():
    assert choose_hypothesis({-1: -5.0, 0: -3.0, 1: -2.0}, None, margin=100.0) == 1
    assert choose_hypothesis({-1: -1.0, 0: -3.0, 1: -2.0}, None, margin=100.0) == -1
    assert choose_hypothesis({-1: -4.0, 0: -0.5, 1: -2.0}, None, margin=100.0) == 0


# -------------------------------------------------------------------------------------------------------------- snap


def test_snap_takes_the_maximum_within_the_radius_only():
    hm = np.zeros((32, 40))
    hm[10, 12] = 0.5  # (x 12, y 10): 2 cells from the guess, inside
    hm[11, 13] = 0.9  # (x 13, y 11): sqrt(10) > 3 cells, inside the square window but outside the circle
    hm[10, 14] = 0.95  # 4 cells away
    found = snap(hm, np.array([10.0, 10.0]), 3.0)
    assert found is not None
    xy, value = found
    assert xy.dtype == np.float64
    np.testing.assert_array_equal(xy, [12.0, 10.0])
    assert value == 0.5
    assert isinstance(value, float)


def test_snap_includes_the_boundary_and_returns_xy_not_row_col():
    hm = np.zeros((32, 40))
    hm[10, 13] = 0.4  # exactly 3 cells from the guess
    hm[25, 7] = 1.0  # far away
    xy, value = snap(hm, np.array([10.0, 10.0]), 3.0)
    np.testing.assert_array_equal(xy, [13.0, 10.0])
    assert value == 0.4
    hm2 = np.zeros((32, 40))
    hm2[5, 30] = 0.6  # x 30, y 5
    xy2, value2 = snap(hm2, np.array([29.4, 6.3]), 2.5)
    np.testing.assert_array_equal(xy2, [30.0, 5.0])
    assert value2 == 0.6


def test_snap_at_the_edges_of_the_map():
    hm = np.zeros((32, 40))
    hm[31, 39] = 0.3
    xy, value = snap(hm, np.array([39.0, 31.0]), 2.0)  # the last cell is inside
    np.testing.assert_array_equal(xy, [39.0, 31.0])
    assert value == 0.3


@pytest.mark.parametrize("guess", [(-0.5, 10.0), (10.0, -0.01), (39.5, 10.0), (10.0, 31.5), (100.0, 100.0)])
def test_snap_outside_the_map_gives_none(guess):
    hm = np.ones((32, 40))
    assert snap(hm, np.array(guess), 5.0) is None


# ---------------------------------------------------------------------------------------------------- relabel_chain

K = 12
STRIDE = 2
X_PX = 40.0  # cell (40 + 0.5) / 2 - 0.5 = 19.75: the nearest cell column is 20


def _to_cell(p):
    return (np.asarray(p, dtype=np.float64) + 0.5) / STRIDE - 0.5


def _to_px(u):
    return (np.asarray(u, dtype=np.float64) + 0.5) * STRIDE - 0.5


def _toy_chain(y0: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """K = 12 points on x = 40 px, every 10 px from ``y0``; distinct peaks near 0.9."""
    coords = np.stack([np.full(K, X_PX), y0 + 10.0 * np.arange(K)], axis=1).astype(np.float32)
    peaks = (0.9 - 0.01 * np.arange(K)).astype(np.float32)
    return coords, peaks


def _bump(hm: np.ndarray, cx: int, cy: int, value: float = 0.7) -> None:
    """A small Gaussian-ish bump with maximum ``value`` at cell (cx, cy)."""
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            y, x = cy + dy, cx + dx
            if 0 <= y < hm.shape[0] and 0 <= x < hm.shape[1]:
                hm[y, x] = max(hm[y, x], value * math.exp(-(dx * dx + dy * dy)))


def test_toy_chain_conversions():
    # the cell/pixel conversions the tests below rely on
    assert _to_cell(140.0) == 69.75
    assert _to_px(70) == 140.5
    assert _to_cell(X_PX) == 19.75


def test_relabel_towards_cranial_labels_fills_the_caudal_ones_from_their_heatmaps():
    coords, peaks = _toy_chain()
    coords_in, peaks_in = coords.copy(), peaks.copy()
    # the chain reaches y = 130 px, the extrapolated positions 140 and 150 px: the map must cover 160 px
    heatmaps = np.zeros((K, 80, 80), dtype=np.float32)
    # label 10: one level on from new[8] (old[10], y 120) away from new[6] (old[8], y 100): y 140 px = cell 69.75
    _bump(heatmaps[10], 20, 70)
    # label 11: from new[9] (old[11], y 130) and new[7] (old[9], y 110): y 150 px = cell 74.75
    _bump(heatmaps[11], 20, 75)
    # a higher spike in label 11's channel at label 10's position: label 10 must read its own channel
    heatmaps[11, 70, 20] = 0.95
    heatmaps[9, 70, 20] = 0.99
    trained = np.ones(K, dtype=bool)
    new_xy, new_pk = relabel_chain(coords, peaks, heatmaps, -2, 2, STRIDE, 6.0, trained)
    assert new_xy.dtype == np.float32 and new_pk.dtype == np.float32
    assert new_xy.shape == (K, 2) and new_pk.shape == (K,)
    # new[j] = old[j + 2]: the points keep their positions
    np.testing.assert_array_equal(new_xy[:10], coords[2:])
    np.testing.assert_array_equal(new_pk[:10], peaks[2:])
    # the two caudal labels at their bumps, in pixels, with the bump's value as peak
    np.testing.assert_allclose(new_xy[10], [_to_px(20), _to_px(70)], atol=1e-5)
    np.testing.assert_allclose(new_xy[11], [_to_px(20), _to_px(75)], atol=1e-5)
    np.testing.assert_allclose(new_xy[10:], [[40.5, 140.5], [40.5, 150.5]], atol=1e-5)
    np.testing.assert_allclose(new_pk[10:], [0.7, 0.7], atol=1e-6)
    # old[0] (y 20) and old[1] (y 30) left the schema: nowhere in the result
    assert not np.isin(new_xy[:, 1], [20.0, 30.0]).any()
    # the inputs are not modified
    np.testing.assert_array_equal(coords, coords_in)
    np.testing.assert_array_equal(peaks, peaks_in)


def test_relabel_towards_cranial_labels_leaves_labels_absent_beyond_the_map():
    coords, peaks = _toy_chain()
    # 64 x 64 cells cover 128 px: the extrapolated 140 and 150 px lie outside
    heatmaps = np.ones((K, 64, 64), dtype=np.float32)
    new_xy, new_pk = relabel_chain(coords, peaks, heatmaps, -2, 2, STRIDE, 6.0, np.ones(K, dtype=bool))
    np.testing.assert_array_equal(new_xy[:10], coords[2:])
    np.testing.assert_array_equal(new_pk[:10], peaks[2:])
    np.testing.assert_array_equal(new_xy[10:], np.zeros((2, 2)))
    np.testing.assert_array_equal(new_pk[10:], [0.0, 0.0])


def test_relabel_towards_caudal_labels_fills_the_cranial_ones_or_declares_them_absent():
    coords, peaks = _toy_chain(y0=20.0)
    heatmaps = np.zeros((K, 80, 80), dtype=np.float32)
    # label 1: from new[3] (old[1], y 30) away from new[5] (old[3], y 50): y 10 px = cell 4.75
    _bump(heatmaps[1], 20, 5)
    # label 0: from new[2] (old[0], y 20) away from new[4] (old[2], y 40): y 0 px = cell -0.25, outside the map;
    # a bump at the map's edge must not be taken
    _bump(heatmaps[0], 20, 0)
    new_xy, new_pk = relabel_chain(coords, peaks, heatmaps, 2, 2, STRIDE, 6.0, np.ones(K, dtype=bool))
    # new[j + 2] = old[j]; old[10] and old[11] left the schema
    np.testing.assert_array_equal(new_xy[2:], coords[:10])
    np.testing.assert_array_equal(new_pk[2:], peaks[:10])
    np.testing.assert_allclose(new_xy[1], [40.5, 10.5], atol=1e-5)
    assert new_pk[1] == pytest.approx(0.7, abs=1e-6)
    np.testing.assert_array_equal(new_xy[0], [0.0, 0.0])
    assert new_pk[0] == 0.0
    assert not np.isin(new_xy[:, 1], [120.0, 130.0]).any()


def test_relabel_never_places_untrained_landmarks():
    coords, peaks = _toy_chain(y0=30.0)
    trained = np.ones(K, dtype=bool)
    trained[0] = False  # even with a positive peak, label 0 is neither moved nor filled
    heatmaps = np.zeros((K, 80, 80), dtype=np.float32)
    # label 2 gets no point (its source, old[0], is untrained): from new[4] (old[2], y 50) and new[6] (old[4], y 70),
    # y 30 px = cell 14.75
    _bump(heatmaps[2], 20, 15)
    # label 1: from new[3] (old[1], y 40) and new[5] (old[3], y 60), y 20 px = cell 9.75
    _bump(heatmaps[1], 20, 10)
    # label 0 would extrapolate to about y 10 px = cell 5: a bump there must be ignored
    _bump(heatmaps[0], 20, 5, value=0.9)
    new_xy, new_pk = relabel_chain(coords, peaks, heatmaps, 2, 2, STRIDE, 6.0, trained)
    np.testing.assert_array_equal(new_xy[3:], coords[1:10])
    np.testing.assert_array_equal(new_pk[3:], peaks[1:10])
    np.testing.assert_allclose(new_xy[2], [40.5, 30.5], atol=1e-5)
    np.testing.assert_allclose(new_xy[1], [40.5, 20.5], atol=1e-5)
    np.testing.assert_allclose(new_pk[1:3], [0.7, 0.7], atol=1e-6)
    np.testing.assert_array_equal(new_xy[0], [0.0, 0.0])
    assert new_pk[0] == 0.0


def test_relabel_does_not_fill_an_untrained_caudal_label():
    coords, peaks = _toy_chain()
    trained = np.ones(K, dtype=bool)
    trained[11] = False
    peaks[11] = 0.0
    coords[11] = 0.0
    heatmaps = np.zeros((K, 80, 80), dtype=np.float32)
    _bump(heatmaps[10], 20, 70)
    _bump(heatmaps[11], 20, 75)
    # label 9 has no point (old[11] is untrained): from new[7] (old[9], y 110) and new[5] (old[7], y 90): y 130 px,
    # cell 64.75
    _bump(heatmaps[9], 20, 65)
    new_xy, new_pk = relabel_chain(coords, peaks, heatmaps, -2, 2, STRIDE, 6.0, trained)
    np.testing.assert_array_equal(new_xy[:9], coords[2:11])
    np.testing.assert_allclose(new_xy[9], [40.5, 130.5], atol=1e-5)
    np.testing.assert_allclose(new_xy[10], [40.5, 140.5], atol=1e-5)
    np.testing.assert_allclose(new_pk[9:11], [0.7, 0.7], atol=1e-6)
    np.testing.assert_array_equal(new_xy[11], [0.0, 0.0])
    assert new_pk[11] == 0.0


def test_relabel_drops_a_point_moved_onto_an_untrained_label():
    coords, peaks = _toy_chain(y0=30.0)
    trained = np.ones(K, dtype=bool)
    trained[4] = False  # old[2] would move to label 4
    heatmaps = np.zeros((K, 80, 80), dtype=np.float32)
    _bump(heatmaps[4], 20, 25)  # even a response where label 4 would go (y 50 px) must not place it
    new_xy, new_pk = relabel_chain(coords, peaks, heatmaps, 2, 2, STRIDE, 6.0, trained)
    np.testing.assert_array_equal(new_xy[4], [0.0, 0.0])
    assert new_pk[4] == 0.0
    assert not np.isin(new_xy[:, 1], [50.0]).any()  # old[2] is nowhere
    np.testing.assert_array_equal(new_xy[2:4], coords[0:2])
    np.testing.assert_array_equal(new_xy[5], coords[3])
    # old[4] sat on the untrained label itself: not carried to label 6 (whose heatmap is silent: absent)
    np.testing.assert_array_equal(new_xy[6], [0.0, 0.0])
    np.testing.assert_array_equal(new_xy[7:], coords[5:10])


def test_relabel_without_shift_fills_a_missing_caudal_label():
    # shift 0: the chain stays, an L5-S1 the decoding declared absent is looked for one level below L4-L5
    coords, peaks = _toy_chain()
    coords[11], peaks[11] = 0.0, 0.0
    heatmaps = np.zeros((K, 80, 80), dtype=np.float32)
    # from label 9 (y 110) away from label 7 (y 90): y 130 px = cell 64.75
    _bump(heatmaps[11], 20, 65)
    new_xy, new_pk = relabel_chain(coords, peaks, heatmaps, 0, 2, STRIDE, 6.0, np.ones(K, dtype=bool))
    np.testing.assert_array_equal(new_xy[:11], coords[:11])
    np.testing.assert_array_equal(new_pk[:11], peaks[:11])
    np.testing.assert_allclose(new_xy[11], [40.5, 130.5], atol=1e-5)
    assert new_pk[11] == pytest.approx(0.7, abs=1e-6)


@pytest.mark.parametrize("per_level", [1, 2])
@pytest.mark.parametrize(("cell", "placed"), [(14, True), (17, True), (18, False), (19, False)])
def test_relabel_places_a_filled_label_only_beyond_its_neighbour(per_level, cell, placed):
    # the chain (y 40, 50, ... px) moves one level caudally: new[j + per_level] = old[j]. The label filled next to
    # the chain's new cranial end, t = per_level - 1, is looked for one level above new[t + per_level] (y 50 with
    # per_level 2, y 40 with 1), away from new[t + 2 per_level] (y 70 / 50): at y 30 px = cell 14.75, within
    # 12 px. Its placed neighbour on the chain's side is new[per_level] = old[0] at y 40, one index (half a level
    # of 20 px, or a level of 10 px) away: the point must lie at least 5 px above it, y <= 35 px.
    coords, peaks = _toy_chain(y0=40.0)
    t = per_level - 1
    heatmaps = np.zeros((K, 80, 80), dtype=np.float32)
    _bump(heatmaps[t], 20, cell)  # y = 2 * cell + 0.5 px: 28.5, 34.5 (in its slot) / 36.5, 38.5 (at old[0])
    new_xy, new_pk = relabel_chain(coords, peaks, heatmaps, per_level, per_level, STRIDE, 12.0, np.ones(K, bool))
    np.testing.assert_array_equal(new_xy[per_level:], coords[: K - per_level])
    if placed:
        np.testing.assert_allclose(new_xy[t], [40.5, 2 * cell + 0.5], atol=1e-5)
        assert new_pk[t] == pytest.approx(0.7, abs=1e-6)
    else:
        np.testing.assert_array_equal(new_xy[t], [0.0, 0.0])
        assert new_pk[t] == 0.0


def test_relabel_does_not_place_a_label_whose_heatmap_does_not_respond():
    coords, peaks = _toy_chain()
    # inside the map, but the heatmaps are zero there: "its heatmap does not respond" -> absent
    heatmaps = np.zeros((K, 80, 80), dtype=np.float32)
    new_xy, new_pk = relabel_chain(coords, peaks, heatmaps, -2, 2, STRIDE, 6.0, np.ones(K, dtype=bool))
    np.testing.assert_array_equal(new_xy[:10], coords[2:])
    np.testing.assert_array_equal(new_xy[10:], np.zeros((2, 2)))
    np.testing.assert_array_equal(new_pk[10:], [0.0, 0.0])
    # a response below ``min_peak`` does not count either; at or above it does
    _bump(heatmaps[10], 20, 70)
    _bump(heatmaps[11], 20, 75)
    args = (coords, peaks, heatmaps, -2, 2, STRIDE, 6.0, np.ones(K, dtype=bool))
    _, pk_high = relabel_chain(*args, min_peak=0.8)
    np.testing.assert_array_equal(pk_high[10:], [0.0, 0.0])
    _, pk_low = relabel_chain(*args, min_peak=0.5)
    np.testing.assert_allclose(pk_low[10:], [0.7, 0.7], atol=1e-6)


# ----------------------------------------------------------------------------------------------- JunctionLayout


def test_junction_layout_of_the_default_schema():
    schema = load_schema("default")
    assert schema.landmarks == (
        "T12", "T12-L1", "L1", "L1-L2", "L2", "L2-L3", "L3", "L3-L4", "L4", "L4-L5", "L5", "L5-S1",
    )  # fmt: skip
    assert schema.landmark_kinds[-1] == "disc"
    layout = JunctionLayout.of(schema)
    assert layout == JunctionLayout(discs=(1, 3, 5, 7, 9, 11), per_level=2)


def test_junction_layout_of_the_tianchi_schema():
    schema = load_schema("tianchi")
    assert schema.landmarks == (
        "T12-L1", "L1", "L1-L2", "L2", "L2-L3", "L3", "L3-L4", "L4", "L4-L5", "L5", "L5-S1",
    )  # fmt: skip
    assert schema.landmark_kinds[-1] == "disc"
    layout = JunctionLayout.of(schema)
    assert layout == JunctionLayout(discs=(0, 2, 4, 6, 8, 10), per_level=2)


# -------------------------------------------------------------------------------------------------------- crop_angle


def test_crop_angle_of_a_chain_straight_down_is_zero():
    cand = np.array([[50, 10], [50, 40], [50, 70], [50, 100], [50, 130]], dtype=np.float64)
    assert crop_angle(cand, (0.5, 1.0)) == 0.0
    assert crop_angle(cand, (1.0, 1.0)) == 0.0


def test_crop_angle_uses_millimetres_with_anisotropic_spacing():
    # spacing (row_mm, col_mm) = (0.5, 1.0): a step of +10 px in x and +20 px in y is 10 mm by 10 mm, 45 deg towards +x
    # (in pixels it would be atan(10 / 20) = 26.6 deg)
    # only c2 - c1 (the chain's last step) counts: the other steps point elsewhere
    cand = np.array([[0, 0], [50, 40], [60, 60], [90, 65], [80, 140]], dtype=np.float64)
    assert crop_angle(cand, (0.5, 1.0)) == pytest.approx(math.pi / 4)
    # leaning towards -x: the opposite sign
    mirrored = cand * np.array([-1.0, 1.0])
    assert crop_angle(mirrored, (0.5, 1.0)) == pytest.approx(-math.pi / 4)
    # the same pixels with the spacing swapped: atan2(10 * 0.5, 20 * 1.0)
    assert crop_angle(cand, (1.0, 0.5)) == pytest.approx(math.atan2(5.0, 20.0))
