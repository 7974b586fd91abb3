"""Reading any file stays within what its header promises: deflate bombs, compressed frames of another size, RLE
segments that lie, and the plausibility limits on geometry (spacing, image size)."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_studies import StudyBuilder
from pydicom.encaps import encapsulate
from pydicom.uid import DeflatedExplicitVRLittleEndian

from spine_kp.io.dicom import SPACING_MM, SkippedFile, UnusableImage, load_middle_slice, scan
from spine_kp.io.header import read_header
from spine_kp.io.inflate import MARGIN, body_start, inflate
from spine_kp.io.pixel_decode import decode_pixels

MiB = 1 << 20
BOMB_INFLATED = 3000 * MiB  # ~3 GB of zeros in ~3 MB on disk
# peak RSS of `spine-kp inspect` on a root holding the bomb may exceed the same run without it by no more than this
# (the cap is the header's promise + MARGIN, 16 MiB; the rest is allocator noise)
RSS_BOUND = 200 * MiB


def to_deflated(source: Path, target: Path) -> Path:
    """The same DICOM file in the Deflated Explicit VR Little Endian transfer syntax (pydicom deflates on save)."""
    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(target, enforce_file_format=True)
    return target


def write_deflate_bomb(source: Path, target: Path, inflated: int = BOMB_INFLATED) -> Path:
    """A deflated copy of ``source`` whose pixel data is ``inflated`` bytes of zeros, a few MB on disk.

    Rows x Columns stays the source's (a few hundred bytes of promise); the deflate stream repeats one fully flushed
    block of 1 MiB of zeros, so building it costs one compression of 1 MiB, not of gigabytes.
    """
    deflated = to_deflated(source, target.with_suffix(".tmp"))
    with open(deflated, "rb") as fh:
        _, start = body_start(fh)
        fh.seek(start)
        body, more = inflate(fh, 1 << 30)
    deflated.unlink()
    assert not more
    at = body.index(b"\xe0\x7f\x10\x00OW")  # (7FE0,0010) Pixel Data, explicit VR OW
    header = body[:at] + b"\xe0\x7f\x10\x00OW\x00\x00" + (inflated - at - 12).to_bytes(4, "little")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = compressor.compress(header + bytes(MiB - len(header))) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH) == block  # history-free
    stream = first + block * (inflated // MiB - 1) + compressor.flush()
    target.write_bytes(_meta_of(target, source) + stream)
    return target


def _meta_of(target: Path, source: Path) -> bytes:
    """Preamble + file meta of a deflated copy of ``source``."""
    deflated = to_deflated(source, target.with_suffix(".meta"))
    with open(deflated, "rb") as fh:
        _, start = body_start(fh)
    data = deflated.read_bytes()[:start]
    deflated.unlink()
    return data


def peak_rss(args: list[str]) -> tuple[int, str]:
    """Peak RSS in bytes of one child process (``os.wait4`` reports that child alone, unlike RUSAGE_CHILDREN), and
    its stderr."""
    with open(os.devnull, "w") as out, subprocess.Popen(args, stdout=out, stderr=subprocess.PIPE, text=True) as p:
        err = p.stderr.read() if p.stderr else ""
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return usage.ru_maxrss * scale, err


@pytest.fixture
def t2(study: StudyBuilder):
    return study.add("T2_TSE_SAG", n=5, size=(64, 64))


def test_deflated_file_reads_like_the_original(t2, tmp_path: Path) -> None:
    original = t2.paths_by_rank[2]
    copy = to_deflated(original, tmp_path / "deflated.dcm")
    header, reference = read_header(str(copy)), read_header(str(original))
    assert not isinstance(header, SkippedFile), header
    assert header.rows == reference.rows and header.spacing == reference.spacing
    assert header.sop_uid == reference.sop_uid and header.transfer_syntax == "Deflated Explicit VR Little Endian"
    np.testing.assert_array_equal(decode_pixels(copy), decode_pixels(original))


def test_deflate_bomb_is_skipped_with_its_reason(t2, tmp_path: Path) -> None:
    bomb = write_deflate_bomb(t2.paths_by_rank[0], tmp_path / "bomb.dcm")
    assert bomb.stat().st_size < 8 * MiB
    tracemalloc.start()
    try:
        header = read_header(str(bomb))
        with pytest.raises(UnusableImage, match=r"oversized: the deflated dataset inflates beyond") as info:
            decode_pixels(bomb)  # a file swapped for a bomb after the scan: the decoder caps it too
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(header, SkippedFile) and header.category == "oversized", header
    assert "promises 8192 bytes of pixel data" in header.reason
    assert str(info.value).startswith(f"{bomb}: ")
    assert peak < 4 * MARGIN, peak


def test_deflated_pixel_data_longer_than_its_rows_is_skipped(t2, tmp_path: Path) -> None:
    """Within the cap, but Rows says half the image: the same check as for uncompressed files."""
    ds = pydicom.dcmread(t2.paths_by_rank[0])
    ds.Rows = 32
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "half.dcm", enforce_file_format=True)
    header = read_header(str(tmp_path / "half.dcm"))
    assert isinstance(header, SkippedFile) and header.category == "corrupt", header
    assert "Rows x Columns x BitsAllocated needs 4096" in header.reason


def test_inspect_peak_memory_with_a_deflate_bomb_stays_bounded(t2, tmp_path: Path) -> None:
    """`spine-kp inspect` in a subprocess: the root with the bomb costs at most RSS_BOUND more than without it."""
    root = t2.paths_by_rank[0].parent.parent
    command = [sys.executable, "-m", "spine_kp", "inspect", str(root), "--verbose"]
    baseline, err = peak_rss(command)
    assert "1 studies: 1 read" in err, err
    bomb = write_deflate_bomb(t2.paths_by_rank[0], root / "bomb.dcm")
    peak, err = peak_rss(command)
    assert f"skipped {bomb}: oversized: " in err and "1 studies: 1 read" in err, err
    assert peak < baseline + RSS_BOUND, (peak / MiB, baseline / MiB)


@pytest.mark.parametrize("syntax", ["jpeg2000", "jpeg_lossless"])
def test_compressed_frame_of_another_size_than_rows_is_skipped(study: StudyBuilder, tmp_path: Path, syntax) -> None:
    """A decoder allocates for the codestream's own size: one that differs from Rows x Columns is never decoded."""
    series = study.add("T2_TSE_SAG", n=1, size=(64, 48), transfer_syntax=syntax)
    ds = pydicom.dcmread(series.paths_by_rank[0])
    ds.Rows = 32
    ds.save_as(tmp_path / "lying.dcm")
    header = read_header(str(tmp_path / "lying.dcm"))
    assert isinstance(header, SkippedFile) and header.category == "corrupt", header
    assert "compressed frame is 64 x 48 pixels x 1 component(s), where Rows x Columns x SamplesPerPixel is 32 x 48" in (
        header.reason
    )
    assert not isinstance(read_header(str(series.paths_by_rank[0])), SkippedFile)  # the honest original is read


def test_compressed_pixel_data_far_beyond_its_promise_is_skipped(study: StudyBuilder, tmp_path: Path) -> None:
    series = study.add("T2_TSE_SAG", n=1, size=(64, 64), transfer_syntax="rle")
    ds = pydicom.dcmread(series.paths_by_rank[0])
    ds.PixelData = encapsulate([bytes(3 * MiB)])  # one fragment of 3 MiB for an image of 8 KiB
    ds.save_as(tmp_path / "long.dcm")
    header = read_header(str(tmp_path / "long.dcm"))
    assert isinstance(header, SkippedFile) and header.category == "corrupt", header
    assert "compressed pixel data holds more than" in header.reason


@pytest.mark.parametrize("rows", [32, 1])
def test_rle_rows_that_lie_fail_the_study_naming_the_file(study: StudyBuilder, rows: int) -> None:
    """Half the real Rows (or one row) on every slice: the RLE segments say otherwise, so the study fails."""
    series = study.add("T2_TSE_SAG", n=3, size=(64, 64), transfer_syntax="rle")
    for path in series.paths_by_rank:
        ds = pydicom.dcmread(path)
        ds.Rows = rows
        ds.save_as(path)
    (index,) = scan(study.root).studies.values()
    with pytest.raises(UnusableImage) as info:
        load_middle_slice(index)
    message = str(info.value)
    assert message.startswith(f"{series.paths_by_rank[1]}: ")
    expected = "smaller than 16 x 16" if rows == 1 else "RLE segments decode to [4096, 4096] bytes"
    assert expected in message, message


@pytest.mark.parametrize("spacing", [(1e-9, 0.5), (0.5, 1e9), (0.01, 0.01), (25.0, 25.0)])
def test_spacing_outside_the_physical_range_fails_naming_file_and_value(study: StudyBuilder, spacing) -> None:
    series = study.add("T2_TSE_SAG", n=3, size=(32, 32), spacing=spacing)
    (index,) = scan(study.root).studies.values()
    with pytest.raises(UnusableImage) as info:
        load_middle_slice(index)
    message = str(info.value)
    assert message.startswith(f"{series.paths_by_rank[1]}: PixelSpacing {spacing[0]:g} x {spacing[1]:g} mm")
    assert f"outside the physical range of an MR pixel, {SPACING_MM[0]:g} to {SPACING_MM[1]:g} mm" in message


@pytest.mark.parametrize("spacing", [SPACING_MM, (SPACING_MM[1], SPACING_MM[0])])
def test_spacing_at_the_limits_is_accepted(study: StudyBuilder, spacing) -> None:
    study.add("T2_TSE_SAG", n=3, size=(32, 32), spacing=spacing)
    (index,) = scan(study.root).studies.values()
    assert load_middle_slice(index).spacing == pytest.approx(spacing)


def test_image_smaller_than_16_pixels_fails_naming_the_file(study: StudyBuilder) -> None:
    series = study.add("T2_TSE_SAG", n=3, size=(15, 64))
    (index,) = scan(study.root).studies.values()
    with pytest.raises(UnusableImage, match=r"Rows x Columns 15 x 64 is smaller than 16 x 16 pixels") as info:
        load_middle_slice(index)
    assert str(info.value).startswith(f"{series.paths_by_rank[1]}: ")


@pytest.mark.parametrize("bits", [12, 24])
def test_bits_allocated_that_no_decoder_reads_is_skipped(study: StudyBuilder, tmp_path: Path, bits: int) -> None:
    series = study.add("T2_TSE_SAG", n=1, size=(32, 32))
    ds = pydicom.dcmread(series.paths_by_rank[0])
    ds.BitsAllocated = bits
    ds.save_as(tmp_path / "bits.dcm")
    header = read_header(str(tmp_path / "bits.dcm"))
    assert isinstance(header, SkippedFile), header
    assert header.reason == f"corrupt: BitsAllocated {bits} is not one of 1, 8, 16, 32, 64"
