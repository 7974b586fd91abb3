"""Calibration at prediction time, pure numpy: temperature-scaled grade probabilities and the score maps.

**Temperatures.** One scalar T > 0 per grade kind divides that kind's logits before the softmax (single-label) or the
sigmoid (multi-label); dividing by T never changes a single-label argmax, only how confident the probabilities are.
The predictors' float32 path is :func:`spine_kp.inference.network_outputs.grade_probabilities`;
:func:`probabilities` is the float64 one the temperature fit reads.

**Score maps.** An emitted point of landmark k with grade g is scored ``confidence x p(grade)``. A model with a score
calibration (two Platt maps per kind, ``s' = sigmoid(a logit(s) + b)``, fitted at the end of training by
:mod:`spine_kp.engine.score_map_fit`) replaces the confidence, the heatmap peak, by the kind's P(within 8 mm) of that
peak (step ``"localization"``), then maps the product to P(TP) (step ``"scores"``). A kind or step without a map keeps
its value (identity). Each map is strictly increasing, so the order of a kind's points never changes.

Stored form (a checkpoint's ``"score_calibration"`` entry, ONNX metadata)::

    {"localization": {kind: {"a", "b", ...} or (a, b)}, "scores": {kind: ...}, ...other keys ignored}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: Scores are clipped to [SCORE_EPS, 1 - SCORE_EPS] before their logit, so 0 and 1 map to finite values.
SCORE_EPS = 1e-6
#: The two maps of a score calibration: peak -> P(within 8 mm), then confidence x p(grade) -> P(TP).
SCORE_MAP_STEPS = ("localization", "scores")

#: ``{step: {kind: (a, b) or a stored fit {"a", "b", ...}}}``, e.g. a checkpoint's ``score_calibration`` entry.
ScoreMaps = Mapping[str, Any]


# ---------------------------------------------------------------------------------------------- temperatures
def log_softmax(z: np.ndarray) -> np.ndarray:
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
    return np.exp(log_softmax(z))


# ---------------------------------------------------------------------------------------------- score maps
def logit(scores: np.ndarray | float) -> np.ndarray:
    """``log(s / (1 - s))`` of scores clipped to [``SCORE_EPS``, 1 - ``SCORE_EPS``]."""
    s = np.clip(np.asarray(scores, dtype=np.float64), SCORE_EPS, 1.0 - SCORE_EPS)
    return np.log(s) - np.log1p(-s)


def platt(scores: np.ndarray | float, a: float, b: float) -> np.ndarray:
    """``sigmoid(a * logit(s) + b)`` of scores in [0, 1]; a score of exactly 0 stays 0 (nothing emitted)."""
    s = np.asarray(scores, dtype=np.float64)
    z = a * logit(s) + b
    out = np.exp(-np.logaddexp(0.0, -z))
    return np.where(s <= 0.0, 0.0, out)


def score_maps(entry: ScoreMaps | None) -> dict[str, dict[str, tuple[float, float]]]:
    """``{step: {kind: (a, b)}}`` from stored data (tuples, lists or ``{"a", "b", ...}`` fit records); steps not in
    :data:`SCORE_MAP_STEPS` are ignored, a missing step is empty (no map: identity)."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for step in SCORE_MAP_STEPS:
        fits = (entry or {}).get(step) or {}
        out[step] = {
            str(k): (float(f["a"]), float(f["b"])) if isinstance(f, Mapping) else (float(f[0]), float(f[1]))
            for k, f in fits.items()
        }
    return out


def point_confidence(peak: float, kind: str, maps: Mapping[str, Mapping[str, tuple[float, float]]]) -> float:
    """The confidence of a placed landmark of ``kind``: P(within 8 mm) of its heatmap ``peak`` by the kind's
    localization map, or the peak itself without one (``maps`` as from :func:`score_maps`)."""
    loc = maps["localization"]
    return float(platt(peak, *loc[kind])) if kind in loc else float(peak)


def point_score(
    confidence: float, probability: float, kind: str, maps: Mapping[str, Mapping[str, tuple[float, float]]]
) -> float:
    """The emitted score of one (landmark, grade): ``confidence x p(grade)`` in [0, 1], then P(TP) by the kind's score
    map if it has one (``maps`` as from :func:`score_maps`)."""
    score = float(np.clip(confidence * probability, 0.0, 1.0))
    final = maps["scores"]
    return float(platt(score, *final[kind])) if kind in final else score


__all__ = [
    "SCORE_MAP_STEPS",
    "ScoreMaps",
    "log_softmax",
    "platt",
    "point_confidence",
    "point_score",
    "probabilities",
    "score_maps",
]
