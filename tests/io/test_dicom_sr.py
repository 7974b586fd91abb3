"""DICOM SR of one study's landmarks: level codes, round trip through pydicom + highdicom, copied patient and study
attributes, atomic writing (``scripts/validate_sr.py`` runs dciodvfy from dicom3tools)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import highdicom as hd
import pydicom
import pytest

from spine_kp.io import dicom_sr
from spine_kp.io.annotations import read_annotations
from spine_kp.io.dicom import load_instance, scan
from spine_kp.io.dicom_sr import (
    PRIVATE_SCHEME,
    SCOORD_OFFSET,
    AlgorithmInfo,
    build_sr,
    grade_code,
    level_code,
    read_source_header,
    score_code,
    sr_file_name,
    write_sr,
)
from spine_kp.schema import load_schema
from spine_kp.types import StudyRecord

SCHEMA = load_schema()
ALGORITHM = AlgorithmInfo("spine_kp resnet34+unet", "0.1.0 sha256:0123456789ab", ("input_size=64x64",), "1.2.3.4")
STANDARD = {
    "T12": "23215003",
    "L1": "66794005",
    "L2": "14293000",
    "L3": "36470004",
    "L4": "11994002",
    "L5": "49668003",
    "T12-L1": "76206002",
    "L1-L2": "80064006",
    "L2-L3": "67459009",
    "L3-L4": "62551000",
    "L4-L5": "84020006",
    "L5-S1": "715056000",
}


def parse_sr(path: Path) -> dict:
    """Everything a reader needs back from one written SR, read with highdicom (content) and pydicom (references)."""
    ds = pydicom.dcmread(path)
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    sites = {(level_code(n).value, level_code(n).scheme_designator): n for n in SCHEMA.landmarks}
    landmarks = {}
    for g in sr.content.get_planar_roi_measurement_groups():
        assert g.roi.graphic_type == hd.sr.GraphicTypeValues.POINT
        (x, y), *_ = g.roi.value
        (site,) = g.finding_sites
        name = sites[(site.value.value, site.value.scheme_designator)]
        assert g.tracking_identifier == name and g.tracking_uid
        ref = g.roi.ContentSequence[0].ReferencedSOPSequence[0]
        grades = [e.value for e in g.get_qualitative_evaluations(name=dicom_sr.GRADE_CONCEPT)]
        scores = {m.name.value: m.value for m in g.get_measurements()}
        assert all(m.unit.value == "{ratio}" and m.unit.scheme_designator == "UCUM" for m in g.get_measurements())
        landmarks[name] = {
            "xy": (x - SCOORD_OFFSET, y - SCOORD_OFFSET),
            "instance": ref.ReferencedSOPInstanceUID,
            "sop_class": ref.ReferencedSOPClassUID,
            "grades": [(c.value, c.scheme_designator) for c in grades],
            "scores": scores,
        }
    return {"dataset": ds, "landmarks": landmarks}


@pytest.fixture(scope="module")
def phantom(synth_root: Path) -> tuple[StudyRecord, str]:
    """An annotated phantom record (one image, a score per point) and the file of its image."""
    record = read_annotations(synth_root / "annotations.json", SCHEMA)[0]
    image = record.images[0]
    s = load_instance(scan(synth_root / "studies").studies[record.study_uid], image.instance_uid)
    points = tuple(dataclasses.replace(p, score=round(0.1 + 0.05 * i, 6)) for i, p in enumerate(image.points))
    return dataclasses.replace(record, images=(dataclasses.replace(image, points=points),)), s.path


def test_every_default_level_has_its_snomed_code():
    for name, value in STANDARD.items():
        code = level_code(name)
        assert (code.value, code.scheme_designator) == (value, "SCT"), name
    assert level_code("L5-S1").meaning == "L5/S1 disc" and level_code("T12").meaning == "T12 vertebra"


def test_a_level_without_standard_code_gets_a_private_one():
    code = level_code("Sacrum-tip", "landmark")
    assert (code.value, code.scheme_designator) == ("Sacrum-tip", PRIVATE_SCHEME)
    assert "Sacrum-tip" in code.meaning


def test_grade_and_score_codes_are_private_and_distinct_per_kind():
    v = grade_code("vertebra", "v1", SCHEMA)
    d = grade_code("disc", "v1", SCHEMA)
    assert v.scheme_designator == d.scheme_designator == PRIVATE_SCHEME and v.value != d.value
    assert "diffuse bulge" in grade_code("disc", "v3", SCHEMA).meaning
    assert score_code("disc", "v3").value != score_code("vertebra", "v3").value
    for kind in SCHEMA.kinds:  # short enough for Code Value (SH), which every reader understands
        assert all(len(c(kind.name, g).value) <= 16 for g in kind.grades for c in (grade_code, score_code))


def test_file_name_is_safe():
    assert sr_file_name("1.2.840.10008.1") == "1.2.840.10008.1.dcm"
    # a sanitised name carries a hash of the UID (spine_kp.io.names), so no two studies share a report
    assert sr_file_name("../a b/c").startswith("_a_b_c-") and sr_file_name("../a b/c").endswith(".dcm")
    assert sr_file_name("").startswith("study-")


def test_round_trip_points_codes_references_and_copied_attributes(phantom, tmp_path):
    record, path = phantom
    src_file = tmp_path / "src.dcm"
    shutil.copy(path, src_file)
    ds = pydicom.dcmread(src_file)
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P-42"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.AccessionNumber = "ACC7"
    ds.StudyTime = "101500"
    ds.save_as(src_file)

    out = write_sr(build_sr(record, read_source_header(src_file), SCHEMA, ALGORITHM), tmp_path / "sr" / "x.dcm")
    parsed = parse_sr(out)
    sr = parsed["dataset"]
    assert sr.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage and sr.Modality == "SR"
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyTime"):
        assert str(sr[kw].value) == str(ds[kw].value), kw
    assert sr.StudyInstanceUID == ds.StudyInstanceUID == record.study_uid and sr.StudyDate == ds.StudyDate
    assert sr.SeriesInstanceUID != ds.SeriesInstanceUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID

    got = parsed["landmarks"]
    assert set(got) == {p.identification for p in record.points}
    for p in record.points:
        lm = got[p.identification]
        assert lm["xy"] == pytest.approx(p.coord, abs=1e-3)
        assert lm["instance"] == ds.SOPInstanceUID == record.images[0].instance_uid
        assert lm["sop_class"] == ds.SOPClassUID
        for g in p.grades:
            code = grade_code(p.kind, g)
            assert (code.value, PRIVATE_SCHEME) in lm["grades"]
            assert lm["scores"][score_code(p.kind, g).value] == pytest.approx(p.score, abs=1e-6)
        assert len(lm["grades"]) == len(p.grades)


def test_point_is_written_in_dicom_pixel_corner_coordinates(phantom, tmp_path):
    record, path = phantom
    out = write_sr(build_sr(record, read_source_header(path), SCHEMA, ALGORITHM), tmp_path / "x.dcm")
    first = record.points[0]
    group = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(out)).content.get_planar_roi_measurement_groups()[0]
    assert list(group.roi.value[0]) == pytest.approx([first.coord[0] + 0.5, first.coord[1] + 0.5], abs=1e-3)


def test_algorithm_and_device_are_identified(phantom, tmp_path):
    record, path = phantom
    out = write_sr(build_sr(record, read_source_header(path), SCHEMA, ALGORITHM), tmp_path / "x.dcm")
    ds = pydicom.dcmread(out)
    assert ds.ManufacturerModelName == ALGORITHM.name and ds.SoftwareVersions == ALGORITHM.version
    texts = {}

    def walk(items):
        for item in items:
            if item.ValueType in ("TEXT", "UIDREF"):
                texts.setdefault(item.ConceptNameCodeSequence[0].CodeMeaning, set()).add(
                    item.get("TextValue", item.get("UID"))
                )
            walk(item.get("ContentSequence", []))

    walk(ds.ContentSequence)
    assert ALGORITHM.name in texts["Algorithm Name"] and ALGORITHM.version in texts["Algorithm Version"]
    assert "input_size=64x64" in texts["Algorithm Parameters"]
    assert ALGORITHM.device_uid in texts["Device Observer UID"]
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == PRIVATE_SCHEME


def test_missing_patient_and_study_attributes_are_left_empty(phantom, tmp_path):
    record, path = phantom
    stripped = pydicom.dcmread(path)
    for kw in ("PatientBirthDate", "PatientSex", "StudyTime", "AccessionNumber", "ReferringPhysicianName"):
        if kw in stripped:
            del stripped[kw]
    stripped.save_as(tmp_path / "src.dcm")
    ds = pydicom.dcmread(
        write_sr(build_sr(record, read_source_header(tmp_path / "src.dcm"), SCHEMA, ALGORITHM), tmp_path / "x.dcm")
    )
    for kw in ("PatientBirthDate", "PatientSex", "StudyTime", "AccessionNumber"):
        assert kw in ds and not ds[kw].value, kw


def test_points_on_another_image_are_refused(phantom):
    record, path = phantom
    other = dataclasses.replace(record.images[0], instance_uid="1.2.3.4.5")
    with pytest.raises(ValueError, match="not on the source image"):
        build_sr(dataclasses.replace(record, images=(other,)), read_source_header(path), SCHEMA, ALGORITHM)


def test_a_study_without_points_is_refused_with_a_reason(phantom):
    record, path = phantom
    empty = dataclasses.replace(record, images=(dataclasses.replace(record.images[0], points=()),))
    with pytest.raises(ValueError, match="no landmarks to report"):
        build_sr(empty, read_source_header(path), SCHEMA, ALGORITHM)


def test_failed_write_leaves_no_partial_file_and_keeps_the_old_one(phantom, tmp_path, monkeypatch):
    record, path = phantom
    sr = build_sr(record, read_source_header(path), SCHEMA, ALGORITHM)
    target = tmp_path / "x.dcm"
    target.write_bytes(b"old report")

    def half_written(fh, ds, **kwargs):
        fh.write(b"\0" * 128 + b"DICM")
        raise OSError("disk full")

    monkeypatch.setattr(dicom_sr, "dcmwrite", half_written)
    with pytest.raises(OSError, match="disk full"):
        write_sr(sr, target)
    assert target.read_bytes() == b"old report"
    assert [p.name for p in tmp_path.iterdir()] == ["x.dcm"]
