"""The mutations an independent fuzzing round found predicted without complaint: image sizes that lie on every
slice, pixel spacing far outside physics, and a series that carries another study's StudyInstanceUID."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fuzz_phantoms import (
    Phantoms,
    TinyPredictor,
    accounted_files,
    all_files,
    check_run,
    mutated,
    set_tags,
    write_phantom_root,
)

from spine_kp.io.dicom import scan
from spine_kp.predict.runner import PredictOptions, PredictRun, predict_studies

OPTIONS = PredictOptions(batch_size=4, workers=1, progress=False)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Phantoms:
    return write_phantom_root(tmp_path_factory.mktemp("fuzz_geometry"))


def _run(root: Path):
    result = scan(root)
    assert accounted_files(result) == all_files(root)
    predictor = TinyPredictor()
    run = predict_studies([result.studies[u] for u in sorted(result.studies)], predictor, OPTIONS, PredictRun())
    check_run(run, result, root, predictor)
    return result, run


@pytest.mark.parametrize("victim", ["native", "rle"])
@pytest.mark.parametrize("edit", [{"Rows": 0}, {"Rows": 1}, {"Columns": 0}, {"Rows": 32}, {"Columns": 1}])
def test_an_image_size_that_lies_on_every_slice_is_never_predicted(phantoms: Phantoms, victim: str, edit) -> None:
    """Each lying T2 file is skipped with its size named, or the study fails naming one; the T2 is never used."""
    study = phantoms[victim]
    with mutated(list(study.t2_files), set_tags(edit)):
        result, run = _run(phantoms.root)
    skipped = {s.path: s.reason for s in result.skipped}
    failures = {f.study: f.reason for f in run.failures}
    predicted = {p.slice.study_uid: p for p in run.predictions}
    t2 = {str(p) for p in study.t2_files}
    if study.study_uid in predicted:  # only from the STIR, every T2 file skipped with its reason
        assert "fat-suppressed T2" in predicted[study.study_uid].slice.reason
        assert all(skipped[p].startswith("corrupt: ") for p in t2), skipped
    else:
        reason = failures[study.study_uid]
        assert reason.startswith("UnusableImage: ") and any(f"{p}: " in reason for p in t2), reason
        assert "Rows x Columns" in reason or "RLE segments" in reason, reason


@pytest.mark.parametrize("victim", ["native", "rle"])
@pytest.mark.parametrize("spacing", ["1e-9\\1e-9", "1e9\\1e9", "0.5\\1e-9"])
def test_pixel_spacing_beyond_physics_fails_the_study_naming_file_and_value(
    phantoms: Phantoms, victim: str, spacing: str
) -> None:
    study = phantoms[victim]
    with mutated(list(study.t2_files), set_tags({"PixelSpacing": spacing})):
        _, run = _run(phantoms.root)
    failures = {f.study: f.reason for f in run.failures}
    reason = failures[study.study_uid]
    row, col = (float(v) for v in spacing.split("\\"))
    assert reason.startswith(f"UnusableImage: {study.folder}") and f"PixelSpacing {row:g} x {col:g} mm" in reason
    assert "outside the physical range" in reason
    assert study.study_uid not in {p.slice.study_uid for p in run.predictions}


def test_a_series_with_another_studys_uid_is_left_out_with_a_warning(
    phantoms: Phantoms, caplog: pytest.LogCaptureFixture
) -> None:
    """rle's T2 series relabelled with good's StudyInstanceUID (its files stay in rle's folder): good keeps its own
    series and prediction, the relabelled files are skipped as foreign, and one warning names folder and UID."""
    good, victim = phantoms["good"], phantoms["rle"]
    before, _ = _run(phantoms.root)
    relabel = set_tags({"StudyInstanceUID": good.study_uid})
    with caplog.at_level(logging.WARNING), mutated(list(victim.t2_files), relabel):
        result, run = _run(phantoms.root)
    assert [s.series_uid for s in result.studies[good.study_uid].series] == [
        s.series_uid for s in before.studies[good.study_uid].series
    ]
    assert result.studies[good.study_uid].folder == str(good.folder)
    foreign = [s for s in result.skipped if s.category == "foreign study"]
    assert {s.path for s in foreign} == {str(p) for p in victim.t2_files}
    assert f"StudyInstanceUID {good.study_uid} (its study is in {good.folder})" in foreign[0].reason
    assert f"inside the folder {victim.folder} of study {victim.study_uid}" in foreign[0].reason
    (warning,) = [r.getMessage() for r in caplog.records if "StudyInstanceUID" in r.getMessage()]
    assert warning.startswith(f"warning: {len(victim.t2_files)} file(s) in {victim.folder} (study {victim.study_uid})")
    assert good.study_uid in warning
    (pred,) = [p for p in run.predictions if p.slice.study_uid == good.study_uid]
    assert pred.slice.instance_uid == good.t2_middle_uid
    # the victim lost its T2 series to the relabelling: it is predicted from what is left, its STIR
    assert "fat-suppressed T2" in next(p for p in run.predictions if p.slice.study_uid == victim.study_uid).slice.reason


def test_a_foreign_series_beside_a_studys_own_folder_is_left_out(synth_root: Path, tmp_path: Path) -> None:
    """Study B's T2 series copied (new series and instance UIDs) into ``<A's top folder>/intruder/``: outside A's own
    common folder (``A/DICOM/<date>/...``) but in A's branch. It is left out of B as foreign; B keeps its series."""
    import shutil

    import pydicom

    root = tmp_path / "studies"
    shutil.copytree(synth_root / "studies", root)
    before = scan(root)
    (a, a_study), (b, b_study) = list(before.studies.items())[:2]
    top = root / Path(a_study.folder).relative_to(root).parts[0]
    assert Path(a_study.folder) != top  # the phantoms nest their series: the intruder is beside A's folder
    intruder = top / "intruder"
    intruder.mkdir()
    series_uid = pydicom.uid.generate_uid()
    t2 = max(b_study.series, key=lambda s: s.num_slices)
    for i, inst in enumerate(t2.instances):
        ds = pydicom.dcmread(inst.path)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(intruder / f"x{i}.dcm")
    result = scan(root)
    foreign = {s.path for s in result.skipped if s.category == "foreign study"}
    assert foreign == {str(p) for p in intruder.iterdir()}
    assert [s.series_uid for s in result.studies[b].series] == [s.series_uid for s in before.studies[b].series]
    assert result.studies[b].folder == b_study.folder and a in result.studies
