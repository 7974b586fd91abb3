"""Validation under DDP measures the whole validation split: every rank gathers all ranks' outputs, once per study.

The end-to-end test validates one set of weights with 2 CPU processes (``ddp``, gloo) and with 1, on 3 validation
studies, so the distributed sampler pads one shard with a study of the other; the metrics must be those of the
single process on every rank.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_validate import validate

from spine_kp.cli.main import main
from spine_kp.engine.config import experiment_to_dict, load_experiment
from spine_kp.engine.gather import gather_by_study, merge_by_study
from spine_kp.engine.module import LandmarkModule
from spine_kp.engine.train import TrainResult
from spine_kp.schema import load_schema

HELPER = Path(__file__).with_name("ddp_validate.py")
# 5 phantom studies, 3 of them for validation: 2 ranks get 2 each, one study twice.
OVERRIDES = {
    "data.input_size": "[64, 64]",
    "data.batch_size": "2",
    "data.val_fraction": "0.6",
    "model.decoder_channels": "16",
    "model.output_stride": "1",
    "calibration.min_points": "1",
}
SEED = 11  # untrained weights whose points hit some ground truth (val/mAP > 0) and whose vertebra T is inside bounds
GATHERED = ("val/mAP", "val/median_mm", "val/p95_mm", "val/within_8mm", "calib/T_vertebra", "calib/T_disc")


def test_merge_keeps_one_copy_of_a_repeated_study_in_uid_order():
    ranks = [{"s2": "a2", "s0": "a0"}, {"s1": "b1", "s2": "b2"}]  # s2: the padding repeat of another shard
    assert merge_by_study(ranks) == {"s0": "a0", "s1": "b1", "s2": "a2"}
    assert list(merge_by_study(ranks)) == ["s0", "s1", "s2"]
    assert list(gather_by_study({"b": 1, "a": 2})) == ["a", "b"]  # one process: its own outputs, by UID


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained weights (seeded), saved as training saves them."""
    cfg = load_experiment("demo_cpu", OVERRIDES)
    torch.manual_seed(SEED)
    module = LandmarkModule(experiment_to_dict(cfg), load_schema(cfg.schema).to_dict())
    path = tmp_path_factory.mktemp("ddp") / "weights.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path


def test_ddp_validation_measures_the_whole_split_alike_on_every_rank(synth_root, checkpoint, tmp_path, one_thread):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(HELPER), str(checkpoint), str(synth_root), "2", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    _, single = validate(checkpoint, synth_root, 1)

    assert single["val/studies"] == 3
    for metrics in ranks:
        assert metrics["val/studies"] == 3  # each rank scored all 3 studies, not its shard of 2
        for name in GATHERED:
            assert metrics[name] == ranks[0][name], name  # identical on every rank
            assert metrics[name] == pytest.approx(single[name], rel=1e-5, abs=1e-6), name  # = one process
    assert 1.0 < single["val/median_mm"] < single["val/p95_mm"] < float("inf")
    assert single["calib/T_vertebra"] != 1.0  # fitted, not left at its default
    # nothing for sync_dist to reduce, and Lightning is not told otherwise
    assert "self.log('val/mAP'" not in proc.stderr and "self.log('calib/" not in proc.stderr


def _train_result(rank_zero: bool, tmp_path: Path) -> TrainResult:
    ckpt = tmp_path / "checkpoints" / "best.ckpt"
    return TrainResult(tmp_path, ckpt, ckpt, 0.5, 1, is_global_zero=rank_zero)


@pytest.mark.parametrize("rank_zero", [True, False])
def test_train_command_reports_on_rank_zero_only(monkeypatch, capsys, tmp_path, rank_zero):
    """Every DDP process runs ``spine-kp train`` to its end; only rank 0 prints the run summary."""
    import spine_kp.engine.train

    monkeypatch.setattr(spine_kp.engine.train, "train", lambda *a, **k: _train_result(rank_zero, tmp_path))
    argv = ["train", "--config", "demo_cpu", "--data", str(tmp_path), "--annotations", "a.json", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("best checkpoint:") == (1 if rank_zero else 0) and bool(out) == rank_zero
