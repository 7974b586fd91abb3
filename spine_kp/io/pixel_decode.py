"""One DICOM file -> its pixels as real values (float32, rescale applied), decoded within its header's promise.

pydicom decodes (with the pylibjpeg plugins for JPEG, JPEG-LS, JPEG 2000 and RLE); SimpleITK (GDCM) is the fallback.
Memory: decoding one file never allocates much more than its header's Rows x Columns x BitsAllocated promise
(deflated files are inflated with a cap, :mod:`spine_kp.io.inflate`; RLE segments are counted before decoding;
compressed frames are sized from their own headers by the scan, :mod:`spine_kp.io.codestream`). The checks of what
comes out (spacing, size, value range) are :mod:`spine_kp.io.dicom`'s.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spine_kp.io.codestream import rle_segment_lengths
from spine_kp.io.dicom_types import IngestError, UnusableImage
from spine_kp.io.inflate import read_deflated

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_RESCALE_SLOPE, _RESCALE_INTERCEPT = 0x00281053, 0x00281052


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (decoders put tracebacks and plugin lists in theirs)."""
    return " ".join(str(exc).split()) or type(exc).__name__


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


__all__ = ["decode_pixels"]
