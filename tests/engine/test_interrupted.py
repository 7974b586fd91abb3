"""Interrupted runs: SIGKILL mid-training then ``--resume`` ends where an uninterrupted run ends; a killed
prediction run leaves its outputs complete or absent, never half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")

MAX_EPOCHS = 3
TINY = [
    "--config", "demo_cpu",
    "--data.input_size", "[64, 64]",
    "--data.batch_size", "1",
    "--data.val_fraction", "0.4",
    "--model.decoder_channels", "16",
    "--trainer.progress_bar", "false",
    "--trainer.max_epochs", str(MAX_EPOCHS),
]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _train_argv(root: Path, out: Path) -> list[str]:
    data = ["--data", str(root / "studies"), "--annotations", str(root / "annotations.json"), "--out", str(out)]
    return [sys.executable, "-m", "spine_kp", "train", *data, *TINY]


def _steps(ckpt: Path) -> tuple[int, int]:
    c = torch.load(ckpt, map_location="cpu", weights_only=False)
    return int(c["epoch"]), int(c["global_step"])


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before {path} appeared")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def whole_run(synth_root, tmp_path_factory) -> Path:
    """An uninterrupted run of MAX_EPOCHS epochs."""
    whole = tmp_path_factory.mktemp("whole")
    subprocess.run(_train_argv(synth_root, whole), env=_env(), check=True, capture_output=True, timeout=300)
    return whole


def test_sigkill_mid_training_then_resume_reaches_the_same_optimizer_steps(synth_root, whole_run, tmp_path):
    epoch_whole, steps_whole = _steps(whole_run / "checkpoints" / "last.ckpt")
    assert epoch_whole == MAX_EPOCHS - 1 and steps_whole > 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_argv(synth_root, killed), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    last = killed / "checkpoints" / "last.ckpt"
    _wait_for(last, proc)  # epoch 0 is done; the next one is running
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    epoch_at_kill, steps_at_kill = _steps(last)  # the checkpoint on disk is whole (Lightning saves atomically)
    assert epoch_at_kill < MAX_EPOCHS - 1 and steps_at_kill < steps_whole

    resumed = subprocess.run(
        [*_train_argv(synth_root, killed), "--resume"], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _steps(last) == (epoch_whole, steps_whole)


def test_killed_prediction_leaves_outputs_complete_or_absent(synth_root, whole_run, tmp_path):
    ckpt = whole_run / "checkpoints" / "last.ckpt"
    outcomes = set()
    for delay in (0.0, 4.0):
        out = tmp_path / f"pred{delay}"
        out.mkdir()
        argv = [sys.executable, "-m", "spine_kp", "predict", str(synth_root / "studies"), "--checkpoint", str(ckpt)]
        argv += ["-o", str(out / "p.json"), "--csv", str(out / "p.csv"), "--quiet"]
        proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        for name in ("p.json", "p.csv", "p.errors.json"):
            path = out / name
            if not path.exists():
                outcomes.add("absent")
                continue
            outcomes.add("complete")
            text = path.read_text()
            if name.endswith(".json"):
                json.loads(text)  # a half-written file would not parse
            else:
                assert text.endswith("\n") and text.count("\n") >= 2
    assert "absent" in outcomes  # the early kills landed before any output existed
