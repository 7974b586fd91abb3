"""Training checkpoints are written atomically: a full disk mid-save keeps the previous file and leaves no temp file."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from spine_kp.engine.checkpoint_io import AtomicCheckpointIO


def test_a_failed_save_keeps_the_previous_checkpoint_and_no_temp_file(tmp_path: Path, monkeypatch) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "best.ckpt"
    io.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)
    before = path.read_bytes()
    real_save = torch.save

    def half_then_full_disk(obj: object, f, *args: object, **kwargs: object) -> None:
        real_save({"epoch": 2, "w": torch.zeros(1000)}, f)  # part of a file reaches the disk, then it is full
        f.truncate(f.tell() // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_full_disk)
    with pytest.raises(OSError) as info:
        io.save_checkpoint({"epoch": 2, "w": torch.zeros(1000)}, path)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.ckpt"]
    monkeypatch.setattr(torch, "save", real_save)
    assert io.load_checkpoint(path)["epoch"] == 1


def test_the_trainer_saves_through_it(tmp_path: Path) -> None:
    from spine_kp.engine.config import load_experiment
    from spine_kp.engine.train import build_trainer

    trainer = build_trainer(load_experiment("demo_cpu", {"trainer.progress_bar": "false"}), tmp_path)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
