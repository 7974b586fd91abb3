"""AP, mAP, precision/recall, missing/unknown studies, localization and the 6 mm F1 with hand-computed numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_fixtures import cls, counts, pt, run, study

from spine_kp.evaluation import average_precision, pr_curve, support_weighted_f1


def test_ap_of_a_hand_made_ranked_list_pooled_over_studies():
    # Class vertebra/v2, 5 GT points: 2 in study A, 2 in study B, 1 in study C (no prediction record at all).
    # Ranked predictions: 0.9 TP(A), 0.8 FP(A), 0.7 TP(A), 0.6 FP(B), 0.5 TP(B), 0.4 TP(B).
    #   rank  1    2    3    4    5    6
    #   P     1   1/2  2/3  1/2  3/5  2/3
    #   R    .2   .2   .4   .4   .6   .8      (denominator 5: C's point counts)
    # envelope from the right: 1, 2/3, 2/3, 2/3, 2/3, 2/3
    # AP = .2 * 1 + .2 * 2/3 (rank 3) + .2 * 2/3 (rank 5) + .2 * 2/3 (rank 6) = .2 + .4 = 0.6
    # (without interpolation it would be 0.5867; with C left out of the denominator 0.75)
    gt = [
        study("A", [pt("L1", 100, 100, "v2"), pt("L2", 100, 200, "v2")]),
        study("B", [pt("L1", 100, 100, "v2"), pt("L2", 100, 200, "v2")]),
        study("C", [pt("L3", 100, 300, "v2")]),
    ]
    pred = [
        study("A", [pt("L1", 101, 100, "v2", 0.9), pt("L3", 100, 400, "v2", 0.8), pt("L2", 100, 202, "v2", 0.7)]),
        study("B", [pt("L3", 300, 300, "v2", 0.6), pt("L1", 100, 99, "v2", 0.5), pt("L2", 99, 200, "v2", 0.4)]),
    ]
    r = run(gt, pred)
    c = cls(r, "vertebra/v2")
    assert (c.n_gt, c.tp, c.fp, c.fn) == (5, 4, 2, 1)
    assert c.precision == pytest.approx(4 / 6) and c.recall == pytest.approx(4 / 5)
    assert c.ap == pytest.approx(0.6)
    recall, precision = r.curves["vertebra/v2"]
    np.testing.assert_allclose(recall, [0.2, 0.2, 0.4, 0.4, 0.6, 0.8])
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 1 / 2, 3 / 5, 2 / 3])
    assert r.missing_studies == ("C",)


def test_tied_scores_form_one_operating_point_whatever_their_order():
    # a stable sort would give AP 1.0 for [TP, FP] and 0.5 for [FP, TP]; as one threshold both give P = 1/2 at R = 1
    s = np.array([0.5, 0.5])
    assert average_precision(s, np.array([True, False]), 1) == pytest.approx(0.5)
    assert average_precision(s, np.array([False, True]), 1) == pytest.approx(0.5)
    recall, precision = pr_curve(np.array([0.9, 0.5, 0.5, 0.1]), np.array([True, False, True, False]), 4)
    np.testing.assert_allclose(recall, [0.25, 0.5, 0.5])
    np.testing.assert_allclose(precision, [1.0, 2 / 3, 0.5])


def test_ap_edge_cases():
    assert average_precision(np.zeros(0), np.zeros(0, bool), 0) is None  # no ground truth: undefined
    assert average_precision(np.array([0.3]), np.array([False]), 0) is None
    assert average_precision(np.zeros(0), np.zeros(0, bool), 3) == 0.0  # ground truth, nothing predicted
    assert average_precision(np.array([0.9, 0.2]), np.array([False, False]), 2) == 0.0


def test_class_without_ground_truth_is_undefined_and_left_out_of_map():
    gt = [study("s", [pt("L1", 100, 100, "v2"), pt("L1-L2", 100, 150, "v1")])]
    pred = [study("s", [pt("L1", 100, 101, "v2", 0.9), pt("L4-L5", 100, 400, "v7", 0.8)])]
    r = run(gt, pred)
    assert r.defined_classes == ("vertebra/v2", "disc/v1")
    assert cls(r, "vertebra/v2").ap == pytest.approx(1.0)
    assert cls(r, "disc/v1").ap == 0.0 and cls(r, "disc/v1").precision is None  # no prediction: 0/0
    v7 = cls(r, "disc/v7")
    assert v7.ap is None and v7.recall is None and v7.precision == 0.0 and v7.fp == 1
    # mean over the 2 defined classes; counting the 7 undefined ones as 0 would give 1/9, as 1 would give 8/9
    assert r.map == pytest.approx(0.5)
    d = r.to_dict()
    assert d["map"] == pytest.approx(0.5) and "disc/v7" in d["undefined_classes"]


def test_map_is_undefined_without_any_ground_truth_grade():
    r = run([study("s", [pt("L1", 1, 1, "")])], [study("s", [pt("L1", 1, 1, "v1", 0.5)])])
    assert r.map is None and r.defined_classes == ()


def test_missing_prediction_counts_fn_and_unknown_study_is_ignored():
    gt = [study("s1", [pt("L1", 100, 100, "v2")]), study("s2", [pt("L1", 100, 100, "v2"), pt("L2", 100, 200, "")])]
    pred = [
        study("s1", [pt("L1", 100, 101, "v2", 0.9)]),
        study("s3", [pt("L1", 100, 100, "v2", 0.8), pt("L1", 500, 500, "v1", 0.7)]),  # not in GT: no FP, no TP
    ]
    r = run(gt, pred)
    assert counts(r, "vertebra/v2") == (1, 0, 1, 0)
    assert counts(r, "vertebra/v1") == (0, 0, 0, 0)
    assert r.missing_studies == ("s2",) and r.unknown_studies == ("s3",)
    assert r.n_studies == 2
    assert cls(r, "vertebra/v2").ap == pytest.approx(0.5)  # recall 1/2 at precision 1
    assert r.localization.overall.count == 3 and r.localization.overall.never_predicted == 2


def test_records_of_the_same_study_are_merged():
    gt = [study("s", [pt("L1", 100, 100, "v2")]), study("s", [pt("L2", 100, 200, "v2")], instance="other")]
    r = run(gt, [study("s", [pt("L1", 100, 100, "v2", 0.9)]), study("s", [pt("L2", 100, 200, "v2", 0.8)])])
    assert counts(r, "vertebra/v2") == (2, 0, 0, 0) and r.n_studies == 1


def test_localization_uses_the_best_scored_prediction_of_the_same_identification():
    sp = (0.5, 0.8)  # row, col
    gt = [
        study("a", [pt("L1", 100, 100, "v2"), pt("L2", 100, 200, "v1"), pt("L3", 100, 300, "")], spacing=sp),
        study("b", [pt("L4", 100, 400, "v1")], spacing=sp),
    ]
    pred = [
        study(
            "a",
            [
                pt("L1", 105, 100, "v2", 0.9),  # best L1: 5 px * 0.8 = 4 mm
                pt("L1", 100, 100, "v1", 0.5),  # exact, but lower score: not used
                pt("L2", 100, 206, "v1", 0.2),  # 6 px * 0.5 = 3 mm; a low score still counts
                pt("L1-L2", 100, 300, "v3", 0.9),  # another identification: L3 stays never predicted
            ],
        ),
        study("b", [pt("L4", 100, 420, "", 0.7)]),  # 20 px * 0.5 = 10 mm; no grade needed for localization
    ]
    loc = run(gt, pred).localization
    # errors 4, 3, 10 mm and one never predicted (L3)
    o = loc.overall
    assert (o.count, o.never_predicted) == (4, 1)
    assert o.mean == pytest.approx(17 / 3) and o.median == pytest.approx(4.0)
    assert o.p95 == pytest.approx(4 + 0.9 * 6)  # numpy linear percentile of [3, 4, 10] at index 1.9
    assert o.within_radius == pytest.approx(2 / 4)  # never-predicted counts as a miss
    by = {s.identification: s for s in loc.per_identification}
    assert list(by) == ["L1", "L2", "L3", "L4"]  # schema order
    assert by["L1"].mean == pytest.approx(4.0) and by["L3"].never_predicted == 1 and by["L3"].mean is None
    assert by["L4"].within_radius == 0.0


def test_f1_at_6mm_one_prediction_per_landmark():
    gt = [
        study(
            "s",
            [
                pt("L1", 100, 100, "v2"),
                pt("L2", 100, 200, "v1"),
                pt("L1-L2", 100, 150, "v2,v5"),
                pt("L2-L3", 100, 250, ""),  # no grade: not part of the figure
            ],
        )
    ]
    pred = [
        study(
            "s",
            [
                pt("L1", 105, 100, "v2", 0.9),  # best L1, 5 mm, v2 -> correct for vertebra/v2
                pt("L1", 100, 100, "v1", 0.3),  # not the best L1: ignored (else an FP for vertebra/v1)
                pt("L2", 107, 200, "v1", 0.8),  # 7 mm > 6: vertebra/v1 FN and FP (but a TP at 8 mm)
                pt("L1-L2", 101, 150, "v5", 0.7),  # disc/v5 correct, disc/v2 missed
                pt("L2-L3", 100, 250, "v3", 0.7),  # GT has no grade: left out
            ],
        )
    ]
    r = run(gt, pred)
    per = {c.to_dict()["class"]: c for c in r.f1_per_class}
    assert (per["vertebra/v1"].tp, per["vertebra/v1"].fp, per["vertebra/v1"].fn) == (0, 1, 1)
    assert per["vertebra/v1"].f1 == 0.0 and per["vertebra/v2"].f1 == 1.0
    assert per["disc/v2"].f1 == 0.0 and per["disc/v5"].f1 == 1.0
    assert per["disc/v3"].support == 0 and per["disc/v3"].fp == 0
    # support-weighted: (1*0 + 1*1 + 1*0 + 1*1) / 4
    assert r.f1_6mm == pytest.approx(0.5)
    # the 8 mm rules accept the 7 mm L2 point (TP) and count the exact-but-v1 L1 point as FP (wrong class circle)
    assert counts(r, "vertebra/v1") == (1, 1, 0, 0)


def test_support_weighted_f1_weights_by_support_and_is_undefined_without_support():
    gt = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], bool)
    pred = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], bool)
    f1, per = support_weighted_f1(gt, pred, np.ones(4, bool), [("k", "a"), ("k", "b")])
    # a: tp 2 fp 0 fn 1 -> 4/5; b: tp 1 fp 1 fn 0 -> 2/3; weighted (3 * 4/5 + 1 * 2/3) / 4
    assert per[0].f1 == pytest.approx(0.8) and per[1].f1 == pytest.approx(2 / 3)
    assert f1 == pytest.approx((3 * 0.8 + 2 / 3) / 4)
    f1_none, _ = support_weighted_f1(np.zeros((2, 2), bool), pred[:2], np.ones(2, bool), [("k", "a"), ("k", "b")])
    assert f1_none is None


def test_missing_score_ranks_as_one():
    gt = [study("s", [pt("L1", 100, 100, "v2"), pt("L2", 100, 200, "v2")])]
    # the unscored FP outranks the 0.9 TP: P = 0/1 then 1/2 at R = 1/2 -> AP = 0.5 * 0.5
    pred = [study("s", [pt("L3", 100, 400, "v2", None), pt("L1", 100, 100, "v2", 0.9)])]
    assert cls(run(gt, pred), "vertebra/v2").ap == pytest.approx(0.25)


def test_empty_ground_truth_is_all_undefined_and_still_reports(tmp_path):
    from spine_kp.evaluation.report import to_json, write_report

    r = run([], [study("x", [pt("L1", 1, 1, "v1", 0.5)])])
    assert r.map is None and r.f1_6mm is None and r.n_studies == 0 and r.unknown_studies == ("x",)
    assert all(c.ap is None and c.fp == 0 for c in r.classes)  # an unknown study adds no FP
    assert json.loads(to_json(r))["localization"]["overall"]["within_radius"] is None  # strict JSON: no NaN
    written = write_report(r, tmp_path / "rep")
    assert all(p.stat().st_size > 0 for p in written.values())


@pytest.mark.parametrize("group", [1, 2, 3])
def test_a_perfect_ranking_has_ap_exactly_one(group: int) -> None:
    """Every prediction a TP, scores tied in groups of ``group``: AP is 1.0, not 0.9999999999999999 (24 steps of 1/24
    summed as floats fall short of 1)."""
    for n_gt in range(1, 61):
        scores = np.repeat(np.arange(n_gt, 0, -1, dtype=float), group)[:n_gt]
        assert average_precision(scores, np.ones(n_gt, dtype=bool), n_gt) == 1.0, n_gt
