"""Localization error of each ground-truth landmark, pure numpy.

The error of a ground-truth landmark is the distance in mm (its image's spacing) to the best-scored prediction of
the same identification in the same study, whatever the grades. Empty-label landmarks count here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spine_kp.evaluation.matching import GroundTruth, Predictions, distance_mm, pred_order


def best_prediction(gt: GroundTruth, pred: Predictions) -> np.ndarray:
    """Index of the best-scored prediction of each ground-truth point's identification.

    Ties in score go to the canonical prediction order (``matching.pred_order``), so the choice does not depend
    on the input order.

    Returns:
        (G,) int index into ``pred``, -1 where no prediction has that identification.
    """
    n_g = len(gt)
    if len(pred) == 0 or n_g == 0:
        return np.full(n_g, -1, dtype=np.int64)
    po = pred_order(pred)  # best score first
    same = pred.ident[po][:, None] == gt.ident[None, :]  # (P, G)
    first = same.argmax(axis=0)  # first True = best-scored of that identification
    return np.where(same.any(axis=0), po[first], -1)


def localization_errors(gt: GroundTruth, pred: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """Error in mm of each ground-truth point to its best-scored same-identification prediction.

    Returns:
        errors (G,) float with NaN where never predicted, and the matching ``best_prediction`` indices (G,).
    """
    best = best_prediction(gt, pred)
    errors = np.full(len(gt), np.nan)
    ok = best >= 0
    if ok.any():
        errors[ok] = distance_mm(pred.xy[best[ok]], gt.xy[ok], gt.spacing[ok])
    return errors, best


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
