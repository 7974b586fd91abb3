"""scripts/bench_decode_fit.py: both ways of decoding the fit's grid, timed on a real checkpoint's heatmaps."""

from __future__ import annotations

from pathlib import Path

import pytest
from script_loader import load_script


def test_bench_times_both_decodes_and_they_agree(
    synth_root: Path, tmp_path: Path, train_tiny, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    result = train_tiny(tmp_path / "run", {"decode.fit": "false"})
    argv = ["--checkpoint", str(result.best_checkpoint), "--data", str(synth_root / "studies"),
            "--annotations", str(synth_root / "annotations.json")]  # fmt: skip
    assert load_script("bench_decode_fit").main(argv) == 0
    out = capsys.readouterr().out
    assert "5 slices, 108 settings" in out and "identical on every setting: True" in out
    times = [float(line.split(":")[1].split()[0]) for line in out.splitlines() if line.endswith(" s")]
    assert len(times) == 2 and all(t > 0 for t in times)
