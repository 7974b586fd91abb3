"""``spine-kp pretrain-stage`` and ``grade_stage.init``: a crop stage trained alone on phantoms starts the next one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from spine_kp.checkpoint import CheckpointError
from spine_kp.cli.main import main
from spine_kp.engine.grade_stage_init import STAGE_FILE_FORMAT, init_stage, read_stage_source
from spine_kp.grading.config import GradeStageConfig
from spine_kp.grading.model import create_crop_grader
from spine_kp.schema import load_schema

SCHEMA = load_schema("tianchi")
STAGE = {"grade_stage.channels": "[8]", "grade_stage.size_px": "16", "grade_stage.hidden": "16"}
STAGE_CFG = GradeStageConfig(enabled=True, channels=(8,), size_px=16, hidden=16, neighbours=0, mirror=False)
TINY_RUN = {  # demo_cpu's tiny model on tianchi phantoms, the stage as pretrained (0 epochs: it keeps its start)
    "schema": "tianchi",
    "data.input_size": "[64, 64]",
    "data.batch_size": "2",
    "data.val_fraction": "0.4",
    "model.decoder_channels": "8",
    "trainer.max_epochs": "1",
    "trainer.progress_bar": "false",
    "grade_stage.enabled": "true",
    "grade_stage.neighbours": "0",
    "grade_stage.mirror": "false",
    "grade_stage.min_train_studies": "0",
    "grade_stage.epochs": "0",
    **STAGE,
}


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stage")
    argv = ["pretrain-stage", "--out", str(out), "--studies", "4", "--size", "96", "--seed", "3"]
    assert main([*argv, "--grade_stage.epochs", "1", *[f"--{k}={v}" for k, v in STAGE.items()]]) == 0
    return out


def test_pretrain_stage_writes_a_stage_file_of_the_configs_schema(stage_run: Path) -> None:
    tensors, grades = read_stage_source(stage_run / "grade_stage.pt")
    assert grades == {k.name: list(k.grades) for k in SCHEMA.kinds}
    fresh = create_crop_grader(STAGE_CFG, SCHEMA).state_dict()
    assert set(tensors) == set(fresh) and all(tensors[k].shape == fresh[k].shape for k in fresh)
    assert (stage_run / "phantoms" / "annotations.json").is_file()  # tianchi-schema phantoms, kept for a rerun
    raw = torch.load(stage_run / "grade_stage.pt", map_location="cpu", weights_only=True)
    assert raw["format"] == STAGE_FILE_FORMAT and raw["schema"] == "tianchi"


def test_train_starts_its_stage_from_the_file(stage_run: Path, tmp_path: Path, one_thread: None) -> None:
    phantoms = stage_run / "phantoms"
    run = tmp_path / "run"
    argv = ["train", "--config", "demo_cpu", "--data", str(phantoms / "studies"), "--annotations"]
    argv += [str(phantoms / "annotations.json"), "--out", str(run)]
    overrides = {**TINY_RUN, "grade_stage.init": str(stage_run / "grade_stage.pt")}
    assert main([*argv, *[f"--{k}={v}" for k, v in overrides.items()]]) == 0
    stored = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["grade_stage"]
    tensors, _ = read_stage_source(stage_run / "grade_stage.pt")
    assert stored["config"]["init"] == str(stage_run / "grade_stage.pt")
    for key, value in tensors.items():  # no training epoch: the run's stage is the pretrained one, tensor for tensor
        torch.testing.assert_close(stored["state_dict"][key], value)
    # and the run itself is a source: its checkpoint (or run folder) starts another stage
    model = create_crop_grader(STAGE_CFG, SCHEMA)
    assert init_stage(model, run, SCHEMA) == (len(tensors), len(tensors))


def test_a_stage_that_cannot_start_the_run_fails_before_training(
    stage_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    phantoms = stage_run / "phantoms"
    argv = ["train", "--config", "demo_cpu", "--data", str(phantoms / "studies"), "--annotations"]
    argv += [str(phantoms / "annotations.json"), "--out", str(tmp_path / "run")]
    for init, said in [(tmp_path / "missing.pt", "does not exist"), (stage_run / "grade_stage.pt", "no tensor")]:
        overrides = {**TINY_RUN, "grade_stage.init": str(init), "grade_stage.members": "2"}  # an ensemble: no name fits
        assert main([*argv, *[f"--{k}={v}" for k, v in overrides.items()]]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0] and str(init) in err[0]
        assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained


def test_a_kind_with_other_grade_names_keeps_fresh_output_rows(stage_run: Path, tmp_path: Path) -> None:
    raw = torch.load(stage_run / "grade_stage.pt", map_location="cpu", weights_only=True)
    raw["grades"]["disc"] = ["v1", "v2", "v3", "v5", "v4"]  # same count, another order: rows would be mismatched
    other = tmp_path / "other.pt"
    torch.save(raw, other)
    model = create_crop_grader(STAGE_CFG, SCHEMA)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copied, total = init_stage(model, other, SCHEMA)
    after = model.state_dict()
    disc_out = [k for k in after if "classifiers" in k and after[k].shape[0] == len(SCHEMA.kind("disc").grades)]
    assert disc_out and copied == total - len(disc_out)
    for key in disc_out:
        torch.testing.assert_close(after[key], before[key])
    source, _ = read_stage_source(other)
    features = next(k for k in after if k.startswith("graders.disc.features"))
    torch.testing.assert_close(after[features], source[features])


class _Payload:
    pass


def test_a_file_that_needs_code_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    torch.save({"format": STAGE_FILE_FORMAT, "grade_stage": _Payload()}, bad)
    with pytest.raises(CheckpointError, match="refused"):
        read_stage_source(bad)
    cfg = dataclasses.replace(STAGE_CFG, channels=(8,))
    with pytest.raises(CheckpointError, match="not a spine_kp checkpoint|no crop grading stage"):
        plain = tmp_path / "plain.pt"
        torch.save(create_crop_grader(cfg, SCHEMA).state_dict(), plain)  # a bare state dict is not a source
        read_stage_source(plain)


def test_a_damaged_stage_file_is_one_error_naming_it(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.pt"
    torch.save({"format": STAGE_FILE_FORMAT, "grades": {"disc": 3}, "grade_stage": {"state_dict": {}}}, damaged)
    with pytest.raises(CheckpointError, match=f"{damaged}: damaged stage entry"):
        read_stage_source(damaged)
