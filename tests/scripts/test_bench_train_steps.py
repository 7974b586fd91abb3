"""scripts/bench_train_steps.py: one row per worker count and run, with steps/s of a real fit."""

from __future__ import annotations

from pathlib import Path

import pytest
from script_loader import load_script


def test_bench_times_a_fit_with_and_without_workers(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "model:\n  backbone: none\n  decoder: hourglass\n  output_stride: 4\n  decoder_channels: 8\n"
        "  decoder_kwargs: {num_stacks: 1, depth: 2}\n"
        "data:\n  input_size: [64, 64]\n  batch_size: 2\n  val_fraction: 0.2\n"
        "trainer:\n  accelerator: cpu\n  progress_bar: false\n"
    )
    bench = load_script("bench_train_steps")
    args = ["--data", str(synth_root), "--config", str(config), "--steps", "2", "--warmup", "1", "--threads", "1"]
    assert bench.main([*args, "--workers", "0", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| 1 |")]
    assert [int(r[2]) for r in rows] == [0, 2]
    assert all(float(r[3]) > 0 and float(r[5]) > 0 for r in rows)  # steps/s, encoding ms per batch
    assert "workers 0: best" in out and "workers 2: best" in out
