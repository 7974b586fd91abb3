"""The 8 mm matching rules for one study, all classes at once (SPEC section 4), pure numpy.

Frames and units: points are ``(x, y)`` = (column, row) pixels of the ground-truth image; spacing is
``(row_mm, col_mm)``; a distance is ``hypot(dx * col_mm, dy * row_mm)`` with the spacing of the ground-truth
point's image. A point "lies within r" when its distance is ``<= r``.

Per class c (rules 1-4):
    1. a prediction of class c whose nearest class-c ground-truth point within r is g *hits* g;
    2. the nearest hit of each ground-truth point is a TP; its other hits are ignored (``DUPLICATE``);
    3. a class-c prediction that hits nothing is an FP, unless it lies within r of an empty-label ground-truth
       point (any kind), where it is ignored (``NEAR_EMPTY``);
    4. a class-c ground-truth point without a TP is an FN.

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


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Ground-truth points of one study as arrays (G points, C classes).

    Attributes:
        xy: (G, 2) float, (x, y) pixels.
        spacing: (G, 2) float, (row_mm, col_mm) of each point's image.
        classes: (G, C) bool, point g belongs to class c (one per grade in its label set).
        empty: (G,) bool, the point has an empty label set ("ignore" for grading).
        ident: (G,) int, identification code (shared vocabulary with the predictions).
    """

    xy: np.ndarray
    spacing: np.ndarray
    classes: np.ndarray
    empty: np.ndarray
    ident: np.ndarray

    def __len__(self) -> int:
        return int(self.xy.shape[0])


@dataclass(frozen=True, eq=False)
class Predictions:
    """Predicted points of one study as arrays (P points, C classes).

    Attributes:
        xy: (P, 2) float, (x, y) pixels (same frame as the ground truth).
        classes: (P, C) bool, the point predicts class c (one per grade it carries).
        score: (P,) float, confidence.
        ident: (P,) int, identification code.
    """

    xy: np.ndarray
    classes: np.ndarray
    score: np.ndarray
    ident: np.ndarray

    def __len__(self) -> int:
        return int(self.xy.shape[0])


@dataclass(frozen=True, eq=False)
class StudyMatch:
    """Outcome of matching one study, in the input order of its points.

    Attributes:
        outcome: (P, C) int8, one of NOT_IN_CLASS, TP, FP, DUPLICATE, NEAR_EMPTY.
        gt_tp: (G, C) bool, ground-truth point g of class c has a TP.
        gt_classes: (G, C) bool, copy of the ground-truth class membership.
        score: (P,) float, prediction scores (for ranking).
    """

    outcome: np.ndarray
    gt_tp: np.ndarray
    gt_classes: np.ndarray
    score: np.ndarray

    @property
    def tp(self) -> np.ndarray:
        """(C,) int, true positives per class."""
        return (self.outcome == TP).sum(axis=0)

    @property
    def fp(self) -> np.ndarray:
        """(C,) int, false positives per class."""
        return (self.outcome == FP).sum(axis=0)

    @property
    def fn(self) -> np.ndarray:
        """(C,) int, ground-truth points of each class without a TP."""
        return (self.gt_classes & ~self.gt_tp).sum(axis=0)


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


def pairwise_mm(pred_xy: np.ndarray, gt_xy: np.ndarray, gt_spacing: np.ndarray) -> np.ndarray:
    """Distances in mm between every prediction (P, 2) and every ground-truth point (G, 2); spacing (G, 2).

    Returns:
        (P, G) float distances in mm.
    """
    return distance_mm(pred_xy[:, None, :], gt_xy[None, :, :], gt_spacing[None, :, :])


def gt_order(gt: GroundTruth) -> np.ndarray:
    """(G,) canonical order of ground-truth points: identification, then y, then x."""
    return np.lexsort((gt.xy[:, 0], gt.xy[:, 1], gt.ident))


def pred_order(pred: Predictions) -> np.ndarray:
    """(P,) canonical order of predictions: score descending, then identification, y, x."""
    return np.lexsort((pred.xy[:, 0], pred.xy[:, 1], pred.ident, -pred.score))


def match_study(gt: GroundTruth, pred: Predictions, radius: float = 8.0, match_level: bool = False) -> StudyMatch:
    """Apply rules 1-4 to one study for every class at once.

    Args:
        gt: ground truth of the study (G points).
        pred: predictions of the study (P points), same class order as ``gt``.
        radius: r in mm.
        match_level: a prediction may only hit (or be excused by) ground truth of its own identification.

    Returns:
        The per-(prediction, class) outcome and the per-(ground truth, class) TP flags, in input order.
    """
    n_p, n_g, n_c = len(pred), len(gt), gt.classes.shape[1]
    outcome = np.zeros((n_p, n_c), dtype=np.int8)
    gt_tp = np.zeros((n_g, n_c), dtype=bool)
    if n_p == 0 or n_g == 0:
        outcome[pred.classes] = FP
        return StudyMatch(outcome=outcome, gt_tp=gt_tp, gt_classes=gt.classes.copy(), score=pred.score)

    go, po = gt_order(gt), pred_order(pred)
    g_cls, p_cls = gt.classes[go], pred.classes[po]
    dist = pairwise_mm(pred.xy[po], gt.xy[go], gt.spacing[go])  # (P, G) canonical order
    within = dist <= radius
    if match_level:
        within &= pred.ident[po][:, None] == gt.ident[go][None, :]

    # Rule 1: a class-c prediction hits its nearest class-c ground truth within r.
    cand = within[:, :, None] & g_cls[None, :, :] & p_cls[:, None, :]  # (P, G, C)
    d3 = np.where(cand, dist[:, :, None], np.inf)  # (P, G, C)
    has_hit = cand.any(axis=1)  # (P, C)
    hit_g = d3.argmin(axis=1)  # (P, C); argmin takes the first of equal distances = canonical tie-break
    # Rule 2: the nearest hit of each ground-truth point is its TP.
    hits = has_hit[:, None, :] & (hit_g[:, None, :] == np.arange(n_g)[None, :, None])  # (P, G, C)
    dh = np.where(hits, dist[:, :, None], np.inf)
    tp_of_g = dh.argmin(axis=0)  # (G, C); first of equal distances = highest score
    g_has_tp = hits.any(axis=0)  # (G, C)
    is_tp = np.zeros((n_p, n_c), dtype=bool)
    gi, ci = np.nonzero(g_has_tp)
    is_tp[tp_of_g[gi, ci], ci] = True
    # Rule 3: a prediction with no hit near an empty-label point is excused.
    near_empty = (within & gt.empty[go][None, :]).any(axis=1)  # (P,)

    out_c = np.full((n_p, n_c), FP, dtype=np.int8)
    out_c[near_empty] = NEAR_EMPTY
    out_c[has_hit] = DUPLICATE
    out_c[is_tp] = TP
    out_c[~p_cls] = NOT_IN_CLASS

    outcome[po] = out_c  # back to input order
    gt_tp[go] = g_has_tp
    return StudyMatch(outcome=outcome, gt_tp=gt_tp, gt_classes=gt.classes.copy(), score=pred.score)
