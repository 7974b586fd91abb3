"""Level metrics beside the 8 mm rules: is the right level named, are the levels in order, is the spine shifted?

The evaluator (:mod:`spine_kp.evaluation.evaluate`) asks whether a prediction lies within r of its ground truth. A
prediction shifted by one whole level lands on the neighbouring landmark and may still pass that test for some
points, so three questions are asked per study, on the record pairs (ground truth with ``pixel_spacing`` on every
image, see :func:`spine_kp.evaluation.spacing.fill_spacing`):

* identification (:func:`identification_hits`): a ground-truth landmark counts when its same-identification
  prediction is within r AND is the nearest prediction of any identification (the level is right, not just close).
  As in the evaluator's localization, "the prediction" of an identification is its best-scored point
  (:func:`best_predictions`);
* order (:func:`order_violation`): the predictions of the ground truth's identifications, taken in the schema's
  cranio-caudal order, are not strictly increasing along the spine;
* level shift (:func:`level_offset`, :func:`whole_level_shift`): the median signed offset along the spine (prediction
  minus ground truth, same identification) is within 0.3 level of a whole non-zero number of levels; a level is the
  median distance along the spine between adjacent landmarks of one kind (L3 -> L4, L3-L4 -> L4-L5) in that study's
  ground truth.

Frames: points are (x, y) pixels of the ground-truth image and become (x, y) mm with its spacing (row_mm, col_mm).
"Along the spine" is the principal axis of the study's ground-truth points in mm, oriented head -> feet (positive row
component, since sagittal rows run head -> feet); the row direction when the study has fewer than two distinct points.

Pure numpy on :mod:`spine_kp.types` records: no torch, no files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spine_kp.evaluation.evaluate import merge_by_study
from spine_kp.schema import Schema
from spine_kp.types import StudyRecord

Coord = tuple[float, float]
Spacing = tuple[float, float]

#: how far (in levels) a median offset may lie from a whole number of levels to count as a shift
SHIFT_TOLERANCE = 0.3


@dataclass(frozen=True)
class GtPoint:
    """One ground-truth landmark: identification, (x, y) in pixels, spacing (row_mm, col_mm) of its image."""

    identification: str
    xy: Coord
    spacing: Spacing


@dataclass(frozen=True)
class StudyPoints:
    """One study reduced to what the level metrics need.

    Attributes:
        uid: study UID.
        gt: every ground-truth landmark (all images of the record).
        pred: identification -> (x, y) pixels of its best-scored prediction (same pixel grid as the ground truth).
    """

    uid: str
    gt: tuple[GtPoint, ...]
    pred: Mapping[str, Coord]


def to_mm(xy: Coord, spacing: Spacing) -> np.ndarray:
    """(x, y) pixels -> (x, y) mm with spacing (row_mm, col_mm)."""
    return np.array([xy[0] * spacing[1], xy[1] * spacing[0]], dtype=np.float64)


def best_predictions(record: StudyRecord | None) -> dict[str, Coord]:
    """Identification -> coordinates of its best-scored point (the evaluator's rule: no score ranks as 1.0; ties keep
    the first)."""
    best: dict[str, tuple[float, Coord]] = {}
    for p in record.points if record is not None else ():
        score = 1.0 if p.score is None else float(p.score)
        if p.identification not in best or score > best[p.identification][0]:
            best[p.identification] = (score, (float(p.coord[0]), float(p.coord[1])))
    return {k: v[1] for k, v in best.items()}


def study_points(gt: StudyRecord, pred: StudyRecord | None) -> StudyPoints:
    """Pair a ground-truth record (every image with points carries ``pixel_spacing``) with its prediction (or None).

    Raises:
        ValueError: a ground-truth image with points has no spacing (fill it first).
    """
    if any(im.pixel_spacing is None and im.points for im in gt.images):
        raise ValueError(f"study {gt.study_uid}: a ground-truth image has no pixel spacing (fill it first)")
    points = tuple(
        GtPoint(p.identification, (float(p.coord[0]), float(p.coord[1])), im.pixel_spacing or (1.0, 1.0))
        for im in gt.images
        for p in im.points
    )
    return StudyPoints(gt.study_uid, points, best_predictions(pred))


def identification_hits(study: StudyPoints, radius: float) -> list[bool]:
    """Per ground-truth landmark: its same-identification prediction is within ``radius`` mm and is the nearest
    prediction of any identification (a tie with another identification still counts as right)."""
    hits = []
    for g in study.gt:
        own = study.pred.get(g.identification)
        if own is None:
            hits.append(False)
            continue
        gmm = to_mm(g.xy, g.spacing)
        d_own = float(np.linalg.norm(to_mm(own, g.spacing) - gmm))
        d_any = min(float(np.linalg.norm(to_mm(xy, g.spacing) - gmm)) for xy in study.pred.values())
        hits.append(d_own <= radius and d_own <= d_any)
    return hits


def identification_accuracy(studies: Iterable[StudyPoints], radius: float) -> float | None:
    """Share of all ground-truth landmarks (pooled over studies) counted by :func:`identification_hits`, or None."""
    hits = [h for s in studies for h in identification_hits(s, radius)]
    return float(np.mean(hits)) if hits else None


def _first_gt(study: StudyPoints) -> dict[str, GtPoint]:
    out: dict[str, GtPoint] = {}
    for g in study.gt:
        out.setdefault(g.identification, g)
    return out


def spine_axis(study: StudyPoints) -> np.ndarray:
    """Unit (x, y) vector in mm along the spine, head -> feet: the principal axis of the ground-truth points, with a
    positive row (y) component; (0, 1) when there are fewer than two distinct points."""
    pts = np.array([to_mm(g.xy, g.spacing) for g in study.gt]).reshape(-1, 2)
    if len(np.unique(pts, axis=0)) < 2:
        return np.array([0.0, 1.0])
    axis = np.linalg.svd(pts - pts.mean(axis=0), full_matrices=False)[2][0]
    return -axis if axis[1] < 0 or (axis[1] == 0 and axis[0] < 0) else axis


def order_violation(study: StudyPoints, order: Sequence[str]) -> bool:
    """Whether the predictions of the ground truth's identifications, taken in cranio-caudal ``order`` (the schema's
    landmark order), are not strictly increasing along the spine. Never-predicted ones are left out."""
    gt = _first_gt(study)
    if not gt:
        return False
    spacing = next(iter(gt.values())).spacing
    axis = spine_axis(study)
    proj = [float(to_mm(study.pred[n], spacing) @ axis) for n in order if n in gt and n in study.pred]
    return bool(np.any(np.diff(proj) <= 0))


def level_offset(study: StudyPoints, kinds: Sequence[Sequence[str]]) -> float | None:
    """Median signed offset (prediction - ground truth, same identification) along the spine, in levels.

    Args:
        study: one study.
        kinds: the landmarks of each kind in cranio-caudal order (vertebrae, discs); adjacent entries are one level
            apart, and the median ground-truth distance along the spine of such present pairs is the level.

    Returns:
        Positive = predicted towards the feet; None without a level or without any predicted ground-truth landmark.
    """
    gt = _first_gt(study)
    axis = spine_axis(study)
    proj = {n: float(to_mm(g.xy, g.spacing) @ axis) for n, g in gt.items()}
    steps = [proj[b] - proj[a] for names in kinds for a, b in zip(names, names[1:]) if a in proj and b in proj]
    level = float(np.median(steps)) if steps else 0.0
    offsets = [
        float((to_mm(study.pred[n], g.spacing) - to_mm(g.xy, g.spacing)) @ axis)
        for n, g in gt.items()
        if n in study.pred
    ]
    if level <= 0 or not offsets:
        return None
    return float(np.median(offsets)) / level


def whole_level_shift(offset: float | None, tolerance: float = SHIFT_TOLERANCE) -> int:
    """The whole number of levels n != 0 that a :func:`level_offset` is about (|offset - n| <= ``tolerance``), else 0.

    A whole-level shift puts landmarks where their neighbours are; an offset between levels (or undefined) is a
    localization error, not a shift, and gives 0.
    """
    if offset is None:
        return 0
    n = int(np.sign(offset) * np.floor(abs(offset) + 0.5))
    return n if n != 0 and abs(offset - n) <= tolerance else 0


def per_level_shares(errors: Mapping[str, np.ndarray], radius: float) -> dict[str, float | None]:
    """Identification -> share of its landmarks with error <= ``radius`` mm (NaN = never predicted = a miss).

    Args:
        errors: ``EvaluationResult.errors`` (identification -> localization errors in mm).
    """
    return {n: (float(np.mean(np.nan_to_num(e, nan=np.inf) <= radius)) if len(e) else None) for n, e in errors.items()}


def level_metrics(
    gt: Sequence[StudyRecord], pred: Sequence[StudyRecord], schema: Schema, radius: float
) -> dict[str, Any]:
    """The level metrics of a set of studies (records merged by study; ground truth with spacing, see module doc).

    Returns:
        ``identification_accuracy`` (pooled share, None without ground truth), ``order_violations`` (count) and
        ``order_violation_studies``, ``level_shifts`` (count of studies shifted by a whole level) and
        ``level_shift_studies`` (UID -> levels, positive = towards the feet), ``level_offsets`` (UID -> offset in
        levels, None when undefined): plain data, JSON-ready.
    """
    pred_by = merge_by_study(pred)
    studies = [study_points(r, pred_by.get(uid)) for uid, r in sorted(merge_by_study(gt).items())]
    kinds = [schema.landmarks_of_kind(k.name) for k in schema.kinds]
    offsets = {s.uid: level_offset(s, kinds) for s in studies}
    shifts = {uid: whole_level_shift(o) for uid, o in offsets.items()}
    violations = [s.uid for s in studies if order_violation(s, schema.landmarks)]
    return {
        "identification_accuracy": identification_accuracy(studies, radius),
        "order_violations": len(violations),
        "order_violation_studies": violations,
        "level_shifts": sum(v != 0 for v in shifts.values()),
        "level_shift_studies": {uid: v for uid, v in shifts.items() if v != 0},
        "level_offsets": offsets,
    }
