"""Write MR image series as DICOM files: phantom studies and test fixtures (non-image objects: :mod:`.dicom_non_image`).

Geometry follows the DICOM patient frame (LPS, mm): ``orientation`` holds the row direction cosines then the
column direction cosines (ImageOrientationPatient); ``positions[i]`` is the centre of the top-left pixel of slice
``i`` (ImagePositionPatient). Pixel arrays are ``(N, H, W)`` = (slice, row, col).

Transfer syntaxes: see :mod:`spine_kp.synth.dicom_encode` (``encodable_transfer_syntaxes()`` lists what
the installed encoders can write).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from spine_kp.io.atomic import atomic_output
from spine_kp.synth.dicom_encode import TRANSFER_SYNTAXES, encodable_transfer_syntaxes, encode

__all__ = [
    "TRANSFER_SYNTAXES",
    "SeriesGeometry",
    "SeriesMeta",
    "encodable_transfer_syntaxes",
    "base_dataset",
    "frame_of_reference_uid",
    "write_series",
]


@dataclass(frozen=True)
class SeriesGeometry:
    """Where the slices of a series lie in the patient frame (LPS, mm).

    Attributes:
        orientation: ImageOrientationPatient, 6 floats (row direction cosines, column direction cosines).
        positions: (N, 3) ImagePositionPatient of each slice, in the order of the pixel array.
        spacing: PixelSpacing (row_mm, col_mm).
        slice_thickness: SliceThickness in mm.
    """

    orientation: tuple[float, ...]
    positions: np.ndarray
    spacing: tuple[float, float]
    slice_thickness: float

    @property
    def normal(self) -> np.ndarray:
        """(3,) slice normal = row direction x column direction."""
        o = np.asarray(self.orientation, dtype=float)
        return np.cross(o[:3], o[3:])


@dataclass(frozen=True)
class SeriesMeta:
    """Identity and acquisition tags of one series. ``None`` omits the tag from the files."""

    study_uid: str
    series_uid: str
    series_number: int
    series_description: str | None
    protocol_name: str | None
    echo_time: float | None
    repetition_time: float | None
    inversion_time: float | None = None
    patient_id: str = "ANON"
    study_date: str = "20260101"
    modality: str = "MR"
    bits_stored: int = 16  # 12 or 16
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0


def frame_of_reference_uid(study_uid: str) -> str:
    """Deterministic FrameOfReferenceUID shared by every series of a study (one patient position)."""
    return generate_uid(entropy_srcs=[study_uid, "frame-of-reference"])


def _stored_values(pixels: np.ndarray, meta: SeriesMeta) -> np.ndarray:
    """(N, H, W) float real values -> (N, H, W) uint16 stored values, clipped to the BitsStored range."""
    if meta.bits_stored not in (12, 16):
        raise ValueError(f"series {meta.series_uid}: bits_stored must be 12 or 16, got {meta.bits_stored}")
    if meta.rescale_slope == 0:
        raise ValueError(f"series {meta.series_uid}: rescale_slope must be non-zero")
    stored = np.rint((np.asarray(pixels, dtype=np.float64) - meta.rescale_intercept) / meta.rescale_slope)
    return np.clip(stored, 0, 2**meta.bits_stored - 1).astype(np.uint16)


def base_dataset(sop_class: UID, sop_uid: str, study_uid: str, transfer_syntax: UID) -> Dataset:
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = sop_class
    file_meta.MediaStorageSOPInstanceUID = sop_uid
    file_meta.TransferSyntaxUID = transfer_syntax
    file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = file_meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    return ds


def _ds(value: float) -> str:
    """A float as a DICOM DS string: as many digits as its 16 characters allow (pydicom's formatter)."""
    return format_number_as_ds(float(value))


def _image_dataset(
    frame: np.ndarray,
    geometry: SeriesGeometry,
    meta: SeriesMeta,
    position: np.ndarray,
    instance_number: int,
    sop_uid: str,
    transfer_syntax: UID,
) -> Dataset:
    """One MR Image Storage dataset holding ``frame`` ((H, W) uint16 stored values), uncompressed."""
    ds = base_dataset(MRImageStorage, sop_uid, meta.study_uid, transfer_syntax)
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: descriptions may be in any language
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.Modality = meta.modality
    ds.PatientID = meta.patient_id
    ds.PatientName = meta.patient_id
    ds.StudyDate = meta.study_date
    ds.SeriesDate = meta.study_date
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.SeriesInstanceUID = meta.series_uid
    ds.SeriesNumber = meta.series_number
    if meta.series_description is not None:
        ds.SeriesDescription = meta.series_description
    if meta.protocol_name is not None:
        ds.ProtocolName = meta.protocol_name
    if meta.echo_time is not None:
        ds.EchoTime = _ds(meta.echo_time)
    if meta.repetition_time is not None:
        ds.RepetitionTime = _ds(meta.repetition_time)
    if meta.inversion_time is not None:
        ds.InversionTime = _ds(meta.inversion_time)
    ds.FrameOfReferenceUID = frame_of_reference_uid(meta.study_uid)
    ds.InstanceNumber = int(instance_number)
    ds.ImageOrientationPatient = [_ds(float(v)) for v in geometry.orientation]
    ds.ImagePositionPatient = [_ds(float(v)) for v in position]
    ds.SliceLocation = _ds(float(np.dot(position, geometry.normal)))
    ds.SliceThickness = _ds(geometry.slice_thickness)
    ds.PixelSpacing = [_ds(float(geometry.spacing[0])), _ds(float(geometry.spacing[1]))]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(frame.shape[0]), int(frame.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = meta.bits_stored
    ds.HighBit = meta.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope = _ds(meta.rescale_slope)
    ds.RescaleIntercept = _ds(meta.rescale_intercept)
    ds.RescaleType = "US"
    ds.PixelData = np.ascontiguousarray(frame, dtype="<u2").tobytes()
    return ds


def _position_rank(positions: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """(N,) rank of each slice along the normal (0 = smallest projection); stable for ties."""
    order = np.argsort(positions @ normal, kind="stable")
    rank = np.empty(len(order), dtype=int)
    rank[order] = np.arange(len(order))
    return rank


def write_series(
    out_dir: Path,
    pixels: np.ndarray,
    geometry: SeriesGeometry,
    meta: SeriesMeta,
    *,
    transfer_syntax: str = "explicit",
    instance_numbers: Sequence[int] | None = None,
    sop_instance_uids: Sequence[str] | None = None,
    file_names: Sequence[str] | None = None,
) -> list[tuple[Path, str]]:
    """Write one MR series, one file per slice. Long on purpose: the per-series checks and the per-slice dataset
    fields read best as one sequence of DICOM attributes.

    Args:
        out_dir: folder to write into (created if missing).
        pixels: (N, H, W) real values; stored value = round((value - intercept) / slope), clipped to the
            BitsStored range, uint16.
        geometry: orientation, (N, 3) positions in the order of ``pixels``, pixel spacing, thickness.
        meta: UIDs, description, timings and pixel encoding.
        transfer_syntax: one of ``TRANSFER_SYNTAXES`` that the installed encoders support (see module doc).
        instance_numbers: InstanceNumber per slice; default 1..N in position order along the normal.
        sop_instance_uids: SOPInstanceUID per slice; default freshly generated.
        file_names: file name per slice; default ``f"{series_number:03d}_{i:04d}.dcm"``.

    Returns:
        ``(path, SOPInstanceUID)`` per slice, in the order of ``pixels``.

    Raises:
        ValueError: inconsistent shapes/lengths or an unknown / unavailable transfer syntax.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 3:
        raise ValueError(f"series {meta.series_uid}: pixels must be (N, H, W), got shape {pixels.shape}")
    n = pixels.shape[0]
    positions = np.asarray(geometry.positions, dtype=float).reshape(-1, 3)
    if len(geometry.orientation) != 6:
        raise ValueError(f"series {meta.series_uid}: orientation needs 6 values, got {len(geometry.orientation)}")
    for name, seq in (("positions", positions), ("instance_numbers", instance_numbers),
                      ("sop_instance_uids", sop_instance_uids), ("file_names", file_names)):  # fmt: skip
        if seq is not None and len(seq) != n:
            raise ValueError(f"series {meta.series_uid}: {name} has {len(seq)} entries for {n} slices")
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"unknown transfer_syntax {transfer_syntax!r}; choose from {sorted(TRANSFER_SYNTAXES)}")

    stored = _stored_values(pixels, meta)
    if instance_numbers is None:
        instance_numbers = [int(r) + 1 for r in _position_rank(positions, geometry.normal)]
    if sop_instance_uids is None:
        sop_instance_uids = [generate_uid() for _ in range(n)]
    if file_names is None:
        file_names = [f"{meta.series_number:03d}_{i:04d}.dcm" for i in range(n)]

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base_syntax = ImplicitVRLittleEndian if transfer_syntax == "implicit" else ExplicitVRLittleEndian
    written: list[tuple[Path, str]] = []
    for i in range(n):
        ds = _image_dataset(
            stored[i], geometry, meta, positions[i], instance_numbers[i], sop_instance_uids[i], base_syntax
        )
        encode(ds, stored[i], transfer_syntax)
        path = out_dir / file_names[i]
        with atomic_output(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        written.append((path, str(sop_instance_uids[i])))
    return written
