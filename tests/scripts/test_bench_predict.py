"""scripts/bench_predict.py: both backends on the same studies, one row each, and their ratio."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_predict.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_predict", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_predict"] = module
    spec.loader.exec_module(module)
    return module


def test_bench_compares_torch_and_onnx_on_the_same_studies(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "model:\n  backbone: mobilenetv3_large_100\n  decoder_channels: 16\n  output_stride: 4\n"
        "data:\n  input_size: [64, 64]\n"
    )
    bench = _load_script()
    args = ["--data", str(synth_root / "studies"), "--configs", str(config), "--threads", "1", "--workers", "1"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    rows = [line.split("|") for line in out.splitlines() if line.startswith(f"| {config}")]
    assert [r[2].strip() for r in rows] == ["torch", "onnx"]
    assert [int(r[3]) for r in rows] == [5, 5]  # every phantom study predicted by both
    assert all(float(r[5]) > 0 for r in rows)  # s/study
    assert f"{config}: torch / onnx = " in out and "x per study end to end" in out
