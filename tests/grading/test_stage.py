"""The crop grading stage end to end: trained after the landmark network, stored in the checkpoints, used by predict."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from spine_kp.engine.config import load_experiment
from spine_kp.engine.train import replace_data_paths, train
from spine_kp.io.dicom import read_study
from spine_kp.predict.predictor import CheckpointError, Predictor

TINY = {
    "data.input_size": "[64, 64]",
    "data.batch_size": "2",
    "data.val_fraction": "0.4",
    "model.decoder_channels": "16",
    "trainer.max_epochs": "1",
    "trainer.progress_bar": "false",
    "trainer.log_every_n_steps": "1",
    "grade_stage.enabled": "true",
    "grade_stage.epochs": "1",
    "grade_stage.size_px": "24",
    "grade_stage.channels": "[8, 16]",
    "grade_stage.batch_size": "2",
    "grade_stage.min_train_studies": "1",
}


@pytest.fixture(scope="module")
def run(synth_root, tmp_path_factory, one_thread):
    cfg = load_experiment("demo_cpu", TINY)
    cfg = replace_data_paths(cfg, synth_root / "studies", synth_root / "annotations.json")
    return train(cfg, tmp_path_factory.mktemp("stage") / "run")


@pytest.fixture(scope="module")
def slices(synth_root):
    return [read_study(p) for p in sorted((synth_root / "studies").iterdir())[:2]]


def test_train_writes_the_stage_into_best_and_last(run):
    assert run.grade_stage is not None and run.grade_stage["train_slices"] == 3
    for path in (run.best_checkpoint, run.last_checkpoint):
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        stage = ckpt["grade_stage"]
        assert stage["config"]["size_px"] == 24 and stage["config"]["channels"] == [8, 16]
        assert any(k.startswith("graders.disc.classifiers.") for k in stage["state_dict"])
    assert (run.run_dir / "logs" / "grade_stage" / "metrics.csv").exists()


def test_predictor_uses_the_stage_and_combines_as_configured(run, slices, one_thread):
    replace = Predictor.from_checkpoint(run.best_checkpoint, device="cpu")
    assert replace.grade_stage is not None and replace.grade_stage.config.combine == "replace"  # the default
    head_only = replace.with_grade_stage(None)
    average = replace.with_grade_stage(replace.grade_stage.with_combine("average"))
    a, b, c = (p.predict(slices) for p in (average, head_only, replace))
    for pa, pb, pc in zip(a, b, c):
        np.testing.assert_array_equal(pa.coords, pb.coords)  # localization is untouched
        for kind in pa.grade_probs:
            assert not np.allclose(pa.grade_probs[kind], pb.grade_probs[kind])
            mean = 0.5 * (pb.grade_probs[kind] + pc.grade_probs[kind])
            np.testing.assert_allclose(pa.grade_probs[kind], mean, atol=1e-6)
    # the crop grader alone: what CropStage.grade gives at the decoded points
    found = [(p.peaks > 0) & replace.trained.landmarks for p in b]
    points = [np.where(f[:, None], p.coords, np.nan) for f, p in zip(found, b)]
    direct = replace.grade_stage.grade(slices, points)
    for pc, d in zip(c, direct):
        for kind in d:
            np.testing.assert_allclose(pc.grade_probs[kind], d[kind], atol=1e-6)


def test_checkpoint_without_the_stage_loads_and_predicts_as_the_head(run, slices, tmp_path, one_thread):
    ckpt = torch.load(run.last_checkpoint, map_location="cpu", weights_only=False)
    del ckpt["grade_stage"]
    del ckpt["hyper_parameters"]["config"]["grade_stage"]  # as written before the stage existed
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    predictor = Predictor.from_checkpoint(old, device="cpu")
    assert predictor.grade_stage is None
    reference = Predictor.from_checkpoint(run.last_checkpoint, device="cpu", grade_stage=None)
    for p, r in zip(predictor.predict(slices), reference.predict(slices)):
        assert p.record == r.record


def test_a_damaged_stage_entry_names_the_file(run, tmp_path):
    ckpt = torch.load(run.last_checkpoint, map_location="cpu", weights_only=False)
    ckpt["grade_stage"] = dict(ckpt["grade_stage"], state_dict={"nonsense": torch.zeros(1)})
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match="bad.ckpt.*grade_stage"):
        Predictor.from_checkpoint(bad, device="cpu")


def test_config_rejects_an_unknown_combine_mode():
    from spine_kp.config import ConfigError

    with pytest.raises(ConfigError, match="combine"):
        load_experiment("demo_cpu", {"grade_stage.combine": "max"})
    assert dataclasses.asdict(load_experiment("demo_cpu").grade_stage)["enabled"] is True  # on in the packaged recipe


def test_onnx_export_refuses_a_checkpoint_with_the_stage_unless_asked(run, tmp_path):
    from spine_kp.export.onnx import OnnxExportError, export_onnx

    with pytest.raises(OnnxExportError, match="--without-grade-stage"):
        export_onnx(run.best_checkpoint, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    assert export_onnx(run.best_checkpoint, tmp_path / "m.onnx", without_grade_stage=True).path.exists()


def test_the_stage_is_skipped_on_a_handful_of_studies():
    from spine_kp.grading.config import GradeStageConfig
    from spine_kp.grading.stage import stage_skip_reason

    assert "min_train_studies" in stage_skip_reason(GradeStageConfig(enabled=True), 5)
    assert stage_skip_reason(GradeStageConfig(enabled=True), 20) is None
    assert stage_skip_reason(GradeStageConfig(enabled=False), 500) is not None


def test_stage_temperatures_are_fitted_stored_and_applied(run, slices, synth_root, one_thread):
    import numpy as np

    from spine_kp.grading.cropset import build_cropset
    from spine_kp.grading.stage import fit_stage_temperatures
    from spine_kp.io.annotations import read_annotations
    from spine_kp.io.dicom import scan
    from spine_kp.predict.crop_stage import CropStage
    from spine_kp.schema import load_schema

    stage = torch.load(run.best_checkpoint, map_location="cpu", weights_only=False)["grade_stage"]
    assert set(stage["temperatures"]) == {"vertebra", "disc"}
    assert all(0.1 <= t <= 10.0 for t in stage["temperatures"].values())
    predictor = Predictor.from_checkpoint(run.best_checkpoint, device="cpu")
    assert predictor.grade_stage.temperatures == stage["temperatures"]
    fitted = CropStage.from_payload({**stage, "temperatures": {"disc": 3.0}}, predictor.schema, predictor.trained)
    raw = CropStage(fitted.model, fitted.config, fitted.schema, fitted.trained, {})
    points = [p.coords for p in predictor.with_grade_stage(None).predict(slices)]
    a, b = fitted.grade(slices, points), raw.grade(slices, points)
    np.testing.assert_allclose(a[0]["vertebra"], b[0]["vertebra"])  # T = 1 where none was fitted
    assert not np.allclose(a[0]["disc"], b[0]["disc"])  # the temperatures reach the probabilities
    schema = load_schema()
    records = read_annotations(synth_root / "annotations.json", schema)
    crops = build_cropset(records, scan(synth_root / "studies").studies, schema, fitted.config)
    too_few = fit_stage_temperatures(fitted.model, crops, schema, None, min_points=10**6)
    assert too_few == {"vertebra": 1.0, "disc": 1.0}
