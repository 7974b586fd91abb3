"""Evaluation with the 8 mm rules (SPEC section 4): pure numpy, no torch.

Layers, each usable alone: :mod:`matching` (one study, arrays), :mod:`metrics` (AP, F1), :mod:`localization`
(errors in mm), :mod:`evaluate` (records/files -> :class:`EvaluationResult`), :mod:`report` (tables and plots).
"""

from __future__ import annotations

from spine_kp.evaluation.evaluate import Encoder, EvaluationResult, evaluate_files, evaluate_records
from spine_kp.evaluation.matching import GroundTruth, Predictions, StudyMatch, match_study
from spine_kp.evaluation.metrics import ClassResult, average_precision, pr_curve, support_weighted_f1
from spine_kp.evaluation.spacing import SpacingError, fill_spacing

__all__ = [
    "ClassResult",
    "Encoder",
    "EvaluationResult",
    "GroundTruth",
    "Predictions",
    "SpacingError",
    "StudyMatch",
    "average_precision",
    "evaluate_files",
    "evaluate_records",
    "fill_spacing",
    "match_study",
    "pr_curve",
    "support_weighted_f1",
]
