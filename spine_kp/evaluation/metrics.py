"""Precision, recall, average precision and the competition's support-weighted F1, pure numpy.

Undefined values (a ratio with a zero denominator, AP of a class without ground truth) are ``None``, never 0 or 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def ratio(num: float, den: float) -> float | None:
    """``num / den``, or None when ``den`` is 0."""
    return float(num) / float(den) if den else None


def pr_curve(scores: np.ndarray, is_tp: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision-recall operating points of a ranked list of non-ignored predictions.

    Predictions are ranked by score descending. Predictions with equal scores form ONE operating point (the
    threshold cannot separate them; sklearn's ``precision_recall_curve`` does the same), so the curve, and the AP,
    do not depend on the input order.

    Args:
        scores: (N,) float, score of each counted prediction (TP or FP; ignored ones left out).
        is_tp: (N,) bool, the prediction is a TP.
        n_gt: number of ground-truth points of the class (recall denominator), > 0.

    Returns:
        recall (K,), precision (K,) at each distinct score threshold, from the highest score down.
    """
    order = np.argsort(-scores, kind="stable")
    s, tp = scores[order], is_tp[order].astype(np.int64)
    ctp = np.cumsum(tp)
    cfp = np.cumsum(1 - tp)
    last = np.r_[s[1:] != s[:-1], True] if s.size else np.zeros(0, dtype=bool)  # last index of each score group
    ctp, cfp = ctp[last], cfp[last]
    return ctp / float(n_gt), ctp / np.maximum(ctp + cfp, 1)


def average_precision(scores: np.ndarray, is_tp: np.ndarray, n_gt: int) -> float | None:
    """All-point interpolated AP (PASCAL VOC 2010+): area under the precision envelope.

    The envelope at recall step i is the maximum precision at any later operating point (monotone non-increasing
    from the right); AP = sum over operating points of (recall_i - recall_{i-1}) * envelope_i, recall_0 = 0.

    Args:
        scores: (N,) float, scores of the counted predictions.
        is_tp: (N,) bool.
        n_gt: ground-truth points of the class; 0 makes AP undefined.

    Returns:
        AP in [0, 1], or None when ``n_gt`` is 0.
    """
    if n_gt <= 0:
        return None
    if scores.size == 0:
        return 0.0
    recall, precision = pr_curve(scores, is_tp, n_gt)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    # recall steps as whole TP counts, divided once: summing float steps of k / n_gt can end at 0.9999999999999999
    # for a perfect ranking (found by tests/evaluation/test_eval_properties.py)
    tp_steps = np.diff(np.rint(recall * n_gt), prepend=0.0)
    return float(np.sum(tp_steps * envelope) / n_gt)


@dataclass(frozen=True)
class ClassResult:
    """Counts and figures of one class (kind, grade), pooled over all studies."""

    kind: str
    grade: str
    n_gt: int
    tp: int
    fp: int
    fn: int
    ignored: int
    precision: float | None
    recall: float | None
    ap: float | None

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.grade}"

    @property
    def defined(self) -> bool:
        """The class has ground truth, so its AP counts towards mAP."""
        return self.n_gt > 0

    def to_dict(self) -> dict[str, object]:
        return {
            "class": self.name,
            "kind": self.kind,
            "grade": self.grade,
            "n_gt": self.n_gt,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "ignored": self.ignored,
            "precision": self.precision,
            "recall": self.recall,
            "ap": self.ap,
        }


def mean_ap(results: Sequence[ClassResult]) -> float | None:
    """Mean AP over the classes with ground truth; None when no class has any."""
    aps = [r.ap for r in results if r.defined and r.ap is not None]
    return float(np.mean(aps)) if aps else None


@dataclass(frozen=True)
class F1Class:
    """Support-weighted F1 bookkeeping of one class (one prediction per landmark)."""

    kind: str
    grade: str
    support: int
    tp: int
    fp: int
    fn: int
    f1: float | None

    def to_dict(self) -> dict[str, object]:
        return {
            "class": f"{self.kind}/{self.grade}",
            "support": self.support,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "f1": self.f1,
        }


def support_weighted_f1(
    gt_classes: np.ndarray, pred_classes: np.ndarray, within: np.ndarray, classes: Sequence[tuple[str, str]]
) -> tuple[float | None, tuple[F1Class, ...]]:
    """The competition's figure: per-landmark multi-label F1 per class, averaged weighted by ground-truth support.

    Each row is one graded ground-truth landmark paired with the best-scored prediction of its identification.
    Landmark i is correct for class c when it was localized (``within``) and c is in both label sets.
    TP_c = correct landmarks; FP_c = landmarks predicted as c but not correct; FN_c = landmarks of class c not correct.

    Args:
        gt_classes: (N, C) bool, ground-truth label sets.
        pred_classes: (N, C) bool, label set of the paired prediction (all False when never predicted).
        within: (N,) bool, the paired prediction is within the F1 radius.
        classes: the C (kind, grade) names.

    Returns:
        (weighted F1 or None when no landmark has a grade, per-class details).
    """
    correct = gt_classes & pred_classes & within[:, None]
    tp = correct.sum(axis=0)
    fp = pred_classes.sum(axis=0) - tp
    support = gt_classes.sum(axis=0)
    fn = support - tp
    per_class = []
    weighted = 0.0
    for c, (kind, grade) in enumerate(classes):
        f1 = ratio(2 * tp[c], 2 * tp[c] + fp[c] + fn[c])
        per_class.append(F1Class(kind, grade, int(support[c]), int(tp[c]), int(fp[c]), int(fn[c]), f1))
        weighted += support[c] * (f1 or 0.0)
    total = int(support.sum())
    return (weighted / total if total else None), tuple(per_class)
