"""Find the pixel spacing of every annotated ground-truth image.

Sources, first that answers wins:
    1. ``pixelSpacing`` of the ground-truth record (``ImageAnnotation.pixel_spacing``);
    2. the data root: the DICOM header of the annotated ``instanceUid`` (through the ingest scan), else of any
       instance of the same series;
    3. ``pixelSpacing`` of a prediction image of the same series (predictions are made on the same series, whose
       images share one spacing).
A ground-truth image that still has none is an error naming its study.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from spine_kp.errors import UserError
from spine_kp.io.dicom_types import StudyIndex
from spine_kp.io.text import escape_unencodable
from spine_kp.types import StudyRecord

Spacing = tuple[float, float]


class SpacingError(UserError, ValueError):
    """A ground-truth image has no known pixel spacing; the message names the study."""


def spacing_from_studies(studies: Mapping[str, StudyIndex]) -> tuple[dict[str, Spacing], dict[str, Spacing]]:
    """Map the UIDs of scanned studies to (row_mm, col_mm).

    Returns:
        (SOPInstanceUID -> spacing, SeriesInstanceUID -> spacing).
    """
    by_instance: dict[str, Spacing] = {}
    by_series: dict[str, Spacing] = {}
    for study in studies.values():
        for series in study.series:
            spacing = (float(series.spacing[0]), float(series.spacing[1]))
            by_series[series.series_uid] = spacing
            for inst in series.instances:
                by_instance[inst.sop_instance_uid] = spacing
    return by_instance, by_series


def spacing_from_data_root(root: str | Path) -> tuple[dict[str, Spacing], dict[str, Spacing]]:
    """Scan a data root with the ingest code and map UIDs to (row_mm, col_mm) (:func:`spacing_from_studies`).

    Raises:
        SpacingError: the root cannot be scanned (e.g. not a folder).
    """
    from spine_kp.io import dicom  # lazy: evaluation must not need the DICOM stack unless asked to

    try:
        index = dicom.scan(root)
    except (OSError, dicom.IngestError) as exc:
        raise SpacingError(f"data root {root}: {exc}") from None
    return spacing_from_studies(index.studies)


def fill_spacing(
    gt_records: Sequence[StudyRecord],
    data_root: str | Path | None = None,
    pred_records: Iterable[StudyRecord] = (),
    studies: Mapping[str, StudyIndex] | None = None,
) -> list[StudyRecord]:
    """Return the ground-truth records with ``pixel_spacing`` set on every image that has points.

    Args:
        gt_records: ground truth as read from its JSON.
        data_root: folder of DICOM studies, scanned only if some image lacks a spacing (and ``studies`` is None).
        pred_records: predictions, used as the last source (same series).
        studies: the data root, already scanned (:func:`spine_kp.evaluation.against_data.scan_data_root`).

    Raises:
        SpacingError: naming the first study (and instance) whose spacing cannot be found.
    """
    needs = any(im.pixel_spacing is None and im.points for rec in gt_records for im in rec.images)
    if not needs:
        return list(gt_records)
    by_instance: dict[str, Spacing] = {}
    by_series: dict[str, Spacing] = {}
    if studies is not None:
        by_instance, by_series = spacing_from_studies(studies)
    elif data_root is not None:
        by_instance, by_series = spacing_from_data_root(data_root)
    from_preds = {
        im.series_uid: im.pixel_spacing for rec in pred_records for im in rec.images if im.pixel_spacing is not None
    }
    out = []
    for rec in gt_records:
        images = []
        for im in rec.images:
            sp = (
                im.pixel_spacing
                or by_instance.get(im.instance_uid)
                or by_series.get(im.series_uid)
                or from_preds.get(im.series_uid)
            )
            if sp is None and im.points:
                scanned = data_root is not None or studies is not None
                hint = "it is not under the data root" if scanned else "pass --data ROOT"
                where = escape_unencodable(f"study {rec.study_uid}: no pixel spacing for instance {im.instance_uid}")
                raise SpacingError(f"{where} ({hint}, or add 'pixelSpacing' to its record)")
            images.append(dataclasses.replace(im, pixel_spacing=sp) if sp != im.pixel_spacing else im)
        out.append(dataclasses.replace(rec, images=tuple(images)))
    return out
