"""The landmarks of one study under review, and the validation of what a page (or the journal) sends.

A landmark is ``{"id", "kind", "x", "y", "z", "grades", "score", "edited"}`` (the review contract, issue 21): ``x, y``
in pixels of the image (column, row; origin at the centre of the top-left pixel, SPEC section 1), ``z`` the index of
the image in its position-sorted series, ``grades`` labels of the landmark's kind. Everything the server stores went
through :func:`parse_marks`, so what :mod:`spine_kp.review.export` writes is always readable by
:func:`spine_kp.io.annotations.read_annotations`: known identifications, once each, grades of their kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from spine_kp.schema import Schema

STATES = ("to_review", "reviewed", "skipped")


class BadBody(ValueError):
    """A request body (or journal line) that breaks the contract; the message names the field (HTTP 400)."""


@dataclass(frozen=True)
class Geometry:
    """What a landmark must fit in: the image size in pixels and the number of images of its series."""

    width: int
    height: int
    num_slices: int

    def clamp(self, x: float, y: float) -> tuple[float, float]:
        """``(x, y)`` moved to the nearest place inside the image (pixel centres run from 0 to size - 1)."""
        return min(max(x, -0.5), self.width - 0.5), min(max(y, -0.5), self.height - 0.5)


@dataclass(frozen=True)
class Mark:
    """One landmark of a study under review (see the module docstring for the fields)."""

    id: str
    kind: str
    x: float
    y: float
    z: int
    grades: tuple[str, ...] = ()
    score: float | None = None
    edited: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "x": self.x,
            "y": self.y,
            "z": self.z,
            "grades": list(self.grades),
            "score": self.score,
            "edited": self.edited,
        }


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _grades(raw: Any, ident: str, kind: str, schema: Schema, where: str) -> tuple[str, ...]:
    spec = schema.kind(kind)
    if not isinstance(raw, list) or not all(isinstance(g, str) for g in raw):
        raise BadBody(f"{where}.grades: must be a list of grade labels, got {raw!r}")
    wrong = [g for g in raw if g not in spec.grades]
    if wrong:
        raise BadBody(f"{where}.grades: {wrong[0]!r} is not a grade of {ident} ({kind}: {', '.join(spec.grades)})")
    if len(set(raw)) != len(raw):
        raise BadBody(f"{where}.grades: {raw!r} names a grade twice")
    if len(raw) > 1 and not spec.multi_label:
        raise BadBody(f"{where}.grades: a {kind} carries one grade, got {', '.join(raw)}")
    return tuple(raw)


def parse_mark(raw: Any, schema: Schema, geometry: Geometry, where: str) -> Mark:
    """Validate one landmark object.

    Raises:
        BadBody: not an object, an id outside the schema, a kind other than the id's, a grade of another kind (or two
            grades where the kind takes one), x / y outside the image, z outside the series, a score outside [0, 1].
    """
    if not isinstance(raw, dict):
        raise BadBody(f"{where}: must be a landmark object, got {type(raw).__name__}")
    ident = raw.get("id")
    if not isinstance(ident, str) or not schema.has(ident):
        raise BadBody(f"{where}.id: {ident!r} is not a landmark of schema {schema.name!r}")
    kind = schema.kind_of(ident)
    if raw.get("kind", kind) != kind:
        raise BadBody(f"{where}.kind: {ident} is a {kind}, not {raw.get('kind')!r}")
    x, y, z = raw.get("x"), raw.get("y"), raw.get("z")
    if not (_finite(x) and -0.5 <= x <= geometry.width - 0.5):
        raise BadBody(f"{where}.x: {x!r} is outside the image (0 to {geometry.width - 1} pixels)")
    if not (_finite(y) and -0.5 <= y <= geometry.height - 0.5):
        raise BadBody(f"{where}.y: {y!r} is outside the image (0 to {geometry.height - 1} pixels)")
    if not (_integer(z) and 0 <= z < geometry.num_slices):
        raise BadBody(f"{where}.z: {z!r} is not a slice of the series (0 to {geometry.num_slices - 1})")
    score = raw.get("score")
    if score is not None and not (_finite(score) and 0.0 <= score <= 1.0):
        raise BadBody(f"{where}.score: must be a number in [0, 1] or null, got {score!r}")
    edited = raw.get("edited", False)
    if not isinstance(edited, bool):
        raise BadBody(f"{where}.edited: must be true or false, got {edited!r}")
    grades = _grades(raw.get("grades", []), ident, kind, schema, where)
    return Mark(ident, kind, float(x), float(y), int(z), grades, None if score is None else float(score), edited)


def parse_marks(raw: Any, schema: Schema, geometry: Geometry, where: str = "landmarks") -> tuple[Mark, ...]:
    """Validate a list of landmarks: each one (:func:`parse_mark`), each id at most once; returned in schema order.

    Raises:
        BadBody: naming the field, e.g. ``landmarks[3].grades: 'v9' is not a grade of L4-L5 (disc: v1, ...)``.
    """
    if not isinstance(raw, list):
        raise BadBody(f"{where}: must be a list of landmarks, got {type(raw).__name__}")
    marks = [parse_mark(item, schema, geometry, f"{where}[{i}]") for i, item in enumerate(raw)]
    seen: set[str] = set()
    for i, m in enumerate(marks):
        if m.id in seen:
            raise BadBody(f"{where}[{i}].id: {m.id} is placed twice; keep one")
        seen.add(m.id)
    return tuple(sorted(marks, key=lambda m: schema.index(m.id)))


def parse_state(raw: Any, where: str = "state") -> str:
    """Validate a study state (one of :data:`STATES`)."""
    if raw not in STATES:
        raise BadBody(f"{where}: must be one of {', '.join(STATES)}, got {raw!r}")
    return str(raw)


def parse_version(raw: Any, where: str = "version") -> int:
    """Validate a study version (an integer >= 0)."""
    if not (_integer(raw) and raw >= 0):
        raise BadBody(f"{where}: must be the integer version the study was read at, got {raw!r}")
    return int(raw)
