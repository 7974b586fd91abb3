"""The competition baseline's macro F1 (``spine_kp.evaluation.baseline_f1``) against hand-computed matrices."""

from __future__ import annotations

import numpy as np
import pytest
from eval_fixtures import SCHEMA, pt, run, study

from spine_kp.evaluation.baseline_f1 import EPSILON, baseline_f1, confusion_counts, macro_f1
from spine_kp.schema import Schema

NAMES = [f"{k}/{g}" for k, g in SCHEMA.classes]
C = len(NAMES)
WRONG, NOT_HIT = C, C + 1


def _row(name: str) -> int:
    return {"wrong": WRONG, "not_hit": NOT_HIT}.get(name, NAMES.index(name) if name in NAMES else -1)


def expected(*cells: tuple[str, str]) -> np.ndarray:
    """A (C + 2, C) count matrix with +1 at each (row, column) named, e.g. ("disc/v5", "disc/v2")."""
    m = np.zeros((C + 2, C), dtype=np.int64)
    for row, col in cells:
        m[_row(row), NAMES.index(col)] += 1
    return m


def counts_of(gt, pred) -> np.ndarray:
    return run(gt, pred).baseline.counts


def f1_of(tp: float, row: float, col: float) -> float:
    p, r = tp / row, tp / col
    return 2 * p * r / (p + r)


def test_a_perfect_prediction_fills_the_diagonal_and_its_macro_f1_is_hand_computed():
    gt = [study("s", [pt("L1", 100, 100, "v2"), pt("L2", 100, 140, "v1"), pt("L1-L2", 100, 120, "v3")])]
    pred = [
        study("s", [pt("L1", 100, 100, "v2", 0.9), pt("L2", 100, 140, "v1", 0.8), pt("L1-L2", 100, 120, "v3", 0.7)])
    ]
    result = run(gt, pred)
    expect = expected(("vertebra/v2", "vertebra/v2"), ("vertebra/v1", "vertebra/v1"), ("disc/v3", "disc/v3"))
    np.testing.assert_array_equal(result.baseline.counts, expect)
    e = EPSILON
    hit = f1_of(1 + e, 1 + C * e, 1 + (C + 2) * e)  # a class with one diagonal count, every cell + epsilon
    empty = 1 / (C + 1)  # a class with epsilons only: P = 1/C, R = 1/(C + 2)
    assert result.baseline_macro_f1 == pytest.approx((3 * hit + (C - 3) * empty) / C, rel=1e-12)
    assert result.to_dict()["baseline_macro_f1"] == result.baseline_macro_f1


def test_a_missing_identification_is_not_hit_in_each_of_its_grades():
    gt = [study("s", [pt("L1", 100, 100, "v2"), pt("L1-L2", 100, 120, "v2,v5")])]
    pred = [study("s", [pt("L2", 100, 100, "v2", 0.9)])]  # right place, wrong identification: L1 never predicted
    expect = expected(("not_hit", "vertebra/v2"), ("not_hit", "disc/v2"), ("not_hit", "disc/v5"))
    np.testing.assert_array_equal(counts_of(gt, pred), expect)
    # a study without any prediction: the same
    np.testing.assert_array_equal(counts_of(gt, []), expect)


def test_a_prediction_6_mm_or_more_away_is_wrong_and_closer_is_graded():
    gt = [study("s", [pt("L1", 100, 100, "v2"), pt("L2", 100, 200, "v2")], spacing=(0.5, 1.0))]
    pred = [
        study(
            "s",
            [
                pt("L1", 106, 100, "v2", 0.9),  # 6 columns x 1.0 mm = 6 mm exactly: wrong (the rule is >= 6)
                pt("L2", 100, 211.8, "v2", 0.9),  # 11.8 rows x 0.5 mm = 5.9 mm: graded
            ],
        )
    ]
    expect = expected(("wrong", "vertebra/v2"), ("vertebra/v2", "vertebra/v2"))
    np.testing.assert_array_equal(counts_of(gt, pred), expect)


def test_a_multi_grade_point_counts_once_in_each_of_its_grades():
    gt = [study("s", [pt("L1-L2", 100, 120, "v2,v5")])]
    pred = [study("s", [pt("L1-L2", 101, 120, "v5", 0.8)])]
    # the v5 column is right, the v2 column was predicted as v5: both rows are the prediction's grade
    np.testing.assert_array_equal(counts_of(gt, pred), expected(("disc/v5", "disc/v5"), ("disc/v5", "disc/v2")))


def test_an_empty_grade_counts_as_v1():
    gt = [study("s", [pt("L1-L2", 100, 120, ""), pt("L1", 100, 100, "")])]
    pred = [study("s", [pt("L1-L2", 100, 120, "v3", 0.8), pt("L1", 100, 100, "v1", 0.7)])]
    np.testing.assert_array_equal(counts_of(gt, pred), expected(("disc/v3", "disc/v1"), ("vertebra/v1", "vertebra/v1")))
    # never predicted, an empty label is still a v1 that was not hit
    np.testing.assert_array_equal(counts_of(gt, []), expected(("not_hit", "disc/v1"), ("not_hit", "vertebra/v1")))


def test_one_prediction_per_identification_with_its_top_grade():
    gt = [study("s", [pt("L1", 100, 100, "v2"), pt("L2", 100, 140, "v1")])]
    pred = [
        study(
            "s",
            [
                pt("L1", 100, 100, "v1", 0.3),  # an alternative grade, lower scored: not counted
                pt("L1", 100, 100, "v2", 0.9),
                pt("L2", 100, 140, "", 0.8),  # a prediction without grade reads as v1, like an empty label
            ],
        )
    ]
    np.testing.assert_array_equal(
        counts_of(gt, pred), expected(("vertebra/v2", "vertebra/v2"), ("vertebra/v1", "vertebra/v1"))
    )


def test_macro_f1_of_a_hand_made_matrix():
    # 2 classes; rows: predicted a, predicted b, wrong, not hit
    counts = np.array([[3, 1], [0, 2], [1, 0], [0, 1]])
    res = macro_f1(counts, [("k", "a"), ("k", "b")], epsilon=0.0)
    # a: P = 3/4, R = 3/4; b: P = 2/2, R = 2/4
    np.testing.assert_allclose(res.precision, [0.75, 1.0])
    np.testing.assert_allclose(res.recall, [0.75, 0.5])
    assert res.macro_f1 == pytest.approx((0.75 + 2 * 1.0 * 0.5 / 1.5) / 2)
    # with the epsilons, every cell starts at 1e-5
    eps = macro_f1(counts, [("k", "a"), ("k", "b")])
    assert eps.precision[0] == pytest.approx((3 + EPSILON) / (4 + 2 * EPSILON), rel=1e-12)
    assert eps.recall[1] == pytest.approx((2 + EPSILON) / (4 + 4 * EPSILON), rel=1e-12)


def test_confusion_counts_on_arrays():
    gt = np.array([[1, 0], [1, 1], [0, 1], [1, 0]], bool)
    pred = np.array([0, 1, 0, 0])
    dist = np.array([1.0, 2.0, 6.0, np.nan])
    np.testing.assert_array_equal(confusion_counts(gt, pred, dist), [[1, 0], [1, 1], [0, 1], [1, 0]])


def test_the_competition_class_set_averages_over_seven_classes():
    schema = Schema.from_dict(
        {
            "name": "competition",
            "kinds": {
                "vertebra": {"multi_label": False, "grades": {"v1": "normal", "v2": "degenerative"}},
                "disc": {"multi_label": True, "grades": {f"v{i}": f"grade {i}" for i in range(1, 6)}},
            },
            "landmarks": [{"name": "L1", "kind": "vertebra"}, {"name": "L1-L2", "kind": "disc"}],
        }
    )
    from spine_kp.evaluation import evaluate_records

    gt = [study("s", [pt("L1", 100, 100, "v2")])]
    res = evaluate_records(gt, [study("s", [pt("L1", 100, 100, "v2", 0.9)])], schema)
    assert len(res.baseline.classes) == 7 and res.baseline.counts.shape == (9, 7)
    e = EPSILON
    hit = f1_of(1 + e, 1 + 7 * e, 1 + 9 * e)
    assert res.baseline_macro_f1 == pytest.approx((hit + 6 / 8) / 7, rel=1e-12)


def test_baseline_f1_of_nothing_is_all_epsilon():
    res = baseline_f1(np.zeros((0, 2), bool), np.zeros(0, int), np.zeros(0), [("k", "a"), ("k", "b")])
    assert res.macro_f1 == pytest.approx(1 / 3)  # 1 / (C + 1)
    assert res.to_dict()["confusion"]["rows"] == ["k/a", "k/b", "wrong", "not_hit"]
