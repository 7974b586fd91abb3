"""A study whose sagittal series has one slice goes through a crop stage trained with parasagittal planes without a
warning per landmark (nor per study): the one slice stands in for its neighbours, as a series end repeats its edge."""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

import pytest

from spine_kp.inference.torch_predictor import Predictor
from spine_kp.io.dicom import scan
from spine_kp.io.series_choice import choose_series
from spine_kp.predict.runner import PredictOptions, predict_folder

STAGE = {"grade_stage.enabled": "true", "grade_stage.min_train_studies": "1", "grade_stage.epochs": "1",
         "grade_stage.size_px": "16", "grade_stage.channels": "[8]", "grade_stage.neighbours": "2"}  # fmt: skip


def _single_slice_root(synth_root: Path, out: Path) -> Path:
    """A copy of the phantom studies that keeps, of each study, only the middle slice of its chosen series."""
    root = out / "single"
    shutil.copytree(synth_root / "studies", root)
    for study in scan(root).studies.values():
        series, _ = choose_series(study)
        keep = series.instances[(series.num_slices - 1) // 2].path
        for path in Path(study.folder).rglob("*"):
            if path.is_file() and path != Path(keep):
                path.unlink()
    return root


def test_single_slice_series_are_graded_without_warnings(
    train_tiny, synth_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, one_thread: None
) -> None:
    run = train_tiny(tmp_path / "run", STAGE)
    predictor = Predictor.from_checkpoint(run.best_checkpoint, device="cpu")
    assert predictor.grade_stage is not None and predictor.grade_stage.config.neighbours == 2
    root = _single_slice_root(synth_root, tmp_path)
    assert all(s.series[0].num_slices == 1 for s in scan(root).studies.values())
    caplog.clear()  # training's own warnings are not what this test is about
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        result = predict_folder(root, predictor, PredictOptions(workers=1, progress=False))
    assert not result.failures and len(result.predictions) == len(scan(root).studies)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    graded = [p for p in result.predictions if any(pt.grades for pt in p.record.points)]
    assert graded  # the stage graded them
