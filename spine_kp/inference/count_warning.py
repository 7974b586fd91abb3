"""Whether a predicted chain could be counted from the lumbosacral junction: a per-study warning (numpy only).

The levels are counted from the sacrum: the landmark network (and the junction check, when the model has one) names
the chain's discs from the caudal-most one, L5-S1. On the Tianchi studies cut at the fifth lumbar body (a series that
ends above the sacrum) the chain named the lowest disc in view L5-S1 in most studies, every label a level off, with
nothing in the record to tell. So every prediction is checked for the two signs that the junction was not in view:

* the schema's caudal-most disc (L5-S1) was not placed on the slice;
* less than one level (the chain's last disc-to-disc step) of the image lies beyond it along that step, so the first
  sacral body is not wholly in view.

Either gives one warning line on the study's record (:attr:`spine_kp.types.StudyRecord.warnings`), which
``spine-kp predict`` prints and writes to ``PRED.errors.json``. On the 150 Tianchi development studies (not cut) the
least image left below a predicted L5-S1 was 1.07 levels.

Frames: ``coords`` are (x, y) pixels of the slice (original pixels), schema order.
"""

from __future__ import annotations

import math

import numpy as np

from spine_kp.inference.junction_check import JunctionLayout
from spine_kp.schema import Schema

MIN_LEVELS_BELOW = 1.0


def levels_in_view_beyond(point: np.ndarray, step: np.ndarray, shape: tuple[int, ...]) -> float:
    """How many ``step``s from ``point`` the ray ``point + t step`` (t >= 0) stays on an image of ``shape``
    (rows, cols), pixel centres 0..cols-1 and 0..rows-1; inf for a zero step."""
    h, w = shape[-2:]
    t = math.inf
    for p, s, hi in ((float(point[0]), float(step[0]), w - 1), (float(point[1]), float(step[1]), h - 1)):
        if s > 0:
            t = min(t, (hi - p) / s)
        elif s < 0:
            t = min(t, (0 - p) / s)
    return max(0.0, t)


def count_warning(
    coords: np.ndarray, peaks: np.ndarray, trained: np.ndarray, schema: Schema, shape: tuple[int, ...]
) -> str | None:
    """The warning of one predicted slice, or None.

    Args:
        coords: (K, 2) xy original pixels; peaks: (K,) (0: not placed).
        trained: (K,) bool, the landmarks the model places at all (an untrained L5-S1 gives no warning).
        schema: the landmark set; a schema without an evenly spaced chain of its last kind gives no warning.
        shape: the slice's (rows, cols).
    """
    layout = JunctionLayout.of(schema)
    if layout is None:
        return None
    last, before = layout.discs[-1], layout.discs[-2]
    if not trained[last]:
        return None
    name = schema.landmarks[last]
    if peaks[last] <= 0:
        return f"{name} not found on the slice: the levels were counted without the lumbosacral junction"
    if peaks[before] <= 0 or not trained[before]:
        return None
    point = np.asarray(coords[last], dtype=np.float64)
    step = point - np.asarray(coords[before], dtype=np.float64)
    left = levels_in_view_beyond(point, step, shape)
    if left < MIN_LEVELS_BELOW:
        return (
            f"{name} lies {left:.1f} level from the image edge: the sacrum may be out of view, so the levels may be "
            "counted from the wrong disc"
        )
    return None


__all__ = ["MIN_LEVELS_BELOW", "count_warning", "levels_in_view_beyond"]
