"""Calibration metrics, pure numpy: reliability bins, ECE and Brier score of scored outcomes; the grade NLLs.

**Reliability of emitted points** (what the evaluation report shows). The population of a kind is every (prediction
point, class) pair the evaluator counts for AP: the point carries class c of that kind and the 8 mm matching rules
make it a TP or an FP (duplicate hits and points excused near an empty-label landmark are left out, as in AP). Its
confidence s is the point's score, clipped to [0, 1]; its outcome y is 1 for a TP, 0 for an FP. With B = 15
equal-width bins (bin b holds b/B <= s < (b+1)/B; s = 1 falls in the last bin)::

    ECE   = sum_b n_b / N * | mean(y in b) - mean(s in b) |
    Brier = mean over the N pairs of (s - y)^2

Both are undefined (None) when N = 0. Ground truth that was never predicted has no score and does not enter: these
figures say whether a point scored s is right a share s of the time, not how much was found (recall is AP's job).
The pairs themselves come from :mod:`spine_kp.evaluation` (which imports this module, never the reverse).

**Grade NLL** of logits divided by a temperature T, the objective of :func:`spine_kp.calibration.fit.fit_temperature`::

    single-label kind (softmax):  NLL(T) = mean_i -log softmax(z_i / T)[y_i]
    multi-label kind (sigmoid):   NLL(T) = mean_{i, g} BCE(sigmoid(z_ig / T), y_ig)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spine_kp.calibration.apply import log_softmax

N_BINS = 15


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


# ---------------------------------------------------------------------------------------------- grade NLL
def softmax_nll(logits: np.ndarray, target: np.ndarray, temperature: float = 1.0) -> float:
    """Mean -log softmax(z / T)[y] of (N, G) logits and (N,) integer targets (N > 0)."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64) / float(temperature))
    return float(-np.mean(np.take_along_axis(logp, target[:, None], axis=-1)))


def sigmoid_nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy of sigmoid(z / T) against {0, 1} targets of the same shape (non-empty)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    y = np.asarray(targets, dtype=np.float64)
    return float(np.mean(np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))))
