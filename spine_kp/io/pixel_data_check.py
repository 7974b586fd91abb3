"""Is the pixel data of one DICOM file all there, and the image its header describes? Checked from element and item
headers, before anything is decoded.

Native pixel data must hold Rows x Columns x BitsAllocated (trailing zero padding aside); compressed fragments may not
total much more than that promise, and the first fragment's own frame size (JPEG, JPEG-LS, JPEG 2000:
:mod:`spine_kp.io.codestream`) must be Rows x Columns, since decoders allocate for it. A deflated dataset is inflated
with a cap (:mod:`spine_kp.io.inflate`). Used by the scan's header reader, :mod:`spine_kp.io.header`; each check
returns the reason a file is skipped, or None.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from io import BytesIO
from typing import BinaryIO

from spine_kp.io.codestream import frame_shape
from spine_kp.io.fast_header import RawHeader
from spine_kp.io.inflate import body_limit, inflate, oversized

_PIXEL_DATA = (0x7FE0, 0x0010)
# Compressed pixel data may exceed the uncompressed size a little (lossless coding of noise, codec headers), never
# this much: beyond it, the fragments are not the image the header describes.
_COMPRESSED_SLACK = 2, 1 << 20  # factor on Rows x Columns x BitsAllocated, plus bytes
_FRAME_HEAD = 1 << 16  # bytes of the first fragment searched for the codestream's own frame size
_MAX_PADDING = 1 << 16  # zero bytes accepted after native pixel data (see _excess_problem)
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT"}


def _excess_problem(fh: BinaryIO, start: int, excess: int, native_bytes: int) -> str | None:
    """Native pixel data longer than Rows x Columns x BitsAllocated: zero padding is fine, anything else is not.

    Some writers pad the pixel data with zeros (pydicom's ``MR_small_padded.dcm``); pydicom decodes the first
    Rows x Columns values of any longer buffer, so data past them means Rows, Columns or BitsAllocated is wrong and
    the decoded image would be a wrong one without a word.
    """
    if excess <= _MAX_PADDING:
        fh.seek(start)
        if not fh.read(excess).strip(b"\x00"):
            return None
    return (
        f"corrupt: pixel data holds {native_bytes + excess} bytes, Rows x Columns x BitsAllocated needs "
        f"{native_bytes} (the rest is not zero padding)"
    )


@dataclass(frozen=True)
class PixelPromise:
    """What the header says the pixel data holds: one frame of rows x cols x samples values of ``bits`` bits."""

    syntax: str
    rows: int
    cols: int
    samples: int
    bits: int

    @property
    def bytes(self) -> int:
        return (self.rows * self.cols * self.samples * self.bits + 7) // 8


def _frame_problem(fh: BinaryIO, at: int, length: int, promise: PixelPromise) -> str | None:
    """The size the first compressed fragment's own codestream declares, against Rows x Columns x SamplesPerPixel.

    A decoder allocates for the codestream's size, so a codestream larger than the header is a memory bomb and a
    smaller or other one decodes to an image the header does not describe (see :mod:`spine_kp.io.codestream`).
    """
    fh.seek(at)
    shape = frame_shape(promise.syntax, fh.read(min(length, _FRAME_HEAD)))
    if shape is None or shape == (promise.rows, promise.cols, promise.samples):
        return None
    rows, cols, components = shape
    return (
        f"corrupt: the compressed frame is {rows} x {cols} pixels x {components} component(s), where Rows x Columns "
        f"x SamplesPerPixel is {promise.rows} x {promise.cols} x {promise.samples}"
    )


def _pixel_data_problem(
    fh: BinaryIO, size: int, little: bool, implicit: bool, native_bytes: int | None, promise: PixelPromise | None = None
) -> str | None:
    """Check, from its element header, that the pixel data is wholly in the file. ``fh`` is where parsing stopped.

    ``native_bytes`` is the size uncompressed pixel data must have (None for encapsulated syntaxes). For
    encapsulated data, ``promise`` bounds the fragments' total size and gives the size the first fragment's
    codestream must declare.
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
            return f"corrupt: pixel data holds {length} bytes, Rows x Columns x BitsAllocated needs {native_bytes}"
        if value_start + length > size:
            return f"truncated: pixel data needs {length} bytes, file holds {size - value_start}"
        if native_bytes is not None and length > native_bytes:
            return _excess_problem(fh, value_start + native_bytes, length - native_bytes, native_bytes)
        return None
    # encapsulated: hop over the items (offset table, fragments) to the sequence delimiter
    pos, items, fragment_bytes = value_start, 0, 0
    most = None if promise is None else _COMPRESSED_SLACK[0] * promise.bytes + _COMPRESSED_SLACK[1]
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
        if pos + 8 + item_len > size:
            return f"truncated: a compressed fragment runs past the end of the file ({size} bytes)"
        items += 1
        if items > 1 and promise is not None:  # item 1 is the basic offset table, then come the fragments
            fragment_bytes += item_len
            if most is not None and fragment_bytes > most:
                return (
                    f"corrupt: compressed pixel data holds more than {most} bytes, for {promise.bytes} bytes of "
                    "Rows x Columns x BitsAllocated"
                )
            problem = _frame_problem(fh, pos + 8, item_len, promise) if items == 2 else None
            if problem:
                return problem
        pos += 8 + item_len


def pixel_problem(fh: BinaryIO, size: int, raw: RawHeader, native: int | None, promise: PixelPromise) -> str | None:
    """:func:`_pixel_data_problem` of the file, or of its inflated dataset for a deflated file.

    A deflated dataset is inflated once more, now up to the header's promise plus a margin only
    (:func:`spine_kp.io.inflate.body_limit`); one that inflates beyond that is a decompression bomb or lies.
    """
    if raw.inflated_from is None:
        fh.seek(raw.stop)
        return _pixel_data_problem(fh, size, raw.little_endian, raw.implicit, native, promise)
    limit = body_limit(raw.stop, promise.bytes)
    fh.seek(raw.inflated_from)
    body, more = inflate(fh, limit)
    if more:
        return oversized(limit, promise.bytes)
    inflated = BytesIO(body)
    inflated.seek(raw.stop)
    return _pixel_data_problem(inflated, len(body), True, False, native, promise)


__all__ = ["PixelPromise", "pixel_problem"]
