"""The evaluator's calibration report: which (point, class) pairs it scores, and what a temperature fit does to it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_fixtures import pt, run, study

from spine_kp.calibration.apply import probabilities
from spine_kp.calibration.fit import fit_temperature


def _overconfident_single(rng: np.random.Generator, n: int, g: int, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z); the model says factor * z (factor > 1: over-confident)."""
    z = rng.normal(0.0, 1.5, (n, g))
    p = probabilities(z, multi_label=False)
    label = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return factor * z, np.eye(g)[label]


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
