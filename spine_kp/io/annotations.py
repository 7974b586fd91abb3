"""Competition-format annotation / prediction files (SPEC section 3): read one into :mod:`spine_kp.types` records,
write records as one.

Reading checks every field (:func:`spine_kp.io.annotation_parse.parse_records`: the record, study and point that
are wrong are named). Reading then writing preserves everything the format defines: UIDs, version, annotator, point
order, coordinates, zIndex, grade order ("v5,v2"), empty grades, both tag keys, scores and ``pixelSpacing``.

A writer may add ``"schema": NAME`` to every record (``spine-kp predict`` names the schema it predicted with); the
reader ignores it, and :mod:`spine_kp.io.annotation_schema` reads it back. Study UIDs hold characters no UTF-8 text
can (a lone surrogate) only as JSON escapes, so a written file always reads back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from spine_kp.io.annotation_parse import AnnotationError, Limits, parse_records
from spine_kp.io.atomic import atomic_write_text
from spine_kp.io.text import escape_unencodable
from spine_kp.schema import Schema
from spine_kp.types import Point, StudyRecord

SCHEMA_FIELD = "schema"  # a record's extra field naming the schema its labels belong to (predictions carry it)


def read_annotations(path: str | Path, schema: Schema, limits: Limits | None = None) -> list[StudyRecord]:
    """Read an annotation or prediction file (competition format, SPEC section 3); see :func:`parse_records`."""
    return parse_records(load_json(path), schema, source=str(path), limits=limits)


def load_json(path: str | Path) -> Any:
    """The decoded JSON of an annotation or prediction file, not yet validated (:func:`parse_records` does that).

    Raises:
        AnnotationError: the file is missing, a folder, unreadable, not UTF-8 or not JSON; names the file.
    """
    p = Path(path)
    try:
        with open(p, encoding="utf-8") as fh:
            obj = json.load(fh)
    except FileNotFoundError:
        raise AnnotationError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise AnnotationError(f"{p}: is a folder, not a file") from None
    except OSError as exc:  # no permission, ...
        raise AnnotationError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{p}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except ValueError as exc:  # e.g. an integer literal of more digits than Python converts
        raise AnnotationError(f"{p}: not valid JSON ({exc})") from None
    except RecursionError:
        raise AnnotationError(f"{p}: not an annotation file (JSON nested too deeply)") from None
    return obj


def _point_to_json(p: Point) -> dict[str, Any]:
    tag: dict[str, Any] = {"identification": p.identification, p.kind: ",".join(p.grades)}
    tag.update(dict(p.other_tags))
    out: dict[str, Any] = {"coord": [p.coord[0], p.coord[1]]}
    if p.z_index is not None:
        out["zIndex"] = p.z_index
    out["tag"] = tag
    if p.score is not None:
        out["score"] = p.score
    out.update(p.extras)
    return out


def records_to_json(records: Iterable[StudyRecord], schema: str | None = None) -> list[dict[str, Any]]:
    """Convert records to the competition JSON structure (the inverse of :func:`parse_records`).

    Args:
        records: the studies.
        schema: a schema name to write into every record as ``"schema"`` (the reader ignores it); None writes none.
    """
    result = []
    for rec in records:
        data: list[dict[str, Any]] = []
        for im in rec.images:
            layout = im.blocks if im.blocks is not None else ((im.annotator, len(im.points)),)
            blocks, start = [], 0
            for annotator, n in layout:
                pts = [_point_to_json(p) for p in im.points[start : start + n]]
                blocks.append({"annotator": annotator, "data": {"point": pts}})
                start += n
            entry: dict[str, Any] = {"seriesUid": im.series_uid, "instanceUid": im.instance_uid}
            if im.pixel_spacing is not None:
                entry["pixelSpacing"] = [im.pixel_spacing[0], im.pixel_spacing[1]]
            entry["annotation"] = blocks
            data.append(entry)
        rec_json: dict[str, Any] = {"studyUid": rec.study_uid}
        if rec.version is not None:
            rec_json["version"] = rec.version
        if schema is not None:
            rec_json[SCHEMA_FIELD] = schema
        rec_json["data"] = data
        result.append(rec_json)
    return result


def write_annotations(
    path: str | Path, records: Iterable[StudyRecord], indent: int | None = None, schema: str | None = None
) -> Path:
    """Write records as competition JSON, atomically (temporary file + rename).

    Args:
        path: the file.
        records: the studies.
        indent: JSON indent; None writes one line.
        schema: the name of the schema the labels belong to, written into every record (see :func:`records_to_json`).
    """
    # ensure_ascii=False keeps the file readable; what UTF-8 cannot hold (a lone surrogate) is written as its JSON
    # escape instead, which reads back as the same string
    text = escape_unencodable(json.dumps(records_to_json(records, schema), indent=indent, ensure_ascii=False))
    return atomic_write_text(path, text + "\n")


__all__ = ["SCHEMA_FIELD", "load_json", "read_annotations", "records_to_json", "write_annotations"]
