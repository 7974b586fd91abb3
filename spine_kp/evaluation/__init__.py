"""Evaluation with the 8 mm rules (SPEC section 4): pure numpy, no torch.

Layers, each usable alone: :mod:`matching` (the rules on arrays: one study or a padded batch), :mod:`metrics`
(AP, F1), :mod:`localization` (errors in mm), :mod:`encode` (records -> arrays), :mod:`spacing` (where the pixel
spacing comes from), :mod:`evaluate` (records/files -> :class:`EvaluationResult`), :mod:`report` (tables, plots).
"""

from __future__ import annotations

from spine_kp.evaluation.encode import Encoder
from spine_kp.evaluation.evaluate import EvaluationResult, evaluate_files, evaluate_records
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
