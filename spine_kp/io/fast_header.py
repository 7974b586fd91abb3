"""A minimal, fast reader for the few top-level header elements the scan needs.

Why not pydicom for this: building a pydicom Dataset costs about as much as decoding an uncompressed slice, so a
scan of every file through pydicom can never be much faster than reading every slice. This walker only hops
over element headers (groups 0002 to 0028, little endian, explicit or implicit VR, nested sequences of defined
or undefined length) and keeps the raw bytes of the wanted tags; text is decoded with pydicom's own character
set handling. Anything it does not handle (no preamble, big endian, deflate, malformed structure) returns None,
and the caller reads the file with pydicom instead. Tests check both readers agree on every syntax.
"""

from __future__ import annotations

import dataclasses
import functools
import struct
from dataclasses import dataclass
from typing import BinaryIO

from pydicom.charset import convert_encodings, decode_bytes

# (group << 16 | element) -> keyword, top level only
WANTED: dict[int, str] = {
    0x00080008: "ImageType", 0x00080016: "SOPClassUID", 0x00080018: "SOPInstanceUID", 0x00080060: "Modality",
    0x0008103E: "SeriesDescription", 0x00180080: "RepetitionTime", 0x00180081: "EchoTime",
    0x00180082: "InversionTime", 0x00181030: "ProtocolName", 0x0020000D: "StudyInstanceUID",
    0x0020000E: "SeriesInstanceUID", 0x00200011: "SeriesNumber", 0x00200013: "InstanceNumber",
    0x00200032: "ImagePositionPatient", 0x00200037: "ImageOrientationPatient", 0x00280002: "SamplesPerPixel",
    0x00280008: "NumberOfFrames", 0x00280010: "Rows", 0x00280011: "Columns", 0x00280030: "PixelSpacing",
    0x00280100: "BitsAllocated",
}  # fmt: skip
_UNSIGNED_SHORT = {"Rows", "Columns", "SamplesPerPixel", "BitsAllocated"}
_FREE_TEXT = {"SeriesDescription", "ProtocolName"}  # may be in any character set
_LONG_VRS = frozenset({b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT"})
_SHORT_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH", b"SL", b"SS",
     b"ST", b"SV", b"TM", b"UI", b"UL", b"US", b"UV"}
)  # fmt: skip
_IMPLICIT_LE = "1.2.840.10008.1.2"
_NOT_HANDLED = {"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}  # big endian, deflated
_UNDEFINED = 0xFFFFFFFF
_CHUNK = 16384
_U16, _U32 = struct.Struct("<H"), struct.Struct("<I")
_EXPLICIT, _IMPLICIT = struct.Struct("<HH2sH"), struct.Struct("<HHI")
_MAX_READ = 1 << 22


class _NeedMore(Exception):
    """The buffer ends inside the header: read more of the file and walk again."""


class _Unhandled(Exception):
    """Structure this walker does not follow: let pydicom read the file."""


@dataclass(frozen=True)
class RawHeader:
    """Wanted header values as text lists (multi-values split on backslash) and where the walk stopped.

    ``stop`` is the file offset of the first element after group 0028 (the pixel data in most files), or the file
    size when the dataset ended first. For a deflated file, ``inflated_from`` is the file offset where its deflated
    dataset starts, and ``stop`` counts bytes of the inflated dataset (:mod:`spine_kp.io.inflate`).
    """

    values: dict[str, list[str]]
    transfer_syntax: str
    implicit: bool
    stop: int
    little_endian: bool = True
    inflated_from: int | None = None


def _element_header(buf: bytes, pos: int, implicit: bool) -> tuple[bytes, int, int]:
    """(VR, value length, value offset) of the element at ``pos``; VR is b"" in implicit VR."""
    if pos + 8 > len(buf):
        raise _NeedMore
    if implicit:
        return b"", struct.unpack_from("<I", buf, pos + 4)[0], pos + 8
    vr = buf[pos + 4 : pos + 6]
    if vr in _LONG_VRS:
        if pos + 12 > len(buf):
            raise _NeedMore
        return vr, struct.unpack_from("<I", buf, pos + 8)[0], pos + 12
    if vr not in _SHORT_VRS:
        raise _Unhandled
    return vr, struct.unpack_from("<H", buf, pos + 6)[0], pos + 8


def _skip_sequence(buf: bytes, pos: int, implicit: bool) -> int:
    """Offset just after an undefined-length sequence whose first item starts at ``pos``."""
    while True:
        if pos + 8 > len(buf):
            raise _NeedMore
        group, element, length = struct.unpack_from("<HHI", buf, pos)
        pos += 8
        if (group, element) == (0xFFFE, 0xE0DD):  # sequence delimiter
            return pos
        if (group, element) != (0xFFFE, 0xE000):
            raise _Unhandled
        if length != _UNDEFINED:
            pos += length
            continue
        while True:  # undefined-length item: its elements, up to the item delimiter
            if pos + 8 > len(buf):
                raise _NeedMore
            if struct.unpack_from("<HH", buf, pos) == (0xFFFE, 0xE00D):
                pos += 8
                break
            vr, length, value = _element_header(buf, pos, implicit)
            # an undefined-length UN holds implicit VR data (DICOM PS3.5 6.2.2)
            pos = _skip_sequence(buf, value, implicit or vr == b"UN") if length == _UNDEFINED else value + length


def _walk(buf: bytes, at_eof: bool) -> RawHeader | None:
    if len(buf) < 132 or buf[128:132] != b"DICM":
        return None
    pos, syntax = 132, None
    while pos + 8 <= len(buf) and struct.unpack_from("<H", buf, pos)[0] == 0x0002:  # file meta: explicit VR LE
        _, length, value = _element_header(buf, pos, False)
        if struct.unpack_from("<H", buf, pos + 2)[0] == 0x0010:
            syntax = buf[value : value + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos = value + length
    if syntax is None or syntax in _NOT_HANDLED:
        return None
    return _walk_dataset(buf, pos, syntax, at_eof)


def _walk_dataset(buf: bytes, pos: int, syntax: str, at_eof: bool) -> RawHeader:
    """Walk the dataset from ``pos`` (after the file meta) up to the first element after group 0028."""
    implicit = syntax == _IMPLICIT_LE
    raw: dict[str, bytes] = {}
    charset = b""
    n = len(buf)
    # the hot loop of the whole scan: one struct call per element header, globals bound to locals
    unpack = (_IMPLICIT if implicit else _EXPLICIT).unpack_from
    unpack_u32, long_vrs, short_vrs, wanted = _U32.unpack_from, _LONG_VRS, _SHORT_VRS, WANTED.get
    while True:
        if pos + 12 > n:
            if pos + 8 > n and at_eof:
                break  # the dataset ended (or the file was cut) before any pixel data
            if not at_eof:
                raise _NeedMore
        if implicit:
            group, element, length = unpack(buf, pos)
            vr, value = b"", pos + 8
        else:
            group, element, vr, length = unpack(buf, pos)
            value = pos + 8
            if vr in long_vrs:
                length, value = unpack_u32(buf, value)[0], pos + 12
            elif vr not in short_vrs:
                raise _Unhandled
        if group > 0x0028:
            break
        if length == _UNDEFINED:
            pos = _skip_sequence(buf, value, implicit or vr == b"UN")
            continue
        pos = value + length
        if pos > n and not at_eof:
            raise _NeedMore
        keyword = wanted(group << 16 | element)
        if keyword is not None:
            raw[keyword] = buf[value:pos]
        elif group == 0x0008 and element == 0x0005:
            charset = buf[value:pos]
    return RawHeader(_decode(raw, charset), syntax, implicit, min(pos, n))


@functools.lru_cache(maxsize=64)
def _encodings(charset: bytes) -> tuple[str, ...]:
    """Python codecs for a SpecificCharacterSet value (pydicom's mapping)."""
    return tuple(convert_encodings([c.strip() for c in charset.decode("ascii", "replace").split("\\")]))


def _decode(raw: dict[str, bytes], charset: bytes) -> dict[str, list[str]]:
    """Raw values -> lists of text (US as decimal text), like pydicom would give them."""
    out: dict[str, list[str]] = {}
    for keyword, data in raw.items():
        if keyword in _UNSIGNED_SHORT:
            if len(data) >= 2:
                out[keyword] = [str(_U16.unpack_from(data)[0])]
        elif data.isascii() or keyword not in _FREE_TEXT:
            text = data.decode("ascii", "replace").strip(" \x00")
            values = [v.strip(" \x00") for v in text.split("\\")] if "\\" in text else [text]
            if any(values):
                out[keyword] = values
        else:
            values = [v.strip(" \x00") for v in decode_bytes(data, list(_encodings(charset)), {0x5C}).split("\\")]
            if any(values):
                out[keyword] = values
    return out


def read_raw_header(fh: BinaryIO) -> RawHeader | None:
    """Walk the header of an open DICOM file; None when pydicom should read it instead.

    Args:
        fh: binary file positioned at its start.
    """
    size = _CHUNK
    while True:
        fh.seek(0)
        buf = fh.read(size)
        try:
            return _walk(buf, at_eof=len(buf) < size)
        except _NeedMore:
            if size >= _MAX_READ:
                return None
            size *= 4
        except (_Unhandled, struct.error, UnicodeDecodeError, LookupError):
            return None


def walk_inflated(buf: bytes, at_eof: bool, syntax: str, inflated_from: int) -> RawHeader | None:
    """Walk the start of an inflated dataset (explicit VR little endian, no file meta); None when pydicom should.

    Args:
        buf: the first inflated bytes of the dataset.
        at_eof: ``buf`` holds the whole dataset.
        syntax: the file's transfer syntax UID (kept in the result).
        inflated_from: file offset of the deflated dataset.
    """
    try:
        raw = _walk_dataset(buf, 0, syntax, at_eof)
    except (_NeedMore, _Unhandled, struct.error, UnicodeDecodeError, LookupError):
        return None
    return dataclasses.replace(raw, inflated_from=inflated_from)
