"""What the evaluator reports (:class:`EvaluationResult`); ``to_dict`` is ``--json`` and ``metrics.json``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spine_kp.calibration.metrics import N_BINS, Reliability
from spine_kp.evaluation.against_data import DataChecks
from spine_kp.evaluation.baseline_f1 import BaselineF1
from spine_kp.evaluation.localization import LocalizationSummary
from spine_kp.evaluation.metrics import ClassResult, F1Class


@dataclass(frozen=True)
class EvaluationResult:
    """Everything the evaluator reports; ``to_dict`` is what ``--json`` prints and ``metrics.json`` holds.

    Attributes:
        radius: r in mm of the matching rules and the localization share.
        match_level: predictions only matched ground truth of their own identification.
        classes: per class (schema order) counts, precision, recall, AP.
        map: mean AP over the defined classes (None when no class has ground truth).
        localization: error summary per identification and overall.
        f1_6mm: support-weighted F1 with one prediction per landmark at ``f1_radius`` (competition figure).
        f1_per_class: its per-class details.
        f1_radius: radius of that figure (6 mm).
        n_studies: ground-truth studies evaluated.
        missing_studies: ground-truth studies without predictions (all their points are FN / never predicted).
        unknown_studies: predicted studies absent from the ground truth (ignored).
        baseline: the competition baseline's macro F1 at 6 mm and its confusion matrix (``baseline_macro_f1``).
        calibration: reliability bins, ECE and Brier score of the emitted scores per kind, then of all points.
        curves: class name -> (recall, precision) operating points, for plots.
        scored: kind (then "all") -> ((N,) scores, (N,) bool TP) of the pairs the calibration figures use, e.g. to
            fit a score calibration (:func:`spine_kp.calibration.fit.fit_platt`).
        errors: identification -> localization errors in mm (NaN = never predicted), for plots.
        data_checks: both files checked against the images of the data root (None without one).
        schema: name of the schema scored with (it gives the classes).
        warnings: what reading the files found (schema choice, labels skipped), lines without ``warning:``; not in
            ``to_dict``.
    """

    radius: float
    match_level: bool
    classes: tuple[ClassResult, ...]
    map: float | None
    localization: LocalizationSummary
    f1_6mm: float | None
    f1_per_class: tuple[F1Class, ...]
    f1_radius: float
    n_studies: int
    missing_studies: tuple[str, ...]
    unknown_studies: tuple[str, ...]
    baseline: BaselineF1 | None = field(default=None, compare=False)
    calibration: tuple[Reliability, ...] = field(default=(), compare=False)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False, compare=False)
    scored: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False, compare=False)
    errors: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    data_checks: DataChecks | None = field(default=None, compare=False)
    schema: str | None = field(default=None, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def defined_classes(self) -> tuple[str, ...]:
        """Classes with ground truth (the ones mAP averages)."""
        return tuple(c.name for c in self.classes if c.defined)

    @property
    def undefined_classes(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes if not c.defined)

    @property
    def baseline_macro_f1(self) -> float | None:
        """The competition baseline's macro F1 (see :mod:`spine_kp.evaluation.baseline_f1`)."""
        return self.baseline.macro_f1 if self.baseline is not None else None

    def to_dict(self) -> dict[str, object]:
        return {
            "schema": self.schema,
            "radius_mm": self.radius,
            "match_level": self.match_level,
            "n_studies": self.n_studies,
            "classes": [c.to_dict() for c in self.classes],
            "map": self.map,
            "defined_classes": list(self.defined_classes),
            "undefined_classes": list(self.undefined_classes),
            "localization": self.localization.to_dict(),
            "f1_6mm": self.f1_6mm,
            "f1": {"radius_mm": self.f1_radius, "per_class": [c.to_dict() for c in self.f1_per_class]},
            "baseline_macro_f1": self.baseline_macro_f1,
            "baseline_f1": self.baseline.to_dict() if self.baseline is not None else None,
            "calibration": {
                "radius_mm": self.radius,
                "n_bins": self.calibration[0].counts.size if self.calibration else N_BINS,
                "per_kind": [r.to_dict() for r in self.calibration],
            },
            "missing_studies": list(self.missing_studies),
            "unknown_studies": list(self.unknown_studies),
            "data_checks": self.data_checks.to_dict() if self.data_checks is not None else None,
        }


__all__ = ["EvaluationResult"]
