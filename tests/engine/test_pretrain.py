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


def test_pretrain_members_train_on_their_own_seeds_and_join_in_one_ensemble(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from spine_kp.fold_ensemble import load_ensemble

    out = tmp_path / "pre"
    code = main(["pretrain", "--out", str(out), "--studies", "3", "--size", "96", "--workers", "1", "--seed", "4",
                 "--members", "2", "--trainer.max_epochs", "1", *TINY])  # fmt: skip
    assert code == 0
    first, second = out / "checkpoints" / "best.ckpt", out / "member_2" / "checkpoints" / "best.ckpt"
    assert first.is_file() and second.is_file()  # the first member stays where --init looks for it
    ensemble = load_ensemble(out / "ensemble.ckpt")
    assert len(ensemble.members) == 2 and [Path(s) for s in ensemble.sources] == [first, second]
    sets = [json.loads((d / "phantoms" / "annotations.json").read_text()) for d in (out, out / "member_2")]
    assert sets[0] != sets[1]  # phantom seeds 4 and 5
    assert f"ensemble of 2 members: {out / 'ensemble.ckpt'}" in capsys.readouterr().out


def test_pretrain_rejects_a_bad_member_count(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["pretrain", "--out", str(tmp_path), "--members", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: --members")
