"""Calibration fits: temperature scaling of grade logits and Platt scaling of scores (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from spine_kp.calibration.apply import platt, probabilities
from spine_kp.calibration.fit import MIN_SLOPE, fit_platt, fit_temperature
from spine_kp.calibration.metrics import sigmoid_nll, softmax_nll
from spine_kp.evaluation.metrics import average_precision


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


def test_platt_fit_lowers_the_ece_of_under_and_over_confident_scores():
    rng = np.random.default_rng(0)
    peaks = rng.uniform(0.3, 0.6, 400)  # heatmap peaks of landmarks that are right 95 % of the time
    under = fit_platt(peaks, rng.random(400) < 0.95)
    assert under.ece_before > 0.3 and under.ece_after < 0.05
    s = rng.uniform(0.0, 1.0, 2000)  # over-confident: right with probability s**3
    over = fit_platt(s, rng.random(2000) < s**3)
    assert over.ece_before > 0.15 and over.ece_after < 0.05 and over.a > 1.0


def test_platt_map_is_strictly_increasing_and_keeps_ap():
    rng = np.random.default_rng(1)
    s = rng.uniform(0.05, 0.95, 300)
    y = rng.random(300) < 1.0 - s  # right less often the higher the score: the least-loss slope is negative
    fit = fit_platt(s, y)
    assert fit.a == pytest.approx(MIN_SLOPE) and np.isfinite(fit.b)
    mapped = fit(s)
    assert np.all(np.diff(mapped[np.argsort(s)]) > 0)  # no ties, no reordering
    assert average_precision(mapped, y, int(y.sum())) == pytest.approx(average_precision(s, y, int(y.sum())))


def test_platt_with_too_few_points_is_the_identity_and_zero_stays_zero():
    fit = fit_platt(np.array([0.2, 0.9]), np.array([True, False]), min_points=20)
    assert (fit.a, fit.b, fit.n) == (1.0, 0.0, 2)
    np.testing.assert_allclose(fit(np.array([0.2, 0.5, 0.9])), [0.2, 0.5, 0.9], atol=1e-9)
    assert platt(0.0, 2.0, 3.0) == 0.0
    only_right = fit_platt(np.full(50, 0.4), np.ones(50, bool))  # Platt's smoothed targets: finite, below 1
    assert 0.9 < float(only_right(0.4)) < 1.0
