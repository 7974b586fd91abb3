"""DICOM study ingest: scan headers, choose the sagittal T2 series, decode only the slices asked for.

Typical use::

    result = scan(data_root, workers=4)          # headers only, every study under the root
    for study in result.studies.values():
        sl = load_middle_slice(study)            # spine_kp.types.Slice, float32 (H, W), spacing (row, col) mm

Series choice (:func:`choose_series`): only sagittal series qualify. Plain T2 first, then fat-suppressed T2
(STIR/TIRM/SPAIR/FS, a last resort), then sagittal series whose weighting could not be told; T1 never. Among equals:
more slices, then lower SeriesNumber, then SeriesInstanceUID, so the choice is deterministic. The middle frame is
index ``(n - 1) // 2`` of the slices sorted along the slice normal.

Every slice is checked where it is decoded (:func:`_decode_checked`, the one path to pixels): a PixelSpacing that
is not finite or outside :data:`SPACING_MM`, a Rows x Columns that is absurd or smaller than :data:`MIN_SIDE` a
side, RLE segments that do not decode to Rows x Columns, a decoded size other than the header's, a non-finite or
zero RescaleSlope and values that are not finite or beyond :data:`MAX_PIXEL_VALUE` raise :class:`UnusableImage`
naming the file, so such an image never reaches training or prediction. (Pixel data whose length does not match
Rows x Columns x BitsAllocated, a JPEG or JPEG 2000 frame of another size, and a deflated dataset that inflates
beyond its promise are caught earlier, per file, by the scan: :mod:`spine_kp.io.header`.)

Memory: decoding one file never allocates much more than its header's Rows x Columns x BitsAllocated promise
(deflated files are inflated with a cap, :mod:`spine_kp.io.inflate`; compressed frames are sized from their own
headers before decoding, :mod:`spine_kp.io.codestream`).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spine_kp.io.codestream import rle_segment_lengths
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
from spine_kp.io.inflate import read_deflated
from spine_kp.io.scan import scan
from spine_kp.types import Slice

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = [
    "IngestError",
    "InstanceInfo",
    "NoSagittalSeries",
    "ScanResult",
    "SeriesInfo",
    "SkippedFile",
    "StudyIndex",
    "UnusableImage",
    "choose_series",
    "decode_pixels",
    "load_instance",
    "load_middle_slice",
    "load_series_slice",
    "read_study",
    "scan",
]

# rank of a sagittal series by weighting (lower is better); a weighting not listed (T1) is never chosen
_PREFERENCE = {"T2": 0, "T2FS": 1, "unknown": 2}
_WHY = {
    "T2": "",
    "T2FS": " (last resort: no plain T2 sagittal)",
    "unknown": " (last resort: no T2 sagittal recognised; weighting unknown)",
}


_RESCALE_SLOPE, _RESCALE_INTERCEPT = 0x00281053, 0x00281052
# Physical limits of an MR image: a pixel from 0.05 mm (microscopy coils) to 20 mm, and at least 16 x 16 pixels,
# below which no spine can be located (a header saying Rows 1 is lying about the image).
SPACING_MM = (0.05, 20.0)
MIN_SIDE = 16
# Far beyond any scanner's range (32-bit stored values times any plausible slope); from ~1e19 on, squares overflow
# float32 in the intensity normalisation and the network would see NaN.
MAX_PIXEL_VALUE = 1e12


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (decoders put tracebacks and plugin lists in theirs)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _describe(study: StudyIndex) -> str:
    return f"study {study.study_uid} ({study.folder})"


def choose_series(study: StudyIndex) -> tuple[SeriesInfo, str]:
    """Pick the series to read the middle slice from, with a human-readable reason.

    Args:
        study: one study of a :class:`ScanResult`.

    Returns:
        (series, reason), e.g. "sagittal T2 by description 'T2_TSE_SAG' (15 slices); skipped: T1 sagittal
        'T1_TSE_SAG', T2 axial 'T2_TRA'".

    Raises:
        NoSagittalSeries: no sagittal series other than T1; the message lists what the study holds.
    """
    candidates = [s for s in study.series if s.plane == "sagittal" and s.instances and s.weighting in _PREFERENCE]
    if not candidates:
        found = ", ".join(f"{s.label} ({s.num_slices} slices)" for s in study.series) or "no image series"
        raise NoSagittalSeries(f"{_describe(study)}: no sagittal T2 series (T1 is never used); found: {found}")

    def rank(s: SeriesInfo) -> tuple[int, int, int, str]:
        number = s.series_number if s.series_number is not None else 1 << 30
        return (_PREFERENCE[s.weighting], -s.num_slices, number, s.series_uid)

    best = min(candidates, key=rank)
    label = "fat-suppressed T2" if best.weighting == "T2FS" else best.weighting
    reason = f"sagittal {label} by {best.weighting_source} ({best.num_slices} slices){_WHY[best.weighting]}"
    if best.scouts:
        reason += f"; {len(best.scouts)} scout(s) left out of the series"
    others = [s.label for s in study.series if s is not best]
    if others:
        reason += "; skipped: " + ", ".join(others)
    return best, reason


def _check_rle(ds: Dataset, path: str | Path) -> None:
    """Every RLE segment must decode to Rows x Columns bytes, counted before anything is decoded.

    A decoder allocates for the header's Rows x Columns; where the segments hold more (Rows halved, Rows 1), one
    decoder panics and the fallback returns the first Rows x Columns pixels of a bigger image, without a word.

    Raises:
        UnusableImage: the segments do not decode to the image the header describes.
    """
    from pydicom.encaps import generate_frames

    rows, cols = int(ds.Rows), int(ds.Columns)
    wanted = int(ds.get("SamplesPerPixel", 1) or 1) * -(-int(ds.get("BitsAllocated", 16) or 16) // 8)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1), b"")
    try:
        lengths = rle_segment_lengths(frame)
    except ValueError as exc:
        raise UnusableImage(f"{path}: {exc}") from None
    if len(lengths) != wanted or any(n != rows * cols for n in lengths):
        raise UnusableImage(
            f"{path}: the RLE segments decode to {lengths} bytes, where Rows x Columns {rows} x {cols} needs "
            f"{wanted} segment(s) of {rows * cols} bytes: the header's image size is not the pixel data's"
        )


def _read_pixels(path: str | Path) -> tuple[np.ndarray, Dataset]:
    """Decoded pixels as stored and the dataset holding their rescale tags, allocating no more than the header's
    Rows x Columns promise (deflated files: :func:`~spine_kp.io.inflate.read_deflated`; RLE: :func:`_check_rle`;
    JPEG and JPEG 2000 sizes are checked by the scan, :mod:`spine_kp.io.header`)."""
    from pydicom import dcmread
    from pydicom.dataset import Dataset
    from pydicom.filereader import read_file_meta_info
    from pydicom.pixels import pixel_array
    from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless

    syntax = read_file_meta_info(str(path)).get("TransferSyntaxUID")
    if syntax == DeflatedExplicitVRLittleEndian:
        ds = read_deflated(str(path))
        return pixel_array(ds), ds
    if syntax == RLELossless:
        ds = dcmread(str(path))
        _check_rle(ds, path)
        return pixel_array(ds), ds
    # pixel_array(path) reads only the pixel module (+ the rescale tags asked for), not a whole Dataset
    info = Dataset()
    return pixel_array(str(path), ds_out=info, specific_tags=[_RESCALE_INTERCEPT, _RESCALE_SLOPE]), info


def _decode_pydicom(path: str | Path) -> np.ndarray:
    pixels, info = _read_pixels(path)
    frames = int(info.get("NumberOfFrames", 1) or 1)
    if frames > 1 or pixels.ndim != 2:
        raise IngestError(f"{path}: multi-frame or multi-sample object (shape {pixels.shape}) is not supported yet")
    pixels = pixels.astype(np.float32)  # (H, W)
    # rescale in float32 (pydicom's apply_rescale goes through float64: slower, and float32 is the contract)
    slope, intercept = _rescale(info, _RESCALE_SLOPE, 1.0, path), _rescale(info, _RESCALE_INTERCEPT, 0.0, path)
    if slope != 1.0:
        pixels *= np.float32(slope)
    if intercept != 0.0:
        pixels += np.float32(intercept)
    if info.get("PhotometricInterpretation") == "MONOCHROME1":  # bright means low signal: flip to MONOCHROME2
        pixels = pixels.max() + pixels.min() - pixels
    return pixels


def _rescale(info: Dataset, tag: int, default: float, path: str | Path) -> float:
    """RescaleSlope or RescaleIntercept read from its text; absent or empty gives ``default``.

    Raises:
        UnusableImage: the value is not a finite number, or the slope is 0 (every pixel would be the intercept).
    """
    if tag not in info:
        return default
    value = info.get_item(tag).value  # the raw element where pydicom has not converted it: its text, never an error
    if value is None:  # present but empty
        return default
    text = (value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)).strip(" \x00")
    if not text:
        return default
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    name = "RescaleSlope" if tag == _RESCALE_SLOPE else "RescaleIntercept"
    # the rescale runs in float32, where a slope below ~1e-45 is 0 as well
    if not math.isfinite(number) or (tag == _RESCALE_SLOPE and np.float32(number) == 0.0):
        what = "zero" if math.isfinite(number) else "not a finite number"
        raise UnusableImage(f"{path}: {name} {text[:32]!r} is {what}; the pixel values cannot be recovered")
    return number


def _decode_simpleitk(path: str | Path) -> np.ndarray:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")  # GDCM applies RescaleSlope/Intercept itself
    reader.SetFileName(str(path))
    arr = sitk.GetArrayFromImage(reader.Execute())  # (1, H, W) or (H, W)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise IngestError(f"{path}: SimpleITK decoded shape {arr.shape}, expected one greyscale frame")
    return arr.astype(np.float32)


def decode_pixels(path: str | Path) -> np.ndarray:
    """Decode one single-frame DICOM image to real values.

    pydicom decodes (with the pylibjpeg plugins for JPEG, JPEG-LS, JPEG 2000 and RLE); if it fails, SimpleITK
    (GDCM) is tried before giving up.

    Args:
        path: DICOM file.

    Returns:
        (H, W) float32, RescaleSlope/Intercept applied, rows x columns as stored.

    Raises:
        IngestError: both decoders failed, or the object is multi-frame; the message names the file.
        UnusableImage: RescaleSlope or RescaleIntercept is not a finite number, or the slope is 0; RLE segments
            that do not decode to Rows x Columns; a deflated dataset that inflates beyond its header's promise.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. BitsStored smaller than the JPEG precision: harmless, noisy
        try:
            return _decode_pydicom(path)
        except IngestError:
            raise
        # BaseException: a decoder plugin written in Rust panics on inconsistent data (pyo3's PanicException is not
        # an Exception); it is one bad file, not a reason to stop a whole batch
        except BaseException as first:
            if isinstance(first, (KeyboardInterrupt, SystemExit)):
                raise
            try:
                return _decode_simpleitk(path)
            except BaseException as second:
                if isinstance(second, (KeyboardInterrupt, SystemExit)):
                    raise
                raise IngestError(
                    f"{path}: cannot decode pixels (pydicom: {_one_line(first)}; SimpleITK: {_one_line(second)})"
                ) from second


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
            raise IngestError(f"{_describe(study)}: instance {instance_uid} is a scout in series {series.series_uid}")
    raise IngestError(f"{_describe(study)}: no image with SOPInstanceUID {instance_uid}")


def load_series_slice(study: StudyIndex, series_uid: str, index: int) -> Slice:
    """Decode image ``index`` of the named series of the study, sorted along the slice normal (scouts excluded).

    The same checked decoding the predictor uses (e.g. to show a neighbouring slice in ``spine-kp review``).

    Raises:
        IngestError: the study has no such series, ``index`` is outside it, or the image cannot be decoded.
    """
    series = next((s for s in study.series if s.series_uid == series_uid), None)
    if series is None:
        raise IngestError(f"{_describe(study)}: no series with SeriesInstanceUID {series_uid}")
    if not 0 <= index < series.num_slices:
        raise IngestError(f"{_describe(study)}: series {series_uid} has no image {index} (0-{series.num_slices - 1})")
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
