"""Inflate the dataset of a Deflated Explicit VR Little Endian file (1.2.840.10008.1.2.1.99) with a cap.

A deflated file is the one place where a few megabytes on disk can become gigabytes in memory (a slice of zeros
deflates about 1000 : 1), and pydicom inflates the whole body in one call before reading even the header. Here the
body is inflated as a stream (``zlib.decompressobj`` with ``max_length``), never past a limit: the header is read
from the first :data:`HEADER_BYTES` inflated bytes, and the whole body only up to what the header promises
(:func:`body_limit`: the header, Rows x Columns x SamplesPerPixel x BitsAllocated / 8 bytes of pixel data, and
:data:`MARGIN` for the other elements). A body that inflates beyond that lies about its size: the caller skips
the file. So reading one deflated file never holds more than the header's promise plus :data:`MARGIN`.
"""

from __future__ import annotations

import warnings
import zlib
from io import BytesIO
from typing import BinaryIO

from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.uid import DeflatedExplicitVRLittleEndian

from spine_kp.io.dicom_types import UnusableImage

HEADER_BYTES = 1 << 22  # inflated bytes searched for the header (groups <= 0028); real headers take a few KiB
MARGIN = 16 << 20  # inflated bytes allowed beyond header + pixel data (private blocks, overlays, padding)
_CHUNK = 1 << 16  # compressed bytes read per step
_PIXEL_DATA = 0x7FE00010


def _file_meta(fh: BinaryIO) -> tuple[bytes | None, FileMetaDataset, int]:
    fh.seek(0)
    preamble = read_preamble(fh, False)
    meta = _read_file_meta_info(fh)
    return preamble, meta, fh.tell()


def body_start(fh: BinaryIO) -> tuple[str, int]:
    """(TransferSyntaxUID, offset of the dataset after the file meta) of an open DICOM file, from its meta only.

    Raises:
        pydicom.errors.InvalidDicomError: no DICOM preamble or file meta.
    """
    _, meta, start = _file_meta(fh)
    return str(meta.get("TransferSyntaxUID", "")), start


def inflate(fh: BinaryIO, limit: int) -> tuple[bytes, bool]:
    """Inflate the raw deflate stream from ``fh``'s position, never holding more than ``limit`` + 1 bytes of it.

    Returns:
        (the first ``limit`` inflated bytes at most, whether the stream holds more than ``limit``). A stream cut
        short gives what it inflated so far; the DICOM parser then finds the dataset truncated.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, no zlib header (DICOM PS3.5 A.5)
    parts: list[bytes] = []
    total = 0
    while not inflater.eof:
        # unconsumed_tail: input held back by max_length; it is fed again before any new input is read
        data = inflater.unconsumed_tail or fh.read(_CHUNK)
        if not data:
            break
        out = inflater.decompress(data, limit + 1 - total)
        parts.append(out)
        total += len(out)
        if total > limit:
            return b"".join(parts)[:limit], True
    return b"".join(parts), False


def body_limit(header_bytes: int, pixel_bytes: int) -> int:
    """The most inflated bytes a body may hold: its header, the pixel data the header promises, and MARGIN."""
    return header_bytes + pixel_bytes + MARGIN


def oversized(limit: int, pixel_bytes: int) -> str:
    """The skip or failure reason of a body that inflates beyond ``limit``."""
    return (
        f"oversized: the deflated dataset inflates beyond {limit} bytes, where Rows x Columns x BitsAllocated "
        f"promises {pixel_bytes} bytes of pixel data (a decompression bomb, or a header that lies)"
    )


def _pixel_bytes(ds: Dataset) -> int:
    """What Rows x Columns x frames x SamplesPerPixel x BitsAllocated promises, in bytes (absent values: 0 or 1)."""
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.get("BitsAllocated", 16) or 16)
    return max(rows * cols * frames * samples * bits // 8, 0)


def read_deflated(path: str) -> FileDataset:
    """Read a whole deflated-syntax DICOM file (pixel data included) within its header's promise.

    Raises:
        UnusableImage: the body inflates beyond :func:`body_limit` (the file names itself).
        pydicom.errors.InvalidDicomError: not DICOM.
    """
    with open(path, "rb") as fh:
        preamble, meta, start = _file_meta(fh)
        if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
            raise ValueError(f"{path}: transfer syntax {meta.get('TransferSyntaxUID')} is not deflated")
        prefix, _ = inflate(fh, HEADER_BYTES)
        head_fh = BytesIO(prefix)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            head = read_dataset(head_fh, False, True, stop_when=lambda tag, vr, n: tag == _PIXEL_DATA)
        pixel_bytes = _pixel_bytes(head)
        limit = body_limit(head_fh.tell(), pixel_bytes)
        del prefix, head_fh
        fh.seek(start)
        body, more = inflate(fh, limit)
    if more:
        raise UnusableImage(f"{path}: {oversized(limit, pixel_bytes)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = read_dataset(BytesIO(body), False, True)
    return FileDataset(path, dataset, preamble=preamble, file_meta=meta, is_implicit_VR=False, is_little_endian=True)
