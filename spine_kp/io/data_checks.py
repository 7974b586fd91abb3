"""Annotated values only the DICOM data can refute: points outside their image, zIndex beyond the series.

One definition, shared by training (:func:`check_against_data`, on the data module's records) and by
``spine-kp evaluate --data`` (ground truth and predictions alike). Headers only: the image size and the number of
images of the annotated image's series come from the scan (:func:`spine_kp.io.dicom.scan`); no pixel is decoded.

Frames: ``coord`` is (x, y) in pixels of the annotated image, x along columns and y along rows, pixel centres at
integers; a point is inside when ``-0.5 <= x <= cols - 0.5`` and ``-0.5 <= y <= rows - 0.5`` (up to half a pixel
beyond the centre of an edge pixel). ``zIndex`` counts the images of the series from 0.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from spine_kp.io.dicom_types import StudyIndex
from spine_kp.types import ImageAnnotation, StudyRecord

log = logging.getLogger(__name__)

SHOWN = 5  # problem lines quoted in a warning before "... N more"


@dataclass(frozen=True)
class DataCheck:
    """What one set of records holds that its images refute; one line per finding, naming study and landmark.

    Attributes:
        outside: points outside their image.
        beyond: zIndex values at or beyond the number of images of the annotated series.
        not_found: images with points whose ``instanceUid`` is not an image of the scanned study (their points could
            not be checked).
    """

    outside: tuple[str, ...] = ()
    beyond: tuple[str, ...] = ()
    not_found: tuple[str, ...] = ()

    @property
    def problems(self) -> tuple[str, ...]:
        """Every line: outside, then beyond, then not found."""
        return self.outside + self.beyond + self.not_found

    def to_dict(self) -> dict[str, object]:
        return {
            "outside_image": len(self.outside),
            "z_beyond_series": len(self.beyond),
            "image_not_in_data": len(self.not_found),
            "problems": list(self.problems),
        }


def shown(lines: Sequence[str], n: int = SHOWN) -> str:
    """The first ``n`` lines joined with "; ", then how many more there are."""
    more = f"; ... {len(lines) - n} more" if len(lines) > n else ""
    return "; ".join(lines[:n]) + more


def annotated_image(study: StudyIndex, instance_uid: str) -> tuple[int, int, int] | None:
    """(rows, cols, images in its series) of one image of a scanned study; None if it is not one of them."""
    for series in study.series:
        if any(inst.sop_instance_uid == instance_uid for inst in series.instances):
            return series.rows, series.cols, series.num_slices
    return None


def _check_image(study_uid: str, image: ImageAnnotation, rows: int, cols: int, n: int) -> tuple[list[str], list[str]]:
    outside, beyond = [], []
    for p in image.points:
        x, y = float(p.coord[0]), float(p.coord[1])
        if not (-0.5 <= x <= cols - 0.5 and -0.5 <= y <= rows - 0.5):
            outside.append(f"study {study_uid}: {p.identification} at ({x:g}, {y:g}) outside {cols} x {rows}")
        if p.z_index is not None and p.z_index >= n:
            beyond.append(f"study {study_uid}: {p.identification} has zIndex {p.z_index}, series of {n}")
    return outside, beyond


def check_records(
    records: Sequence[StudyRecord], studies: Mapping[str, StudyIndex], primary_only: bool = False
) -> DataCheck:
    """Check the points of every image with points against the scanned data root.

    Args:
        records: annotation or prediction records.
        studies: study UID -> StudyIndex from :func:`spine_kp.io.dicom.scan`.
        primary_only: check only ``record.primary`` (the image training uses), else every image.

    Returns:
        The findings; an image of a study that is not under the root, or whose instance is not an image of its
        study, is counted in ``not_found``.
    """
    outside: list[str] = []
    beyond: list[str] = []
    not_found: list[str] = []
    for rec in records:
        images = rec.images[:1] if primary_only else rec.images  # images[:1]: the primary image, if any
        for image in images:
            if not image.points:
                continue
            study = studies.get(rec.study_uid)
            found = annotated_image(study, image.instance_uid) if study is not None else None
            if found is None:
                where = "its study is not under the data root" if study is None else "not an image of its study"
                not_found.append(
                    f"study {rec.study_uid}: instance {image.instance_uid} ({where}; {len(image.points)} point(s))"
                )
                continue
            o, b = _check_image(rec.study_uid, image, *found)
            outside += o
            beyond += b
    return DataCheck(tuple(outside), tuple(beyond), tuple(not_found))


def check_against_data(records: Sequence[StudyRecord], studies: Mapping[str, StudyIndex]) -> list[str]:
    """Training's check of its annotated images, as one counted warning (the values do not stop training).

    Only ``record.primary`` is checked, the image training uses; the records are those the data module kept (their
    images are under the root, :func:`spine_kp.data.dataset.resolve_records`). A point outside its image is masked
    in training (:func:`spine_kp.data.labels.encode_targets`); a zIndex at or beyond the number of images of the
    annotated series is ignored, as training finds the image by its instanceUid.

    Returns:
        One line per problem (the warning logged shows the counts and the first lines).
    """
    check = check_records(records, studies, primary_only=True)
    parts = []
    if check.outside:
        parts.append(f"{len(check.outside)} annotated point(s) lie outside their image and are masked in training")
    if check.beyond:
        parts.append(
            f"{len(check.beyond)} zIndex value(s) lie beyond their series and are ignored (instanceUid decides)"
        )
    problems = [*check.outside, *check.beyond]
    if problems:
        log.warning("%s: %s", "; ".join(parts), shown(problems))
    return problems
