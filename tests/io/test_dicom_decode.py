"""decode_pixels on pydicom's bundled MR test files: every lossless syntax must equal the uncompressed original."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels.decoders import JPEGLSLosslessDecoder

import spine_kp.io.pixel_decode as pixel_decode
from spine_kp.io.dicom import IngestError
from spine_kp.io.pixel_decode import decode_pixels
from spine_kp.io.scan import scan

# the same 64 x 64 MR image stored in different transfer syntaxes (all bundled with pydicom, no download)
LOSSLESS = [
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_padded.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
]


def _bundled(name: str) -> str:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name} is not bundled with this pydicom"
    return str(path)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return pydicom.dcmread(_bundled("MR_small.dcm")).pixel_array.astype(np.float32)  # (64, 64), no rescale tags


@pytest.mark.parametrize("name", LOSSLESS)
def test_lossless_syntaxes_decode_exactly(name: str, reference: np.ndarray) -> None:
    pixels = decode_pixels(_bundled(name))
    assert pixels.dtype == np.float32 and pixels.shape == (64, 64)
    np.testing.assert_array_equal(pixels, reference)


@pytest.mark.parametrize("name", ["MR_small.dcm", *LOSSLESS])
def test_simpleitk_fallback_decodes_exactly(name: str, reference: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: str) -> np.ndarray:
        raise RuntimeError("no pixel data handler")

    monkeypatch.setattr(pixel_decode, "_decode_pydicom", broken)
    np.testing.assert_array_equal(decode_pixels(_bundled(name)), reference)


def test_jpeg_ls_without_a_pydicom_plugin_falls_back(reference: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    # as if pylibjpeg-libjpeg (or pyjpegls) were missing: pydicom has no JPEG-LS decoder
    monkeypatch.setattr(JPEGLSLosslessDecoder, "_available", {})
    ds = pydicom.dcmread(_bundled("MR_small_jpeg_ls_lossless.dcm"))
    with pytest.raises(RuntimeError):
        ds.pixel_array  # noqa: B018 - the access itself is the check
    np.testing.assert_array_equal(decode_pixels(_bundled("MR_small_jpeg_ls_lossless.dcm")), reference)


def test_truncated_file_fails_with_its_name() -> None:
    path = _bundled("MR_truncated.dcm")
    with pytest.raises(IngestError, match="MR_truncated.dcm: cannot decode pixels"):
        decode_pixels(path)


def test_scan_reads_every_bundled_syntax(tmp_path: Path) -> None:
    # each copy gets its own folder: they share UIDs, so one study each would be a duplicate of the other
    for name in ["MR_small.dcm", *LOSSLESS, "MR_truncated.dcm"]:
        (tmp_path / name).mkdir()
        shutil.copy(_bundled(name), tmp_path / name / "image")
    result = scan(tmp_path)
    assert [Path(s.path).parent.name for s in result.skipped if s.category == "duplicate"] == sorted(LOSSLESS)
    assert [(Path(s.path).parent.name, s.category) for s in result.skipped if s.category != "duplicate"] == [
        ("MR_truncated.dcm", "truncated")
    ]
    (study,) = result.studies.values()
    (series,) = study.series
    assert (series.rows, series.cols, series.num_slices, series.plane) == (64, 64, 1, "axial")
