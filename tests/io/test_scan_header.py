"""The fast header walker must agree with pydicom on every file, and hand the odd ones over to pydicom."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_studies import SAG
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from spine_kp.io.fast_header import read_raw_header
from spine_kp.io.header import ImageHeader, read_header
from spine_kp.synth.dicom_write import SeriesGeometry, SeriesMeta, encodable_transfer_syntaxes, write_series


def _one_file(tmp_path: Path, syntax: str = "explicit", description: str | None = "T2_TSE_SAG") -> Path:
    meta = SeriesMeta("1.2.3", "1.2.3.4", 7, description, "prot", 101.5, 3210.0, inversion_time=None)
    geometry = SeriesGeometry(SAG, np.array([[1.5, -2.25, 3.0]]), (0.4, 0.45), 3.0)
    return write_series(tmp_path, np.zeros((1, 40, 36)), geometry, meta, transfer_syntax=syntax)[0][0]


def _both(path: Path) -> ImageHeader:
    fast, slow = read_header(str(path)), read_header(str(path), fast=False)
    assert fast == slow
    assert isinstance(fast, ImageHeader), fast
    return fast


@pytest.mark.parametrize("syntax", encodable_transfer_syntaxes())
def test_agrees_with_pydicom_on_every_written_syntax(tmp_path: Path, syntax: str) -> None:
    path = _one_file(tmp_path, syntax)
    with open(path, "rb") as fh:
        assert read_raw_header(fh) is not None  # handled by the fast walker, not passed on
    h = _both(path)
    assert (h.study_uid, h.series_uid, h.series_number, h.instance_number) == ("1.2.3", "1.2.3.4", 7, 1)
    assert (h.description, h.protocol_name, h.echo_time, h.repetition_time) == ("T2_TSE_SAG", "prot", 101.5, 3210.0)
    assert h.orientation == SAG and h.position == (1.5, -2.25, 3.0) and h.spacing == (0.4, 0.45)
    assert (h.rows, h.cols, h.inversion_time, h.localizer) == (40, 36, None, False)
    assert h.transfer_syntax == pydicom.dcmread(path).file_meta.TransferSyntaxUID.name


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_RLE.dcm", "MR_small_padded.dcm",
                                  "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"])  # fmt: skip
def test_agrees_with_pydicom_on_bundled_files(name: str) -> None:
    h = _both(Path(get_testdata_file(name, download=False)))
    assert (h.rows, h.cols) == (64, 64)


def test_big_endian_goes_to_pydicom(tmp_path: Path) -> None:
    path = Path(get_testdata_file("MR_small_bigendian.dcm", download=False))
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    with open(path, "rb") as fh:
        assert read_raw_header(fh) is None
    assert _both(path).rows == 64


@pytest.mark.parametrize("implicit", [False, True])
def test_sequences_private_tags_and_big_headers(tmp_path: Path, implicit: bool) -> None:
    path = _one_file(tmp_path)
    ds = pydicom.dcmread(path)
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = "9.9.9"
    inner.ImagePositionPatient = [9, 9, 9]  # nested: must not override the top-level value
    outer = Dataset()
    outer.ReferencedSOPClassUID = "1.2"
    outer.ReferencedImageSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([outer, Dataset()])
    ds["ReferencedImageSequence"].is_undefined_length = True
    for item in (outer, inner):
        item.is_undefined_length_sequence_item = True
    ds.add_new(0x00191010, "OB", b"\x00" * 70000)  # private block bigger than the first read
    ds.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")  # after group 0028: never read
    ds.add_new(0x00400244, "DA", "20260101")
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(path, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    assert b"\xfe\xff\xdd\xe0" in path.read_bytes()  # the sequence really is of undefined length
    with open(path, "rb") as fh:
        assert read_raw_header(fh) is not None  # walked, not handed over to pydicom
    h = _both(path)
    assert h.position == (1.5, -2.25, 3.0) and h.rows == 40
    # elements between the header and the pixels: the size check still catches a cut file
    path.write_bytes(path.read_bytes()[:-64])
    cut_fast, cut_slow = read_header(str(path)), read_header(str(path), fast=False)
    assert cut_fast == cut_slow and cut_fast.reason.startswith("truncated:")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("charset", "text"),
    [("ISO_IR 192", "SAG T2 加权"), ("GB18030", "矢状位T2压脂"), ("ISO_IR 100", "Sagittal T2 gewichtet ä")],
)
def test_descriptions_in_other_character_sets(tmp_path: Path, charset: str, text: str) -> None:
    path = _one_file(tmp_path)
    ds = pydicom.dcmread(path)
    ds.SpecificCharacterSet = charset
    ds.SeriesDescription = text
    ds.save_as(path)
    with open(path, "rb") as fh:
        assert read_raw_header(fh).values["SeriesDescription"] == [text]  # type: ignore[union-attr]
    assert _both(path).description == text


def test_missing_optional_tags(tmp_path: Path) -> None:
    meta = SeriesMeta("1.2.3", "1.2.3.5", 1, None, None, None, None)
    geometry = SeriesGeometry(SAG, np.zeros((1, 3)), (1.0, 1.0), 1.0)
    path = write_series(tmp_path, np.zeros((1, 8, 8)), geometry, meta)[0][0]
    h = _both(path)
    assert (h.description, h.protocol_name, h.echo_time, h.repetition_time) == ("", "", None, None)


def test_not_dicom_and_no_preamble(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    ds = pydicom.dcmread(_one_file(tmp_path / "a"))
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)  # no preamble, no file meta: not read (pydicom itself would need force=True)
    bare.write_bytes(fp.getvalue())
    shutil.copy(get_testdata_file("MR_small.dcm", download=False), tmp_path / "ok")
    for path in (bare, tmp_path / "ok"):
        slow, fast = read_header(str(path), fast=False), read_header(str(path))
        assert slow == fast
    assert read_header(str(bare)).reason.startswith("not DICOM")  # type: ignore[union-attr]
