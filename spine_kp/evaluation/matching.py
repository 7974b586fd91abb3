"""The 8 mm matching rules for one study (or a padded batch of studies), all classes at once (SPEC section 4).

Frames and units: points are ``(x, y)`` = (column, row) pixels of the ground-truth image; spacing is
``(row_mm, col_mm)``; a distance is ``hypot(dx * col_mm, dy * row_mm)`` with the spacing of the ground-truth
point's image. A point "lies within r" when its distance is ``<= r``.

Per class c (rules 1-4):
    1. a prediction of class c whose nearest class-c ground-truth point within r is g *hits* g;
    2. the nearest hit of each ground-truth point is a TP; its other hits are ignored (``DUPLICATE``);
    3. a class-c prediction that hits nothing is an FP, unless it lies within r of an empty-label ground-truth
       point (any kind), where it is ignored (``NEAR_EMPTY``);
    4. a class-c ground-truth point without a TP is an FN.

Every function here takes one study (arrays ``(G, ...)``) or a padded batch of studies (arrays ``(S, G, ...)``, padded
entries marked by ``ident == PAD``); the batch form lets the evaluator score thousands of studies with a few numpy
calls instead of a Python loop per study.

Ties are broken by a canonical order computed here, so results never depend on the order of the input points:
ground truth by (identification, y, x); predictions by (score descending, identification, y, x). A prediction at
equal distance from two ground-truth points hits the first in that order; a ground-truth point with two hits at
equal distance takes the higher-scored one as its TP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Outcome codes of one (prediction, class) pair.
NOT_IN_CLASS = 0  # the prediction does not carry this class
TP = 1
FP = 2
DUPLICATE = 3  # a hit that is not the nearest hit of its ground-truth point: counted nowhere
NEAR_EMPTY = 4  # no hit, but within r of an empty-label ground-truth point: counted nowhere

PAD = -1  # ``ident`` of a padding entry in a batch (no class, not empty, never predicted)

#: r, the matching radius in mm (the "8 mm rules"); every default radius of the package is this one.
DEFAULT_RADIUS_MM = 8.0


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Ground-truth points of one study, (G, ...), or of a padded batch of studies, (S, G, ...); C classes.

    Attributes:
        xy: (..., G, 2) float, (x, y) pixels.
        spacing: (..., G, 2) float, (row_mm, col_mm) of each point's image.
        classes: (..., G, C) bool, point g belongs to class c (one per grade in its label set).
        empty: (..., G) bool, the point has an empty label set ("ignore" for grading).
        ident: (..., G) int, identification code (shared vocabulary with the predictions); PAD for padding.
    """

    xy: np.ndarray
    spacing: np.ndarray
    classes: np.ndarray
    empty: np.ndarray
    ident: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """(..., G) bool, not padding."""
        return self.ident != PAD


@dataclass(frozen=True, eq=False)
class Predictions:
    """Predicted points of one study, (P, ...), or of a padded batch, (S, P, ...); C classes.

    Attributes:
        xy: (..., P, 2) float, (x, y) pixels (same frame as the ground truth).
        classes: (..., P, C) bool, the point predicts class c (one per grade it carries).
        score: (..., P) float, confidence.
        ident: (..., P) int, identification code; PAD for padding.
    """

    xy: np.ndarray
    classes: np.ndarray
    score: np.ndarray
    ident: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """(..., P) bool, not padding."""
        return self.ident != PAD


@dataclass(frozen=True, eq=False)
class StudyMatch:
    """Outcome of matching, in the input order of the points (batch axis kept when given).

    Attributes:
        outcome: (..., P, C) int8, one of NOT_IN_CLASS, TP, FP, DUPLICATE, NEAR_EMPTY (padding: NOT_IN_CLASS).
        gt_tp: (..., G, C) bool, ground-truth point g of class c has a TP.
        gt_classes: (..., G, C) bool, the ground-truth class membership.
    """

    outcome: np.ndarray
    gt_tp: np.ndarray
    gt_classes: np.ndarray

    def _per_class(self, mask: np.ndarray) -> np.ndarray:
        return mask.reshape(-1, mask.shape[-1]).sum(axis=0)

    @property
    def tp(self) -> np.ndarray:
        """(C,) int, true positives per class."""
        return self._per_class(self.outcome == TP)

    @property
    def fp(self) -> np.ndarray:
        """(C,) int, false positives per class."""
        return self._per_class(self.outcome == FP)

    @property
    def fn(self) -> np.ndarray:
        """(C,) int, ground-truth points of each class without a TP."""
        return self._per_class(self.gt_classes & ~self.gt_tp)

    @property
    def ignored(self) -> np.ndarray:
        """(C,) int, predictions counted nowhere (duplicate hits and those near an empty-label point)."""
        return self._per_class((self.outcome == DUPLICATE) | (self.outcome == NEAR_EMPTY))


def distance_mm(a_xy: np.ndarray, b_xy: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance in mm between (x, y) pixel points, broadcasting over leading axes.

    Args:
        a_xy: (..., 2) (x, y) pixels.
        b_xy: (..., 2) (x, y) pixels.
        spacing: (..., 2) (row_mm, col_mm) of the ground-truth image.

    Returns:
        (...) float distances in mm.
    """
    d = a_xy - b_xy
    return np.hypot(d[..., 0] * spacing[..., 1], d[..., 1] * spacing[..., 0])  # x is a column, y a row


def within_radius(
    a_xy: np.ndarray, b_xy: np.ndarray, spacing: np.ndarray, radius: float = DEFAULT_RADIUS_MM
) -> np.ndarray:
    """Whether point a "lies within r" of point b: ``distance_mm <= r`` (the test of rules 1 and 3), broadcasting.

    Args:
        a_xy, b_xy: (..., 2) (x, y) pixels of the same image.
        spacing: (..., 2) (row_mm, col_mm) of that image.
        radius: r in mm.

    Returns:
        (...) bool.
    """
    return distance_mm(np.asarray(a_xy), np.asarray(b_xy), np.asarray(spacing)) <= radius


def pairwise_mm(pred_xy: np.ndarray, gt_xy: np.ndarray, gt_spacing: np.ndarray) -> np.ndarray:
    """Distances in mm between every prediction (..., P, 2) and every ground-truth point (..., G, 2).

    Returns:
        (..., P, G) float distances in mm, with the ground truth's spacing (..., G, 2).
    """
    return distance_mm(pred_xy[..., :, None, :], gt_xy[..., None, :, :], gt_spacing[..., None, :, :])


def gt_order(gt: GroundTruth) -> np.ndarray:
    """(..., G) canonical order of ground-truth points: identification, y, x; padding last."""
    return np.lexsort((gt.xy[..., 0], gt.xy[..., 1], gt.ident, ~gt.valid), axis=-1)


def pred_order(pred: Predictions) -> np.ndarray:
    """(..., P) canonical order of predictions: score descending, identification, y, x; padding last."""
    return np.lexsort((pred.xy[..., 0], pred.xy[..., 1], pred.ident, -pred.score, ~pred.valid), axis=-1)


def _take(a: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Reorder the point axis of ``a`` (..., N[, k]) by ``order`` (..., N)."""
    idx = order if a.ndim == order.ndim else order[..., None]
    return np.take_along_axis(a, idx, axis=order.ndim - 1)


def match_study(
    gt: GroundTruth, pred: Predictions, radius: float = DEFAULT_RADIUS_MM, match_level: bool = False
) -> StudyMatch:
    """Apply rules 1-4 to one study (or a padded batch of studies) for every class at once.

    Args:
        gt: ground truth, (G, ...) or (S, G, ...).
        pred: predictions, (P, ...) or (S, P, ...), same class order (and batch size) as ``gt``.
        radius: r in mm.
        match_level: a prediction may only hit (or be excused by) ground truth of its own identification.

    Returns:
        The per-(prediction, class) outcome and the per-(ground truth, class) TP flags, in input order.
    """
    go, po = gt_order(gt), pred_order(pred)  # (..., G), (..., P)
    g_cls, p_cls = _take(gt.classes, go), _take(pred.classes, po)  # (..., G, C), (..., P, C)
    dist = pairwise_mm(_take(pred.xy, po), _take(gt.xy, go), _take(gt.spacing, go))  # (..., P, G) canonical order
    within = dist <= radius
    if match_level:
        within &= _take(pred.ident, po)[..., :, None] == _take(gt.ident, go)[..., None, :]

    # Rule 1: a class-c prediction hits its nearest class-c ground truth within r.
    cand = within[..., None] & g_cls[..., None, :, :] & p_cls[..., :, None, :]  # (..., P, G, C)
    has_hit = cand.any(axis=-2)  # (..., P, C)
    # argmin takes the first of equal distances = the canonical tie-break (an empty axis has no argmin)
    hit_g = np.where(cand, dist[..., None], np.inf).argmin(axis=-2) if cand.shape[-2] else np.zeros_like(p_cls, int)
    # Rule 2: the nearest hit of each ground-truth point is its TP.
    hits = has_hit[..., :, None, :] & (hit_g[..., :, None, :] == np.arange(cand.shape[-2])[:, None])  # (..., P, G, C)
    g_has_tp = hits.any(axis=-3)  # (..., G, C)
    # first of equal distances = the higher score
    tp_of_g = np.where(hits, dist[..., None], np.inf).argmin(axis=-3) if cand.shape[-3] else np.zeros_like(g_cls, int)
    # a prediction is the TP when it is the chosen hit of the ground-truth point it hits
    chosen = np.take_along_axis(tp_of_g, hit_g, axis=-2) if cand.shape[-2] else hit_g  # (..., P, C)
    is_tp = has_hit & (chosen == np.arange(cand.shape[-3])[:, None])
    # Rule 3: a prediction with no hit near an empty-label point is excused.
    near_empty = (within & _take(gt.empty, go)[..., None, :]).any(axis=-1)  # (..., P)

    out_c = np.full(p_cls.shape, FP, dtype=np.int8)
    out_c[np.broadcast_to(near_empty[..., None], out_c.shape)] = NEAR_EMPTY
    out_c[has_hit] = DUPLICATE
    out_c[is_tp] = TP
    out_c[~p_cls] = NOT_IN_CLASS

    # back to input order
    outcome = _take(out_c, np.argsort(po, axis=-1))
    gt_tp = _take(g_has_tp, np.argsort(go, axis=-1))
    return StudyMatch(outcome=outcome, gt_tp=gt_tp, gt_classes=gt.classes)
