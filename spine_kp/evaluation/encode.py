"""Study records -> the arrays of :mod:`spine_kp.evaluation.matching`, for one study or padded batches of studies.

All points of all studies are first flattened into one set of arrays (one Python pass over the points); batches
are then cut from those arrays with numpy only. Class membership comes from the schema: a point belongs to the
class (its kind, g) for every grade g it carries; grades outside the schema are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TypeVar

import numpy as np

from spine_kp.evaluation.matching import PAD, GroundTruth, Predictions
from spine_kp.evaluation.spacing import SpacingError
from spine_kp.schema import Schema
from spine_kp.types import Point, StudyRecord

_T = TypeVar("_T", GroundTruth, Predictions)


@dataclass(frozen=True, eq=False)
class FlatPoints:
    """The points of S studies concatenated (N points in all), study after study.

    Attributes:
        xy: (N, 2) float, (x, y) pixels.
        ident: (N,) int, identification code.
        classes: (N, C) bool.
        empty: (N,) bool, no grade at all.
        score: (N,) float (1.0 where the file has none).
        spacing: (N, 2) float (row_mm, col_mm) of each point's image (NaN where not known).
        counts: (S,) int, points per study.
    """

    xy: np.ndarray
    ident: np.ndarray
    classes: np.ndarray
    empty: np.ndarray
    score: np.ndarray
    spacing: np.ndarray
    counts: np.ndarray

    @property
    def starts(self) -> np.ndarray:
        """(S + 1,) offset of each study's first point, then N."""
        return np.r_[0, np.cumsum(self.counts)]

    def slots(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(study, slot) of each point of studies [lo, hi) in a (hi - lo, M) padded layout, and M."""
        counts = self.counts[lo:hi]
        width = int(counts.max()) if counts.size else 0
        n = int(counts.sum())
        row = np.repeat(np.arange(hi - lo), counts)
        slot = np.arange(n) - np.repeat(np.r_[0, np.cumsum(counts)[:-1]], counts)
        return row, slot, width


class Encoder:
    """Encodes records for one schema; identification codes follow the schema order, unknown names come after."""

    def __init__(self, schema: Schema) -> None:
        self.classes: tuple[tuple[str, str], ...] = schema.classes
        self._class_index = {c: i for i, c in enumerate(self.classes)}
        self.identifications: list[str] = list(schema.landmarks)
        self._ident_index = {n: i for i, n in enumerate(self.identifications)}
        # (kind, grades) -> row of the class table; a study has few distinct label sets, so look each up once
        self._label_sets: dict[tuple[str, tuple[str, ...]], int] = {}
        self._label_rows: list[np.ndarray] = []

    def ident_code(self, name: str) -> int:
        code = self._ident_index.get(name)
        if code is None:
            code = self._ident_index[name] = len(self.identifications)
            self.identifications.append(name)
        return code

    def _label_code(self, kind: str, grades: tuple[str, ...]) -> int:
        code = self._label_sets.get((kind, grades))
        if code is None:
            row = np.zeros(len(self.classes), dtype=bool)
            for g in grades:
                c = self._class_index.get((kind, g))
                if c is not None:
                    row[c] = True
            code = self._label_sets[(kind, grades)] = len(self._label_rows)
            self._label_rows.append(row)
        return code

    def flatten(self, records: Sequence[StudyRecord | None], need_spacing: bool = False) -> FlatPoints:
        """Concatenate the points of ``records`` (``None`` = a study without points).

        Raises:
            SpacingError: ``need_spacing`` and an image with points has no ``pixel_spacing`` (names the study).
        """
        points: list[Point] = []
        im_spacing: list[tuple[float, float]] = []
        im_counts: list[int] = []
        counts = np.zeros(len(records), dtype=np.int64)
        for s, rec in enumerate(records):
            for im in rec.images if rec is not None else ():
                if need_spacing and im.points and im.pixel_spacing is None:
                    raise SpacingError(f"study {rec.study_uid}: no pixel spacing for instance {im.instance_uid}")
                points.extend(im.points)
                im_spacing.append(im.pixel_spacing or (np.nan, np.nan))
                im_counts.append(len(im.points))
                counts[s] += len(im.points)
        n = len(points)
        # one dict lookup per point (the hot loop); unseen names / label sets are registered on a second pass
        get_label, get_ident = self._label_sets.get, self._ident_index.get
        labels = [get_label((p.kind, p.grades)) for p in points]
        if None in labels:
            labels = [self._label_code(p.kind, p.grades) for p in points]
        ident = [get_ident(p.identification) for p in points]
        if None in ident:
            ident = [self.ident_code(p.identification) for p in points]
        table = np.array(self._label_rows, dtype=bool).reshape(-1, len(self.classes))  # (U, C)
        no_grade = np.array([not grades for _, grades in self._label_sets], dtype=bool)  # (U,), dict order = code
        codes = np.array(labels, dtype=np.int64)
        return FlatPoints(
            xy=np.fromiter(chain.from_iterable(p.coord for p in points), np.float64, 2 * n).reshape(n, 2),
            ident=np.array(ident, dtype=np.int64),
            classes=table[codes],
            empty=no_grade[codes],
            score=np.array([1.0 if p.score is None else p.score for p in points], dtype=np.float64),
            spacing=np.repeat(np.array(im_spacing, dtype=np.float64).reshape(-1, 2), im_counts, axis=0),
            counts=counts,
        )

    def ground_truth(self, record: StudyRecord) -> GroundTruth:
        """Arrays of one ground-truth study; every image with points must carry ``pixel_spacing``."""
        return _single(pad_ground_truth(self.flatten([record], need_spacing=True), 0, 1))

    def predictions(self, record: StudyRecord | None) -> Predictions:
        """Arrays of one prediction study (``None`` gives no predictions)."""
        return _single(pad_predictions(self.flatten([record]), 0, 1))


def _single(batch: _T) -> _T:
    """Drop the batch axis of a batch of one."""
    return type(batch)(**{k: v[0] for k, v in vars(batch).items()})


def pad_ground_truth(flat: FlatPoints, lo: int, hi: int) -> GroundTruth:
    """Studies [lo, hi) of ``flat`` as a padded batch (S = hi - lo, G = most points in one of them)."""
    row, slot, g = flat.slots(lo, hi)
    a, b = flat.starts[lo], flat.starts[hi]
    s, c = hi - lo, flat.classes.shape[1]
    xy, spacing = np.zeros((s, g, 2)), np.ones((s, g, 2))
    classes, empty = np.zeros((s, g, c), dtype=bool), np.zeros((s, g), dtype=bool)
    ident = np.full((s, g), PAD, dtype=np.int64)
    xy[row, slot], spacing[row, slot], classes[row, slot] = flat.xy[a:b], flat.spacing[a:b], flat.classes[a:b]
    empty[row, slot], ident[row, slot] = flat.empty[a:b], flat.ident[a:b]
    return GroundTruth(xy=xy, spacing=spacing, classes=classes, empty=empty, ident=ident)


def pad_predictions(flat: FlatPoints, lo: int, hi: int) -> Predictions:
    """Studies [lo, hi) of ``flat`` as a padded batch (S = hi - lo, P = most points in one of them)."""
    row, slot, p = flat.slots(lo, hi)
    a, b = flat.starts[lo], flat.starts[hi]
    s, c = hi - lo, flat.classes.shape[1]
    xy, classes = np.zeros((s, p, 2)), np.zeros((s, p, c), dtype=bool)
    score, ident = np.full((s, p), -np.inf), np.full((s, p), PAD, dtype=np.int64)
    xy[row, slot], classes[row, slot] = flat.xy[a:b], flat.classes[a:b]
    score[row, slot], ident[row, slot] = flat.score[a:b], flat.ident[a:b]
    return Predictions(xy=xy, classes=classes, score=score, ident=ident)


def batches(
    gt_counts: np.ndarray, pred_counts: np.ndarray, n_classes: int, budget: int = 2_000_000
) -> Iterator[tuple[int, int]]:
    """Cut studies into consecutive ranges [lo, hi) whose padded (S, P, G, C) matching array stays under ``budget``.

    A study larger than the budget on its own still forms a batch of one.
    """
    lo, max_g, max_p = 0, 0, 0
    for i, (g, p) in enumerate(zip(gt_counts.tolist(), pred_counts.tolist())):
        mg, mp = max(max_g, g), max(max_p, p)
        if i > lo and (i - lo + 1) * mg * mp * n_classes > budget:
            yield lo, i
            lo, mg, mp = i, g, p
        max_g, max_p = mg, mp
    if lo < len(gt_counts):
        yield lo, len(gt_counts)
