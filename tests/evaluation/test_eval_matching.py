"""The 8 mm rules, one behaviour per test, with hand-computed expectations (spacing (1, 1) unless stated)."""

from __future__ import annotations

import numpy as np
import pytest
from eval_fixtures import SCHEMA, cls, counts, pt, run, study

from spine_kp.evaluation import Encoder, match_study
from spine_kp.evaluation.matching import DUPLICATE, TP, pairwise_mm


def test_pairwise_mm_scales_x_by_column_and_y_by_row_spacing():
    # spacing (row 0.5, col 0.8): 10 px along x = 8 mm, 10 px along y = 5 mm
    d = pairwise_mm(np.array([[10.0, 0.0], [0.0, 10.0]]), np.zeros((1, 2)), np.array([[0.5, 0.8]]))
    np.testing.assert_allclose(d[:, 0], [8.0, 5.0])


def test_nearest_of_several_hits_is_the_tp_and_the_others_count_nowhere():
    gt = [study("s", [pt("L1", 100, 100, "v2")])]
    # distances 3, 1, 6 mm: all hit the one GT point; the 1 mm one (lowest score!) is the TP
    preds = [pt("L1", 103, 100, "v2", 0.5), pt("L1", 101, 100, "v2", 0.4), pt("L1", 106, 100, "v2", 0.9)]
    r = run(gt, [study("s", preds)])
    assert counts(r, "vertebra/v2") == (1, 0, 0, 2)  # TP, FP, FN, ignored
    # the two ignored hits are also left out of the ranking: only the TP (score 0.4) is ranked -> AP 1
    assert cls(r, "vertebra/v2").ap == pytest.approx(1.0)

    enc = Encoder(SCHEMA)
    m = match_study(enc.ground_truth(gt[0]), enc.predictions(study("s", preds)))
    c = SCHEMA.classes.index(("vertebra", "v2"))
    assert m.outcome[:, c].tolist() == [DUPLICATE, TP, DUPLICATE]


def test_equal_distance_hits_go_to_the_higher_score_regardless_of_order():
    gt = [study("s", [pt("L1", 100, 100, "v2")])]
    a, b = pt("L1", 103, 100, "v2", 0.3), pt("L1", 97, 100, "v2", 0.8)  # both 3 mm away
    enc = Encoder(SCHEMA)
    c = SCHEMA.classes.index(("vertebra", "v2"))
    for order in ([a, b], [b, a]):
        m = match_study(enc.ground_truth(gt[0]), enc.predictions(study("s", order)))
        assert [o for o, p in zip(m.outcome[:, c], order) if p.score == 0.8] == [TP]


def test_wrong_class_inside_a_circle_is_fp():
    gt = [study("s", [pt("L1", 100, 100, "v2")])]
    preds = [pt("L1", 102, 100, "v1", 0.9), pt("L1-L2", 100, 101, "v2", 0.8)]  # other grade; other kind, same grade
    r = run(gt, [study("s", preds)])
    assert counts(r, "vertebra/v1") == (0, 1, 0, 0)
    assert counts(r, "disc/v2") == (0, 1, 0, 0)  # a class is (kind, grade): disc/v2 is not vertebra/v2
    assert counts(r, "vertebra/v2") == (0, 0, 1, 0)


def test_prediction_far_from_everything_is_fp():
    r = run([study("s", [pt("L1", 100, 100, "v2")])], [study("s", [pt("L1", 100, 120, "v2", 0.9)])])
    assert counts(r, "vertebra/v2") == (0, 1, 1, 0)


# spacing (row 0.5 mm, col 0.8 mm), r = 8 mm
@pytest.mark.parametrize(
    ("dx", "dy", "hit"),
    [
        (9.9, 0, True),  # 9.9 * 0.8 = 7.92 mm
        (10.1, 0, False),  # 8.08 mm
        (0, 15.9, True),  # 15.9 * 0.5 = 7.95 mm
        (0, 16.1, False),  # 8.05 mm
        (12, 0, False),  # 9.6 mm (6.0 if the axes were swapped)
        (0, 12, True),  # 6.0 mm (9.6 if the axes were swapped)
        (6, 8, True),  # hypot(4.8, 4.0) = 6.25 mm
        (8, 10, False),  # hypot(6.4, 5.0) = 8.12 mm
    ],
)
def test_radius_boundary_with_non_square_pixels(dx, dy, hit):
    gt = [study("s", [pt("L1", 100, 100, "v2")], spacing=(0.5, 0.8))]
    r = run(gt, [study("s", [pt("L1", 100 + dx, 100 - dy, "v2", 0.9)], spacing=None)])
    assert counts(r, "vertebra/v2") == ((1, 0, 0, 0) if hit else (0, 1, 1, 0))


def test_radius_is_configurable():
    gt = [study("s", [pt("L1", 100, 100, "v2")])]
    pred = [study("s", [pt("L1", 107, 100, "v2", 0.9)])]  # 7 mm
    assert counts(run(gt, pred), "vertebra/v2")[0] == 1
    assert counts(run(gt, pred, radius=6.0), "vertebra/v2")[0] == 0


def test_every_default_radius_is_the_one_constant():
    import argparse

    from spine_kp.cli.evaluate import add_arguments
    from spine_kp.evaluation import DEFAULT_RADIUS_MM

    assert DEFAULT_RADIUS_MM == 8.0
    gt = [study("s", [pt("L1", 100, 100, "v2")])]
    assert run(gt, gt).radius == DEFAULT_RADIUS_MM and run(gt, gt).localization.radius == DEFAULT_RADIUS_MM
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--annotations", "a", "--predictions", "p"]).radius == DEFAULT_RADIUS_MM


@pytest.mark.parametrize("label", ["v2,v5", "v5,v2"])
def test_multi_label_ground_truth_belongs_to_every_class_of_its_set(label):
    gt = [study("s", [pt("L4-L5", 100, 100, label)])]
    only_v5 = run(gt, [study("s", [pt("L4-L5", 101, 100, "v5", 0.9)])])
    assert counts(only_v5, "disc/v5") == (1, 0, 0, 0)
    assert counts(only_v5, "disc/v2") == (0, 0, 1, 0)
    assert cls(only_v5, "disc/v2").n_gt == 1 and cls(only_v5, "disc/v5").n_gt == 1
    both = run(gt, [study("s", [pt("L4-L5", 101, 100, "v2,v5", 0.7)])])  # one point, two classes, one score
    assert counts(both, "disc/v5") == (1, 0, 0, 0) and counts(both, "disc/v2") == (1, 0, 0, 0)
    assert counts(both, "disc/v1") == (0, 0, 0, 0)


def test_empty_label_ignores_nearby_predictions_of_any_class():
    gt = [study("s", [pt("L3", 100, 100, ""), pt("L2", 100, 200, "v1")])]
    preds = [
        pt("L3", 103, 100, "v2", 0.9),  # near the empty point, hits nothing -> ignored
        pt("L3-L4", 100, 104, "v3", 0.8),  # another kind near the empty point -> ignored too
        pt("L3", 101, 100, "v1", 0.7),  # class of the far GT, but near the empty point -> ignored
        pt("L2", 100, 150, "v2", 0.6),  # far from everything -> FP
    ]
    r = run(gt, [study("s", preds)])
    assert counts(r, "vertebra/v2") == (0, 1, 0, 1)
    assert counts(r, "disc/v3") == (0, 0, 0, 1)
    assert counts(r, "vertebra/v1") == (0, 0, 1, 1)
    # the empty-label point still counts for localization: best L3 prediction is the 0.9 one, 3 mm away
    (l3,) = [s for s in r.localization.per_identification if s.identification == "L3"]
    assert l3.count == 1 and l3.mean == pytest.approx(3.0)


def test_ignored_predictions_are_left_out_of_the_ap_ranking():
    gt = [study("s", [pt("L1", 100, 100, "v2"), pt("L2", 100, 200, "")])]
    # highest score near the empty point (ignored); had it counted as FP, the ranking FP, TP would give AP 0.5
    preds = [pt("L2", 100, 202, "v2", 0.9), pt("L1", 100, 101, "v2", 0.5)]
    r = run(gt, [study("s", preds)])
    assert counts(r, "vertebra/v2") == (1, 0, 0, 1)
    assert cls(r, "vertebra/v2").ap == pytest.approx(1.0)


def test_a_hit_wins_over_the_empty_label_excuse():
    # within r of both a v2 point and an empty point: it is a hit (TP), not ignored
    gt = [study("s", [pt("L1", 100, 100, "v2"), pt("L2", 100, 104, "")])]
    r = run(gt, [study("s", [pt("L1", 100, 102, "v2", 0.9)])])
    assert counts(r, "vertebra/v2") == (1, 0, 0, 0)


def test_match_level_restricts_hits_to_the_same_identification():
    gt = [study("s", [pt("L1", 100, 100, "v2"), pt("L2", 100, 107, "v2")])]
    # the "L1" prediction is 3 mm from L1 and 4 mm from L2; the "L2" one is 2 mm from L1 and 5 mm from L2
    preds = [study("s", [pt("L1", 100, 103, "v2", 0.9), pt("L2", 100, 102, "v2", 0.8)])]
    # any level: both hit L1 (nearest); its nearest hit (the "L2" one) is the TP, the other is ignored; L2 is FN
    assert counts(run(gt, preds), "vertebra/v2") == (1, 0, 1, 1)
    assert counts(run(gt, preds, match_level=True), "vertebra/v2") == (2, 0, 0, 0)


def test_match_level_makes_a_wrong_level_prediction_fp_even_near_an_empty_point():
    gt = [study("s", [pt("L1", 100, 100, "v2"), pt("L3", 100, 300, "")])]
    preds = [study("s", [pt("L2", 100, 102, "v2", 0.9), pt("L4", 100, 301, "v2", 0.8)])]
    assert counts(run(gt, preds), "vertebra/v2") == (1, 0, 0, 1)
    assert counts(run(gt, preds, match_level=True), "vertebra/v2") == (0, 2, 1, 0)


def test_match_study_handles_empty_sides():
    enc = Encoder(SCHEMA)
    gt = enc.ground_truth(study("s", [pt("L1", 1, 1, "v2")]))
    none = enc.predictions(None)
    m = match_study(gt, none)
    assert m.fn.sum() == 1 and m.outcome.shape == (0, len(SCHEMA.classes))
    m2 = match_study(enc.ground_truth(study("s", [])), enc.predictions(study("s", [pt("L1", 1, 1, "v1,v2", 0.5)])))
    # no ground truth: the point is an FP in each class it carries (one per grade)
    assert m2.fp.tolist()[:2] == [1, 1] and m2.fp.sum() == 2
