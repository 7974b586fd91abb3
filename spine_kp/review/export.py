"""``REVIEWED.json``: the studies marked reviewed, as competition-format annotations (SPEC section 3).

One record per reviewed study, in the order given; one ``data`` entry per slice that holds landmarks (its
``instanceUid``, ``zIndex`` = its index in the series, the series' ``pixelSpacing``), the study's main slice first,
since training reads the first image of a record; annotator ``"spine-kp review"``, grades joined ``"v2,v5"``, no
scores, and ``"schema"`` naming the schema. ``spine-kp train --annotations`` and ``spine-kp evaluate`` read it.
Written atomically (:func:`spine_kp.io.annotations.write_annotations`). A study is marked reviewed only with at
least one landmark (:meth:`spine_kp.review.session.ReviewSession.update`), so every record names an image.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from spine_kp.io.annotations import write_annotations
from spine_kp.io.dicom import SeriesInfo
from spine_kp.review.marks import Mark
from spine_kp.types import ImageAnnotation, Point, StudyRecord

ANNOTATOR = "spine-kp review"


def study_record(uid: str, series: SeriesInfo, main_z: int, marks: Sequence[Mark]) -> StudyRecord:
    """The competition record of one reviewed study.

    Args:
        uid: StudyInstanceUID.
        series: the series the landmarks' z index.
        main_z: the slice listed first (the one the predictions lay on).
        marks: the reviewed landmarks.
    """
    slices = sorted({m.z for m in marks}, key=lambda z: (z != main_z, z))
    images = []
    for z in slices:
        points = tuple(Point(m.id, m.kind, (m.x, m.y), m.grades, z_index=z) for m in marks if m.z == z)
        images.append(
            ImageAnnotation(
                series_uid=series.series_uid,
                instance_uid=series.instances[z].sop_instance_uid,
                points=points,
                annotator=ANNOTATOR,
                pixel_spacing=series.spacing,
            )
        )
    return StudyRecord(study_uid=uid, images=tuple(images))


def write_reviewed(path: str | Path, records: Iterable[StudyRecord], schema_name: str) -> Path:
    """Write the reviewed studies' records to ``path`` atomically, naming the schema in each record."""
    return write_annotations(path, list(records), schema=schema_name)
