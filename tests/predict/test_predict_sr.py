"""``spine-kp predict --dicom-sr DIR``: one SR per study that says what the JSON says, the model identified from its
checkpoint, and a study whose report fails listed with the other failures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import highdicom as hd
import pydicom
import pytest

from spine_kp.cli.main import main
from spine_kp.io.annotations import read_annotations
from spine_kp.io.dicom import scan
from spine_kp.io.dicom_sr import GRADE_CONCEPT, SCOORD_OFFSET, grade_code, level_code, score_code, sr_file_name
from spine_kp.predict import sr as predict_sr
from spine_kp.predict.sr import algorithm_from_checkpoint
from spine_kp.schema import load_schema

SCHEMA = load_schema()


def _predict(root: Path, checkpoint: Path, out: Path) -> int:
    args = ["predict", str(root), "--checkpoint", str(checkpoint), "-o", str(out / "pred.json")]
    return main(args + ["--dicom-sr", str(out / "sr"), "--top-k-grades", "2", "--quiet"])


@pytest.fixture(scope="module")
def sr_run(synth_root: Path, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sr_run")
    assert _predict(synth_root / "studies", tiny_checkpoint, out) == 0
    return out


def _source_files(root: Path) -> dict[str, str]:
    """SOP Instance UID -> file, for every image under ``root``."""
    return {
        inst.sop_instance_uid: inst.path
        for study in scan(root).studies.values()
        for series in study.series
        for inst in series.instances
    }


def test_one_report_per_study_named_by_study_uid(sr_run):
    records = read_annotations(sr_run / "pred.json", SCHEMA)
    assert sorted(p.name for p in (sr_run / "sr").iterdir()) == sorted(sr_file_name(r.study_uid) for r in records)
    assert json.loads((sr_run / "pred.errors.json").read_text())["failed_studies"] == []


def test_reports_round_trip_the_json_predictions(sr_run, synth_root):
    sources = _source_files(synth_root / "studies")
    sites = {(level_code(n).value, level_code(n).scheme_designator): n for n in SCHEMA.landmarks}
    for record in read_annotations(sr_run / "pred.json", SCHEMA):
        ds = pydicom.dcmread(sr_run / "sr" / sr_file_name(record.study_uid))
        (image,) = record.images
        source = pydicom.dcmread(sources[image.instance_uid], stop_before_pixels=True)
        for kw in ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "StudyID", "AccessionNumber"):
            assert ds[kw].value == source[kw].value, kw
        groups = hd.sr.Comprehensive3DSR.from_dataset(ds).content.get_planar_roi_measurement_groups()
        got = {}
        for g in groups:
            ref = g.roi.ContentSequence[0].ReferencedSOPSequence[0]
            assert ref.ReferencedSOPInstanceUID == image.instance_uid
            assert ref.ReferencedSOPClassUID == source.SOPClassUID
            site = g.finding_sites[0].value
            name = sites[(site.value, site.scheme_designator)]
            assert g.tracking_identifier == name
            got[name] = (
                [float(v) - SCOORD_OFFSET for v in g.roi.value[0]],
                {e.value.value for e in g.get_qualitative_evaluations(name=GRADE_CONCEPT)},
                {m.name.value: m.value for m in g.get_measurements()},
            )
        assert set(got) == {p.identification for p in record.points}
        for p in record.points:
            xy, grades, scores = got[p.identification]
            assert xy == pytest.approx(p.coord, abs=1e-3)
            (grade,) = p.grades
            assert grade_code(p.kind, grade).value in grades
            assert scores[score_code(p.kind, grade).value] == pytest.approx(p.score, abs=1e-6)
        n_grades = {name: len(grades) for name, (_, grades, _) in got.items()}
        assert sum(n_grades.values()) == len(record.points)  # no grade lost, none invented


def test_model_is_identified_from_the_checkpoint(sr_run, tiny_checkpoint):
    algorithm = algorithm_from_checkpoint(tiny_checkpoint)
    assert "mobilenetv3_large_100+unet" in algorithm.name  # the demo_cpu architecture of the tiny checkpoint
    digest = hashlib.sha256(Path(tiny_checkpoint).read_bytes()).hexdigest()
    assert algorithm.version.endswith(f"sha256:{digest[:12]}")
    assert algorithm_from_checkpoint(tiny_checkpoint).device_uid == algorithm.device_uid
    ds = pydicom.dcmread(next((sr_run / "sr").iterdir()))
    assert ds.ManufacturerModelName == algorithm.name and ds.SoftwareVersions == algorithm.version


def test_a_failing_report_is_listed_and_the_others_are_written(synth_root, tiny_checkpoint, tmp_path, monkeypatch):
    studies = sorted(scan(synth_root / "studies").studies)
    real = predict_sr.read_source_header

    def broken_for_one(path):
        ds = real(path)
        if ds.StudyInstanceUID == studies[0]:
            raise OSError("source vanished")
        return ds

    monkeypatch.setattr(predict_sr, "read_source_header", broken_for_one)
    assert _predict(synth_root / "studies", tiny_checkpoint, tmp_path) == 0
    failed = json.loads((tmp_path / "pred.errors.json").read_text())["failed_studies"]
    assert [f["study"] for f in failed] == [studies[0]]
    assert "DICOM SR not written" in failed[0]["reason"] and "source vanished" in failed[0]["reason"]
    assert sorted(p.name for p in (tmp_path / "sr").iterdir()) == sorted(sr_file_name(u) for u in studies[1:])
    assert len(read_annotations(tmp_path / "pred.json", SCHEMA)) == len(studies)  # the JSON still has every study


def test_a_dicom_sr_folder_that_is_a_file_fails_before_predicting(synth_root, tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "sr").write_text("not a folder")
    assert _predict(synth_root / "studies", tiny_checkpoint, tmp_path) == 2
    assert str(tmp_path / "sr") in capsys.readouterr().err
    assert not (tmp_path / "pred.json").exists()
