"""Score a prediction file against a ground-truth file: records -> arrays -> per-study matching -> pooled metrics.

Studies are processed in sorted ``studyUid`` order and every per-study step is independent of point order, so the
result does not depend on the order of studies or points in either file. Several records with the same
``studyUid`` are merged. Prediction points without a ``score`` rank as score 1.0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spine_kp.evaluation.localization import LocalizationSummary, localization_errors, summarize_by_identification
from spine_kp.evaluation.matching import DUPLICATE, FP, NEAR_EMPTY, TP, GroundTruth, Predictions, match_study
from spine_kp.evaluation.metrics import (
    ClassResult,
    F1Class,
    average_precision,
    mean_ap,
    pr_curve,
    ratio,
    support_weighted_f1,
)
from spine_kp.evaluation.spacing import SpacingError, fill_spacing
from spine_kp.io.annotations import read_annotations
from spine_kp.schema import Schema
from spine_kp.types import Point, StudyRecord


class Encoder:
    """Turns study records into the arrays of :mod:`spine_kp.evaluation.matching` for one schema.

    Identification codes follow the schema's landmark order; names outside the schema get codes after them.
    """

    def __init__(self, schema: Schema) -> None:
        self.classes: tuple[tuple[str, str], ...] = schema.classes
        self._class_index = {c: i for i, c in enumerate(self.classes)}
        self.identifications: list[str] = list(schema.landmarks)
        self._ident_index = {n: i for i, n in enumerate(self.identifications)}

    def ident_code(self, name: str) -> int:
        code = self._ident_index.get(name)
        if code is None:
            code = self._ident_index[name] = len(self.identifications)
            self.identifications.append(name)
        return code

    def _common(self, points: Sequence[Point]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(points)
        xy = np.array([p.coord for p in points], dtype=np.float64).reshape(n, 2)  # (N, 2) (x, y) px
        ident = np.array([self.ident_code(p.identification) for p in points], dtype=np.int64)
        classes = np.zeros((n, len(self.classes)), dtype=bool)  # (N, C)
        for i, p in enumerate(points):
            for g in p.grades:
                c = self._class_index.get((p.kind, g))
                if c is not None:
                    classes[i, c] = True
        return xy, ident, classes

    def ground_truth(self, record: StudyRecord) -> GroundTruth:
        """Arrays of a ground-truth study; every image with points must carry ``pixel_spacing``."""
        points: list[Point] = []
        spacing: list[tuple[float, float]] = []
        for im in record.images:
            if im.points and im.pixel_spacing is None:
                raise SpacingError(f"study {record.study_uid}: no pixel spacing for instance {im.instance_uid}")
            points.extend(im.points)
            spacing.extend([im.pixel_spacing] * len(im.points))  # type: ignore[list-item]
        xy, ident, classes = self._common(points)
        empty = np.array([not p.grades for p in points], dtype=bool)
        sp = np.array(spacing, dtype=np.float64).reshape(len(points), 2)  # (G, 2) (row_mm, col_mm)
        return GroundTruth(xy=xy, spacing=sp, classes=classes, empty=empty, ident=ident)

    def predictions(self, record: StudyRecord | None) -> Predictions:
        """Arrays of a prediction study (``None`` gives no predictions)."""
        points = list(record.points) if record is not None else []
        xy, ident, classes = self._common(points)
        score = np.array([1.0 if p.score is None else p.score for p in points], dtype=np.float64)
        return Predictions(xy=xy, classes=classes, score=score, ident=ident)


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
        curves: class name -> (recall, precision) operating points, for plots.
        errors: identification -> localization errors in mm (NaN = never predicted), for plots.
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
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False, compare=False)
    errors: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def defined_classes(self) -> tuple[str, ...]:
        """Classes with ground truth (the ones mAP averages)."""
        return tuple(c.name for c in self.classes if c.defined)

    @property
    def undefined_classes(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes if not c.defined)

    def to_dict(self) -> dict[str, object]:
        return {
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
            "missing_studies": list(self.missing_studies),
            "unknown_studies": list(self.unknown_studies),
        }


def _by_study(records: Iterable[StudyRecord]) -> dict[str, list[StudyRecord]]:
    out: dict[str, list[StudyRecord]] = {}
    for rec in records:
        out.setdefault(rec.study_uid, []).append(rec)
    return out


def _merge(uid: str, recs: list[StudyRecord]) -> StudyRecord:
    return recs[0] if len(recs) == 1 else StudyRecord(uid, tuple(im for r in recs for im in r.images))


def evaluate_records(
    gt_records: Iterable[StudyRecord],
    pred_records: Iterable[StudyRecord],
    schema: Schema,
    radius: float = 8.0,
    match_level: bool = False,
    f1_radius: float = 6.0,
) -> EvaluationResult:
    """Score predictions against ground truth (every ground-truth image must carry its pixel spacing).

    Args:
        gt_records: ground-truth studies (see :func:`spine_kp.evaluation.spacing.fill_spacing`).
        pred_records: predicted studies, points with ``score``.
        schema: gives the classes (kind, grade) and the identification order.
        radius: r in mm.
        match_level: a prediction can only match ground truth of the same identification.
        f1_radius: radius of the competition's support-weighted F1.

    Raises:
        SpacingError: a ground-truth image with points has no spacing (names the study).
    """
    gt_by, pred_by = _by_study(gt_records), _by_study(pred_records)
    enc = Encoder(schema)
    n_c = len(enc.classes)
    tp, fp, fn, ign, n_gt = (np.zeros(n_c, dtype=np.int64) for _ in range(5))
    scores, outcomes, errors, err_ident, f1_gt, f1_pred, f1_within = [], [], [], [], [], [], []
    for uid in sorted(gt_by):
        gt = enc.ground_truth(_merge(uid, gt_by[uid]))
        pred = enc.predictions(_merge(uid, pred_by[uid]) if uid in pred_by else None)
        m = match_study(gt, pred, radius=radius, match_level=match_level)
        tp += m.tp
        fp += m.fp
        fn += m.fn
        ign += ((m.outcome == DUPLICATE) | (m.outcome == NEAR_EMPTY)).sum(axis=0)
        n_gt += gt.classes.sum(axis=0)
        scores.append(pred.score)
        outcomes.append(m.outcome)
        err, best = localization_errors(gt, pred)
        errors.append(err)
        err_ident.append(gt.ident)
        graded = ~gt.empty  # the competition figure grades only labelled landmarks
        f1_gt.append(gt.classes[graded])
        paired = pred.classes[best] if len(pred) else np.zeros_like(gt.classes)  # (G, C); best = -1 fixed below
        f1_pred.append((paired & (best >= 0)[:, None])[graded])
        f1_within.append((err <= f1_radius)[graded])  # NaN compares False: never predicted

    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    all_out = np.concatenate(outcomes) if outcomes else np.zeros((0, n_c), dtype=np.int8)
    class_results, curves = [], {}
    for c, (kind, grade) in enumerate(enc.classes):
        counted = (all_out[:, c] == TP) | (all_out[:, c] == FP)
        s, is_tp = all_scores[counted], all_out[counted, c] == TP
        ap = average_precision(s, is_tp, int(n_gt[c]))
        res = ClassResult(
            kind,
            grade,
            int(n_gt[c]),
            int(tp[c]),
            int(fp[c]),
            int(fn[c]),
            int(ign[c]),
            ratio(tp[c], tp[c] + fp[c]),
            ratio(tp[c], tp[c] + fn[c]),
            ap,
        )
        class_results.append(res)
        if res.defined:
            curves[res.name] = pr_curve(s, is_tp, int(n_gt[c]))

    all_err = np.concatenate(errors) if errors else np.zeros(0)
    all_ident = np.concatenate(err_ident) if err_ident else np.zeros(0, dtype=np.int64)
    names = enc.identifications
    loc = summarize_by_identification(all_err, all_ident, names, radius)
    f1, f1_classes = support_weighted_f1(
        np.concatenate(f1_gt) if f1_gt else np.zeros((0, n_c), dtype=bool),
        np.concatenate(f1_pred) if f1_pred else np.zeros((0, n_c), dtype=bool),
        np.concatenate(f1_within) if f1_within else np.zeros(0, dtype=bool),
        enc.classes,
    )
    return EvaluationResult(
        radius=float(radius),
        match_level=bool(match_level),
        classes=tuple(class_results),
        map=mean_ap(class_results),
        localization=loc,
        f1_6mm=f1,
        f1_per_class=f1_classes,
        f1_radius=float(f1_radius),
        n_studies=len(gt_by),
        missing_studies=tuple(sorted(set(gt_by) - set(pred_by))),
        unknown_studies=tuple(sorted(set(pred_by) - set(gt_by))),
        curves=curves,
        errors={n: all_err[all_ident == i] for i, n in enumerate(names) if np.any(all_ident == i)},
    )


def evaluate_files(
    gt_path: str | Path,
    pred_path: str | Path,
    schema: Schema,
    data_root: str | Path | None = None,
    radius: float = 8.0,
    match_level: bool = False,
) -> EvaluationResult:
    """Read both files (``AnnotationError`` on malformed input), resolve spacing, and score.

    Args:
        gt_path: ground-truth JSON (competition format).
        pred_path: prediction JSON (same format, points with ``score``).
        schema: landmark set and classes.
        data_root: DICOM data root for spacing lookup when the ground truth has no ``pixelSpacing``.
        radius: r in mm.
        match_level: see :func:`evaluate_records`.
    """
    gt = read_annotations(gt_path, schema)
    pred = read_annotations(pred_path, schema)
    gt = fill_spacing(gt, data_root=data_root, pred_records=pred)
    return evaluate_records(gt, pred, schema, radius=radius, match_level=match_level)
