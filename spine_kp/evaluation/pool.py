"""The batches of one evaluation and what each contributes, before the pooled figures are computed from them.

Studies are matched in padded batches (:mod:`spine_kp.evaluation.encode`); :func:`match_batches` runs the 8 mm
matching on each and :class:`Pool` keeps its outcomes, localization errors and the pairs both F1 figures count
(:meth:`Pool.f1_figures`). The per-class figures are :mod:`spine_kp.evaluation.evaluate`'s.

Shapes: S studies in a batch, G ground-truth points, P predictions, C classes (kind, grade).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from spine_kp.evaluation.baseline_f1 import BASELINE_RADIUS, BaselineF1, baseline_f1
from spine_kp.evaluation.encode import Encoder, FlatPoints, batches, pad_ground_truth, pad_predictions
from spine_kp.evaluation.localization import localization_errors, paired_classes
from spine_kp.evaluation.matching import GroundTruth, Predictions, StudyMatch, match_study
from spine_kp.evaluation.metrics import F1Class, support_weighted_f1
from spine_kp.schema import Schema


def cat(parts: list[np.ndarray], empty_shape: tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
    """The parts concatenated; an empty array of ``empty_shape`` when there are none."""
    return np.concatenate(parts) if parts else np.zeros(empty_shape, dtype=dtype)


@dataclass
class Pool:
    """What the batches contribute before the pooled figures are computed."""

    tp: np.ndarray  # (C,) counts, likewise fp, fn, ignored
    fp: np.ndarray
    fn: np.ndarray
    ignored: np.ndarray
    scores: list[np.ndarray] = field(default_factory=list)  # (n,) per batch: valid predictions
    outcomes: list[np.ndarray] = field(default_factory=list)  # (n, C)
    errors: list[np.ndarray] = field(default_factory=list)  # (g,) per batch: valid ground truth, mm or NaN
    err_ident: list[np.ndarray] = field(default_factory=list)  # (g,)
    f1_gt: list[np.ndarray] = field(default_factory=list)  # (k, C) graded landmarks
    f1_pred: list[np.ndarray] = field(default_factory=list)  # (k, C) their best prediction's classes
    f1_within: list[np.ndarray] = field(default_factory=list)  # (k,)
    base_gt: list[np.ndarray] = field(default_factory=list)  # (g, C) baseline F1: classes, empty -> first grade
    base_pred: list[np.ndarray] = field(default_factory=list)  # (g,) class of the paired prediction's top grade

    @classmethod
    def empty(cls, n_classes: int) -> Pool:
        return cls(*(np.zeros(n_classes, dtype=np.int64) for _ in range(4)))

    def add(self, gt: GroundTruth, pred: Predictions, m: StudyMatch, f1_radius: float, first_class: np.ndarray) -> None:
        """Add a batch; ``first_class`` maps identification codes to the class of their kind's first grade (or -1)."""
        self.tp += m.tp
        self.fp += m.fp
        self.fn += m.fn
        self.ignored += m.ignored
        self.scores.append(pred.score[pred.valid])
        self.outcomes.append(m.outcome[pred.valid])
        err, best = localization_errors(gt, pred)  # (S, G)
        self.errors.append(err[gt.valid])
        self.err_ident.append(gt.ident[gt.valid])
        paired = paired_classes(pred, best)  # (S, G, C)
        graded = gt.valid & ~gt.empty  # the competition figure grades only labelled landmarks
        self.f1_gt.append(gt.classes[graded])
        self.f1_pred.append(paired[graded])
        self.f1_within.append(err[graded] <= f1_radius)  # NaN compares False: never predicted
        # baseline rules: an empty label, or a prediction without a grade of the schema, is its kind's first grade
        first = np.where(gt.valid, first_class[np.maximum(gt.ident, 0)], -1)  # (S, G)
        as_first = (gt.empty & (first >= 0))[..., None] & (np.arange(gt.classes.shape[-1]) == first[..., None])
        self.base_gt.append((gt.classes | as_first)[gt.valid])
        self.base_pred.append(np.where(paired.any(axis=-1), paired.argmax(axis=-1), first)[gt.valid])

    def f1_figures(
        self, classes: Sequence[tuple[str, str]], errors: np.ndarray
    ) -> tuple[float | None, tuple[F1Class, ...], BaselineF1]:
        """The competition's support-weighted F1 (and per class) and the baseline's macro F1 at its radius.

        Args:
            classes: the C classes.
            errors: pooled localization error of every ground-truth point, mm (NaN: never predicted).
        """
        n = len(classes)
        f1, f1_classes = support_weighted_f1(
            cat(self.f1_gt, (0, n), bool), cat(self.f1_pred, (0, n), bool), cat(self.f1_within, (0,), bool), classes
        )
        base = baseline_f1(
            cat(self.base_gt, (0, n), bool),
            cat(self.base_pred, (0,), np.int64),
            errors,
            classes,
            radius=BASELINE_RADIUS,
        )
        return f1, f1_classes, base


def first_classes(enc: Encoder, schema: Schema) -> np.ndarray:
    """(n_identifications,) class index of (kind, first grade) of each identification code; -1 outside the schema."""
    index = {c: i for i, c in enumerate(enc.classes)}
    return np.array(
        [index[(schema.kind_of(n), schema.grades_of(n)[0])] if schema.has(n) else -1 for n in enc.identifications],
        dtype=np.int64,
    )


def match_batches(
    enc: Encoder,
    schema: Schema,
    gt: FlatPoints,
    pred: FlatPoints,
    radius: float,
    match_level: bool,
    f1_radius: float,
) -> Pool:
    """Match ground truth against predictions study by study, in padded batches, and pool what each batch gives.

    Args:
        enc: the encoder both were flattened with (its classes and identifications).
        gt, pred: the flattened studies, in the same study order.
        radius: r in mm; match_level: a prediction matches only ground truth of its identification.
        f1_radius: radius of the competition's F1.
    """
    pool = Pool.empty(len(enc.classes))
    first_class = first_classes(enc, schema)
    for lo, hi in batches(gt.counts, pred.counts, len(enc.classes)):
        g, p = pad_ground_truth(gt, lo, hi), pad_predictions(pred, lo, hi)  # (S, G, ...), (S, P, ...)
        pool.add(g, p, match_study(g, p, radius=radius, match_level=match_level), f1_radius, first_class)
    return pool


__all__ = ["Pool", "cat", "first_classes", "match_batches"]
