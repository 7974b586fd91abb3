"""Which schema ``spine-kp evaluate`` scores with, and whether the labels of both files belong to it.

The schema decides the classes that mAP averages over, so scoring predictions of one schema against it gives a
wrong figure with no error (perfect Tianchi predictions scored with the default schema: mAP 0.36). The rules:

- ``--schema`` given: it is used. A file whose records name another schema gets a warning naming both; labels the
  schema lacks are skipped, counted in a warning per file (the user chose).
- otherwise the schema the files name (``"schema"`` in their records, written by ``spine-kp predict``) is used; it
  must be a packaged one (a name read from a file never makes a path load), and the two files must agree.
- otherwise the default schema, with a warning where the labels of both files fit another packaged schema as well.

Without ``--schema``, a label the schema lacks (an identification, or a grade of a known one) in either file is an
error naming the file, the labels, and a packaged schema they fit where there is one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spine_kp.io.annotation_parse import AnnotationError
from spine_kp.io.annotation_schema import labels_outside
from spine_kp.schema import Schema, load_schema, packaged_schema, packaged_schemas

MAX_LABELS_LISTED = 8


@dataclass(frozen=True)
class SchemaChoice:
    """The schema to score with and where it came from.

    Attributes:
        schema: the schema.
        origin: for messages: ``"--schema"``, ``"named by pred.json"`` or ``"the default"``.
        by_user: the user named it (``--schema``): labels it lacks are skipped with a warning, not refused.
        warnings: lines for stderr (without the ``warning:`` prefix).
    """

    schema: Schema
    origin: str
    by_user: bool
    warnings: tuple[str, ...] = ()


def choose_schema(user: Schema | str | Path | None, declared: Mapping[str, str | None]) -> SchemaChoice:
    """Pick the schema from the user's choice and the names the files declare.

    Args:
        user: ``--schema`` (a loaded schema, a packaged name or a YAML path), or None when not given.
        declared: file name -> the schema name its records declare (None: none).

    Raises:
        AnnotationError: without ``user``: the files name different schemas, or one that is not packaged.
        SchemaError: ``user`` names no schema file.
    """
    named = {src: name for src, name in declared.items() if name is not None}
    if user is not None:
        schema = user if isinstance(user, Schema) else load_schema(user)
        warnings = tuple(
            f"{src} names schema {name!r}, --schema gives {schema.name!r}: scored with {schema.name!r}"
            for src, name in named.items()
            if name not in (schema.name, str(user))
        )
        return SchemaChoice(schema, "--schema", True, warnings)
    if len(set(named.values())) > 1:
        (a, na), (b, nb) = list(named.items())[:2]
        raise AnnotationError(
            f"{a} names schema {na!r} but {b} names {nb!r}: predictions of one schema cannot be scored against ground "
            f"truth of another; pass --schema to choose one"
        )
    if named:
        src, name = next(iter(named.items()))
        schema = packaged_schema(name)
        if schema is None:
            raise AnnotationError(
                f"{src}: its records name schema {name!r}, which is not a packaged schema "
                f"({', '.join(packaged_schemas())}); pass --schema with the schema file it was made with"
            )
        return SchemaChoice(schema, f"named by {src}", False)
    return SchemaChoice(load_schema(None), "the default", False)


def _listed(found: Counter[str]) -> str:
    """``T12 (5 points), disc v6 (1 point)``, the most frequent first, at most :data:`MAX_LABELS_LISTED`."""
    items = sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = [f"{label} ({n} point{'s' if n != 1 else ''})" for label, n in items[:MAX_LABELS_LISTED]]
    more = f" and {len(items) - MAX_LABELS_LISTED} more" if len(items) > MAX_LABELS_LISTED else ""
    return ", ".join(shown) + more


def _fitting(files: Mapping[str, Any], but: Schema) -> list[str]:
    """Packaged schemas (file names) other than ``but`` that hold every label of every file."""
    fits = []
    for stem in packaged_schemas():
        schema = load_schema(stem)
        if schema.name != but.name and not any(labels_outside(obj, schema) for obj in files.values()):
            fits.append(stem)
    return fits


def check_labels(choice: SchemaChoice, files: Mapping[str, Any]) -> tuple[str, ...]:
    """Check that the labels of the files belong to the chosen schema; the warnings to print.

    Args:
        choice: from :func:`choose_schema`.
        files: file name -> its decoded JSON, already accepted by :func:`spine_kp.io.annotation_parse.parse_records`.

    Raises:
        AnnotationError: a file holds labels the schema lacks and the user did not name the schema.
    """
    name = choice.schema.name
    warnings = []
    for src, obj in files.items():
        found = labels_outside(obj, choice.schema)
        if not found:
            continue
        if choice.by_user:
            n = sum(found.values())
            warnings.append(
                f"{src}: {n} label(s) that schema {name!r} lacks: {_listed(found)}; points of an unknown "
                "identification are skipped, unknown grades dropped"
            )
            continue
        fits = _fitting(files, choice.schema)
        fix = f"pass --schema {fits[0]} (their labels fit it)" if fits else "pass --schema with the schema they use"
        raise AnnotationError(
            f"{src}: holds labels that schema {name!r} ({choice.origin}) lacks: {_listed(found)}; scoring would drop "
            f"them and average over the wrong classes: {fix}"
        )
    if choice.origin == "the default":
        fits = _fitting(files, choice.schema)
        if fits:
            warnings.append(
                f"neither file names its schema, and their labels fit packaged schema {fits[0]!r} as well as the "
                f"default {name!r}: scored with {name!r}; pass --schema to choose"
            )
    return tuple(warnings)
