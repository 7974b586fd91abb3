"""Evaluation with the 8 mm rules (SPEC section 4): pure numpy, no torch.

Layers, each usable alone: :mod:`matching` (the rules on arrays: one study or a padded batch), :mod:`metrics`
(AP, F1), :mod:`baseline_f1` (the competition baseline's macro F1), :mod:`localization` (errors in mm),
:mod:`encode` (records -> arrays), :mod:`spacing` (where the pixel spacing comes from), :mod:`against_data` (both
files checked against the images of a DICOM data root), :mod:`inputs` (both files read, and what would score wrongly
refused) with :mod:`schema_choice` (which schema scores), :mod:`evaluate` (records/files ->
:class:`~spine_kp.evaluation.result.EvaluationResult`, in :mod:`result`), :mod:`report` (tables, plots). The
reliability bins, ECE and Brier score it reports are :mod:`spine_kp.calibration.metrics`'s.
"""

from __future__ import annotations

from spine_kp.calibration.metrics import Reliability, reliability
from spine_kp.evaluation.against_data import DataChecks, check_against_images, scan_data_root
from spine_kp.evaluation.baseline_f1 import BaselineF1
from spine_kp.evaluation.encode import Encoder
from spine_kp.evaluation.evaluate import evaluate_files, evaluate_records
from spine_kp.evaluation.matching import DEFAULT_RADIUS_MM, GroundTruth, Predictions, StudyMatch, match_study
from spine_kp.evaluation.metrics import ClassResult, average_precision, pr_curve, support_weighted_f1
from spine_kp.evaluation.result import EvaluationResult
from spine_kp.evaluation.spacing import SpacingError, fill_spacing

__all__ = [
    "DEFAULT_RADIUS_MM",
    "BaselineF1",
    "ClassResult",
    "DataChecks",
    "Encoder",
    "EvaluationResult",
    "GroundTruth",
    "Predictions",
    "Reliability",
    "SpacingError",
    "StudyMatch",
    "average_precision",
    "check_against_images",
    "evaluate_files",
    "evaluate_records",
    "fill_spacing",
    "match_study",
    "pr_curve",
    "reliability",
    "scan_data_root",
    "support_weighted_f1",
]
