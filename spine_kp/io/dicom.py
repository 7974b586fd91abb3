"""DICOM study ingest: scan headers, choose the sagittal T2 series, decode only the slices asked for.

Typical use::

    result = scan(data_root, workers=4)          # headers only, every study under the root
    for study in result.studies.values():
        sl = load_middle_slice(study)            # spine_kp.types.Slice, float32 (H, W), spacing (row, col) mm

Series choice (:func:`choose_series`): only sagittal series qualify. Plain T2 first, then fat-suppressed T2
(STIR/TIRM/SPAIR/FS, a last resort), then sagittal series whose weighting could not be told; T1 never. Among equals:
more slices, then lower SeriesNumber, then SeriesInstanceUID, so the choice is deterministic. The middle frame is
index ``(n - 1) // 2`` of the slices sorted along the slice normal.
"""

from __future__ import annotations

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
)
from spine_kp.io.scan import scan
from spine_kp.types import Slice

__all__ = [
    "IngestError",
    "InstanceInfo",
    "NoSagittalSeries",
    "ScanResult",
    "SeriesInfo",
    "SkippedFile",
    "StudyIndex",
    "choose_series",
    "decode_pixels",
    "load_instance",
    "load_middle_slice",
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


def _decode_pydicom(path: str | Path) -> np.ndarray:
    from pydicom.dataset import Dataset
    from pydicom.pixels import pixel_array

    # pixel_array(path) reads only the pixel module (+ the rescale tags asked for), not a whole Dataset
    info = Dataset()
    pixels = pixel_array(str(path), ds_out=info, specific_tags=[0x00281052, 0x00281053])
    frames = int(info.get("NumberOfFrames", 1) or 1)
    if frames > 1 or pixels.ndim != 2:
        raise IngestError(f"{path}: multi-frame or multi-sample object (shape {pixels.shape}) is not supported yet")
    pixels = pixels.astype(np.float32)  # (H, W)
    # rescale in float32 (pydicom's apply_rescale goes through float64: slower, and float32 is the contract)
    slope, intercept = float(info.get("RescaleSlope", 1) or 1), float(info.get("RescaleIntercept", 0) or 0)
    if slope != 1.0:
        pixels *= np.float32(slope)
    if intercept != 0.0:
        pixels += np.float32(intercept)
    if info.get("PhotometricInterpretation") == "MONOCHROME1":  # bright means low signal: flip to MONOCHROME2
        pixels = pixels.max() + pixels.min() - pixels
    return pixels


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
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. BitsStored smaller than the JPEG precision: harmless, noisy
        try:
            return _decode_pydicom(path)
        except IngestError:
            raise
        except Exception as first:  # noqa: BLE001 - any decoder failure moves on to the fallback
            try:
                return _decode_simpleitk(path)
            except Exception as second:  # noqa: BLE001
                raise IngestError(f"{path}: cannot decode pixels (pydicom: {first}; SimpleITK: {second})") from second


def _load(series: SeriesInfo, index: int, neighbours: int, reason: str) -> Slice:
    """Decode instance ``index`` of the position-sorted ``series`` and, if asked, its neighbours."""
    n = series.num_slices
    centre = decode_pixels(series.instances[index].path)  # (H, W)
    stack = None
    if neighbours > 0:
        planes = []
        for j in range(index - neighbours, index + neighbours + 1):
            j = min(max(j, 0), n - 1)  # series ends: repeat the edge slice
            plane = centre if j == index else decode_pixels(series.instances[j].path)
            if plane.shape != centre.shape:
                raise IngestError(f"{series.instances[j].path}: shape {plane.shape} differs from {centre.shape}")
            planes.append(plane)
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


def read_study(folder: str | Path, neighbours: int = 0) -> Slice:
    """Scan one study folder and load its middle slice (convenience for a single study).

    Raises:
        IngestError: the folder holds no study, or more than one.
    """
    result = scan(folder)
    if len(result.studies) != 1:
        raise IngestError(f"{folder}: expected one study, found {len(result.studies)}")
    return load_middle_slice(next(iter(result.studies.values())), neighbours)
