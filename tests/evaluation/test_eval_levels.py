"""spine_kp.evaluation.levels: identification, order and whole-level shifts on hand-made studies."""

from __future__ import annotations

import numpy as np
import pytest
from level_records import SCHEMA, gt_coords, record, shifted

from spine_kp.evaluation import levels
from spine_kp.types import ImageAnnotation, Point, StudyRecord

RADIUS = 8.0

KINDS = [SCHEMA.landmarks_of_kind(k.name) for k in SCHEMA.kinds]


def _study(pred: dict[str, tuple[float, float]]):
    return levels.study_points(record("s", gt_coords(), False), record("s", pred, True))


def test_perfect_prediction_scores_full_marks():
    s = _study(gt_coords())
    assert all(levels.identification_hits(s, RADIUS))
    assert levels.identification_accuracy([s], RADIUS) == 1.0
    assert not levels.order_violation(s, SCHEMA.landmarks)
    assert levels.level_offset(s, KINDS) == pytest.approx(0.0)
    assert levels.whole_level_shift(levels.level_offset(s, KINDS)) == 0
    axis = levels.spine_axis(s)
    assert axis[1] > 0.95 and np.linalg.norm(axis) == pytest.approx(1.0)  # head -> feet, along the tilted spine


@pytest.mark.parametrize("n", [1, -1])
def test_whole_level_shift_is_detected_and_costs_identification(n):
    s = _study(shifted(n))
    # L4 sits exactly on L5's ground truth: close to a landmark, but the wrong level.
    assert levels.identification_accuracy([s], RADIUS) == 0.0
    assert levels.level_offset(s, KINDS) == pytest.approx(n)
    assert levels.whole_level_shift(levels.level_offset(s, KINDS)) == n
    assert not levels.order_violation(s, SCHEMA.landmarks)  # shifted, but still in order


def test_swapped_levels_are_an_order_violation():
    pred = gt_coords()
    pred["L3"], pred["L4"] = pred["L4"], pred["L3"]
    s = _study(pred)
    assert levels.order_violation(s, SCHEMA.landmarks)
    hits = dict(zip([g.identification for g in s.gt], levels.identification_hits(s, RADIUS)))
    assert not hits["L3"] and not hits["L4"] and hits["L3-L4"]
    assert levels.identification_accuracy([s], RADIUS) == pytest.approx(10 / 12)
    assert levels.whole_level_shift(levels.level_offset(s, KINDS)) == 0


def test_close_but_nearer_to_another_level_is_not_identified():
    pred = gt_coords()
    gt_l2, gt_l2l3 = np.array(pred["L2"]), np.array(pred["L2-L3"])
    pred["L2"] = tuple(gt_l2 + 0.7 * (gt_l2l3 - gt_l2))  # 12.5 mm off L2, 5.4 mm off L2-L3
    pred["L2-L3"] = tuple(gt_l2l3 + 0.4 * (gt_l2 - gt_l2l3))  # 7.2 mm off: within r, yet the L2 point is nearer
    s = _study(pred)
    hits = dict(zip([g.identification for g in s.gt], levels.identification_hits(s, RADIUS)))
    assert not hits["L2"] and not hits["L2-L3"] and hits["L1"]


def test_missing_predictions_are_misses_and_left_out_of_the_order():
    pred = {n: xy for n, xy in gt_coords().items() if n not in ("L1", "L5-S1")}
    s = _study(pred)
    assert levels.identification_accuracy([s], RADIUS) == pytest.approx(10 / 12)
    assert not levels.order_violation(s, SCHEMA.landmarks)
    assert levels.level_offset(levels.StudyPoints("e", s.gt, {}), KINDS) is None


def test_whole_level_shift_needs_about_a_whole_level():
    assert [levels.whole_level_shift(x) for x in (None, 0.2, 0.5, 0.8, 1.25, 1.5, -2.1)] == [0, 0, 0, 1, 1, 0, -2]


def test_per_level_shares_count_never_predicted_as_misses():
    shares = levels.per_level_shares({"L1": np.array([1.0, np.nan, 9.0, 8.0]), "L2": np.array([])}, RADIUS)
    assert shares == {"L1": 0.5, "L2": None}


def test_level_metrics_pool_studies_and_merge_records_of_one_study():
    gt = [record(u, gt_coords(), False) for u in ("a", "b", "c")]
    swapped = gt_coords()
    swapped["L3"], swapped["L4"] = swapped["L4"], swapped["L3"]
    half = dict(list(gt_coords().items())[:6])
    rest = dict(list(gt_coords().items())[6:])
    # study a in two records (as the evaluator merges them), b shifted one level down, c with two levels swapped
    pred = [record("a", half, True), record("a", rest, True), record("b", shifted(1), True)]
    pred.append(record("c", swapped, True))
    m = levels.level_metrics(gt, pred, SCHEMA, RADIUS)
    assert m["identification_accuracy"] == pytest.approx((12 + 0 + 10) / 36)
    assert m["level_shifts"] == 1 and m["level_shift_studies"] == {"b": 1}
    assert m["order_violations"] == 1 and m["order_violation_studies"] == ["c"]
    assert m["level_offsets"]["a"] == pytest.approx(0.0) and m["level_offsets"]["b"] == pytest.approx(1.0)


def test_ground_truth_without_spacing_is_refused():
    rec = record("s", gt_coords(), False)
    bare = StudyRecord("s", (ImageAnnotation("se", "in", rec.images[0].points, pixel_spacing=None),))
    with pytest.raises(ValueError, match="study s: .*no pixel spacing"):
        levels.study_points(bare, None)


def test_best_prediction_is_the_best_scored_point_and_unscored_ranks_first():
    low = Point("L1", "vertebra", (1.0, 1.0), grades=("v1",), score=0.2)
    high = Point("L1", "vertebra", (5.0, 5.0), grades=("v1",), score=0.9)
    unscored = Point("L2", "vertebra", (7.0, 7.0), grades=("v1",), score=None)
    other = Point("L2", "vertebra", (9.0, 9.0), grades=("v1",), score=0.99)
    rec = StudyRecord("s", (ImageAnnotation("se", "in", (low, high, unscored, other)),))
    assert levels.best_predictions(rec) == {"L1": (5.0, 5.0), "L2": (7.0, 7.0)}
    assert levels.best_predictions(None) == {}
