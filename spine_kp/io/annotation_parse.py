"""Competition-format annotation / prediction JSON, once decoded -> :mod:`spine_kp.types` records, every field checked
(SPEC section 3). Reading and writing the files: :mod:`spine_kp.io.annotations`.

Every error names the record, study and point that are wrong::

    record 12 (study 1.2.3): data[0].annotation[0] point 4 has no 'coord'

Unknown identifications (e.g. "T11-T12") and grade labels outside the schema are kept out of the result
with a warning (logged and stored on ``StudyRecord.warnings``). Extra fields are ignored. Values no annotation can
hold are errors: a non-finite or non-numeric coordinate, score or spacing, a negative zIndex, and the same
identification placed twice by one annotator in one study (points with a ``score`` are predictions, which may carry
one point per grade alternative, and are exempt; two annotators' blocks on one image may both place it). Whether a
point lies inside its image, and a zIndex inside its series, can only be told with the DICOM data: the training
dataset counts and reports those (:mod:`spine_kp.data.dataset`).

Plausibility limits (:data:`PLAUSIBLE`, applied where a caller asks, as ``spine-kp evaluate`` does) refuse what no
scan holds even where the images are not at hand: a coordinate beyond 100000 px, a zIndex beyond 100000, a pixel
spacing outside 0.05-20 mm. Training leaves them out: there the images tell, and such points are masked and counted.
Study UIDs in messages are escaped where they hold characters no UTF-8 text can (a lone surrogate), so a message can
always be printed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from spine_kp.errors import UserError
from spine_kp.io.text import escape_unencodable
from spine_kp.schema import Schema
from spine_kp.types import ImageAnnotation, Point, StudyRecord

# the logger of the module these checks were written in, kept so that filters set on it still apply
log = logging.getLogger("spine_kp.io.annotations")


@dataclass(frozen=True)
class Limits:
    """Values beyond which a record is refused as implausible for any scan (without looking at the images).

    Attributes:
        max_abs_coord: largest |x| and |y| in pixels.
        max_z_index: largest zIndex (an index into a series).
        spacing_mm: (lowest, highest) pixel spacing in mm, both ends allowed.
    """

    max_abs_coord: float = 100_000.0
    max_z_index: int = 100_000
    spacing_mm: tuple[float, float] = (0.05, 20.0)


PLAUSIBLE = Limits()  # what ``spine-kp evaluate`` applies to both files


class AnnotationError(UserError, ValueError):
    """A malformed annotation / prediction file; the message names the record and field."""


def parse_grades(text: str) -> tuple[str, ...]:
    """Split a grade string such as ``"v5, v2"`` into labels in file order; ``""`` gives ``()``."""
    return tuple(g.strip() for g in text.split(",") if g.strip())


def _number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # a JSON integer too large for a float
        return False


def _spacing(value: Any, where: str, limits: Limits | None) -> tuple[float, float] | None:
    if value is None:
        return None
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) and v > 0 for v in value)):
        raise AnnotationError(f"{where}: 'pixelSpacing' must be [row_mm, col_mm] with positive numbers, got {value!r}")
    if limits is not None and not all(limits.spacing_mm[0] <= v <= limits.spacing_mm[1] for v in value):
        lo, hi = limits.spacing_mm
        raise AnnotationError(f"{where}: 'pixelSpacing' {value!r} is outside the plausible {lo:g}-{hi:g} mm")
    return (float(value[0]), float(value[1]))


def _check_limits(coord: Any, z: Any, where: str, limits: Limits | None) -> None:
    """Refuse a coordinate or zIndex that no scan holds (``coord`` and ``z`` are already known to be numbers)."""
    if limits is None:
        return
    if any(abs(c) > limits.max_abs_coord for c in coord):
        raise AnnotationError(
            f"{where}: 'coord' {coord!r} is beyond the plausible |x|, |y| <= {limits.max_abs_coord:g} pixels"
        )
    if z is not None and z > limits.max_z_index:
        raise AnnotationError(f"{where}: 'zIndex' {z!r} is beyond the plausible 0-{limits.max_z_index}")


def _parse_point(raw: Any, schema: Schema, where: str, warnings: list[str], limits: Limits | None) -> Point | None:
    if not isinstance(raw, dict):
        raise AnnotationError(f"{where} is not an object")
    coord = raw.get("coord")
    if coord is None:
        raise AnnotationError(f"{where} has no 'coord'")
    if not (isinstance(coord, (list, tuple)) and len(coord) == 2 and all(_number(c) for c in coord)):
        raise AnnotationError(f"{where}: 'coord' must be [x, y] numbers, got {coord!r}")
    tag = raw.get("tag")
    if not isinstance(tag, dict):
        raise AnnotationError(f"{where} has no 'tag' object")
    ident = tag.get("identification")
    if not isinstance(ident, str) or not ident:
        raise AnnotationError(f"{where}: tag has no 'identification'")
    z = raw.get("zIndex")
    if z is not None and (not isinstance(z, int) or isinstance(z, bool) or z < 0):
        raise AnnotationError(f"{where}: 'zIndex' must be an integer >= 0 (the image's index in its series), got {z!r}")
    _check_limits(coord, z, where, limits)
    score = raw.get("score")
    if score is not None and not (_number(score) and 0.0 <= score <= 1.0):
        raise AnnotationError(f"{where}: 'score' must be a number in [0, 1], got {score!r}")
    if not schema.has(ident):
        warnings.append(f"{where}: unknown identification {ident!r} skipped")
        return None
    kind = schema.kind_of(ident)
    raw_grade = tag.get(kind, "")
    if raw_grade is None:
        raw_grade = ""
    if not isinstance(raw_grade, str):
        raise AnnotationError(f"{where}: tag '{kind}' must be a string like 'v1' or 'v2,v5', got {raw_grade!r}")
    known = set(schema.kind(kind).grades)
    grades = []
    for g in parse_grades(raw_grade):
        if g in known:
            grades.append(g)
        else:
            warnings.append(f"{where}: grade {g!r} of {ident} is not in the schema ({sorted(known)}), dropped")
    other = tuple(
        (k.name, str(tag[k.name])) for k in schema.kinds if k.name != kind and k.name in tag and tag[k.name] is not None
    )
    return Point(
        identification=ident,
        kind=kind,
        coord=(coord[0], coord[1]),
        grades=tuple(grades),
        z_index=z,
        score=None if score is None else float(score),
        other_tags=other,
    )


def _check_once(p: Point, annotator: Any, head: str, at: str, placed: dict[tuple[str, str], str]) -> None:
    """An annotator places each identification once per study; predictions (scored points) may repeat one.

    ``at`` is the point's place in the record (``data[0].annotation[1] point 3``), ``placed`` what was seen so far.
    """
    if p.score is not None:
        return
    first = placed.setdefault((repr(annotator), p.identification), at)
    if first != at:
        raise AnnotationError(
            f"{head}: {at}: {p.identification} placed a second time by annotator {annotator!r} in this study (first "
            f"at {first}); keep one"
        )


def _parse_record(raw: Any, i: int, schema: Schema, limits: Limits | None) -> StudyRecord:
    if not isinstance(raw, dict):
        raise AnnotationError(f"record {i} is not an object")
    study = raw.get("studyUid")
    if not isinstance(study, str) or not study:
        raise AnnotationError(f"record {i}: missing 'studyUid'")
    head = f"record {i} (study {escape_unencodable(study)})"
    data = raw.get("data")
    if not isinstance(data, list):
        raise AnnotationError(f"{head}: 'data' must be a list")
    record_spacing = _spacing(raw.get("pixelSpacing"), head, limits)
    warnings: list[str] = []
    images: list[ImageAnnotation] = []
    placed: dict[tuple[str, str], str] = {}  # (annotator, identification) -> where it was first placed
    for j, entry in enumerate(data):
        where = f"{head}: data[{j}]"
        if not isinstance(entry, dict):
            raise AnnotationError(f"{where} is not an object")
        for key in ("seriesUid", "instanceUid"):
            if not isinstance(entry.get(key), str) or not entry.get(key):
                raise AnnotationError(f"{where} has no '{key}'")
        spacing = _spacing(entry.get("pixelSpacing"), where, limits) or record_spacing
        blocks = entry.get("annotation")
        if not isinstance(blocks, list):
            raise AnnotationError(f"{where}: 'annotation' must be a list")
        points: list[Point] = []
        layout: list[tuple[object, int]] = []
        for b, block in enumerate(blocks):
            bwhere = f"{where}.annotation[{b}]"
            if not isinstance(block, dict):
                raise AnnotationError(f"{bwhere} is not an object")
            payload = block.get("data")
            if not isinstance(payload, dict) or not isinstance(payload.get("point"), list):
                raise AnnotationError(f"{bwhere}: 'data.point' must be a list")
            before = len(points)
            for k, rp in enumerate(payload["point"]):
                p = _parse_point(rp, schema, f"{bwhere} point {k}", warnings, limits)
                if p is not None:
                    _check_once(p, block.get("annotator"), head, f"data[{j}].annotation[{b}] point {k}", placed)
                    points.append(p)
            layout.append((block.get("annotator"), len(points) - before))
        images.append(
            ImageAnnotation(
                series_uid=entry["seriesUid"],
                instance_uid=entry["instanceUid"],
                points=tuple(points),
                annotator=layout[0][0] if layout else None,
                pixel_spacing=spacing,
                blocks=tuple(layout),
            )
        )
    for w in warnings:
        log.warning(w)
    return StudyRecord(study_uid=study, images=tuple(images), version=raw.get("version"), warnings=tuple(warnings))


def parse_records(obj: Any, schema: Schema, source: str = "<json>", limits: Limits | None = None) -> list[StudyRecord]:
    """Validate and convert the decoded JSON (a list of study records), one record per element, in file order.

    Args:
        obj: the decoded JSON.
        schema: the landmark set; points outside it are skipped with a warning.
        source: the file name the messages begin with.
        limits: plausibility limits to refuse beyond (e.g. :data:`PLAUSIBLE`); None checks none.

    Raises:
        AnnotationError: naming ``source``, the record index, the study and the field.
    """
    if not isinstance(obj, list):
        raise AnnotationError(f"{source}: top level must be a list of study records, got {type(obj).__name__}")
    records = []
    for i, raw in enumerate(obj):
        try:
            records.append(_parse_record(raw, i, schema, limits))
        except AnnotationError as exc:
            raise AnnotationError(f"{source}: {exc}") from None
    return records


__all__ = ["PLAUSIBLE", "AnnotationError", "Limits", "parse_grades", "parse_records"]
