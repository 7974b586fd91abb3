"""The macro F1 people quote for this data format: the rules of the public competition baseline, pure numpy.

Source: the evaluator of wolaituodiban/spinal_detection_baseline (``code/core/disease/evaluation.py``), re-derived
here from its rules (no code taken). It grades one prediction per identification at 6 mm, in a confusion matrix
whose columns are the ground-truth classes (kind, grade) and whose rows are the predicted classes plus two rows:

* each ground-truth landmark of the study (every annotated point, empty labels included) is paired with ONE
  prediction, the best-scored point of the same identification (the baseline keeps one point per identification),
  and that prediction's top grade: the grade of its point, the first in schema order if the point carries several;
* a ground-truth landmark counts once in the column of each of its grades; an empty label counts as its kind's
  first grade ("v1"), and so does a paired prediction that carries no grade of the schema;
* never predicted (no point of that identification): +1 in row ``not_hit`` of each of its columns;
* predicted ``>= radius`` mm away (6 mm; strictly less is a hit): +1 in row ``wrong``;
* otherwise +1 in row (predicted class), so a wrong grade, even of a multi-grade landmark, lands off the diagonal.

Every cell starts at ``epsilon`` = 1e-5. Per class c, with M the (C + 2, C) matrix including the epsilons::

    precision_c = M[c, c] / sum_j M[c, j]     (row c: what was predicted as c; the two extra rows are not classes)
    recall_c    = M[c, c] / sum_i M[i, c]     (column c, the wrong and not-hit rows included)
    F1_c        = 2 precision_c recall_c / (precision_c + recall_c)
    macro F1    = mean over the C classes of the schema

The competition had C = 7 (disc v1-v5, vertebra v1-v2); this module averages over every class the schema has (9
with the default schema's disc v1-v7), so a class that has neither ground truth nor prediction still counts, with
the epsilon-only F1 of 1 / (C + 1), exactly as the baseline scores it. To reproduce a competition figure, evaluate
with a schema holding only the competition's classes. Distances use the ground-truth image's spacing (SPEC 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BASELINE_RADIUS = 6.0
EPSILON = 1e-5
WRONG = "wrong"
NOT_HIT = "not_hit"


def confusion_counts(
    gt_classes: np.ndarray, pred_class: np.ndarray, distance: np.ndarray, radius: float = BASELINE_RADIUS
) -> np.ndarray:
    """Integer confusion matrix of paired landmarks (the epsilons are added by :func:`macro_f1`).

    Args:
        gt_classes: (N, C) bool, the classes of each ground-truth landmark (an empty label already mapped to its
            kind's first class).
        pred_class: (N,) int, class index of the paired prediction's top grade; any value where never predicted.
        distance: (N,) float mm to the paired prediction, NaN where never predicted.
        radius: a prediction at ``distance >= radius`` is ``wrong``.

    Returns:
        (C + 2, C) int64: rows = predicted class 0..C-1, then ``wrong`` (C), then ``not_hit`` (C + 1); columns =
        ground-truth class.
    """
    n, c = gt_classes.shape
    never = np.isnan(distance)
    far = ~never & ~(distance < radius)
    row = np.where(never, c + 1, np.where(far, c, pred_class))  # (N,)
    rows, cols = np.nonzero(gt_classes)  # one entry per (landmark, ground-truth class)
    counts = np.zeros((c + 2, c), dtype=np.int64)
    np.add.at(counts, (row[rows], cols), 1)
    return counts


@dataclass(frozen=True, eq=False)
class BaselineF1:
    """The baseline's macro F1 and its bookkeeping.

    Attributes:
        macro_f1: mean F1 over the C classes (None when the schema has no class).
        classes: the C (kind, grade) columns.
        counts: (C + 2, C) int confusion matrix without the epsilons (see :func:`confusion_counts`).
        precision, recall, f1: (C,) per class, epsilons included.
        radius: mm; epsilon: the start value of every cell.
    """

    macro_f1: float | None
    classes: tuple[tuple[str, str], ...]
    counts: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    radius: float = BASELINE_RADIUS
    epsilon: float = EPSILON

    @property
    def names(self) -> list[str]:
        return [f"{k}/{g}" for k, g in self.classes]

    def to_dict(self) -> dict[str, object]:
        return {
            "source": "wolaituodiban/spinal_detection_baseline code/core/disease/evaluation.py (rules re-derived)",
            "radius_mm": self.radius,
            "epsilon": self.epsilon,
            "macro_f1": self.macro_f1,
            "per_class": [
                {
                    "class": name,
                    "support": int(self.counts[:, c].sum()),
                    "precision": float(self.precision[c]),
                    "recall": float(self.recall[c]),
                    "f1": float(self.f1[c]),
                }
                for c, name in enumerate(self.names)
            ],
            "confusion": {
                "rows": [*self.names, WRONG, NOT_HIT],
                "columns": self.names,
                "counts": self.counts.tolist(),
            },
        }


def macro_f1(
    counts: np.ndarray,
    classes: Sequence[tuple[str, str]],
    epsilon: float = EPSILON,
    radius: float = BASELINE_RADIUS,
) -> BaselineF1:
    """Per-class precision, recall, F1 and their macro mean from a (C + 2, C) count matrix (module docstring)."""
    m = counts.astype(np.float64) + epsilon
    c = m.shape[1]
    diag = m[np.arange(c), np.arange(c)]
    precision = diag / m[:c].sum(axis=1)
    recall = diag / m.sum(axis=0)
    f1 = 2 * precision * recall / (precision + recall)
    macro = float(np.mean(f1)) if c else None
    return BaselineF1(macro, tuple(classes), counts, precision, recall, f1, float(radius), float(epsilon))


def baseline_f1(
    gt_classes: np.ndarray,
    pred_class: np.ndarray,
    distance: np.ndarray,
    classes: Sequence[tuple[str, str]],
    radius: float = BASELINE_RADIUS,
    epsilon: float = EPSILON,
) -> BaselineF1:
    """Confusion matrix and macro F1 of paired landmarks (arguments as in :func:`confusion_counts`)."""
    return macro_f1(confusion_counts(gt_classes, pred_class, distance, radius), classes, epsilon, radius)
