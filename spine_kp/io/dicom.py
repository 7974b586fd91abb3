"""DICOM study ingest: scan headers, choose the sagittal T2 series, decode only the slices asked for.

Typical use::

    result = scan(data_root, workers=4)          # headers only, every study under the root
    for study in result.studies.values():
        sl = load_middle_slice(study)            # spine_kp.types.Slice, float32 (H, W), spacing (row, col) mm

The series is chosen by :func:`spine_kp.io.series_choice.choose_series` (sagittal T2 first; T1 never). The middle frame
is index ``(n - 1) // 2`` of the slices sorted along the slice normal.

Every slice is checked where it is decoded (:func:`_decode_checked`, the one path to pixels): a PixelSpacing that
is not finite or outside :data:`SPACING_MM`, a Rows x Columns that is absurd or smaller than :data:`MIN_SIDE` a
side, RLE segments that do not decode to Rows x Columns, a decoded size other than the header's, a non-finite or
zero RescaleSlope and values that are not finite or beyond :data:`MAX_PIXEL_VALUE` raise :class:`UnusableImage`
naming the file, so such an image never reaches training or prediction. (Pixel data whose length does not match
Rows x Columns x BitsAllocated, a JPEG or JPEG 2000 frame of another size, and a deflated dataset that inflates
beyond its promise are caught earlier, per file, by the scan: :mod:`spine_kp.io.header`.)

One file's pixels are decoded by :func:`spine_kp.io.pixel_decode.decode_pixels`, which never allocates much more than
its header's Rows x Columns x BitsAllocated promise.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from spine_kp.io.dicom_types import (
    IngestError,
    InstanceInfo,
    NoSagittalSeries,
    ScanResult,
    SeriesInfo,
    SkippedFile,
    StudyIndex,
    UnusableImage,
)
from spine_kp.io.header import MAX_PIXELS
from spine_kp.io.pixel_decode import decode_pixels
from spine_kp.io.scan import scan
from spine_kp.io.series_choice import choose_series, describe_study
from spine_kp.types import Slice

__all__ = [
    "IngestError",
    "InstanceInfo",
    "NoSagittalSeries",
    "ScanResult",
    "SeriesInfo",
    "SkippedFile",
    "StudyIndex",
    "UnusableImage",
    "load_instance",
    "load_middle_slice",
    "load_series_slice",
    "read_study",
    "scan",
]

# Physical limits of an MR image: a pixel from 0.05 mm (microscopy coils) to 20 mm, and at least 16 x 16 pixels,
# below which no spine can be located (a header saying Rows 1 is lying about the image).
SPACING_MM = (0.05, 20.0)
MIN_SIDE = 16
# Far beyond any scanner's range (32-bit stored values times any plausible slope); from ~1e19 on, squares overflow
# float32 in the intensity normalisation and the network would see NaN.
MAX_PIXEL_VALUE = 1e12


def _decode_checked(series: SeriesInfo, index: int) -> np.ndarray:
    """Decode image ``index`` of ``series`` after checking its geometry, and check what came out.

    The one place pixels enter the pipeline: whatever the scan let through, an image whose spacing, size, rescale
    or values cannot be used stops here.

    Raises:
        UnusableImage: PixelSpacing not finite or outside ``SPACING_MM``, Rows x Columns under 16 a side or
            beyond 8192 x 8192, RLE segments or a decoded size other than Rows x Columns, a deflated dataset that
            inflates beyond its promise, a bad RescaleSlope/Intercept, values that are NaN, infinite or beyond
            ``MAX_PIXEL_VALUE`` in magnitude.
        IngestError: the pixels cannot be decoded.
    """
    path = series.instances[index].path
    row_mm, col_mm = series.spacing
    low, high = SPACING_MM
    if not all(math.isfinite(v) and v > 0 for v in series.spacing):
        raise UnusableImage(
            f"{path}: PixelSpacing {row_mm:g} x {col_mm:g} mm (series {series.series_uid}) is not positive and finite"
        )
    if not all(low <= v <= high for v in series.spacing):
        raise UnusableImage(
            f"{path}: PixelSpacing {row_mm:g} x {col_mm:g} mm (series {series.series_uid}) is outside the physical "
            f"range of an MR pixel, {low:g} to {high:g} mm"
        )
    if not (series.rows >= 1 and series.cols >= 1 and series.rows * series.cols <= MAX_PIXELS):
        raise UnusableImage(f"{path}: Rows x Columns {series.rows} x {series.cols} is not a usable image size")
    if min(series.rows, series.cols) < MIN_SIDE:
        raise UnusableImage(
            f"{path}: Rows x Columns {series.rows} x {series.cols} is smaller than {MIN_SIDE} x {MIN_SIDE} pixels; "
            "no spine can be located in it"
        )
    pixels = decode_pixels(path)  # (H, W)
    if pixels.shape != (series.rows, series.cols):
        raise UnusableImage(
            f"{path}: decoded {' x '.join(map(str, pixels.shape))} pixels where Rows x Columns is "
            f"{series.rows} x {series.cols}"
        )
    peak = float(np.abs(pixels).max())  # NaN when any value is NaN
    if not peak <= MAX_PIXEL_VALUE:
        raise UnusableImage(
            f"{path}: pixel values reach {peak:g} after rescaling (RescaleSlope/Intercept); beyond "
            f"{MAX_PIXEL_VALUE:g} they are not MR intensities, and overflow the float32 intensity statistics"
        )
    return pixels


def _neighbour(series: SeriesInfo, j: int, centre: np.ndarray) -> np.ndarray:
    """Parasagittal slice ``j``; one that cannot be used is replaced by the centre slice, with a warning naming it
    (the neighbours only add context: the study is still predicted, as a series end repeats its edge slice)."""
    try:
        return _decode_checked(series, j)
    except IngestError as exc:
        warnings.warn(f"{exc}; the middle slice stands in for this neighbouring slice", stacklevel=2)
        return centre


def _load(series: SeriesInfo, index: int, neighbours: int, reason: str) -> Slice:
    """Decode instance ``index`` of the position-sorted ``series`` and, if asked, its neighbours."""
    n = series.num_slices
    centre = _decode_checked(series, index)  # (H, W)
    stack = None
    if neighbours > 0:
        planes = []
        for j in range(index - neighbours, index + neighbours + 1):
            j = min(max(j, 0), n - 1)  # series ends: repeat the edge slice
            planes.append(centre if j == index else _neighbour(series, j, centre))  # each is Rows x Columns
        stack = np.stack(planes)  # (2k+1, H, W)
    inst = series.instances[index]
    return Slice(
        pixels=centre,
        spacing=series.spacing,
        study_uid=series.study_uid,
        series_uid=series.series_uid,
        instance_uid=inst.sop_instance_uid,
        z_index=index,
        num_slices=n,
        series_description=series.description,
        reason=reason,
        path=inst.path,
        stack=stack,
    )


def load_middle_slice(study: StudyIndex, neighbours: int = 0) -> Slice:
    """Decode the middle frame (index ``(n - 1) // 2``) of the chosen series, and ``neighbours`` on each side.

    Only those files are decoded. ``Slice.stack`` is (2k+1, H, W) ordered along the slice normal, edges repeated.

    Raises:
        NoSagittalSeries: see :func:`choose_series`.
        UnusableImage: its pixels or geometry cannot be used (see :func:`_decode_checked`).
        IngestError: the slice cannot be decoded.
    """
    series, reason = choose_series(study)
    return _load(series, (series.num_slices - 1) // 2, neighbours, reason)


def load_instance(study: StudyIndex, instance_uid: str, neighbours: int = 0) -> Slice:
    """Decode one named image (e.g. an annotated one) of any series of the study.

    ``z_index`` is its index in its position-sorted series (scouts excluded).

    Raises:
        IngestError: the study has no such image, it is a scout, or it cannot be decoded.
    """
    for series in study.series:
        for index, inst in enumerate(series.instances):
            if inst.sop_instance_uid == instance_uid:
                reason = f"requested instance: {series.label}, index {index} of {series.num_slices}"
                return _load(series, index, neighbours, reason)
        if any(s.sop_instance_uid == instance_uid for s in series.scouts):
            raise IngestError(
                f"{describe_study(study)}: instance {instance_uid} is a scout in series {series.series_uid}"
            )
    raise IngestError(f"{describe_study(study)}: no image with SOPInstanceUID {instance_uid}")


def load_series_slice(study: StudyIndex, series_uid: str, index: int) -> Slice:
    """Decode image ``index`` of the named series of the study, sorted along the slice normal (scouts excluded).

    The same checked decoding the predictor uses (e.g. to show a neighbouring slice in ``spine-kp review``).

    Raises:
        IngestError: the study has no such series, ``index`` is outside it, or the image cannot be decoded.
    """
    series = next((s for s in study.series if s.series_uid == series_uid), None)
    if series is None:
        raise IngestError(f"{describe_study(study)}: no series with SeriesInstanceUID {series_uid}")
    if not 0 <= index < series.num_slices:
        raise IngestError(
            f"{describe_study(study)}: series {series_uid} has no image {index} (0-{series.num_slices - 1})"
        )
    return _load(series, index, 0, f"requested image: {series.label}, index {index} of {series.num_slices}")


def read_study(folder: str | Path, neighbours: int = 0) -> Slice:
    """Scan one study folder and load its middle slice (convenience for a single study).

    Raises:
        IngestError: the folder holds no study, or more than one.
    """
    result = scan(folder)
    if len(result.studies) != 1:
        raise IngestError(f"{folder}: expected one study, found {len(result.studies)}")
    return load_middle_slice(next(iter(result.studies.values())), neighbours)
