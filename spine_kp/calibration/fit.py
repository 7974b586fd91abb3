"""Fitting calibration, numpy (scipy for the 1-D search): temperatures of grade logits, Platt maps of scores.

**Temperature scaling** (Guo et al., 2017). One scalar T > 0 per grade kind divides that kind's logits z; T is the
minimiser of the mean negative log-likelihood of the observed grades on held-out data
(:func:`spine_kp.calibration.metrics.softmax_nll` / :func:`~spine_kp.calibration.metrics.sigmoid_nll`). Grades that
were never trained are impossible (logit -inf) in the softmax and left out of the BCE, as at prediction time. In
beta = 1/T both objectives are convex (log-sum-exp / softplus of a linear function minus a linear one), so the NLL is
unimodal in log T and a bounded 1-D search over log T in ``TEMPERATURE_BOUNDS`` finds its minimum. The grade head
(:mod:`spine_kp.engine.grade_logits`, every validation epoch) and the crop grading stage
(:mod:`spine_kp.engine.grade_stage_train`) both fit with :func:`fit_temperatures`.

**Platt scaling** (Platt, 1999) of emitted scores: ``s' = sigmoid(a logit(s) + b)`` of least log-loss against the
outcomes (TP or not), a >= ``MIN_SLOPE`` so the map never reorders points (see :func:`fit_platt`); fitted per kind at
the end of training by :mod:`spine_kp.engine.score_map_fit`, applied by :mod:`spine_kp.calibration.apply`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from spine_kp.calibration.apply import logit, platt
from spine_kp.calibration.metrics import expected_calibration_error, sigmoid_nll, softmax_nll
from spine_kp.schema import KindSpec

TEMPERATURE_BOUNDS = (0.1, 10.0)
#: What the stored temperatures were fitted on (both the grade head's and the crop stage's).
FITTED_ON = "validation grade logits at the ground-truth landmarks"

KindArrays = Mapping[str, tuple[np.ndarray, np.ndarray]]  # kind -> ((N, G) logits, (N, G) multi-hot targets)


# ---------------------------------------------------------------------------------------------- temperature scaling
@dataclass(frozen=True)
class TemperatureFit:
    """One kind's fitted temperature.

    Attributes:
        temperature: T (1.0 when there was nothing, or too little, to fit).
        n: landmarks (rows) the fit used.
        nll_before: NLL at T = 1 (None without data).
        nll_after: NLL at the fitted T (None without data).
    """

    temperature: float
    n: int
    nll_before: float | None
    nll_after: float | None

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def fit_temperature(
    logits: np.ndarray,
    targets: np.ndarray,
    multi_label: bool,
    grade_mask: np.ndarray | None = None,
    min_points: int = 1,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
) -> TemperatureFit:
    """The temperature minimising the grade NLL (see the module docstring).

    Args:
        logits: (N, G) grade logits of N graded landmarks of one kind.
        targets: (N, G) multi-hot ground truth (a single-label kind uses each row's first label, as its loss does).
        multi_label: sigmoid/BCE (True) or softmax/NLL (False).
        grade_mask: (G,) bool, trained grades; the others are impossible (softmax) or left out (BCE).
        min_points: fewer usable landmarks than this keep T = 1.
        bounds: (lowest, highest) T searched.

    Returns:
        The fit; T = 1 when fewer than ``min_points`` (or no) landmarks are usable.
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1, np.shape(logits)[-1])
    y = np.asarray(targets, dtype=np.float64).reshape(z.shape) > 0.5
    mask = np.ones(z.shape[1], dtype=bool) if grade_mask is None else np.asarray(grade_mask, dtype=bool)
    if multi_label:
        z, y = z[:, mask], y[:, mask]
        n = z.shape[0] if z.shape[1] else 0

        def nll(t: float) -> float:
            return sigmoid_nll(z, y, t)

    else:
        label = y.argmax(axis=1)
        keep = y.any(axis=1) & mask[label]  # a grade never trained cannot be predicted: its rows say nothing of T
        z = np.where(mask, z[keep], -np.inf)
        label = label[keep]
        n = z.shape[0]

        def nll(t: float) -> float:
            return softmax_nll(z, label, t)

    if n == 0 or n < min_points:
        before = nll(1.0) if n else None
        return TemperatureFit(1.0, n, before, before)
    from scipy.optimize import minimize_scalar  # scipy is only needed when fitting

    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    res = minimize_scalar(lambda u: nll(float(np.exp(u))), bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
    t = float(np.exp(res.x))
    before, after = nll(1.0), nll(t)
    if after > before:  # the bounded search only approximates; never return a temperature worse than none
        t, after = 1.0, before
    return TemperatureFit(t, n, before, after)


def fit_temperatures(
    arrays: KindArrays, kinds: Iterable[KindSpec], grade_masks: Mapping[str, np.ndarray], min_points: int
) -> dict[str, TemperatureFit]:
    """One temperature per kind (T = 1 for a kind with fewer than ``min_points`` graded landmarks, or none).

    Args:
        arrays: kind -> ((N, G) logits, (N, G) targets) of the graded landmarks; a kind not named has none.
        kinds: the kinds to fit, in the order of the result.
        grade_masks: kind -> (G,) bool, the trained grades (the others are impossible at prediction time, so also in
            the fit).
        min_points: least graded landmarks of a kind to fit its T.
    """
    fits = {}
    for kind in kinds:
        g = len(kind.grades)
        z, y = arrays.get(kind.name, (np.zeros((0, g)), np.zeros((0, g))))
        fits[kind.name] = fit_temperature(z, y, kind.multi_label, grade_masks[kind.name], min_points=min_points)
    return fits


@dataclass(frozen=True)
class Calibration:
    """Fitted temperatures of one set of weights: a checkpoint's ``"calibration"`` entry.

    Attributes:
        temperatures: kind -> T (divides that kind's grade logits).
        fits: kind -> the fit's details.
        seconds: time the fits took.
    """

    temperatures: dict[str, float]
    fits: dict[str, TemperatureFit]
    seconds: float = 0.0

    def to_checkpoint(self) -> dict[str, Any]:
        return {
            "temperatures": dict(self.temperatures),
            "fits": {k: f.to_dict() for k, f in self.fits.items()},
            "fitted_on": FITTED_ON,
            "seconds": self.seconds,
        }

    @classmethod
    def from_checkpoint(cls, entry: Mapping[str, Any] | None) -> Calibration | None:
        """Read back :meth:`to_checkpoint` (None for a checkpoint without the entry)."""
        if not entry:
            return None
        fits = {k: TemperatureFit(**f) for k, f in entry.get("fits", {}).items()}
        temps = {k: float(t) for k, t in entry["temperatures"].items()}
        return cls(temps, fits, float(entry.get("seconds", 0.0)))

    @classmethod
    def fit(
        cls, arrays: KindArrays, kinds: Iterable[KindSpec], grade_masks: Mapping[str, np.ndarray], min_points: int
    ) -> Calibration:
        """:func:`fit_temperatures`, timed."""
        t0 = time.perf_counter()
        fits = fit_temperatures(arrays, kinds, grade_masks, min_points)
        return cls({k: f.temperature for k, f in fits.items()}, fits, time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------- Platt scaling
#: Least Platt slope: a flat map (a = 0) would tie every point of a kind and so change the APs.
MIN_SLOPE = 0.2


@dataclass(frozen=True)
class PlattFit:
    """Platt scaling of one kind's emitted scores: ``s' = sigmoid(a * logit(s) + b)`` (identity: a = 1, b = 0).

    Attributes:
        a, b: the map's slope and offset in logit space (a >= ``MIN_SLOPE`` > 0, so the map is strictly increasing:
            it never reorders or ties a class's points and leaves every AP as it was).
        n: (point, class) pairs the fit used; n_tp: of them true positives.
        ece_before, ece_after: ECE of those pairs before and after the map (None without data).
    """

    a: float = 1.0
    b: float = 0.0
    n: int = 0
    n_tp: int = 0
    ece_before: float | None = None
    ece_after: float | None = None

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def __call__(self, scores: np.ndarray | float) -> np.ndarray:
        return platt(scores, self.a, self.b)


def fit_platt(scores: np.ndarray, is_tp: np.ndarray, min_points: int = 20, iterations: int = 50) -> PlattFit:
    """Platt scaling (Platt, 1999) of scores against outcomes: the (a, b) of least log-loss.

    The targets are Platt's smoothed ones, ``(N+ + 1) / (N+ + 2)`` for positives and ``1 / (N- + 2)`` for
    negatives, so a population of only TPs (common where localization is nearly perfect) still gets a finite map
    (a -> 0, b -> the logit of the smoothed rate) instead of an infinite one. Newton's method on the 2-parameter
    convex problem, with step halving; a slope that comes out below ``MIN_SLOPE`` (a flat or reversing map, when
    the scores say little about the outcome) is refitted as the offset alone at a = ``MIN_SLOPE``.

    Args:
        scores: (N,) scores in [0, 1].
        is_tp: (N,) bool outcomes.
        min_points: fewer pairs than this keep the identity map.

    Returns:
        The fit, with the ECE of the pairs before and after.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_tp, dtype=bool)
    n, n_tp = int(s.size), int(y.sum())
    before = expected_calibration_error(s, y)
    if n < min_points:
        return PlattFit(1.0, 0.0, n, n_tp, before, before)
    t = np.where(y, (n_tp + 1.0) / (n_tp + 2.0), 1.0 / (n - n_tp + 2.0))
    x = logit(s)

    def loss(a: float, b: float) -> float:
        z = a * x + b
        return float(np.mean(np.logaddexp(0.0, z) - t * z))

    def newton(a: float, b: float, fit_slope: bool) -> tuple[float, float]:
        for _ in range(iterations):
            p = np.exp(-np.logaddexp(0.0, -(a * x + b)))
            r, w = p - t, np.maximum(p * (1.0 - p), 1e-12)
            if fit_slope:
                g = np.array([np.mean(r * x), np.mean(r)])
                h = np.array([[np.mean(w * x * x), np.mean(w * x)], [np.mean(w * x), np.mean(w)]]) + 1e-9 * np.eye(2)
                step = np.linalg.solve(h, g)
            else:
                step = np.array([0.0, np.mean(r) / np.mean(w)])
            scale, current = 1.0, loss(a, b)
            while scale > 1e-4 and loss(a - scale * step[0], b - scale * step[1]) > current:
                scale /= 2
            a, b = a - scale * step[0], b - scale * step[1]
            if np.max(np.abs(scale * step)) < 1e-8:
                break
        return a, b

    a, b = newton(1.0, 0.0, fit_slope=True)
    if a < MIN_SLOPE:
        a, b = newton(MIN_SLOPE, 0.0, fit_slope=False)
    after = expected_calibration_error(platt(s, a, b), y)
    return PlattFit(float(a), float(b), n, n_tp, before, after)
