"""Read the header of one DICOM file, up to the pixel geometry, and check its pixel data is all there.

The file is parsed only up to group 0028, by :mod:`spine_kp.io.fast_header` or, for what that does not handle,
pydicom ``read_partial``; of the pixel data only the element header (and, for compressed data, the item headers)
is read, which is enough to catch truncated files cheaply, and native pixel data of another length than
Rows x Columns x BitsAllocated (trailing zero padding aside). A path that is not a regular file (named pipe, device,
socket, looping or dangling link) is skipped from ``stat`` alone, never opened: a named pipe would wait forever.

Nothing here allocates beyond the header's promise: a deflated dataset is inflated with a cap
(:mod:`spine_kp.io.inflate`; one that inflates beyond Rows x Columns x BitsAllocated plus a margin is skipped as
"oversized"), compressed fragments may not total much more than that promise, and the first fragment's own frame
size (JPEG, JPEG-LS, JPEG 2000: :mod:`spine_kp.io.codestream`) must be Rows x Columns, since decoders allocate for it
(those pixel data checks: :mod:`spine_kp.io.pixel_data_check`).
"""

from __future__ import annotations

import functools
import math
import os
import stat
import warnings
from dataclasses import dataclass
from io import BytesIO
from typing import BinaryIO

from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset, read_partial
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from spine_kp.io.dicom_types import SkippedFile
from spine_kp.io.fast_header import WANTED, RawHeader, read_raw_header, walk_inflated
from spine_kp.io.inflate import HEADER_BYTES, body_start, inflate
from spine_kp.io.pixel_data_check import PixelPromise, pixel_problem

_TAGS = [Tag(k) for k in WANTED.values()]
# Far beyond any MR slice (8192 x 8192); a header claiming more is corrupt, and decoding it could exhaust memory.
MAX_PIXELS = 8192 * 8192
MAX_SIDE = 16384  # Rows or Columns beyond this are corrupt, whatever the other one is
BITS_ALLOCATED = frozenset({1, 8, 16, 32, 64})  # what DICOM allows and pydicom decodes
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # POSIX only; Windows has no named pipes in the file system


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


def _values(ds: Dataset) -> dict[str, list[str]]:
    """The wanted values of a pydicom dataset as text lists, like the fast walker gives them."""
    values: dict[str, list[str]] = {}
    for keyword in WANTED.values():
        value = ds.get(keyword)
        items = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
        text = ["" if v is None else str(v).strip() for v in items]
        if any(text):
            values[keyword] = text
    return values


def _read_with_pydicom(fh: BinaryIO) -> RawHeader:
    """The same values as the fast walker, read by pydicom (any syntax pydicom reads but deflated).

    Raises InvalidDicomError.
    """
    fh.seek(0)
    ds = read_partial(fh, _stop_after_group_0028, specific_tags=_TAGS)
    implicit, little = ds.original_encoding
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    return RawHeader(_values(ds), syntax, bool(implicit), fh.tell(), bool(little))


def _read_deflated(fh: BinaryIO, syntax: str, start: int) -> RawHeader:
    """The header of a deflated file, from the first :data:`HEADER_BYTES` inflated bytes of its dataset only.

    ``stop`` counts bytes of the inflated dataset; ``inflated_from`` is ``start`` (see :mod:`spine_kp.io.inflate`).
    """
    fh.seek(start)
    prefix, more = inflate(fh, HEADER_BYTES)
    raw = walk_inflated(prefix, not more, syntax, start)
    if raw is not None:
        return raw
    body = BytesIO(prefix)
    ds = read_dataset(body, False, True, stop_when=_stop_after_group_0028, specific_tags=_TAGS)
    return RawHeader(_values(ds), syntax, False, body.tell(), True, inflated_from=start)


@functools.lru_cache(maxsize=64)
def _syntax(uid: str) -> tuple[str, bool, bool]:
    """(name, encapsulated?, deflated?) of a transfer syntax UID; cached, pydicom's UID checks are slow."""
    syntax = UID(uid)
    return syntax.name, syntax.is_compressed, syntax == DeflatedExplicitVRLittleEndian


def _number(values: dict[str, list[str]], keyword: str) -> float | None:
    try:
        return float(values[keyword][0])
    except (KeyError, IndexError, ValueError):
        return None


def _int(values: dict[str, list[str]], keyword: str) -> int | None:
    value = _number(values, keyword)
    return None if value is None or not math.isfinite(value) else int(value)


def _floats(values: dict[str, list[str]], keyword: str, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in values[keyword])
    except (KeyError, ValueError):
        return None
    return out if len(out) == n and all(map(math.isfinite, out)) else None


def _to_header(path: str, raw: RawHeader, fh: BinaryIO, size: int) -> ImageHeader | SkippedFile:
    """An ImageHeader, or a SkippedFile saying why this is not a usable single-frame image."""
    v = raw.values
    missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID") if k not in v]
    if missing:
        return SkippedFile(path, f"incomplete header: no {', '.join(missing)} (truncated file?)")
    rows, cols = _int(v, "Rows"), _int(v, "Columns")
    if rows is None or cols is None:
        sop_class = UID(v.get("SOPClassUID", [""])[0])
        return SkippedFile(path, f"non-image object: {sop_class.name if sop_class else 'unknown SOP class'}")
    if not (1 <= rows <= MAX_SIDE and 1 <= cols <= MAX_SIDE and rows * cols <= MAX_PIXELS):
        return SkippedFile(path, f"corrupt: Rows x Columns {rows} x {cols} is not an image size")
    frames = _int(v, "NumberOfFrames") or 1
    if frames > 1:
        return SkippedFile(path, f"multi-frame: {frames} frames in one object (not supported yet)")
    samples = _int(v, "SamplesPerPixel") or 1
    if samples != 1:
        return SkippedFile(path, f"not greyscale: SamplesPerPixel {samples}")
    geometry = {k: _floats(v, k, n) for k, n in (("ImageOrientationPatient", 6), ("ImagePositionPatient", 3),
                                                 ("PixelSpacing", 2))}  # fmt: skip
    for keyword, value in geometry.items():
        if value is None:
            return SkippedFile(path, f"no geometry: {keyword} missing or malformed")
    bits = _int(v, "BitsAllocated") or 16
    if bits not in BITS_ALLOCATED:
        allowed = ", ".join(map(str, sorted(BITS_ALLOCATED)))
        return SkippedFile(path, f"corrupt: BitsAllocated {bits} is not one of {allowed}")
    name, compressed, _ = _syntax(raw.transfer_syntax)
    promise = PixelPromise(raw.transfer_syntax, rows, cols, samples, bits)
    problem = pixel_problem(fh, size, raw, None if compressed else promise.bytes, promise)
    if problem:
        return SkippedFile(path, problem)
    return ImageHeader(
        path=path,
        study_uid=v["StudyInstanceUID"][0],
        series_uid=v["SeriesInstanceUID"][0],
        sop_uid=v["SOPInstanceUID"][0],
        series_number=_int(v, "SeriesNumber"),
        instance_number=_int(v, "InstanceNumber"),
        description="\\".join(v.get("SeriesDescription", ())),
        protocol_name="\\".join(v.get("ProtocolName", ())),
        echo_time=_number(v, "EchoTime"),
        repetition_time=_number(v, "RepetitionTime"),
        inversion_time=_number(v, "InversionTime"),
        orientation=geometry["ImageOrientationPatient"],  # type: ignore[arg-type]
        position=geometry["ImagePositionPatient"],  # type: ignore[arg-type]
        spacing=geometry["PixelSpacing"],  # type: ignore[arg-type]
        rows=rows,
        cols=cols,
        localizer=any(t.upper() == "LOCALIZER" for t in v.get("ImageType", ())),
        transfer_syntax=name,
    )


_FILE_KINDS = ((stat.S_ISFIFO, "named pipe"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
               (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "folder"))  # fmt: skip


def _file_kind(mode: int) -> str:
    return next((name for test, name in _FILE_KINDS if test(mode)), f"file type {stat.S_IFMT(mode):o}")


def _not_a_regular_file(path: str) -> str | None:
    """Why ``path`` must not be opened (named pipe, device, socket, broken or looping link), or None.

    Checked with ``stat`` before anything opens the file: opening a named pipe waits for a writer forever, and a
    device may never end.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if os.path.islink(path):
            return f"broken link: {exc.strerror or exc} (symbolic link loop or missing target)"
        return f"unreadable: {type(exc).__name__}: {exc}"
    return None if stat.S_ISREG(mode) else f"not a regular file: {_file_kind(mode)}"


def read_header(path: str, fast: bool = True) -> ImageHeader | SkippedFile:
    """Read the header of one file: a usable single-frame image gives its header, anything else a SkippedFile.

    Never raises for a bad file (not DICOM, truncated, non-image, multi-frame, no geometry, unreadable), and never
    opens one that is not a regular file (named pipe, device, socket, symbolic link loop): those are skipped too.

    Args:
        path: any file.
        fast: try :mod:`spine_kp.io.fast_header` first (False: pydicom only; the tests compare both).
    """
    problem = _not_a_regular_file(path)
    if problem:
        return SkippedFile(path, problem)
    try:
        # O_NONBLOCK: should the path turn into a FIFO after the check above, opening it must not wait for a writer
        with os.fdopen(os.open(path, os.O_RDONLY | _NONBLOCK), "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                return SkippedFile(path, f"not a regular file: {_file_kind(st.st_mode)}")
            size = st.st_size
            raw = read_raw_header(fh) if fast else None
            if raw is None:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # pydicom warns on odd-but-readable values; we judge them
                        syntax, start = body_start(fh)  # the file meta only
                        # pydicom would inflate a deflated dataset whole, however large: it is read here, capped
                        deflated = _syntax(syntax)[2] if syntax else False
                        raw = _read_deflated(fh, syntax, start) if deflated else _read_with_pydicom(fh)
                except InvalidDicomError:
                    return SkippedFile(path, "not DICOM: no 'DICM' prefix / file meta information")
            return _to_header(path, raw, fh, size)
    # any Exception: pydicom's failures on damaged bytes are open-ended (its BytesLengthException is a bare
    # Exception), and one damaged file must never stop a scan
    except Exception as exc:  # noqa: BLE001
        return SkippedFile(path, f"unreadable: {type(exc).__name__}: {' '.join(str(exc).split())}")
