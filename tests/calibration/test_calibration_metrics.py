"""Calibration metrics: reliability bins, ECE and Brier score of scored outcomes (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from spine_kp.calibration.metrics import bin_index, brier_score, expected_calibration_error, reliability


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
