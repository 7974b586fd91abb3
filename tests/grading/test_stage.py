"""The crop grading stage end to end: trained after the landmark network, stored in the checkpoints, used by predict."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from spine_kp.checkpoint import CheckpointError
from spine_kp.engine.config import load_experiment
from spine_kp.inference.torch_predictor import Predictor
from spine_kp.io.dicom import read_study

TINY = {
    "trainer.log_every_n_steps": "1",
    "grade_stage.enabled": "true",
    "grade_stage.epochs": "1",
    "grade_stage.size_px": "24",
    "grade_stage.channels": "[8, 16]",
    "grade_stage.batch_size": "2",
    "grade_stage.min_train_studies": "1",
    "grade_stage.neighbours": "0",  # the slice alone; the parasagittal planes have their own test below
    # the mean context across levels (other runs in the suite train without it): the checkpoint, predict and the
    # ONNX graph below all carry it
    "grade_stage.context": "mean",
}


@pytest.fixture(scope="module")
def run(train_tiny, tmp_path_factory, one_thread):
    return train_tiny(tmp_path_factory.mktemp("stage") / "run", TINY)


@pytest.fixture(scope="module")
def slices(synth_root):
    return [read_study(p) for p in sorted((synth_root / "studies").iterdir())[:2]]


def test_train_writes_the_stage_into_best_and_last(run):
    assert run.grade_stage is not None and run.grade_stage["train_slices"] == 3
    for path in (run.best_checkpoint, run.last_checkpoint):
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        stage = ckpt["grade_stage"]
        assert stage["config"]["size_px"] == 24 and stage["config"]["channels"] == [8, 16]
        assert stage["config"]["context"] == "mean"
        assert stage["state_dict"]["graders.disc.context.weight"].abs().sum() > 0  # trained away from its zero start
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
    del ckpt["model_card"]  # ... and before the model card
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


@pytest.fixture(scope="module")
def stage_onnx(run, tmp_path_factory):
    """The stage checkpoint exported with its crop grading stage (the default)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from spine_kp.export.onnx import export_onnx

    return export_onnx(run.best_checkpoint, tmp_path_factory.mktemp("stage_onnx") / "m.onnx")


def _onnx_meta(path):
    import json

    import onnx

    from spine_kp.inference.onnx_predictor import METADATA_KEY

    return json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}[METADATA_KEY])


def test_onnx_export_includes_the_stage_unless_asked_not_to(run, stage_onnx, tmp_path):
    import onnx

    from spine_kp.export.onnx import export_onnx

    assert {"stage_logits.vertebra", "stage_logits.disc"} <= set(stage_onnx.max_abs_diff)  # checked against torch
    meta = _onnx_meta(stage_onnx.path)
    stage = torch.load(run.best_checkpoint, map_location="cpu", weights_only=False)["grade_stage"]
    assert meta["grade_stage"]["config"] == stage["config"] and meta["grade_stage"]["kinds"] == ["vertebra", "disc"]
    assert meta["grade_stage"]["temperatures"] == pytest.approx(stage["temperatures"])
    graph = onnx.load(str(stage_onnx.path)).graph
    assert "crops" in [i.name for i in graph.input] and "stage_logits.disc" in [o.name for o in graph.output]
    without = export_onnx(run.best_checkpoint, tmp_path / "m.onnx", without_grade_stage=True)
    meta = _onnx_meta(without.path)
    assert meta["grade_stage"] is None  # the card without the stage section
    assert [i.name for i in onnx.load(str(without.path)).graph.input] == ["images", "points"]
    assert not any(k.startswith("stage_logits.") for k in without.max_abs_diff)


def _records(path):
    import json

    return {
        (r["studyUid"], p["tag"]["identification"], p["tag"].get("vertebra", p["tag"].get("disc"))): p
        for r in json.loads(path.read_text())
        for p in r["data"][0]["annotation"][0]["data"]["point"]
    }


def test_predict_onnx_with_the_stage_equals_the_checkpoint(run, stage_onnx, slices, synth_root, tmp_path, one_thread):
    from spine_kp.cli.main import main
    from spine_kp.inference.onnx_predictor import OnnxPredictor

    outs = {}
    for name, flag, model in (("torch", "--checkpoint", run.best_checkpoint), ("onnx", "--onnx", stage_onnx.path)):
        outs[name] = tmp_path / f"{name}.json"
        args = ["predict", str(synth_root / "studies"), flag, str(model), "-o", str(outs[name])]
        assert main([*args, "--quiet", "--device", "cpu"]) == 0
    torch_pts, onnx_pts = _records(outs["torch"]), _records(outs["onnx"])
    assert torch_pts and set(onnx_pts) == set(torch_pts)  # same studies, identifications and grades
    for key, p in torch_pts.items():
        assert abs(onnx_pts[key]["score"] - p["score"]) < 1e-3
    # the grade probabilities themselves: the stage's, not the head's
    ref = Predictor.from_checkpoint(run.best_checkpoint, device="cpu")
    got = OnnxPredictor.from_onnx(stage_onnx.path, device="cpu")
    assert got.grade_stage is not None and got.grade_stage.temperatures == pytest.approx(ref.grade_stage.temperatures)
    head = OnnxPredictor.from_onnx(stage_onnx.path, device="cpu", grade_stage=None).predict(slices)
    for a, b, h in zip(got.predict(slices), ref.predict(slices), head):
        for kind in b.grade_probs:
            np.testing.assert_allclose(a.grade_probs[kind], b.grade_probs[kind], atol=1e-4)
            assert not np.allclose(a.grade_probs[kind], h.grade_probs[kind])


NO_TORCH = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "timm", "pytorch_lightning", "lightning", "monai"):
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, NoTorch())
from spine_kp.cli.main import main
from spine_kp.inference.onnx_predictor import OnnxPredictor

assert OnnxPredictor.from_onnx(sys.argv[3], device="cpu").grade_stage is not None
rc = main(sys.argv[1:])
assert not [m for m in sys.modules if m.split(".")[0] == "torch"], "torch was imported"
sys.exit(rc)
"""


def test_predict_onnx_with_the_stage_runs_without_torch(stage_onnx, synth_root, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "pred.json"
    args = ["predict", "--onnx", str(stage_onnx.path), str(synth_root / "studies"), "-o", str(out), "--quiet"]
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _records(out)


def test_the_stage_is_skipped_on_a_handful_of_studies():
    from spine_kp.engine.grade_stage_train import stage_skip_reason
    from spine_kp.grading.config import GradeStageConfig

    assert "min_train_studies" in stage_skip_reason(GradeStageConfig(enabled=True), 5)
    assert stage_skip_reason(GradeStageConfig(enabled=True), 20) is None
    assert stage_skip_reason(GradeStageConfig(enabled=False), 500) is not None


def test_stage_temperatures_are_fitted_stored_and_applied(run, slices, synth_root, one_thread):
    import numpy as np

    from spine_kp.engine.grade_stage_train import fit_stage_temperatures
    from spine_kp.grading.cropset import build_cropset
    from spine_kp.inference.crop_stage import CropStage
    from spine_kp.io.annotations import read_annotations
    from spine_kp.io.dicom import scan
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


def test_imbalance_options_weigh_and_shift_the_training_loss_only(synth_root):
    from spine_kp.data.labels import label_stats
    from spine_kp.engine.grade_stage_module import CropGraderModule
    from spine_kp.grading.config import GradeStageConfig
    from spine_kp.io.annotations import read_annotations
    from spine_kp.schema import load_schema

    schema = load_schema("default")
    stats = label_stats(read_annotations(synth_root / "annotations.json", schema), schema)
    full = CropGraderModule(GradeStageConfig(channels=(8,), size_px=16), schema, stats)
    sqrt = CropGraderModule(GradeStageConfig(channels=(8,), size_px=16, pos_weight_power=0.5), schema, stats)
    none = CropGraderModule(GradeStageConfig(channels=(8,), size_px=16, pos_weight_power=0.0), schema, stats)
    trained = torch.as_tensor(stats.grade_mask("disc"), dtype=torch.float32)
    torch.testing.assert_close(sqrt.weight_disc, full.weight_disc.sqrt())
    torch.testing.assert_close(none.weight_disc, trained)
    adjusted = CropGraderModule(GradeStageConfig(channels=(8,), size_px=16, logit_adjust=1.0), schema, stats)
    torch.testing.assert_close(adjusted.adjust_disc, torch.as_tensor(stats.log_prior("disc")))
    k, g = len(schema.landmarks_of_kind("disc")), len(schema.kind("disc").grades)
    v = len(schema.landmarks) - k
    logits = {"disc": torch.zeros(2, k, g), "vertebra": torch.zeros(2, v, 2)}
    batch = {
        "grades": {"disc": torch.zeros(2, k, g), "vertebra": torch.zeros(2, v, 2)},
        "grade_mask": {"disc": torch.ones(2, k, dtype=torch.bool), "vertebra": torch.ones(2, v, dtype=torch.bool)},
    }
    batch["grades"]["disc"][..., 0] = 1.0
    batch["grades"]["vertebra"][..., 0] = 1.0
    plain = adjusted.loss(logits, batch)
    assert plain == pytest.approx(float(adjusted.loss(logits, batch, adjust=False)))
    assert float(adjusted.loss(logits, batch, adjust=True)) != pytest.approx(float(plain))
    with pytest.raises(ValueError, match="pos_weight_power"):
        GradeStageConfig(pos_weight_power=-1.0)


def _assert_predict_onnx_equals_torch(checkpoint, onnx_path, synth_root, tmp_path):
    """``spine-kp predict`` with the checkpoint and with its ONNX export: the same points, scores within 1e-3."""
    from spine_kp.cli.main import main

    outs = {}
    for name, flag, model in (("torch", "--checkpoint", checkpoint), ("onnx", "--onnx", onnx_path)):
        outs[name] = tmp_path / f"{name}.json"
        args = ["predict", str(synth_root / "studies"), flag, str(model), "-o", str(outs[name]), "--quiet"]
        assert main([*args, "--device", "cpu"]) == 0
    torch_pts, onnx_pts = _records(outs["torch"]), _records(outs["onnx"])
    assert torch_pts and set(onnx_pts) == set(torch_pts)
    for key, p in torch_pts.items():
        assert abs(onnx_pts[key]["score"] - p["score"]) < 1e-3


def test_a_stage_on_parasagittal_planes_trains_predicts_and_exports(train_tiny, synth_root, tmp_path, one_thread):
    """``grade_stage.neighbours: 1``: crops on the slice and one neighbour per side, decoded by predict on its own;
    torch and ONNX Runtime grade alike."""
    pytest.importorskip("onnxruntime")
    from spine_kp.export.onnx import export_onnx

    result = train_tiny(tmp_path / "run", {**TINY, "grade_stage.neighbours": "1"})
    predictor = Predictor.from_checkpoint(result.best_checkpoint, device="cpu")
    assert predictor.grade_stage.config.planes == 3 and predictor.slices_needed() == 1
    assert predictor.neighbours == 0  # the landmark network still reads one slice
    exported = export_onnx(result.best_checkpoint, tmp_path / "m.onnx")
    _assert_predict_onnx_equals_torch(result.best_checkpoint, exported.path, synth_root, tmp_path)


def test_an_ensemble_stage_trains_every_member_and_predicts_and_exports_alike(
    train_tiny, synth_root, tmp_path, one_thread
):
    """``grade_stage.members: 2``: both members (trained apart) in the checkpoint; torch and ONNX
    Runtime grade alike."""
    pytest.importorskip("onnxruntime")
    from spine_kp.export.onnx import export_onnx
    from spine_kp.grading.model import CropGraderEnsemble

    result = train_tiny(tmp_path / "run", {**TINY, "grade_stage.members": "2"})
    state = torch.load(result.best_checkpoint, map_location="cpu", weights_only=False)["grade_stage"]["state_dict"]
    assert {k.split(".")[1] for k in state if k.startswith("members.")} == {"0", "1"}
    first, second = (state[f"members.{i}.graders.disc.classifiers.0.weight"] for i in (0, 1))
    assert not torch.equal(first, second)
    predictor = Predictor.from_checkpoint(result.best_checkpoint, device="cpu")
    assert isinstance(predictor.grade_stage.model, CropGraderEnsemble)
    exported = export_onnx(result.best_checkpoint, tmp_path / "m.onnx")
    assert max(exported.max_abs_diff.values()) <= 1e-4
    _assert_predict_onnx_equals_torch(result.best_checkpoint, exported.path, synth_root, tmp_path)


def test_a_stage_written_before_the_pool_key_loads_with_average_pooling(train_tiny, slices, tmp_path, one_thread):
    result = train_tiny(tmp_path / "run", {**TINY, "grade_stage.pool": "avg"})
    ckpt = torch.load(result.last_checkpoint, map_location="cpu", weights_only=False)
    del ckpt["grade_stage"]["config"]["pool"]  # as the last release wrote it
    del ckpt["model_card"]  # (before the model card, too)
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    predictor = Predictor.from_checkpoint(old, device="cpu")
    assert predictor.grade_stage.config.pool == "avg"  # not today's default, which the weights do not fit
    reference = Predictor.from_checkpoint(result.last_checkpoint, device="cpu")
    for p, r in zip(predictor.predict(slices), reference.predict(slices)):
        assert p.record == r.record


def test_training_steps_augment_with_the_configured_mirror_and_flip(monkeypatch, one_thread):
    import spine_kp.engine.grade_stage_module as stage_module
    from spine_kp.engine.grade_stage_module import CropGraderModule
    from spine_kp.grading.config import GradeStageConfig
    from spine_kp.schema import load_schema

    schema = load_schema("default")
    calls = []

    def recording(crops, size_px, *args, **kwargs):
        calls.append(kwargs)
        return torch.zeros(crops.shape[0], crops.shape[1], size_px, size_px)

    monkeypatch.setattr(stage_module, "random_recrop", recording)
    k, v = len(schema.landmarks_of_kind("disc")), len(schema.landmarks_of_kind("vertebra"))
    batch = {
        "crops": torch.zeros(2, len(schema.landmarks) * 3, 20, 20),
        "grades": {"disc": torch.zeros(2, k, 7), "vertebra": torch.zeros(2, v, 2)},
        "grade_mask": {"disc": torch.ones(2, k, dtype=torch.bool), "vertebra": torch.ones(2, v, dtype=torch.bool)},
    }
    for mirror, flip_cc in ((True, False), (False, True)):
        cfg = GradeStageConfig(channels=(8,), size_px=16, neighbours=1, mirror=mirror, flip_cc=flip_cc)
        module = CropGraderModule(cfg, schema, None)
        monkeypatch.setattr(module, "log", lambda *a, **kw: None)
        module.training_step(batch, 0)
        assert calls[-1] == {"planes": 3, "mirror": mirror, "flip_cc": flip_cc}


def test_an_ordinal_setting_the_schema_contradicts_fails_before_training(synth_root, tmp_path, capsys):
    from spine_kp.cli.main import main

    args = ["train", "--config", "demo_cpu", "--data", str(synth_root / "studies"), "--annotations"]
    args += [str(synth_root / "annotations.json"), "--out", str(tmp_path / "run"), "--grade_stage.enabled", "true"]
    args += ["--grade_stage.ordinal_kind", "disc", "--grade_stage.ordinal_grades", "[v1, v2, v99]"]
    assert main([*args, "--grade_stage.ordinal_smoothing", "0.3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "grade_stage.ordinal_grades ['v99'] are not grades of 'disc'" in err[0], err
    assert not (tmp_path / "run" / "checkpoints").exists()
