"""Checkpoints are data, not code: a crafted torch file is refused by every command that loads one, and its payload
never runs; real spine_kp checkpoints (and numpy scalars an older release stored) still load."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from spine_kp.checkpoint import load_checkpoint, write_entry
from spine_kp.cli.main import main
from spine_kp.models.backbones import read_state_dict
from spine_kp.torch_files import UnsafeFileError, load_torch_file

pytestmark = pytest.mark.usefixtures("one_thread")


class Payload:
    """Unpickling this writes ``marker``: what a hostile checkpoint would do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('payload ran')",))


@pytest.fixture(scope="module")
def real_run(train_tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real one-epoch run folder (best.ckpt, last.ckpt)."""
    run = tmp_path_factory.mktemp("safe_run") / "run"
    train_tiny(run)
    return run


def _poison(src: Path, dst: Path, marker: Path) -> Path:
    """``src`` (a real checkpoint) with a payload entry added: it would still predict normally if unpickled."""
    ckpt = load_torch_file(src)
    ckpt["extra"] = Payload(marker)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, dst)
    return dst


def _commands(real_run: Path, synth_root: Path, tmp: Path, marker: Path) -> dict[str, list[str]]:
    evil = _poison(real_run / "checkpoints" / "best.ckpt", tmp / "evil.ckpt", marker)
    resume_run = tmp / "resume_run"
    shutil.copytree(real_run, resume_run)
    _poison(real_run / "checkpoints" / "last.ckpt", resume_run / "checkpoints" / "last.ckpt", marker)
    evil_weights = tmp / "backbone.pth"
    torch.save({"conv1.weight": torch.zeros(8, 1, 3, 3), "extra": Payload(marker)}, evil_weights)
    data, ann = str(synth_root / "studies"), str(synth_root / "annotations.json")
    train = ["train", "--config", "demo_cpu", "--data", data, "--annotations", ann, "--trainer.progress_bar", "false"]
    return {
        "predict --checkpoint": ["predict", data, "--checkpoint", str(evil), "-o", str(tmp / "p.json"), "--quiet"],
        "export": ["export", str(evil), "--onnx", str(tmp / "m.onnx")],
        "train --init": [*train, "--out", str(tmp / "init_run"), "--init", str(evil)],
        "train --resume": [*train, "--out", str(resume_run), "--resume"],
        "model.pretrained": [*train, "--out", str(tmp / "pre_run"), "--model.pretrained", str(evil_weights)],
    }


@pytest.mark.parametrize("command", ["predict --checkpoint", "export", "train --init", "train --resume",
                                     "model.pretrained"])  # fmt: skip
def test_every_loading_command_refuses_a_payload_and_never_runs_it(
    command: str, real_run: Path, synth_root: Path, tmp_path: Path, capsys
) -> None:
    marker = tmp_path / "MARKER"
    argv = _commands(real_run, synth_root, tmp_path, marker)[command]
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert not marker.exists(), f"{command}: the payload ran"
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert "refused: it needs code to load (builtins.exec)" in lines[0] and "nothing in it was run" in lines[0]


def test_real_checkpoints_load_as_data_and_write_entry_keeps_them_safe(real_run: Path, tmp_path: Path) -> None:
    best = tmp_path / "best.ckpt"
    shutil.copy(real_run / "checkpoints" / "best.ckpt", best)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(best) == []  # training writes data only
    write_entry(best, "grade_stage_note", {"fitted": np.float64(0.5), "n": np.int64(3)})  # numpy scalars allowed
    ckpt = load_checkpoint(best, mmap=True)
    assert ckpt.config["model"] and load_torch_file(best)["grade_stage_note"] == {"fitted": 0.5, "n": 3}
    marker = tmp_path / "MARKER"
    evil = _poison(best, tmp_path / "evil.ckpt", marker)
    with pytest.raises(UnsafeFileError, match=r"evil\.ckpt: refused"):
        write_entry(evil, "x", 1)
    assert not marker.exists()


def test_legacy_format_payload_and_pretrained_weights_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(1), "x": Payload(marker)}, legacy, _use_new_zipfile_serialization=False)
    for mmap in (False, True):
        with pytest.raises(UnsafeFileError, match=r"legacy\.pt: refused: it needs code to load \((builtins\.)?exec\)"):
            load_torch_file(legacy, mmap=mmap)
    with pytest.raises(UnsafeFileError):
        read_state_dict(legacy)
    assert not marker.exists()
    plain = tmp_path / "plain.pth"
    torch.save({"state_dict": {"conv.weight": torch.ones(2)}}, plain)
    assert set(read_state_dict(plain)) == {"conv.weight"}
