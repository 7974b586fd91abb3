"""Read the header of one DICOM file, up to the pixel geometry, and check its pixel data is all there.

The file is parsed only up to group 0028 (pydicom ``read_partial``); of the pixel data only the element header
(and, for compressed data, the item headers) is read, which is enough to catch truncated files cheaply.
"""

from __future__ import annotations

import os
import struct
import warnings
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from pydicom.dataset import FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from spine_kp.io.dicom_types import SkippedFile

_KEYWORDS = (
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "InstanceNumber",
    "Modality", "ImageType", "SeriesDescription", "ProtocolName", "EchoTime", "RepetitionTime", "InversionTime",
    "ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "Rows", "Columns", "NumberOfFrames",
    "SamplesPerPixel", "BitsAllocated",
)  # fmt: skip
_TAGS = [Tag(k) for k in _KEYWORDS]
_PIXEL_DATA = (0x7FE0, 0x0010)
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT"}


@dataclass(frozen=True)
class ImageHeader:
    """What the scan keeps of one single-frame image file (patient frame, mm)."""

    path: str
    study_uid: str
    series_uid: str
    sop_uid: str
    series_number: int | None
    instance_number: int | None
    description: str
    protocol_name: str
    echo_time: float | None
    repetition_time: float | None
    inversion_time: float | None
    orientation: tuple[float, ...]
    position: tuple[float, float, float]
    spacing: tuple[float, float]
    rows: int
    cols: int
    localizer: bool
    transfer_syntax: str


def _stop_after_group_0028(tag: BaseTag, vr: str | None, length: int) -> bool:
    # Everything the scan needs lives in groups <= 0028; stopping there also skips large private blocks.
    return tag.group > 0x0028


def _number(ds: object, keyword: str) -> float | None:
    value = getattr(ds, keyword, None)
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _floats(ds: object, keyword: str, n: int) -> tuple[float, ...] | None:
    value = getattr(ds, keyword, None)
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _pixel_data_problem(fh: BinaryIO, size: int, little: bool, implicit: bool, native_bytes: int | None) -> str | None:
    """Check, from its element header, that the pixel data is wholly in the file. ``fh`` is where parsing stopped.

    ``native_bytes`` is the size uncompressed pixel data must have (None for encapsulated syntaxes).
    """
    start = fh.tell()
    head = fh.read(8)
    if len(head) < 8:
        return f"truncated: file ends at byte {size}, before the pixel data"
    end = "<" if little else ">"
    if struct.unpack(end + "HH", head[:4]) != _PIXEL_DATA:
        # other elements lie between the header and the pixels: only a lower bound on the size can be checked
        if native_bytes is not None and size < start + native_bytes:
            return f"truncated: {size - start} bytes left for {native_bytes} bytes of pixel data"
        return None
    if implicit:
        (length,), value_start = struct.unpack(end + "I", head[4:8]), start + 8
    elif head[4:6] in _LONG_VRS:
        (length,), value_start = struct.unpack(end + "I", fh.read(4)), start + 12
    else:
        (length,), value_start = struct.unpack(end + "H", head[6:8]), start + 8
    if length != 0xFFFFFFFF:
        if native_bytes is not None and length < native_bytes:
            return f"corrupt: pixel data holds {length} bytes, Rows x Columns x frames needs {native_bytes}"
        if value_start + length > size:
            return f"truncated: pixel data needs {length} bytes, file holds {size - value_start}"
        return None
    # encapsulated: hop over the items (offset table, fragments) to the sequence delimiter
    pos = value_start
    while True:
        fh.seek(pos)
        item = fh.read(8)
        if len(item) < 8:
            return f"truncated: compressed pixel data ends at byte {size} without its delimiter"
        group, element, item_len = struct.unpack("<HHI", item)
        if (group, element) == (0xFFFE, 0xE0DD):
            return None
        if (group, element) != (0xFFFE, 0xE000):
            return f"corrupt: unexpected tag ({group:04X},{element:04X}) in compressed pixel data at byte {pos}"
        pos += 8 + item_len
        if pos > size:
            return f"truncated: a compressed fragment runs past the end of the file ({size} bytes)"


def _int(ds: object, keyword: str) -> int | None:
    value = _number(ds, keyword)
    return None if value is None else int(value)


def _unusable(ds: FileDataset, fh: BinaryIO, size: int) -> str | None:
    """Why a parsed header is not a usable single-frame image ("category: detail"), or None."""
    missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID") if not ds.get(k)]
    if missing:
        return f"incomplete header: no {', '.join(missing)} (truncated file?)"
    if "Rows" not in ds or "Columns" not in ds:
        sop_class = UID(str(ds.get("SOPClassUID", "")))
        return f"non-image object: {sop_class.name if sop_class else 'unknown SOP class'}"
    frames = _int(ds, "NumberOfFrames") or 1
    if frames > 1:
        return f"multi-frame: {frames} frames in one object (not supported yet)"
    if (_int(ds, "SamplesPerPixel") or 1) != 1:
        return f"not greyscale: SamplesPerPixel {ds.SamplesPerPixel}"
    for keyword, n in (("ImageOrientationPatient", 6), ("ImagePositionPatient", 3), ("PixelSpacing", 2)):
        if _floats(ds, keyword, n) is None:
            return f"no geometry: {keyword} missing or malformed"
    syntax = ds.file_meta.TransferSyntaxUID
    if syntax == DeflatedExplicitVRLittleEndian:  # a deflated body has no byte offsets to check
        return None
    implicit, little = ds.original_encoding
    native = None if syntax.is_compressed else int(ds.Rows) * int(ds.Columns) * (_int(ds, "BitsAllocated") or 16) // 8
    return _pixel_data_problem(fh, size, bool(little), bool(implicit), native)


def read_header(path: str) -> ImageHeader | SkippedFile:
    """Read the header of one file: a usable single-frame image gives its header, anything else a SkippedFile.

    Never raises for a bad file (not DICOM, truncated, non-image, multi-frame, no geometry, unreadable).
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns on odd-but-readable values; _unusable decides
            try:
                ds = read_partial(fh, _stop_after_group_0028, specific_tags=_TAGS)
            except InvalidDicomError:
                return SkippedFile(path, "not DICOM: no 'DICM' prefix / file meta information")
            reason = _unusable(ds, fh, size)
        if reason:
            return SkippedFile(path, reason)
        image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
        return ImageHeader(
            path=path,
            study_uid=str(ds.StudyInstanceUID),
            series_uid=str(ds.SeriesInstanceUID),
            sop_uid=str(ds.SOPInstanceUID),
            series_number=_int(ds, "SeriesNumber"),
            instance_number=_int(ds, "InstanceNumber"),
            description=str(ds.get("SeriesDescription", "") or "").strip(),
            protocol_name=str(ds.get("ProtocolName", "") or "").strip(),
            echo_time=_number(ds, "EchoTime"),
            repetition_time=_number(ds, "RepetitionTime"),
            inversion_time=_number(ds, "InversionTime"),
            orientation=_floats(ds, "ImageOrientationPatient", 6),  # type: ignore[arg-type]
            position=_floats(ds, "ImagePositionPatient", 3),  # type: ignore[arg-type]
            spacing=_floats(ds, "PixelSpacing", 2),  # type: ignore[arg-type]
            rows=int(ds.Rows),
            cols=int(ds.Columns),
            localizer="LOCALIZER" in image_type,
            transfer_syntax=ds.file_meta.TransferSyntaxUID.name,
        )
    except (OSError, EOFError, ValueError, struct.error, KeyError, AttributeError, TypeError) as exc:
        return SkippedFile(path, f"unreadable: {type(exc).__name__}: {exc}")
