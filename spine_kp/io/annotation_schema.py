"""Which schema the labels of an annotation or prediction file belong to: the name its records declare, and the labels
a schema lacks.

``spine-kp predict`` writes ``"schema": NAME`` into every record (:data:`spine_kp.io.annotations.SCHEMA_FIELD`);
``spine-kp evaluate`` reads it back with :func:`declared_schema` and, where no schema is named by the user, refuses
files with labels the chosen schema lacks (:func:`labels_outside`), since scoring them would silently drop points.
Both work on the decoded JSON (:func:`spine_kp.io.annotations.load_json`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from spine_kp.io.annotation_parse import AnnotationError, parse_grades
from spine_kp.io.annotations import SCHEMA_FIELD
from spine_kp.io.text import escape_unencodable
from spine_kp.schema import Schema


def declared_schema(obj: Any, source: str) -> str | None:
    """The schema name the records of a decoded file declare in their ``"schema"`` field; None if none does.

    Records without the field declare nothing; the others must agree.

    Raises:
        AnnotationError: a ``"schema"`` that is not a non-empty string, or two records naming different schemas.
    """
    if not isinstance(obj, list):
        return None  # parse_records names what is wrong with the file
    first: tuple[int, str] | None = None
    for i, raw in enumerate(obj):
        if not isinstance(raw, dict) or SCHEMA_FIELD not in raw:
            continue
        name = raw[SCHEMA_FIELD]
        if not isinstance(name, str) or not name:
            raise AnnotationError(f"{source}: record {i}: '{SCHEMA_FIELD}' must be a schema name, got {name!r}")
        if first is None:
            first = (i, name)
        elif name != first[1]:
            raise AnnotationError(
                f"{source}: record {i} names schema {name!r} but record {first[0]} names {first[1]!r}; a file holds "
                "the labels of one schema: split it"
            )
    return None if first is None else first[1]


def labels_outside(obj: Any, schema: Schema) -> Counter[str]:
    """Identifications and grade labels of a decoded file that ``schema`` lacks, with their number of points.

    An unknown identification counts as itself (``"T11-T12"``), an unknown grade of a known one as kind and label
    (``"disc v6"``). Call it on what :func:`parse_records` has accepted: it relies on that validation.
    """
    found: Counter[str] = Counter()
    for raw in obj:
        for entry in raw["data"]:
            for block in entry["annotation"]:
                for point in block["data"]["point"]:
                    tag = point["tag"]
                    ident = tag["identification"]
                    if not schema.has(ident):
                        found[escape_unencodable(ident)] += 1
                        continue
                    kind = schema.kind_of(ident)
                    known = schema.kind(kind).grades
                    found.update(
                        escape_unencodable(f"{kind} {g}") for g in parse_grades(tag.get(kind) or "") if g not in known
                    )
    return found
