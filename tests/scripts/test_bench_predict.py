"""scripts/bench_predict.py: both backends on the same studies, one row each, and their ratio."""

from __future__ import annotations

from pathlib import Path

import pytest
from script_loader import load_script

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def test_bench_compares_torch_and_onnx_on_the_same_studies(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "model:\n  backbone: mobilenetv3_large_100\n  decoder_channels: 16\n  output_stride: 4\n"
        "data:\n  input_size: [64, 64]\n"
    )
    bench = load_script("bench_predict")
    args = ["--data", str(synth_root / "studies"), "--configs", str(config), "--threads", "1", "--workers", "1"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    rows = [line.split("|") for line in out.splitlines() if line.startswith(f"| {config}")]
    assert [r[2].strip() for r in rows] == ["torch", "onnx"]
    assert [int(r[3]) for r in rows] == [5, 5]  # every phantom study predicted by both
    assert all(float(r[5]) > 0 for r in rows)  # s/study
    assert f"{config}: torch / onnx = " in out and "x per study end to end" in out
