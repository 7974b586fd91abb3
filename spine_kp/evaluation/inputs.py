"""Read the two files ``spine-kp evaluate`` scores, refusing what would otherwise give a wrong figure with status 0.

Refused, each with one error naming the file (and the record where there is one):

- a record beyond the plausibility limits (:data:`spine_kp.io.annotation_parse.PLAUSIBLE`: coordinates, zIndex,
  spacing);
- the same ``studyUid`` in two records of one file (the ground truth counted twice: perfect predictions got recall
  0.71);
- ground truth with no point at all (``[]``): nothing to score against;
- files that look swapped: the ground truth has scored points and the predictions have none;
- labels the schema lacks, unless the user named the schema (:mod:`spine_kp.evaluation.schema_choice`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spine_kp.evaluation.schema_choice import check_labels, choose_schema
from spine_kp.io.annotation_parse import PLAUSIBLE, AnnotationError, parse_records
from spine_kp.io.annotation_schema import declared_schema
from spine_kp.io.annotations import load_json
from spine_kp.io.text import escape_unencodable
from spine_kp.schema import Schema
from spine_kp.types import StudyRecord


@dataclass(frozen=True)
class EvaluationInputs:
    """Both files read and checked.

    Attributes:
        gt: ground-truth records, in file order.
        pred: prediction records, in file order.
        schema: the schema to score with.
        warnings: lines for stderr (without the ``warning:`` prefix).
    """

    gt: list[StudyRecord]
    pred: list[StudyRecord]
    schema: Schema
    warnings: tuple[str, ...]


def _check_unique(records: Sequence[StudyRecord], source: str) -> None:
    """One record per study: a repeated one would count its ground truth (or predictions) twice."""
    first: dict[str, int] = {}
    for i, rec in enumerate(records):
        j = first.setdefault(rec.study_uid, i)
        if j != i:
            raise AnnotationError(
                f"{source}: record {i}: study {escape_unencodable(rec.study_uid)} appears again (first in record {j});"
                " give each study one record, with all its images"
            )


def _n_points(obj: Any) -> int:
    """Points in a decoded file accepted by ``parse_records``, those outside the schema included."""
    return sum(len(b["data"]["point"]) for rec in obj for entry in rec["data"] for b in entry["annotation"])


def _n_scored(records: Sequence[StudyRecord]) -> int:
    return sum(p.score is not None for rec in records for p in rec.points)


def _check_roles(
    gt: Sequence[StudyRecord], gt_obj: Any, pred: Sequence[StudyRecord], gt_src: str, pred_src: str
) -> None:
    """The ground truth holds points, and the two files do not look swapped."""
    if _n_scored(gt) and not _n_scored(pred):
        raise AnnotationError(
            f"--annotations {gt_src} has points with a 'score' and --predictions {pred_src} has none: the two files "
            "look swapped; pass the ground truth as --annotations and the predictions as --predictions"
        )
    if not _n_points(gt_obj):
        raise AnnotationError(
            f"{gt_src}: holds no annotated point ({len(gt)} record(s)); nothing to score against: pass the "
            "ground-truth file as --annotations"
        )


def read_inputs(
    gt_path: str | Path, pred_path: str | Path, schema: Schema | str | Path | None = None
) -> EvaluationInputs:
    """Read and check both files and choose the schema (see :mod:`spine_kp.evaluation.schema_choice`).

    Args:
        gt_path: ground-truth JSON (competition format).
        pred_path: prediction JSON (points with ``score``).
        schema: the user's schema (``--schema``: a schema, packaged name or YAML path); None uses the one the files
            name, else the default.

    Raises:
        AnnotationError: a malformed or implausible file, a repeated study, swapped files, ground truth without
            points, or a schema mismatch; the message names the file.
        SchemaError: ``schema`` names no schema file.
    """
    gt_src, pred_src = str(gt_path), str(pred_path)
    gt_obj, pred_obj = load_json(gt_path), load_json(pred_path)
    choice = choose_schema(
        schema, {gt_src: declared_schema(gt_obj, gt_src), pred_src: declared_schema(pred_obj, pred_src)}
    )
    gt = parse_records(gt_obj, choice.schema, source=gt_src, limits=PLAUSIBLE)
    pred = parse_records(pred_obj, choice.schema, source=pred_src, limits=PLAUSIBLE)
    _check_unique(gt, gt_src)
    _check_unique(pred, pred_src)
    _check_roles(gt, gt_obj, pred, gt_src, pred_src)
    warnings = choice.warnings + check_labels(choice, {gt_src: gt_obj, pred_src: pred_obj})
    return EvaluationInputs(gt, pred, choice.schema, warnings)
