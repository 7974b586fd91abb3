"""``spine-kp inspect``: a line / JSON object per study (``--json``: failed ones too), failures on stderr, exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dicom_studies import AX, StudyBuilder, WrittenSeries

from spine_kp.cli.main import main
from spine_kp.synth.dicom_non_image import write_non_image


def _data_root(tmp_path: Path) -> tuple[Path, StudyBuilder, WrittenSeries, StudyBuilder]:
    root = tmp_path / "data"
    good = StudyBuilder(root / "studies" / "good")
    good.add("T1_SAG", te=12, tr=500)
    t2 = good.add("T2_TSE_SAG", n=5)
    t1_only = StudyBuilder(root / "studies" / "t1only")
    t1_only.add("T1_SAG", te=12, tr=500, n=3)
    t1_only.add("T2_TRA", orientation=AX, n=2)
    (root / "notes.txt").write_text("x")
    (root / "more.txt").write_text("y")
    write_non_image(root / "studies" / "good" / "sr.dcm", good.study_uid)
    return root, good, t2, t1_only


def test_json_lines_and_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, good, t2, t1_only = _data_root(tmp_path)
    assert main(["inspect", str(root), "--json"]) == 0
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 2  # one per study: the read one and the failed one, in the same stream
    (record,) = [r for r in records if "error" not in r]
    (failure,) = [r for r in records if "error" in r]
    assert set(failure) == {"studyUid", "folder", "error"}
    assert failure["studyUid"] == t1_only.study_uid and failure["folder"] == str(root / "studies" / "t1only")
    assert failure["error"].startswith("no sagittal T2 series")  # the reason, without the study prefix
    assert record["studyUid"] == good.study_uid and record["seriesUid"] == t2.series_uid
    assert record["instanceUid"] == t2.middle_uid()
    assert (record["zIndex"], record["numSlices"], record["pixelSpacing"]) == (2, 5, [0.5, 0.6])
    assert (record["rows"], record["cols"], record["seriesDescription"]) == (24, 20, "T2_TSE_SAG")
    assert record["reason"].startswith("sagittal T2 by description 'T2_TSE_SAG' (5 slices)")
    assert record["folder"] == str(root / "studies" / "good")
    assert f"FAILED study {t1_only.study_uid}" in err and "no sagittal T2 series" in err
    assert "skipped 3 file(s): 2 not DICOM, 1 non-image object" in err
    assert "2 studies: 1 read, 1 failed" in err
    assert "notes.txt" not in err  # listed only with --verbose


def test_text_lines_verbose_and_workers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, good, t2, _ = _data_root(tmp_path)
    assert main(["inspect", str(root), "--verbose", "--workers", "2"]) == 0
    out, err = capsys.readouterr()
    (line,) = out.splitlines()
    assert line.startswith(good.study_uid) and t2.middle_uid() in line
    assert "zIndex 2 of 5" in line and "spacing 0.5 x 0.6 mm" in line and "'T2_TSE_SAG'" in line
    assert f"skipped {root / 'notes.txt'}: not DICOM" in err
    assert f"skipped {root / 'studies' / 'good' / 'sr.dcm'}: non-image object: Basic Text SR Storage" in err


def test_exit_code_when_nothing_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    only_t1 = StudyBuilder(tmp_path / "d" / "s")
    only_t1.add("T1_SAG", te=12, tr=500, n=2)
    assert main(["inspect", str(tmp_path / "d")]) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "1 studies: 0 read, 1 failed" in capsys.readouterr().err
    assert main(["inspect", str(empty)]) == 2  # no study at all: a wrong folder, one error line
    assert capsys.readouterr().err == f"error: {empty}: no DICOM study found\n"
    assert main(["inspect", str(tmp_path / "missing")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"error: {tmp_path / 'missing'}: not a folder\n"
