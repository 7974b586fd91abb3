"""Small builders shared by the evaluation tests (studies are made in code)."""

from __future__ import annotations

from collections.abc import Sequence

from spine_kp.evaluation import EvaluationResult, evaluate_records
from spine_kp.io.annotation_parse import parse_grades
from spine_kp.schema import load_schema
from spine_kp.types import ImageAnnotation, Point, StudyRecord

SCHEMA = load_schema()


def pt(ident: str, x: float, y: float, grades: str = "", score: float | None = None) -> Point:
    """A point of the default schema; ``grades`` as written in the JSON ("v2,v5", "")."""
    return Point(ident, SCHEMA.kind_of(ident), (float(x), float(y)), parse_grades(grades), score=score)


def study(
    uid: str,
    points: Sequence[Point],
    spacing: tuple[float, float] | None = (1.0, 1.0),
    series: str = "1.2.840.1",
    instance: str | None = None,
) -> StudyRecord:
    """One study record with all points on one image of the given spacing (row_mm, col_mm)."""
    image = ImageAnnotation(series, instance or f"{uid}.7", tuple(points), annotator=1, pixel_spacing=spacing)
    return StudyRecord(uid, (image,))


def run(gt: Sequence[StudyRecord], pred: Sequence[StudyRecord], **kw: object) -> EvaluationResult:
    return evaluate_records(gt, pred, SCHEMA, **kw)  # type: ignore[arg-type]


def counts(result: EvaluationResult, name: str) -> tuple[int, int, int, int]:
    """(TP, FP, FN, ignored) of one class, e.g. "vertebra/v2"."""
    (c,) = [c for c in result.classes if c.name == name]
    return (c.tp, c.fp, c.fn, c.ignored)


def cls(result: EvaluationResult, name: str):  # noqa: ANN201 - test helper
    (c,) = [c for c in result.classes if c.name == name]
    return c
