"""Score a prediction file against a ground-truth file: records -> arrays -> matching -> pooled metrics.

Studies are matched in padded batches (:mod:`spine_kp.evaluation.encode`), in sorted ``studyUid`` order; every
per-study step is independent of point order and the pooled figures are order-free (integer counts, tie-grouped AP,
sorted errors), so the result does not depend on the order of studies or points in either file. Several records
with the same ``studyUid`` are merged by :func:`evaluate_records`; :func:`evaluate_files` refuses them, with the
other inputs that would give a wrong figure silently (:mod:`spine_kp.evaluation.inputs`), and chooses the schema
(:mod:`spine_kp.evaluation.schema_choice`). Prediction points without a ``score`` rank as score 1.0.

Beside the 8 mm rules: the competition baseline's macro F1 at 6 mm (:mod:`spine_kp.evaluation.baseline_f1`) and the
calibration of the emitted scores, ECE and Brier score per kind (:mod:`spine_kp.calibration.metrics`). Given the
scanned data root, both files are checked against its images (:mod:`spine_kp.evaluation.against_data`): counted
findings that change no score.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from spine_kp.calibration.metrics import N_BINS, Reliability, reliability
from spine_kp.evaluation.against_data import check_against_images, scan_data_root
from spine_kp.evaluation.encode import Encoder
from spine_kp.evaluation.inputs import read_inputs
from spine_kp.evaluation.localization import (
    summarize_by_identification,
)
from spine_kp.evaluation.matching import DEFAULT_RADIUS_MM, FP, TP
from spine_kp.evaluation.metrics import (
    ClassResult,
    average_precision,
    mean_ap,
    pr_curve,
    ratio,
)
from spine_kp.evaluation.pool import Pool, cat, match_batches
from spine_kp.evaluation.result import EvaluationResult
from spine_kp.evaluation.spacing import fill_spacing
from spine_kp.io.dicom_types import StudyIndex
from spine_kp.schema import Schema
from spine_kp.types import StudyRecord


def merge_by_study(records: Iterable[StudyRecord]) -> dict[str, StudyRecord]:
    """Study UID -> one record holding all its images, in the order given (how several records of a study score)."""
    out: dict[str, StudyRecord] = {}
    for rec in records:
        prev = out.get(rec.study_uid)
        out[rec.study_uid] = rec if prev is None else StudyRecord(rec.study_uid, prev.images + rec.images)
    return out


def _class_results(
    classes: Sequence[tuple[str, str]], pool: Pool, n_gt: np.ndarray, scores: np.ndarray, outcome: np.ndarray
) -> tuple[list[ClassResult], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per-class counts and AP from the pooled, score-ranked predictions (ignored ones left out).

    Args:
        scores: (N,) pooled prediction scores; outcome: (N, C) their matching outcome per class.
    """
    results, curves = [], {}
    for c, (kind, grade) in enumerate(classes):
        counted = (outcome[:, c] == TP) | (outcome[:, c] == FP)
        s, is_tp = scores[counted], outcome[counted, c] == TP
        tp, fp, fn = int(pool.tp[c]), int(pool.fp[c]), int(pool.fn[c])
        res = ClassResult(
            kind=kind,
            grade=grade,
            n_gt=int(n_gt[c]),
            tp=tp,
            fp=fp,
            fn=fn,
            ignored=int(pool.ignored[c]),
            precision=ratio(tp, tp + fp),
            recall=ratio(tp, tp + fn),
            ap=average_precision(s, is_tp, int(n_gt[c])),
        )
        results.append(res)
        if res.defined:
            curves[res.name] = pr_curve(s, is_tp, res.n_gt)
    return results, curves


def _scored_pairs(
    classes: Sequence[tuple[str, str]], kinds: Sequence[str], scores: np.ndarray, outcome: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The counted (TP or FP) (prediction, class) pairs' scores and outcomes, per kind and then all together."""
    counted = (outcome == TP) | (outcome == FP)  # (N, C)
    groups = [(kind, [c for c, (k, _) in enumerate(classes) if k == kind]) for kind in kinds]
    out = {}
    for name, cols in [*groups, ("all", list(range(len(classes))))]:
        rows, cc = np.nonzero(counted[:, cols])
        out[name] = (scores[rows], outcome[:, cols][rows, cc] == TP)
    return out


def _calibration(scored: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[Reliability, ...]:
    """Reliability of each population of :func:`_scored_pairs`."""
    return tuple(reliability(s, y, N_BINS, name) for name, (s, y) in scored.items())


def evaluate_records(
    gt_records: Iterable[StudyRecord],
    pred_records: Iterable[StudyRecord],
    schema: Schema,
    radius: float = DEFAULT_RADIUS_MM,
    match_level: bool = False,
    f1_radius: float = 6.0,
    studies: Mapping[str, StudyIndex] | None = None,
) -> EvaluationResult:
    """Score predictions against ground truth (every ground-truth image must carry its pixel spacing).

    Args:
        gt_records: ground-truth studies (see :func:`spine_kp.evaluation.spacing.fill_spacing`).
        pred_records: predicted studies, points with ``score``.
        schema: gives the classes (kind, grade) and the identification order.
        radius: r in mm.
        match_level: a prediction can only match ground truth of the same identification.
        f1_radius: radius of the competition's support-weighted F1.
        studies: the scanned data root; when given, both files are checked against its images
            (``result.data_checks``).

    Raises:
        SpacingError: a ground-truth image with points has no spacing (names the study).
    """
    gt_records, pred_records = list(gt_records), list(pred_records)
    gt_by, pred_by = merge_by_study(gt_records), merge_by_study(pred_records)
    uids = sorted(gt_by)
    enc = Encoder(schema)
    gt_flat = enc.flatten([gt_by[u] for u in uids], need_spacing=True)
    pred_flat = enc.flatten([pred_by.get(u) for u in uids])
    pool = match_batches(enc, schema, gt_flat, pred_flat, radius, match_level, f1_radius)
    scores = cat(pool.scores, (0,))
    outcome = cat(pool.outcomes, (0, len(enc.classes)), np.int8)
    class_results, curves = _class_results(enc.classes, pool, gt_flat.classes.sum(axis=0), scores, outcome)
    all_err, all_ident = cat(pool.errors, (0,)), cat(pool.err_ident, (0,), np.int64)
    names = enc.identifications
    loc = summarize_by_identification(all_err, all_ident, names, radius)
    f1, f1_classes, base = pool.f1_figures(enc.classes, all_err)
    scored = _scored_pairs(enc.classes, [k.name for k in schema.kinds], scores, outcome)
    return EvaluationResult(
        schema=schema.name,
        radius=float(radius),
        match_level=bool(match_level),
        classes=tuple(class_results),
        map=mean_ap(class_results),
        localization=loc,
        f1_6mm=f1,
        f1_per_class=f1_classes,
        f1_radius=float(f1_radius),
        n_studies=len(uids),
        missing_studies=tuple(sorted(set(gt_by) - set(pred_by))),
        unknown_studies=tuple(sorted(set(pred_by) - set(gt_by))),
        baseline=base,
        calibration=_calibration(scored),
        curves=curves,
        scored=scored,
        errors={n: all_err[all_ident == i] for i, n in enumerate(names) if np.any(all_ident == i)},
        data_checks=check_against_images(gt_records, pred_records, studies) if studies is not None else None,
    )


def evaluate_predictions(
    gt_records: Iterable[StudyRecord],
    pred_records: Iterable[StudyRecord],
    schema: Schema,
    radius: float = DEFAULT_RADIUS_MM,
    match_level: bool = False,
    studies: Mapping[str, StudyIndex] | None = None,
    data_root: str | Path | None = None,
) -> EvaluationResult:
    """Fill the ground truth's pixel spacing (:func:`~spine_kp.evaluation.spacing.fill_spacing`: the record, else the
    scanned ``studies`` or ``data_root``, else the predictions of the series), then score (:func:`evaluate_records`).

    Args:
        gt_records: ground truth as read. pred_records, schema, radius, match_level, studies: see evaluate_records.
        data_root: DICOM data root for the spacing when ``studies`` is not given (scanned only if some is missing).

    Raises:
        SpacingError: a ground-truth image with points has no spacing from any source (names the study).
    """
    pred = list(pred_records)
    gt = fill_spacing(list(gt_records), data_root=data_root, pred_records=pred, studies=studies)
    return evaluate_records(gt, pred, schema, radius=radius, match_level=match_level, studies=studies)


def evaluate_files(
    gt_path: str | Path,
    pred_path: str | Path,
    schema: Schema | str | Path | None = None,
    data_root: str | Path | None = None,
    radius: float = DEFAULT_RADIUS_MM,
    match_level: bool = False,
) -> EvaluationResult:
    """Read and check both files (:func:`spine_kp.evaluation.inputs.read_inputs`), resolve spacing, and score.

    Args:
        gt_path: ground-truth JSON (competition format).
        pred_path: prediction JSON (same format, points with ``score``).
        schema: landmark set and classes, as the user named it (a schema, packaged name or YAML path); None: the
            schema the files name, else the default.
        data_root: DICOM data root, scanned once: spacing lookup where the ground truth has no ``pixelSpacing``, and
            both files checked against its images (``result.data_checks``).
        radius: r in mm.
        match_level: see :func:`evaluate_records`.

    Returns:
        The result; ``result.warnings`` holds what reading found (schema choice, skipped labels).

    Raises:
        AnnotationError: a malformed or implausible file, a repeated study, swapped files, ground truth without
            points, or a schema mismatch (see :mod:`spine_kp.evaluation.inputs`).
        IngestError: ``data_root`` is not a folder or holds no DICOM study.
    """
    inputs = read_inputs(gt_path, pred_path, schema)
    studies = scan_data_root(data_root) if data_root is not None else None
    result = evaluate_predictions(inputs.gt, inputs.pred, inputs.schema, radius, match_level, studies)
    return dataclasses.replace(result, warnings=inputs.warnings)
