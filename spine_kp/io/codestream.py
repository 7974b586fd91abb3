"""The image size a compressed frame really holds, read from its own headers without decoding it.

A decoder allocates for the size its codestream declares, not for the DICOM header's Rows x Columns: a JPEG 2000
codestream of 40000 x 40000 in a file whose header says 64 x 64 would allocate gigabytes before anyone could
compare. And where the two disagree a fallback decoder may quietly return the first Rows x Columns pixels (half
an image, one row). So the frame's own size is read first and compared with the header:

* JPEG (baseline, extended, lossless) and JPEG-LS: the SOFn / SOF55 marker segment (height, width, components);
* JPEG 2000: the SIZ marker segment right after SOC (Xsiz - XOsiz, Ysiz - YOsiz, Csiz);
* RLE Lossless: each segment of the RLE header is run-length decoded in count only (PS3.5 annex G.3.1): every
  segment must give Rows x Columns bytes.
"""

from __future__ import annotations

import struct

from pydicom.uid import UID

# SOFn markers that carry a frame header (C4 DHT, C8 JPG and CC DAC are not frames); F7: JPEG-LS SOF55
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RSTn carry no length


def jpeg_shape(data: bytes) -> tuple[int, int, int] | None:
    """(rows, cols, components) of a JPEG or JPEG-LS codestream's frame header; None if not found in ``data``.

    A height of 0 (defined later by a DNL marker) also gives None: the size cannot be told from the header.
    """
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _SOF:
            if pos + 10 > len(data):
                return None
            rows, cols, components = struct.unpack_from(">HHB", data, pos + 5)
            return (rows, cols, components) if rows else None
        if marker == 0xDA:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def j2k_shape(data: bytes) -> tuple[int, int, int] | None:
    """(rows, cols, components) of a JPEG 2000 codestream's SIZ segment; None if ``data`` does not start with one."""
    if data[:4] != b"\xff\x4f\xff\x51" or len(data) < 42:
        return None
    xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">IIII", data, 8)
    (components,) = struct.unpack_from(">H", data, 40)
    return ysiz - yosiz, xsiz - xosiz, components


def _segment_length(data: bytes, start: int, end: int) -> int:
    """Bytes the PackBits segment ``data[start:end]`` decodes to, counted without decoding it."""
    pos, total = start, 0
    while pos < end:
        n = data[pos]
        # a run cut by the segment's end gives only what is there (an odd segment is padded with one byte)
        if n < 128:  # copy the next n + 1 bytes
            total += min(n + 1, end - pos - 1)
            pos += n + 2
        elif n > 128:  # repeat the next byte 257 - n times
            total += 257 - n if pos + 1 < end else 0
            pos += 2
        else:  # 128: no operation
            pos += 1
    return total


def rle_segment_lengths(frame: bytes) -> list[int]:
    """Bytes each segment of one RLE Lossless frame decodes to (the 64-byte RLE header, then the segments).

    Raises:
        ValueError: the RLE header is malformed (too short, more than 15 segments, offsets out of order).
    """
    if len(frame) < 64:
        raise ValueError(f"RLE frame of {len(frame)} bytes has no 64-byte RLE header")
    count, *offsets = struct.unpack_from("<16I", frame)
    if not 1 <= count <= 15:
        raise ValueError(f"RLE header names {count} segments (1 to 15 allowed)")
    bounds = [*offsets[:count], len(frame)]
    if bounds[0] != 64 or any(b > a for a, b in zip(bounds[1:], bounds)):
        raise ValueError(f"RLE segment offsets {offsets[:count]} are not increasing from 64 within the frame")
    return [_segment_length(frame, a, b) for a, b in zip(bounds, bounds[1:])]


def frame_shape(syntax: str, data: bytes) -> tuple[int, int, int] | None:
    """(rows, cols, components) declared by the start of a compressed frame of transfer syntax ``syntax``.

    None where this syntax or this codestream gives no size to compare (RLE: see :func:`rle_segment_lengths`).
    """
    name = UID(syntax).name  # e.g. "JPEG 2000 Image Compression (Lossless Only)", "JPEG-LS Lossless ..."
    if "JPEG 2000" in name:
        return j2k_shape(data)
    if "JPEG" in name:
        return jpeg_shape(data)  # a JPEG XL codestream does not start with SOI: None
    return None
