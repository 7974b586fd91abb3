"""Localization error of each ground-truth landmark, pure numpy.

The error of a ground-truth landmark is the distance in mm (its image's spacing) to the best-scored prediction of
the same identification in the same study, whatever the grades. Empty-label landmarks count here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spine_kp.evaluation.matching import PAD, GroundTruth, Predictions, distance_mm, pred_order


def best_prediction(gt: GroundTruth, pred: Predictions) -> np.ndarray:
    """Index of the best-scored prediction of each ground-truth point's identification.

    Works on one study or a padded batch (see :mod:`spine_kp.evaluation.matching`). Ties in score go to the
    canonical prediction order (``matching.pred_order``), so the choice does not depend on the input order.

    Returns:
        (..., G) int index into the prediction axis, -1 where no prediction has that identification.
    """
    po = pred_order(pred)  # (..., P) best score first, padding last
    ident = np.take_along_axis(pred.ident, po, axis=-1)
    same = (ident[..., :, None] == gt.ident[..., None, :]) & (ident != PAD)[..., :, None]  # (..., P, G)
    if same.shape[-2] == 0:
        return np.full(gt.ident.shape, -1, dtype=np.int64)
    first = same.argmax(axis=-2)  # (..., G) first True = best-scored of that identification
    return np.where(same.any(axis=-2), np.take_along_axis(po, first, axis=-1), -1)


def localization_errors(gt: GroundTruth, pred: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """Error in mm of each ground-truth point to its best-scored same-identification prediction.

    Returns:
        errors (..., G) float with NaN where never predicted, and the ``best_prediction`` indices (..., G).
    """
    best = best_prediction(gt, pred)
    if pred.xy.shape[-2] == 0:
        return np.full(best.shape, np.nan), best
    xy = np.take_along_axis(pred.xy, np.maximum(best, 0)[..., None], axis=-2)  # (..., G, 2)
    errors = np.where(best >= 0, distance_mm(xy, gt.xy, gt.spacing), np.nan)
    return errors, best


def paired_classes(pred: Predictions, best: np.ndarray) -> np.ndarray:
    """Class set of each ground-truth point's best prediction (``best`` from :func:`best_prediction`).

    Returns:
        (..., G, C) bool, all False where the landmark was never predicted.
    """
    if pred.classes.shape[-2] == 0:
        return np.zeros((*best.shape, pred.classes.shape[-1]), dtype=bool)
    got = np.take_along_axis(pred.classes, np.maximum(best, 0)[..., None], axis=-2)
    return got & (best >= 0)[..., None]


@dataclass(frozen=True)
class LocalizationStats:
    """Error summary of a group of ground-truth landmarks (one identification, or all).

    ``mean``, ``median`` and ``p95`` are over the predicted landmarks (None when none was); ``within_radius`` is the
    share of ALL landmarks of the group whose error is <= r, so never-predicted ones count as misses.
    """

    identification: str
    count: int
    never_predicted: int
    mean: float | None
    median: float | None
    p95: float | None
    within_radius: float | None

    def to_dict(self) -> dict[str, object]:
        return {
            "identification": self.identification,
            "count": self.count,
            "never_predicted": self.never_predicted,
            "mean_mm": self.mean,
            "median_mm": self.median,
            "p95_mm": self.p95,
            "within_radius": self.within_radius,
        }


def summarize(errors: np.ndarray, radius: float, name: str) -> LocalizationStats:
    """Summarize errors (N,) in mm (NaN = never predicted) of one group."""
    found = np.sort(errors[~np.isnan(errors)])  # sorted: the mean is then independent of the input order
    n = int(errors.size)
    has = found.size > 0
    return LocalizationStats(
        identification=name,
        count=n,
        never_predicted=n - int(found.size),
        mean=float(found.mean()) if has else None,
        median=float(np.median(found)) if has else None,
        p95=float(np.percentile(found, 95)) if has else None,
        within_radius=float((found <= radius).sum() / n) if n else None,
    )


@dataclass(frozen=True)
class LocalizationSummary:
    """Localization errors per identification (in the given order) and over all landmarks."""

    radius: float
    overall: LocalizationStats
    per_identification: tuple[LocalizationStats, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "radius_mm": self.radius,
            "overall": self.overall.to_dict(),
            "per_identification": [s.to_dict() for s in self.per_identification],
        }


def summarize_by_identification(
    errors: np.ndarray, ident: np.ndarray, names: Sequence[str], radius: float
) -> LocalizationSummary:
    """Group errors by identification code.

    Args:
        errors: (N,) mm, NaN where never predicted.
        ident: (N,) int codes indexing ``names``.
        names: identification names; those without any landmark are left out.
        radius: r in mm for the within-radius share.
    """
    per = tuple(
        summarize(errors[ident == code], radius, name) for code, name in enumerate(names) if np.any(ident == code)
    )
    return LocalizationSummary(radius=radius, overall=summarize(errors, radius, "all"), per_identification=per)
