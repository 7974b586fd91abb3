"""Training targets from annotations, and label statistics over a training set.

Targets follow the schema: keypoints in schema landmark order, grades per kind in
``schema.landmarks_of_kind(kind)`` order with one column per ``schema.kind(kind).grades`` label. A landmark
that the annotation lacks is *masked* (``visible=False``), never treated as background.

Landmarks or grades that never occur in the training records are "untrained": the engine neither trains nor
predicts them (SPEC section 2). :class:`LabelStats` tells which, and gives weights against class imbalance.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from spine_kp.data.preprocess import Geometry
from spine_kp.schema import Schema
from spine_kp.types import ImageAnnotation, StudyRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Targets:
    """Targets of one image.

    Attributes:
        keypoints: (K, 2) float32 (x, y) in input pixels (original pixels when built without a Geometry);
            zeros where not visible.
        visible: (K,) bool, False for a landmark missing from the annotation (or outside the image).
        grades: kind -> (K_kind, G_kind) float32 multi-hot.
        grade_mask: kind -> (K_kind,) bool, False where the landmark is missing or its grade is empty.
    """

    keypoints: np.ndarray
    visible: np.ndarray
    grades: dict[str, np.ndarray]
    grade_mask: dict[str, np.ndarray]


def kind_indices(schema: Schema) -> dict[str, np.ndarray]:
    """kind -> (K_kind,) indices into the schema landmark order, in ``landmarks_of_kind`` order."""
    return {k.name: np.array([schema.index(n) for n in schema.landmarks_of_kind(k.name)], int) for k in schema.kinds}


def encode_targets(
    annotation: ImageAnnotation,
    schema: Schema,
    geometry: Geometry | None = None,
    image_shape: tuple[int, int] | None = None,
    source: str = "",
) -> Targets:
    """Build the targets of one annotated image.

    Args:
        annotation: the annotated image (``record.primary``).
        schema: landmark set; its order defines K and the per-kind rows.
        geometry: maps original pixels to input pixels; None keeps original pixels.
        image_shape: (H, W) of the original image; points outside it (beyond half a pixel) are made invisible.
            Defaults to ``geometry.orig_shape``.
        source: record description used in log messages.

    Returns:
        The targets. When an identification occurs twice on the image (two annotators) the first is used.
    """
    k = schema.num_landmarks
    keypoints = np.zeros((k, 2), np.float64)
    visible = np.zeros(k, bool)
    seen_grades: dict[int, tuple[str, ...]] = {}
    shape = image_shape if image_shape is not None else (geometry.orig_shape if geometry is not None else None)
    for p in annotation.points:
        if not schema.has(p.identification):
            continue
        i = schema.index(p.identification)
        if visible[i] or i in seen_grades:
            log.debug("%s: %s annotated twice; the first point is used", source, p.identification)
            continue
        x, y = float(p.coord[0]), float(p.coord[1])
        seen_grades[i] = p.grades
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        if shape is not None and not (-0.5 <= x <= shape[1] - 0.5 and -0.5 <= y <= shape[0] - 0.5):
            log.warning("%s: %s at (%.1f, %.1f) is outside the image; masked", source, p.identification, x, y)
            continue
        keypoints[i] = (x, y)
        visible[i] = True
    if geometry is not None:
        keypoints[visible] = geometry.to_input(keypoints[visible])
    grades: dict[str, np.ndarray] = {}
    grade_mask: dict[str, np.ndarray] = {}
    for kind, idx in kind_indices(schema).items():
        labels = schema.kind(kind).grades
        column = {g: j for j, g in enumerate(labels)}
        hot = np.zeros((len(idx), len(labels)), np.float32)
        mask = np.zeros(len(idx), bool)
        for row, i in enumerate(idx):
            present = [column[g] for g in seen_grades.get(int(i), ()) if g in column]
            if visible[i] and present:
                hot[row, present] = 1.0
                mask[row] = True
        grades[kind], grade_mask[kind] = hot, mask
    return Targets(keypoints.astype(np.float32), visible, grades, grade_mask)


@dataclass(frozen=True)
class LabelStats:
    """How often each landmark and each (kind, grade) occurs in a set of training records.

    Attributes:
        schema: the landmark set counted against.
        num_records: number of records counted (those with an annotated image).
        landmark_counts: landmark name -> number of images on which it is annotated.
        grade_counts: (kind, grade) -> number of annotated landmarks carrying that grade.
        graded_counts: kind -> number of annotated landmarks of that kind with a non-empty grade.
    """

    schema: Schema
    num_records: int
    landmark_counts: dict[str, int]
    grade_counts: dict[tuple[str, str], int]
    graded_counts: dict[str, int]

    @property
    def untrained_landmarks(self) -> tuple[str, ...]:
        """Landmarks never annotated in training: not trained, not predicted (schema order)."""
        return tuple(n for n in self.schema.landmarks if self.landmark_counts.get(n, 0) == 0)

    @property
    def untrained_grades(self) -> tuple[tuple[str, str], ...]:
        """(kind, grade) classes that never occur in training: not trained, not predicted (schema order)."""
        return tuple(c for c in self.schema.classes if self.grade_counts.get(c, 0) == 0)

    def landmark_mask(self) -> np.ndarray:
        """(K,) bool, True for trained landmarks (schema order)."""
        return np.array([self.landmark_counts.get(n, 0) > 0 for n in self.schema.landmarks], bool)

    def grade_mask(self, kind: str) -> np.ndarray:
        """(G_kind,) bool, True for grades of ``kind`` that occur in training."""
        return self._counts(kind) > 0

    def _counts(self, kind: str) -> np.ndarray:
        return np.array([self.grade_counts.get((kind, g), 0) for g in self.schema.kind(kind).grades], np.float64)

    def pos_weight(self, kind: str, max_weight: float = 50.0) -> np.ndarray:
        """(G_kind,) float32 ``negatives / positives`` per grade for a BCE loss; 0 for untrained grades.

        Counted over landmarks of ``kind`` with a non-empty grade (the ones the loss sees), clipped to
        ``max_weight`` so a grade seen once cannot dominate.
        """
        pos = self._counts(kind)
        total = float(self.graded_counts.get(kind, 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(pos > 0, (total - pos) / pos, 0.0)
        return np.clip(w, 0.0, max_weight).astype(np.float32)

    def log_prior(self, kind: str) -> np.ndarray:
        """(G_kind,) float32 log training prior per grade, for logit adjustment; 0 for untrained grades.

        Multi-label kinds: the log-odds ``log(positives / negatives)`` of each grade (its own sigmoid); single-label
        kinds: ``log(positives / total)`` (one softmax). Counted like :meth:`pos_weight`; a grade present on every
        graded landmark gets the odds of ``total / 1``.
        """
        pos = self._counts(kind)
        total = float(self.graded_counts.get(kind, 0))
        trained = pos > 0
        denom = np.maximum(total - pos, 1.0) if self.schema.kind(kind).multi_label else np.full_like(pos, max(total, 1))
        with np.errstate(divide="ignore"):
            out = np.where(trained, np.log(np.where(trained, pos, 1.0) / denom), 0.0)
        return out.astype(np.float32)

    def class_weights(self, kind: str, power: float = 0.5) -> np.ndarray:
        """(G_kind,) float32 inverse-frequency weights ``count**-power`` (default inverse square root).

        Normalized to mean 1 over the trained grades; 0 for untrained grades.
        """
        counts = self._counts(kind)
        with np.errstate(divide="ignore"):
            w = np.where(counts > 0, counts ** (-power), 0.0)
        trained = counts > 0
        if trained.any():
            w = w / w[trained].mean()
        return w.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for checkpoints and logs); the schema is stored by name only."""
        return {
            "schema": self.schema.name,
            "num_records": self.num_records,
            "landmark_counts": dict(self.landmark_counts),
            "grade_counts": {f"{k}/{g}": n for (k, g), n in self.grade_counts.items()},
            "graded_counts": dict(self.graded_counts),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], schema: Schema) -> LabelStats:
        """Rebuild from :meth:`to_dict` output."""
        grade_counts = {}
        for key, n in data["grade_counts"].items():
            kind, grade = key.split("/", 1)
            grade_counts[(kind, grade)] = int(n)
        return cls(
            schema=schema,
            num_records=int(data["num_records"]),
            landmark_counts={str(k): int(v) for k, v in data["landmark_counts"].items()},
            grade_counts=grade_counts,
            graded_counts={str(k): int(v) for k, v in data["graded_counts"].items()},
        )


def label_stats(records: Iterable[StudyRecord], schema: Schema) -> LabelStats:
    """Count landmarks and (kind, grade) occurrences over the annotated images training uses (``record.primary``).

    Counting goes through :func:`encode_targets`, so what is counted is exactly what is trained.
    """
    landmark_counts = dict.fromkeys(schema.landmarks, 0)
    grade_counts = dict.fromkeys(schema.classes, 0)
    graded_counts = {k.name: 0 for k in schema.kinds}
    n = 0
    for rec in records:
        ann = rec.primary
        if ann is None:
            continue
        n += 1
        t = encode_targets(ann, schema, source=f"study {rec.study_uid}")
        for name, vis in zip(schema.landmarks, t.visible):
            landmark_counts[name] += int(vis)
        for kind, hot in t.grades.items():
            graded_counts[kind] += int(t.grade_mask[kind].sum())
            for g, c in zip(schema.kind(kind).grades, hot.sum(axis=0)):
                grade_counts[(kind, g)] += int(c)
    return LabelStats(schema, n, landmark_counts, grade_counts, graded_counts)
