"""Compress a freshly built uncompressed image dataset into a named transfer syntax (for the DICOM writer).

Transfer syntaxes written (with the pydicom 3 / pylibjpeg / SimpleITK stack this project installs):
    * ``"explicit"`` / ``"implicit"``: uncompressed little endian;
    * ``"rle"``: RLE Lossless (pydicom's native encoder);
    * ``"jpeg2000"``: JPEG 2000 lossless (pydicom via pylibjpeg-openjpeg; frames under 32 pixels a side via
      SimpleITK's GDCM writer, which still fails on tiny frames such as 4 x 4);
    * ``"jpeg_lossless"``: JPEG Lossless process 14 SV1 (pydicom has no encoder; the codestream is produced by
      SimpleITK's GDCM writer and moved into our dataset);
    * ``"jpegls"``: only when pydicom finds pyjpegls (not a project dependency), otherwise ``ValueError``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

# name accepted by write_series -> transfer syntax UID
TRANSFER_SYNTAXES: dict[str, UID] = {
    "explicit": ExplicitVRLittleEndian,
    "implicit": ImplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg2000": JPEG2000Lossless,
    "jpeg_lossless": JPEGLosslessSV1,
    "jpegls": JPEGLSLossless,
}


def encodable_transfer_syntaxes() -> list[str]:
    """Names accepted by :func:`write_series` that the installed encoders can write."""
    from pydicom.pixels.encoders import JPEGLSLosslessEncoder

    names = ["explicit", "implicit", "rle", "jpeg2000", "jpeg_lossless"]
    if JPEGLSLosslessEncoder.is_available:
        names.append("jpegls")
    return names


def _gdcm_pixel_data(frame: np.ndarray, compressor: str, expected: UID) -> bytes:
    """Encapsulated pixel data for an (H, W) uint16 frame, encoded by SimpleITK's GDCM writer."""
    import pydicom
    import SimpleITK as sitk

    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")
    writer.SetUseCompression(True)
    writer.SetCompressor(compressor)
    with tempfile.TemporaryDirectory(prefix="spine_kp_gdcm_") as tmp:
        path = Path(tmp) / "frame.dcm"
        writer.SetFileName(str(path))
        writer.Execute(sitk.GetImageFromArray(np.ascontiguousarray(frame, dtype=np.uint16)))
        encoded = pydicom.dcmread(path)
    if encoded.file_meta.TransferSyntaxUID != expected:
        raise RuntimeError(f"SimpleITK wrote {encoded.file_meta.TransferSyntaxUID.name}, not {expected.name}")
    return bytes(encoded.PixelData)


def encode(ds: Dataset, frame: np.ndarray, kind: str) -> None:
    """Compress ``ds`` in place to the transfer syntax named ``kind``; ``frame`` is its (H, W) uint16 pixels."""
    uid = TRANSFER_SYNTAXES[kind]
    if kind in ("explicit", "implicit"):
        return
    # GDCM's "JPEG" is lossless process 14 SV1 (pydicom has no encoder for it); pylibjpeg-openjpeg always uses 6
    # wavelet resolutions and so cannot encode a frame under 32 pixels a side, which GDCM can.
    gdcm = {"jpeg_lossless": "JPEG"}
    if min(frame.shape) < 32:
        gdcm["jpeg2000"] = "JPEG2000"
    if kind in gdcm:
        ds.PixelData = _gdcm_pixel_data(frame, gdcm[kind], uid)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.file_meta.TransferSyntaxUID = uid
        return
    if kind == "jpegls" and kind not in encodable_transfer_syntaxes():
        raise ValueError("transfer_syntax 'jpegls' needs pyjpegls, which is not installed")
    # keep the caller's SOPInstanceUID: pydicom would otherwise mint a new one for the lossless re-encode
    ds.compress(uid, arr=frame, generate_instance_uid=False)
