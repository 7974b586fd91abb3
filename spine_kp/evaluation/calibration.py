"""Calibration of scores, pure numpy: reliability bins, ECE and Brier score, and temperature scaling of grade logits.

**Reliability of emitted points** (what the evaluation report shows). The population of a kind is every (prediction
point, class) pair the evaluator counts for AP: the point carries class c of that kind and the 8 mm matching rules
make it a TP or an FP (duplicate hits and points excused near an empty-label landmark are left out, as in AP). Its
confidence s is the point's score, clipped to [0, 1]; its outcome y is 1 for a TP, 0 for an FP. With B = 15
equal-width bins (bin b holds b/B <= s < (b+1)/B; s = 1 falls in the last bin)::

    ECE   = sum_b n_b / N * | mean(y in b) - mean(s in b) |
    Brier = mean over the N pairs of (s - y)^2

Both are undefined (None) when N = 0. Ground truth that was never predicted has no score and does not enter: these
figures say whether a point scored s is right a share s of the time, not how much was found (recall is AP's job).

**Temperature scaling** (Guo et al., 2017). One scalar T > 0 per grade kind divides that kind's logits z; T is the
minimiser of the mean negative log-likelihood of the observed grades on held-out data::

    single-label kind (softmax):  NLL(T) = mean_i -log softmax(z_i / T)[y_i]
    multi-label kind (sigmoid):   NLL(T) = mean_{i, g trained} BCE(sigmoid(z_ig / T), y_ig)

Grades that were never trained are impossible (logit -inf) in the softmax and left out of the BCE, as at prediction
time. In beta = 1/T both objectives are convex (log-sum-exp / softplus of a linear function minus a linear one), so
the NLL is unimodal in log T and a bounded 1-D search over log T in ``TEMPERATURE_BOUNDS`` finds its minimum.
Dividing by T never changes a single-label argmax; it changes how confident the probabilities are.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

N_BINS = 15
TEMPERATURE_BOUNDS = (0.1, 10.0)


# ---------------------------------------------------------------------------------------------- reliability / ECE
@dataclass(frozen=True, eq=False)
class Reliability:
    """Reliability bins, ECE and Brier score of one population of scored outcomes (a kind, or all).

    Attributes:
        name: what the population is ("vertebra", "disc", "all").
        n: number of (point, class) pairs.
        ece: expected calibration error, None when ``n`` is 0.
        brier: Brier score, None when ``n`` is 0.
        counts: (B,) int, pairs per bin.
        confidence: (B,) float, mean score per bin (NaN for an empty bin).
        accuracy: (B,) float, share of TPs per bin (NaN for an empty bin).
    """

    name: str
    n: int
    ece: float | None
    brier: float | None
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def edges(self) -> np.ndarray:
        """(B + 1,) bin edges over [0, 1]."""
        return np.linspace(0.0, 1.0, self.counts.size + 1)

    def to_dict(self) -> dict[str, object]:
        edges = self.edges
        return {
            "kind": self.name,
            "n": self.n,
            "ece": self.ece,
            "brier": self.brier,
            "bins": [
                {
                    "lo": float(edges[b]),
                    "hi": float(edges[b + 1]),
                    "count": int(self.counts[b]),
                    "confidence": float(self.confidence[b]) if self.counts[b] else None,
                    "accuracy": float(self.accuracy[b]) if self.counts[b] else None,
                }
                for b in range(self.counts.size)
            ],
        }


def bin_index(scores: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """(N,) bin of each score in [0, 1]: floor(s * B), with s = 1 in the last bin."""
    return np.minimum((np.clip(scores, 0.0, 1.0) * n_bins).astype(np.int64), n_bins - 1)


def reliability(scores: np.ndarray, is_tp: np.ndarray, n_bins: int = N_BINS, name: str = "all") -> Reliability:
    """Reliability bins, ECE and Brier score (see the module docstring).

    The pairs are sorted by (score, outcome) before any sum, so the figures do not depend on the input order.

    Args:
        scores: (N,) confidences (clipped to [0, 1]).
        is_tp: (N,) bool, the pair is a true positive.
        n_bins: B, equal-width bins over [0, 1].
        name: label of the population.
    """
    s = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    y = np.asarray(is_tp, dtype=bool).astype(np.float64)
    order = np.lexsort((y, s))
    s, y = s[order], y[order]
    b = bin_index(s, n_bins)
    counts = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(b, weights=s, minlength=n_bins) / counts
        accuracy = np.bincount(b, weights=y, minlength=n_bins) / counts
    n = int(s.size)
    if n == 0:
        return Reliability(name, 0, None, None, counts, confidence, accuracy)
    used = counts > 0
    ece = float(np.sum(counts[used] / n * np.abs(accuracy[used] - confidence[used])))
    brier = float(np.mean((s - y) ** 2))
    return Reliability(name, n, ece, brier, counts, confidence, accuracy)


def expected_calibration_error(scores: np.ndarray, is_tp: np.ndarray, n_bins: int = N_BINS) -> float | None:
    """ECE over ``n_bins`` equal-width bins; None without any pair."""
    return reliability(scores, is_tp, n_bins).ece


def brier_score(scores: np.ndarray, is_tp: np.ndarray) -> float | None:
    """Mean squared difference between score and outcome; None without any pair."""
    return reliability(scores, is_tp).brier


# ---------------------------------------------------------------------------------------------- temperature scaling
def _log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log softmax of (N, G) logits; -inf entries (impossible grades) stay -inf."""
    m = np.max(z, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return z - m - np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True))


def probabilities(logits: np.ndarray, multi_label: bool, temperature: float = 1.0) -> np.ndarray:
    """Grade probabilities of (..., G) logits divided by ``temperature``: sigmoid (multi-label) or softmax."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    if multi_label:
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid without overflow
    return np.exp(_log_softmax(z))


def softmax_nll(logits: np.ndarray, target: np.ndarray, temperature: float = 1.0) -> float:
    """Mean -log softmax(z / T)[y] of (N, G) logits and (N,) integer targets (N > 0)."""
    logp = _log_softmax(np.asarray(logits, dtype=np.float64) / float(temperature))
    return float(-np.mean(np.take_along_axis(logp, target[:, None], axis=-1)))


def sigmoid_nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy of sigmoid(z / T) against {0, 1} targets of the same shape (non-empty)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    y = np.asarray(targets, dtype=np.float64)
    return float(np.mean(np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))))


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


# ---------------------------------------------------------------------------------------------- Platt scaling
SCORE_EPS = 1e-6
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


def _logit(s: np.ndarray) -> np.ndarray:
    s = np.clip(np.asarray(s, dtype=np.float64), SCORE_EPS, 1.0 - SCORE_EPS)
    return np.log(s) - np.log1p(-s)


def platt(scores: np.ndarray | float, a: float, b: float) -> np.ndarray:
    """``sigmoid(a * logit(s) + b)`` of scores in [0, 1]; a score of exactly 0 stays 0 (nothing emitted)."""
    s = np.asarray(scores, dtype=np.float64)
    z = a * _logit(s) + b
    out = np.exp(-np.logaddexp(0.0, -z))
    return np.where(s <= 0.0, 0.0, out)


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
    x = _logit(s)

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
