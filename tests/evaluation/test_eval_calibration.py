"""Calibration: reliability bins, ECE and Brier score of emitted points, and temperature scaling (numpy only)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_fixtures import pt, run, study

from spine_kp.evaluation.calibration import (
    bin_index,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    probabilities,
    reliability,
    sigmoid_nll,
    softmax_nll,
)


def test_ece_and_brier_by_hand():
    scores = np.array([0.05, 0.05, 0.95, 0.95, 1.0])
    is_tp = np.array([0, 1, 1, 1, 0], bool)
    # bin 0: 2 points, TP share 0.5, mean score 0.05; bin 14: 3 points, TP share 2/3, mean score 2.9/3
    ece = 2 / 5 * abs(0.5 - 0.05) + 3 / 5 * abs(2 / 3 - 2.9 / 3)
    assert expected_calibration_error(scores, is_tp) == pytest.approx(ece)
    assert brier_score(scores, is_tp) == pytest.approx((0.05**2 + 0.95**2 + 0.05**2 + 0.05**2 + 1.0) / 5)
    rel = reliability(scores, is_tp)
    assert rel.counts.tolist() == [2] + [0] * 13 + [3]
    assert rel.to_dict()["bins"][1] == {"lo": 1 / 15, "hi": 2 / 15, "count": 0, "confidence": None, "accuracy": None}


def test_bins_are_15_equal_width_with_one_in_the_last():
    assert bin_index(np.array([0.0, 1 / 15, 0.5, 14 / 15 - 1e-9, 1.0])).tolist() == [0, 1, 7, 13, 14]


def test_no_points_is_undefined():
    assert expected_calibration_error(np.zeros(0), np.zeros(0, bool)) is None
    assert brier_score(np.zeros(0), np.zeros(0, bool)) is None


def test_report_population_is_the_counted_points_per_kind():
    gt = [study("s", [pt("L1", 100, 100, "v2"), pt("L2", 100, 200, ""), pt("L1-L2", 100, 150, "v2,v5")])]
    pred = [
        study(
            "s",
            [
                pt("L1", 100, 100, "v2", 0.9),  # TP
                pt("L1", 101, 100, "v2", 0.8),  # a second hit of the same point: counted nowhere, left out
                pt("L3", 100, 400, "v1", 0.6),  # FP
                pt("L2", 100, 200, "v1", 0.4),  # near an empty label: counted nowhere, left out
                pt("L1-L2", 100, 150, "v2,v5", 0.7),  # TP in both classes: two pairs
            ],
        )
    ]
    cal = {c.name: c for c in run(gt, pred).calibration}
    assert list(cal) == ["vertebra", "disc", "all"]
    assert cal["vertebra"].n == 2 and cal["disc"].n == 2 and cal["all"].n == 4
    assert cal["vertebra"].ece == pytest.approx(0.5 * 0.1 + 0.5 * 0.6)
    assert cal["vertebra"].brier == pytest.approx((0.1**2 + 0.6**2) / 2)
    assert cal["disc"].ece == pytest.approx(0.3) and cal["disc"].brier == pytest.approx(0.09)
    d = json.loads(json.dumps(run(gt, pred).to_dict()))["calibration"]
    assert d["n_bins"] == 15 and [k["kind"] for k in d["per_kind"]] == ["vertebra", "disc", "all"]
    assert d["per_kind"][0]["ece"] == pytest.approx(0.35)


# ---------------------------------------------------------------------------------------------- temperature scaling
def _overconfident_single(rng: np.random.Generator, n: int, g: int, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z); the model says factor * z (factor > 1: over-confident)."""
    z = rng.normal(0.0, 1.5, (n, g))
    p = probabilities(z, multi_label=False)
    label = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return factor * z, np.eye(g)[label]


def _overconfident_multi(rng: np.random.Generator, n: int, g: int, factor: float) -> tuple[np.ndarray, np.ndarray]:
    z = rng.normal(-1.0, 1.5, (n, g))
    return factor * z, (rng.random((n, g)) < probabilities(z, multi_label=True)).astype(float)


@pytest.mark.parametrize("multi_label", [False, True], ids=["softmax", "sigmoid"])
@pytest.mark.parametrize("factor", [3.0, 0.5], ids=["over", "under"])
def test_temperature_recovers_the_scale_of_the_logits(multi_label, factor):
    make = _overconfident_multi if multi_label else _overconfident_single
    logits, targets = make(np.random.default_rng(0), 4000, 4, factor)
    fit = fit_temperature(logits, targets, multi_label)
    assert fit.temperature == pytest.approx(factor, rel=0.1)
    assert fit.nll_after < fit.nll_before and fit.n == 4000


def test_untrained_grades_are_impossible_in_the_softmax_and_left_out_of_the_bce():
    rng = np.random.default_rng(1)
    logits, targets = _overconfident_single(rng, 2000, 3, 3.0)
    mask = np.array([True, True, False])
    fit = fit_temperature(logits, targets, False, grade_mask=mask)
    keep = targets[:, 2] == 0  # rows labelled with the untrained grade say nothing
    z = np.where(mask, logits[keep], -np.inf)
    assert fit.n == int(keep.sum())
    assert fit.nll_after == pytest.approx(softmax_nll(z, targets[keep].argmax(1), fit.temperature))
    # the untrained column's logits do not matter
    wild = logits.copy()
    wild[:, 2] = 50.0
    assert fit_temperature(wild, targets, False, grade_mask=mask).temperature == pytest.approx(fit.temperature)
    multi = fit_temperature(wild, targets, True, grade_mask=mask)
    assert multi.nll_after == pytest.approx(sigmoid_nll(wild[:, :2], targets[:, :2], multi.temperature))


def test_too_few_points_keep_temperature_one():
    logits, targets = _overconfident_single(np.random.default_rng(2), 10, 2, 3.0)
    assert fit_temperature(logits, targets, False, min_points=20).temperature == 1.0
    assert fit_temperature(np.zeros((0, 2)), np.zeros((0, 2)), True).temperature == 1.0


def _records(logits: np.ndarray, targets: np.ndarray, temperature: float):
    """One study per landmark: the ground-truth L1 with its grade, the prediction at the same place with its
    top grade scored p(top) (heatmap peak 1), as ``spine-kp predict`` writes a single-label kind."""
    probs = probabilities(logits, multi_label=False, temperature=temperature)
    grades = ("v1", "v2")
    gt, pred = [], []
    for i, (p, y) in enumerate(zip(probs, targets)):
        top = int(p.argmax())
        gt.append(study(f"s{i}", [pt("L1", 100, 100, grades[int(y.argmax())])]))
        pred.append(study(f"s{i}", [pt("L1", 100, 100, grades[top], float(p[top]))]))
    return gt, pred


def test_calibration_lowers_the_ece_of_over_confident_scores():
    rng = np.random.default_rng(3)
    fit_logits, fit_targets = _overconfident_single(rng, 2000, 2, 4.0)  # "validation split"
    test_logits, test_targets = _overconfident_single(rng, 600, 2, 4.0)  # scored by the evaluator
    t = fit_temperature(fit_logits, fit_targets, False).temperature
    raw = run(*_records(test_logits, test_targets, 1.0)).calibration[0]
    calibrated = run(*_records(test_logits, test_targets, t)).calibration[0]
    assert raw.name == "vertebra" and raw.n == calibrated.n == 600
    assert raw.ece > 0.1  # over-confident: scores near 1, right far less often
    assert calibrated.ece < raw.ece / 2
    assert calibrated.brier < raw.brier


# ---------------------------------------------------------------------------------------------- Platt scaling
def test_platt_fit_lowers_the_ece_of_under_and_over_confident_scores():
    from spine_kp.evaluation.calibration import fit_platt

    rng = np.random.default_rng(0)
    peaks = rng.uniform(0.3, 0.6, 400)  # heatmap peaks of landmarks that are right 95 % of the time
    under = fit_platt(peaks, rng.random(400) < 0.95)
    assert under.ece_before > 0.3 and under.ece_after < 0.05
    s = rng.uniform(0.0, 1.0, 2000)  # over-confident: right with probability s**3
    over = fit_platt(s, rng.random(2000) < s**3)
    assert over.ece_before > 0.15 and over.ece_after < 0.05 and over.a > 1.0


def test_platt_map_is_strictly_increasing_and_keeps_ap():
    from spine_kp.evaluation.calibration import MIN_SLOPE, fit_platt
    from spine_kp.evaluation.metrics import average_precision

    rng = np.random.default_rng(1)
    s = rng.uniform(0.05, 0.95, 300)
    y = rng.random(300) < 1.0 - s  # right less often the higher the score: the least-loss slope is negative
    fit = fit_platt(s, y)
    assert fit.a == pytest.approx(MIN_SLOPE) and np.isfinite(fit.b)
    mapped = fit(s)
    assert np.all(np.diff(mapped[np.argsort(s)]) > 0)  # no ties, no reordering
    assert average_precision(mapped, y, int(y.sum())) == pytest.approx(average_precision(s, y, int(y.sum())))


def test_platt_with_too_few_points_is_the_identity_and_zero_stays_zero():
    from spine_kp.evaluation.calibration import fit_platt, platt

    fit = fit_platt(np.array([0.2, 0.9]), np.array([True, False]), min_points=20)
    assert (fit.a, fit.b, fit.n) == (1.0, 0.0, 2)
    np.testing.assert_allclose(fit(np.array([0.2, 0.5, 0.9])), [0.2, 0.5, 0.9], atol=1e-9)
    assert platt(0.0, 2.0, 3.0) == 0.0
    only_right = fit_platt(np.full(50, 0.4), np.ones(50, bool))  # Platt's smoothed targets: finite, below 1
    assert 0.9 < float(only_right(0.4)) < 1.0
