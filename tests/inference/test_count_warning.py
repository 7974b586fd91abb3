"""The per-study warning that the level count was made without the lumbosacral junction in view."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spine_kp.inference.count_warning import MIN_LEVELS_BELOW, count_warning, levels_in_view_beyond
from spine_kp.schema import load_schema

SCHEMA = load_schema()  # T12, T12-L1, L1, ..., L5, L5-S1: L4-L5 at index 9, L5-S1 at 11
TIANCHI = load_schema("tianchi")  # no T12 body: T12-L1 first, L5-S1 last


@pytest.mark.parametrize(
    ("point", "step", "expected"),
    [
        ((10.0, 10.0), (0.0, 5.0), 19.0 / 5.0),  # straight down to row 29
        ((10.0, 10.0), (0.0, -5.0), 2.0),  # up to row 0
        ((10.0, 10.0), (4.0, 0.0), 9.0 / 4.0),  # right to column 19
        ((10.0, 10.0), (-4.0, 0.0), 2.5),  # left to column 0
        ((10.0, 10.0), (4.0, 5.0), 9.0 / 4.0),  # the first edge the ray meets: column 19 before row 29
        ((10.0, 27.0), (1.0, 4.0), 0.5),
        ((10.0, 29.0), (0.0, 4.0), 0.0),  # on the last row
        ((10.0, 10.0), (0.0, 0.0), math.inf),
    ],
)
def test_levels_in_view_beyond(point, step, expected):
    # an image of 30 rows and 20 columns: pixel centres 0..19 (x) and 0..29 (y)
    assert levels_in_view_beyond(np.array(point), np.array(step), (30, 20)) == pytest.approx(expected)


def _chain(last_y: float, schema=SCHEMA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Landmarks down x = 50, 10 px apart in schema order (a level is 20 px), the last one at ``last_y``."""
    k = schema.num_landmarks
    coords = np.stack([np.full(k, 50.0), last_y - 10.0 * np.arange(k)[::-1]], axis=1)
    return coords, np.full(k, 0.8), np.ones(k, dtype=bool)


def test_no_warning_with_a_level_or_more_below_the_junction():
    assert MIN_LEVELS_BELOW == 1.0
    coords, peaks, trained = _chain(last_y=170.0)  # 29 px = 1.45 levels of 20 px to row 199
    assert count_warning(coords, peaks, trained, SCHEMA, (200, 100)) is None
    coords, peaks, trained = _chain(last_y=179.0)  # exactly one level left
    assert count_warning(coords, peaks, trained, SCHEMA, (200, 100)) is None


def test_a_junction_less_than_a_level_above_the_edge_is_one_warning_naming_it():
    coords, peaks, trained = _chain(last_y=189.0)  # 10 px: half a level to row 199
    warning = count_warning(coords, peaks, trained, SCHEMA, (200, 100))
    assert warning is not None and warning.startswith("L5-S1 lies 0.5 level from the image edge")
    assert "sacrum may be out of view" in warning and "\n" not in warning
    # the edge along the chain's last step counts, not only the bottom row: a chain running right, 10 px from x = 99
    k = SCHEMA.num_landmarks
    across = np.stack([89.0 - 10.0 * np.arange(k)[::-1], np.full(k, 50.0)], axis=1)
    assert "0.5 level" in count_warning(across, peaks, trained, SCHEMA, (200, 100))


def test_a_junction_not_placed_is_one_warning_and_an_untrained_one_none():
    coords, peaks, trained = _chain(last_y=100.0)
    peaks[11] = 0.0
    warning = count_warning(coords, peaks, trained, SCHEMA, (200, 100))
    assert warning == "L5-S1 not found on the slice: the levels were counted without the lumbosacral junction"
    trained[11] = False  # a model never trained on L5-S1 (e.g. the water-fat label set) says nothing
    assert count_warning(coords, peaks, trained, SCHEMA, (200, 100)) is None


def test_no_warning_without_the_disc_above_the_junction():
    coords, peaks, trained = _chain(last_y=195.0)  # would warn ...
    peaks[9] = 0.0  # ... but without L4-L5 there is no step to measure a level by
    assert count_warning(coords, peaks, trained, SCHEMA, (200, 100)) is None


def test_the_tianchi_schema_is_checked_the_same_way():
    coords, peaks, trained = _chain(last_y=189.0, schema=TIANCHI)
    assert TIANCHI.landmarks[-1] == "L5-S1"
    assert "0.5 level" in count_warning(coords, peaks, trained, TIANCHI, (200, 100))
