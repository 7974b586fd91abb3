"""Records -> arrays, padded batches, and batch-vs-single equivalence of the matching."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from eval_fixtures import SCHEMA, pt, run, study

from spine_kp.evaluation import Encoder, match_study
from spine_kp.evaluation import encode as encode_mod
from spine_kp.evaluation.encode import batches, pad_ground_truth, pad_predictions
from spine_kp.evaluation.matching import PAD


def test_encoder_maps_grades_to_classes_and_keeps_empty_and_spacing():
    enc = Encoder(SCHEMA)
    rec = study("s", [pt("L1-L2", 1, 2, "v5,v2"), pt("L1", 3, 4, ""), pt("L2", 5, 6, "v1")], spacing=(0.5, 0.8))
    gt = enc.ground_truth(rec)
    names = [SCHEMA.classes[c] for c in np.nonzero(gt.classes[0])[0]]
    assert names == [("disc", "v2"), ("disc", "v5")]
    assert gt.empty.tolist() == [False, True, False] and not gt.classes[1].any()
    assert gt.classes[2, SCHEMA.classes.index(("vertebra", "v1"))]
    np.testing.assert_array_equal(gt.xy, [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(gt.spacing, [[0.5, 0.8]] * 3)
    assert gt.ident.tolist() == [SCHEMA.index("L1-L2"), SCHEMA.index("L1"), SCHEMA.index("L2")]


def test_padded_batch_marks_padding_and_keeps_each_study():
    enc = Encoder(SCHEMA)
    recs = [study("a", [pt("L1", 1, 1, "v1")]), None, study("c", [pt("L2", 2, 2, "v2", 0.3), pt("L3", 3, 3, "", 0.4)])]
    flat = enc.flatten(recs)
    assert flat.counts.tolist() == [1, 0, 2]
    pred = pad_predictions(flat, 0, 3)
    assert pred.xy.shape == (3, 2, 2) and pred.ident[1].tolist() == [PAD, PAD]
    assert pred.valid.tolist() == [[True, False], [False, False], [True, True]]
    np.testing.assert_array_equal(pred.score[2], [0.3, 0.4])
    gt = pad_ground_truth(enc.flatten([recs[0], recs[2]]), 1, 2)  # a slice of the studies
    assert gt.xy.shape == (1, 2, 2) and gt.ident[0].tolist() == [SCHEMA.index("L2"), SCHEMA.index("L3")]


def test_batches_cover_every_study_once_and_respect_the_budget():
    g = np.array([12, 12, 12, 500, 12, 0, 12])
    p = np.array([24, 30, 24, 40, 0, 24, 24])
    ranges = list(batches(g, p, 9, budget=12 * 30 * 9 * 2))
    assert [i for lo, hi in ranges for i in range(lo, hi)] == list(range(7))
    for lo, hi in ranges:
        size = (hi - lo) * g[lo:hi].max() * p[lo:hi].max() * 9
        assert hi - lo == 1 or size <= 12 * 30 * 9 * 2
    assert (3, 4) in ranges  # the big study alone
    assert list(batches(np.zeros(0, int), np.zeros(0, int), 9)) == []


def test_batched_matching_equals_matching_each_study_alone():
    enc = Encoder(SCHEMA)
    rng = np.random.default_rng(0)
    grades = ["v1", "v2"]
    gts, preds = [], []
    for i in range(6):
        n_g, n_p = int(rng.integers(0, 5)), int(rng.integers(0, 7))
        gts.append(study(f"s{i}", [pt("L1", *rng.integers(0, 20, 2), rng.choice(grades)) for _ in range(n_g)]))
        preds.append(
            study(f"s{i}", [pt("L1", *rng.integers(0, 20, 2), rng.choice(grades), rng.random()) for _ in range(n_p)])
        )
    gflat, pflat = enc.flatten(gts, need_spacing=True), enc.flatten(preds)
    batch = match_study(pad_ground_truth(gflat, 0, 6), pad_predictions(pflat, 0, 6), radius=6.0)
    for i in range(6):
        one = match_study(enc.ground_truth(gts[i]), enc.predictions(preds[i]), radius=6.0)
        n_g, n_p = len(gts[i].points), len(preds[i].points)
        np.testing.assert_array_equal(batch.outcome[i, :n_p], one.outcome)
        np.testing.assert_array_equal(batch.gt_tp[i, :n_g], one.gt_tp)
        assert not batch.outcome[i, n_p:].any() and not batch.gt_tp[i, n_g:].any()  # padding counts nowhere


@pytest.mark.parametrize("budget", [1, 10_000_000])
def test_result_does_not_depend_on_how_studies_are_batched(budget):
    gt = [study(f"s{i}", [pt("L1", 10 * i, 5, "v2"), pt("L1-L2", 10 * i, 20, "v1,v3")]) for i in range(5)]
    pred = [study(f"s{i}", [pt("L1", 10 * i + i, 5, "v2", 0.1 * i + 0.05)] * (i % 3)) for i in range(5)]
    reference = run(gt, pred).to_dict()
    original = encode_mod.batches
    with mock.patch("spine_kp.evaluation.pool.batches", lambda g, p, c: original(g, p, c, budget=budget)):
        assert run(gt, pred).to_dict() == reference
