"""Hand-made ground truth and predictions along a straight, slightly tilted spine, for the level metrics
(tests/evaluation/test_eval_levels.py) and the real-data benchmark that reports them (tests/scripts/test_bench_real.py).

A plain module (not conftest.py) so both test folders can import it.
"""

from __future__ import annotations

import numpy as np

from spine_kp.schema import load_schema
from spine_kp.types import ImageAnnotation, Point, StudyRecord

SCHEMA = load_schema()
SPACING = (0.8, 0.8)  # (row_mm, col_mm)


def gt_coords() -> dict[str, tuple[float, float]]:
    """A slightly tilted spine: landmark i of the schema (cranio-caudal) 22 px = 17.6 mm below landmark i - 1."""
    return {n: (100.0 + 4.0 * i, 40.0 + 22.0 * i) for i, n in enumerate(SCHEMA.landmarks)}


def record(uid: str, coords: dict[str, tuple[float, float]], scored: bool) -> StudyRecord:
    """One study's points at ``coords``, each with its kind's first grade; scored 0.9 when a prediction."""
    points = tuple(
        Point(n, SCHEMA.kind_of(n), xy, grades=(SCHEMA.grades_of(n)[0],), score=0.9 if scored else None)
        for n, xy in coords.items()
    )
    return StudyRecord(uid, (ImageAnnotation("se", "in", points, pixel_spacing=SPACING),))


def shifted(levels: int) -> dict[str, tuple[float, float]]:
    """Every landmark predicted ``levels`` levels towards the feet (where its same-kind neighbour is, extrapolated)."""
    gt = gt_coords()
    order = list(SCHEMA.landmarks)
    step = np.subtract(gt[order[2]], gt[order[0]])  # one level: two schema entries (vertebra, disc interleaved)
    return {n: tuple(np.add(gt[n], levels * step)) for n in order}
