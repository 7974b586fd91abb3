"""``spine-kp pretrain``: randomised phantoms -> checkpoint, resumable; its checkpoint warm-starts ``train``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spine_kp.cli.main import main

TINY = [
    "--data.input_size", "[64, 64]", "--data.target_spacing", "5.0", "--data.batch_size", "2",
    "--data.val_fraction", "0.34", "--model.backbone", "mobilenetv3_small_100", "--model.output_stride", "4",
    "--trainer.progress_bar", "false", "--trainer.limit_train_batches", "1", "--trainer.log_every_n_steps", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pretrain")
    code = main(["pretrain", "--out", str(out), "--studies", "3", "--size", "96", "--workers", "1",
                 "--trainer.max_epochs", "1", *TINY])  # fmt: skip
    assert code == 0
    return out


def test_pretrain_writes_randomised_phantoms_and_a_checkpoint(pretrained: Path) -> None:
    records = json.loads((pretrained / "phantoms" / "annotations.json").read_text())
    assert len(records) == 3
    assert not any(p.name == "t2_ax" for p in (pretrained / "phantoms" / "studies").rglob("*"))
    ckpt = torch.load(pretrained / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    cfg = ckpt["hyper_parameters"]["config"]
    assert cfg["data"]["target_spacing"] == 5.0
    assert cfg["data"]["root"].endswith("studies")


def test_pretrain_resumes_training_and_reuses_the_phantoms(pretrained: Path, capsys: pytest.CaptureFixture) -> None:
    before = (pretrained / "phantoms" / "annotations.json").stat().st_mtime_ns
    code = main(["pretrain", "--out", str(pretrained), "--studies", "3", "--size", "96", "--workers", "1",
                 "--resume", "--trainer.max_epochs", "2", *TINY])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "reusing the 3 randomised phantom studies" in out and "resuming from" in out
    assert (pretrained / "phantoms" / "annotations.json").stat().st_mtime_ns == before
    last = torch.load(pretrained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 1  # continued to the second epoch, not restarted


def test_pretrain_rejects_too_few_studies(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["pretrain", "--out", str(tmp_path), "--studies", "1"]) == 2
    assert capsys.readouterr().err.startswith("error: --studies")
