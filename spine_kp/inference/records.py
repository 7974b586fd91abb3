"""Decoded landmarks of one image -> a competition-format :class:`StudyRecord` with scores (SPEC section 3).

Per trained landmark the record holds one point per *confident* grade (single-label kinds: the most probable
grade; multi-label kinds: every grade with probability >= 0.5, at least the most probable one), each scored
``confidence x p(grade)``: the heatmap peak times the grade probability. A model with a score calibration (two Platt
maps per kind fitted at the end of training, :mod:`spine_kp.engine.score_map_fit`) uses the kind's P(within 8 mm)
of the peak as the confidence, then maps the product to P(TP) (:mod:`spine_kp.calibration.apply`).
``top_k_grades`` adds the next most probable grades as extra, lower-scored points, the format's way to express
alternatives (it raises recall at low scores, which AP rewards); a model card sets it with ``decoding.top_k_grades``.
"""

from __future__ import annotations

import numpy as np

from spine_kp.calibration.apply import ScoreMaps, point_confidence, point_score, score_maps
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.schema import Schema
from spine_kp.types import ImageAnnotation, Point, StudyRecord

MULTI_LABEL_THRESHOLD = 0.5


def chosen_grades(probs: np.ndarray, multi_label: bool, top_k: int = 0) -> list[int]:
    """Indices of the grades to emit for one landmark, most probable first.

    Args:
        probs: (G,) grade probabilities (0 for untrained grades).
        multi_label: several grades may be true at once.
        top_k: emit at least this many grades (alternatives), never an impossible (p = 0) one.
    """
    order = [int(i) for i in np.argsort(-probs, kind="stable")]
    chosen = [order[0]]
    if multi_label:
        chosen += [i for i in order[1:] if probs[i] >= MULTI_LABEL_THRESHOLD]
    for i in order:
        if len(chosen) >= top_k:
            break
        if i not in chosen and probs[i] > 0:
            chosen.append(i)
    return chosen


def landmarks_to_record(
    coords: np.ndarray,
    peaks: np.ndarray,
    grade_probs: dict[str, np.ndarray],
    schema: Schema,
    trained: TrainedLabels,
    *,
    study_uid: str,
    series_uid: str,
    instance_uid: str,
    z_index: int | None,
    spacing: tuple[float, float] | None = None,
    top_k_grades: int = 0,
    score_calibration: ScoreMaps | None = None,
    flip_shift_mm: np.ndarray | None = None,
) -> StudyRecord:
    """Build the prediction record of one image.

    Every point also carries ``landmarkScore``: its landmark's confidence (P(within 8 mm) with a score calibration,
    else the heatmap peak), the same for all grades of the landmark; with ``flip_shift_mm``, ``flipShiftMm``: how far
    apart (mm) the plain and the mirrored view placed the landmark under flip-TTA. ``spine-kp review`` orders studies
    by both.

    Args:
        coords: (K, 2) xy in ORIGINAL pixels of the image, schema order.
        peaks: (K,) heatmap peak values in [0, 1]; 0 marks a landmark the decoder placed outside the image, which
            gets no point.
        grade_probs: kind -> (K_kind, G) probabilities (landmarks of the kind in schema order).
        spacing: (row_mm, col_mm), written as ``pixelSpacing`` so the file can be evaluated on its own.
        score_calibration: ``{"localization": {kind: (a, b)}, "scores": {kind: (a, b)}}``, Platt maps
            ``sigmoid(a * logit(x) + b)``: the first turns a peak of that kind into P(within 8 mm), the second the
            product into P(TP) (a kind or step not named: identity).
        flip_shift_mm: (K,) distance in mm between the landmark decoded on the plain and on the mirrored view.
    """
    maps = score_maps(score_calibration)
    counters = {k.name: 0 for k in schema.kinds}
    points = []
    for k, name in enumerate(schema.landmarks):
        kind = schema.landmark_kinds[k]
        j = counters[kind]
        counters[kind] += 1
        if not trained.landmarks[k] or peaks[k] <= 0:  # untrained, or decoded as outside the image
            continue
        probs = grade_probs[kind][j]
        confidence = point_confidence(peaks[k], kind, maps)
        labels = schema.kind(kind).grades
        x, y = (round(float(v), 2) for v in coords[k])
        extras = (("landmarkScore", round(confidence, 6)),)
        if flip_shift_mm is not None:
            extras += (("flipShiftMm", round(float(flip_shift_mm[k]), 2)),)
        for g in chosen_grades(probs, schema.kind(kind).multi_label, top_k_grades):
            score = round(point_score(confidence, probs[g], kind, maps), 6)
            points.append(Point(name, kind, (x, y), (labels[g],), z_index=z_index, score=score, extras=extras))
    image = ImageAnnotation(series_uid, instance_uid, tuple(points), annotator="spine_kp", pixel_spacing=spacing)
    return StudyRecord(study_uid=study_uid, images=(image,), version="v0.1")


__all__ = ["chosen_grades", "landmarks_to_record"]
