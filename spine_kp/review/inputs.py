"""What ``spine-kp review`` reads, once at start: the scan of ROOT, the predictions, the ground truth.

Each study of the predictions file becomes a :class:`Study`: the series and image its points lie on (the first image
of the record; a record without images gets the middle frame of the series the predictor would choose), its landmarks
(:func:`predicted_marks`) and, with ``--annotations``, the ground truth on that series. A study not under ROOT, or
whose image the scan did not find, is left out with a warning naming the record; points on another series are left
out with a warning too. Nothing here writes.

Besides the competition format, two optional point fields of ``spine-kp predict`` are used where present:
``landmarkScore`` (the calibrated score of the landmark, whatever its grade) and ``flipShiftMm`` (``--flip-tta``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spine_kp.errors import UserError
from spine_kp.evaluation.schema_choice import choose_schema
from spine_kp.io.annotation_parse import parse_records
from spine_kp.io.annotation_schema import declared_schema
from spine_kp.io.annotations import load_json
from spine_kp.io.dicom import NoSagittalSeries, ScanResult, SeriesInfo, StudyIndex
from spine_kp.io.series_choice import choose_series
from spine_kp.review.marks import Geometry, Mark
from spine_kp.schema import Schema
from spine_kp.types import StudyRecord


@dataclass(frozen=True)
class Study:
    """One study under review as the files give it (what a user edits lives in the session).

    Attributes:
        uid: StudyInstanceUID.
        index: its scan (series, files).
        series: the series its landmarks lie on; z indexes its position-sorted images.
        z_index: the image the predictions lie on.
        marks: the predicted landmarks, schema order.
        gt: ground truth on ``series`` (None without ``--annotations``; empty when the file lacks the study).
        flip_shift_mm: the largest ``flipShiftMm`` of its points, None when absent.
    """

    uid: str
    index: StudyIndex
    series: SeriesInfo
    z_index: int
    marks: tuple[Mark, ...]
    gt: tuple[Mark, ...] | None
    flip_shift_mm: float | None

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.series.cols, self.series.rows, self.series.num_slices)


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    return float(value) if ok else None


def point_extras(obj: list[Any]) -> dict[str, tuple[float | None, dict[str, float]]]:
    """Per study UID: the largest ``flipShiftMm`` (None: none) and the ``landmarkScore`` of each identification.

    ``obj`` is the decoded predictions file, already accepted by :func:`parse_records`; values that are not
    non-negative numbers are ignored, as extra fields are.
    """
    out: dict[str, tuple[float | None, dict[str, float]]] = {}
    for raw in obj:
        shift: float | None = None
        scores: dict[str, float] = {}
        for entry in raw["data"]:
            for block in entry["annotation"]:
                for point in block["data"]["point"]:
                    s = _number(point.get("flipShiftMm"))
                    if s is not None:
                        shift = s if shift is None else max(shift, s)
                    ls = _number(point.get("landmarkScore"))
                    ident = point["tag"]["identification"]
                    if ls is not None and ls <= 1.0:
                        scores[ident] = max(scores.get(ident, 0.0), ls)
        out[raw["studyUid"]] = (shift, scores)
    return out


def _image_z(series: SeriesInfo, instance_uid: str) -> int | None:
    return next((i for i, inst in enumerate(series.instances) if inst.sop_instance_uid == instance_uid), None)


def _points_on(rec: StudyRecord, series: SeriesInfo, warnings: list[str], what: str) -> list[Any]:
    """(point, z) of every point of ``rec`` on ``series``; points of other series are counted in a warning."""
    out, other = [], 0
    for im in rec.images:
        z_image = _image_z(series, im.instance_uid) if im.series_uid == series.series_uid else None
        if z_image is None:
            other += len(im.points)
            continue
        for p in im.points:
            z = p.z_index if p.z_index is not None and p.z_index < series.num_slices else z_image
            out.append((p, z))
    if other:
        warnings.append(f"{what}: study {rec.study_uid}: {other} point(s) not on series {series.series_uid} left out")
    return out


def predicted_marks(
    rec: StudyRecord,
    series: SeriesInfo,
    schema: Schema,
    scores: dict[str, float],
    warnings: list[str],
    src: str,
) -> tuple[Mark, ...]:
    """One landmark per identification: the best-scored point (its grades), scored by its ``landmarkScore`` where the
    file has one; points outside the image are moved to its edge, with a warning."""
    geometry = Geometry(series.cols, series.rows, series.num_slices)
    by_id: dict[str, list[Any]] = defaultdict(list)
    for p, pz in _points_on(rec, series, warnings, src):
        by_id[p.identification].append((p, pz))
    marks = []
    for ident in schema.landmarks:
        if ident not in by_id:
            continue
        best, bz = max(by_id[ident], key=lambda pz: pz[0].score if pz[0].score is not None else -1.0)
        x, y = geometry.clamp(*best.coord)
        if (x, y) != tuple(best.coord):
            warnings.append(f"{src}: study {rec.study_uid}: {ident} lies outside its image: moved to its edge")
        score = scores.get(ident, best.score)
        marks.append(Mark(ident, best.kind, float(x), float(y), bz, best.grades, score))
    return tuple(marks)


def _gt_marks(rec: StudyRecord | None, series: SeriesInfo, warnings: list[str], src: str) -> tuple[Mark, ...]:
    if rec is None:
        return ()
    return tuple(
        Mark(p.identification, p.kind, float(p.coord[0]), float(p.coord[1]), pz, p.grades)
        for p, pz in _points_on(rec, series, warnings, src)
    )


def _place(rec: StudyRecord, index: StudyIndex, src: str) -> tuple[SeriesInfo, int] | str:
    """(series, image index) the predictions of ``rec`` lie on, or why the study is left out."""
    if rec.primary is None:
        try:
            series, _ = choose_series(index)
        except NoSagittalSeries as exc:
            return f"{src}: {exc}: left out"
        return series, (series.num_slices - 1) // 2
    im = rec.primary
    series = next((s for s in index.series if s.series_uid == im.series_uid), None)
    z = None if series is None else _image_z(series, im.instance_uid)
    if series is None or z is None:
        return f"{src}: study {rec.study_uid}: image {im.instance_uid} (series {im.series_uid}) not found under ROOT"
    return series, z


def _records(obj: Any, path: str | Path, schema: Schema) -> list[StudyRecord]:
    records = parse_records(obj, schema, source=str(path))
    seen: set[str] = set()
    for i, rec in enumerate(records):
        if rec.study_uid in seen:
            raise UserError(f"{path}: record {i}: study {rec.study_uid} appears twice; keep one record per study")
        seen.add(rec.study_uid)
    return records


def read_studies(
    scan: ScanResult, predictions: str | Path, annotations: str | Path | None, schema_arg: str | None
) -> tuple[Schema, list[Study], list[str]]:
    """The schema, the studies of the predictions file found under ROOT (file order), and the warnings.

    Raises:
        AnnotationError: a malformed file, or schemas that cannot be told (see
            :func:`spine_kp.evaluation.schema_choice.choose_schema`).
        UserError: a study twice in one file, or no study of the predictions file under ROOT.
    """
    pred_obj = load_json(predictions)
    declared = {str(predictions): declared_schema(pred_obj, str(predictions))}
    choice = choose_schema(schema_arg, declared)
    schema, warnings = choice.schema, list(choice.warnings)
    preds = _records(pred_obj, predictions, schema)
    gt = None
    if annotations is not None:
        gt = {r.study_uid: r for r in _records(load_json(annotations), annotations, schema)}
    extras = point_extras(pred_obj)
    studies = []
    for i, rec in enumerate(preds):
        src = f"{predictions}: record {i}"
        warnings += [f"{predictions}: {w}" for w in rec.warnings]
        index = scan.studies.get(rec.study_uid)
        if index is None:
            warnings.append(f"{src}: study {rec.study_uid} is not under ROOT: left out")
            continue
        place = _place(rec, index, src)
        if isinstance(place, str):
            warnings.append(place)
            continue
        series, z = place
        shift, scores = extras[rec.study_uid]
        marks = predicted_marks(rec, series, schema, scores, warnings, src)
        truth = None if gt is None else _gt_marks(gt.get(rec.study_uid), series, warnings, str(annotations))
        studies.append(Study(rec.study_uid, index, series, z, marks, truth, shift))
    if not studies:
        raise UserError(f"{predictions}: none of its {len(preds)} studies is under ROOT; check ROOT and --predictions")
    return schema, studies, warnings
