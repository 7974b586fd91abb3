"""Header scan: grouping at any depth, sorting by position, scouts, skipped files with reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from dicom_studies import AX, COR, SAG, StudyBuilder

from spine_kp.io.scan import scan
from spine_kp.synth.dicom_non_image import write_non_image


def _reasons(result) -> dict[str, str]:  # noqa: ANN001
    return {Path(s.path).name: s.reason for s in result.skipped}


def test_groups_studies_and_series_at_any_depth(tmp_path: Path) -> None:
    a = StudyBuilder(tmp_path / "root" / "site1" / "2020" / "patientA")
    b = StudyBuilder(tmp_path / "root" / "patientB")
    a.add("T2_TSE_SAG", n=4)
    a.add("T2_TRA", orientation=AX, n=3)
    b.add("T1_SAG", n=2, folder="")  # files straight in the study folder
    result = scan(tmp_path / "root")
    assert set(result.studies) == {a.study_uid, b.study_uid}
    sa, sb = result.studies[a.study_uid], result.studies[b.study_uid]
    assert [(s.plane, s.num_slices) for s in sa.series] == [("sagittal", 4), ("axial", 3)]
    assert sa.folder == str(tmp_path / "root" / "site1" / "2020" / "patientA")
    assert sb.folder == str(tmp_path / "root" / "patientB")
    assert [s.weighting for s in sb.series] == ["T1"]
    assert result.skipped == ()


def test_sorted_by_position_not_instance_number(study: StudyBuilder) -> None:
    written = study.add(reverse_instance_numbers=True, n=6)
    series = scan(study.root).studies[study.study_uid].series[0]
    assert [i.sop_instance_uid for i in series.instances] == written.uids_by_rank
    assert [i.instance_number for i in series.instances] == [6, 5, 4, 3, 2, 1]
    positions = [i.position for i in series.instances]
    assert positions == sorted(positions) and np.allclose(np.diff(positions), 4.0)


def test_sorted_along_the_normal_not_z(study: StudyBuilder) -> None:
    # coronal slices all share z; only the projection on the normal (y) orders them
    written = study.add("T2 COR", orientation=COR, n=5)
    series = scan(study.root).studies[study.study_uid].series[0]
    assert series.plane == "coronal"
    assert [i.sop_instance_uid for i in series.instances] == written.uids_by_rank


def test_scouts_inside_a_series_are_set_apart(study: StudyBuilder) -> None:
    main = study.add(n=5, folder="s")
    # same SeriesInstanceUID, different orientation / size: rewrite two files of another series into it
    extra = study.add("x", orientation=AX, n=1, folder="s2")
    small = study.add("y", n=1, size=(12, 12), folder="s3")
    for written in (extra, small):
        ds = pydicom.dcmread(written.paths_by_rank[0])
        ds.SeriesInstanceUID = main.series_uid
        ds.SeriesDescription = "T2_TSE_SAG"
        ds.save_as(written.paths_by_rank[0])
    (series,) = scan(study.root).studies[study.study_uid].series
    assert [i.sop_instance_uid for i in series.instances] == main.uids_by_rank
    assert {i.sop_instance_uid for i in series.scouts} == {extra.uids_by_rank[0], small.uids_by_rank[0]}
    assert (series.rows, series.cols, series.plane) == (24, 20, "sagittal")


def test_bad_files_are_skipped_with_reasons(study: StudyBuilder) -> None:
    written = study.add(n=4)
    jp2k = study.add(n=3, transfer_syntax="jpeg2000")
    root = study.root
    (root / "readme.txt").write_text("not an image")
    (root / "empty").write_bytes(b"")
    write_non_image(root / "report.dcm", study.study_uid, "sr")
    write_non_image(root / "pstate", study.study_uid, "pr")
    # truncated copies: one cut inside native pixel data, one inside JPEG 2000 fragments, one inside the header
    for name, src, keep in (("cut_native", written, -100), ("cut_j2k", jp2k, -40), ("cut_header", written, 600)):
        ds = pydicom.dcmread(src.paths_by_rank[0])
        ds.SOPInstanceUID = pydicom.uid.generate_uid()  # a distinct instance, so not a mere duplicate
        ds.save_as(root / f"{name}_full", enforce_file_format=True)
        full = (root / f"{name}_full").read_bytes()
        (root / f"{name}_full").unlink()
        (root / name).write_bytes(full[:keep] if keep > 0 else full[: len(full) + keep])
    # multi-frame object
    ds = pydicom.dcmread(written.paths_by_rank[1])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    ds.save_as(root / "multiframe.dcm")
    # exact copy of an image under another name
    (root / "copy.dcm").write_bytes(written.paths_by_rank[2].read_bytes())

    result = scan(root)
    reasons = _reasons(result)
    assert reasons["readme.txt"].startswith("not DICOM")
    assert reasons["empty"].startswith("not DICOM")
    assert reasons["report.dcm"] == "non-image object: Basic Text SR Storage"
    assert reasons["pstate"] == "non-image object: Grayscale Softcopy Presentation State Storage"
    assert reasons["cut_native"].startswith("truncated: pixel data needs")
    assert reasons["cut_j2k"].startswith("truncated:")
    assert reasons["cut_header"] == "incomplete header: no StudyInstanceUID, SeriesInstanceUID (truncated file?)"
    assert reasons["multiframe.dcm"].startswith("multi-frame: 2 frames")
    # the copy is met first (root files before sub-folders): the original is reported as its duplicate
    original = written.paths_by_rank[2]
    assert reasons[original.name] == f"duplicate: same SOPInstanceUID as {root / 'copy.dcm'}"
    assert len(reasons) == 9
    series = {s.series_uid: s for s in result.studies[study.study_uid].series}
    assert series[written.series_uid].num_slices == 4
    assert str(root / "copy.dcm") in {i.path for i in series[written.series_uid].instances}
    assert series[jp2k.series_uid].num_slices == 3
    assert {s.category for s in result.skipped} == {
        "not DICOM", "non-image object", "truncated", "incomplete header", "multi-frame", "duplicate",
    }  # fmt: skip


def test_workers_give_the_same_result(study: StudyBuilder) -> None:
    study.add(n=6)
    study.add("T1", n=3, te=10, tr=400)
    (study.root / "junk.bin").write_bytes(b"\x00" * 300)
    assert scan(study.root, workers=2) == scan(study.root, workers=1)


def test_missing_description_keeps_protocol_and_timing(study: StudyBuilder) -> None:
    study.add(None, protocol=None, te=12.0, tr=480.0, n=2)
    study.add(None, protocol="t2_tse_sag", te=None, tr=None, n=2)
    s1, s2 = scan(study.root).studies[study.study_uid].series
    assert (s1.weighting, s1.weighting_source, s1.description) == ("T1", "TE 12 ms / TR 480 ms", "")
    assert (s2.weighting, s2.description) == ("T2", "t2_tse_sag")
    assert s1.orientation == SAG and s1.spacing == (0.5, 0.6)
