"""scripts/bench_junction.py: the junction check trained per fold of a bench_real folder, rows pooled and scored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_loader import load_script, tiny_cv


def test_bench_trains_the_check_per_fold_and_scores_the_pooled_rows(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    cv = tiny_cv(synth_root, tmp_path / "cv")
    bench = load_script("bench_junction")
    out = tmp_path / "junction.json"
    settings = ["min_train_studies=0", "epochs=1", "size_px=24", "channels=[8]"]
    args = ["--cv", str(cv), "--margins", "0", "1000", "--set", *settings, "--out", str(out)]
    assert bench.main([*args, "--grade-stage", "size_px=24", "channels=[8]", "epochs=1", "min_train_studies=0"]) == 0
    result = json.loads(out.read_text())
    assert list(result["rows"]) == ["decoded chain", "junction margin 0", "junction margin 1000"]
    assert result["junction"]["size_px"] == 24 and result["grade_stage"]["size_px"] == 24
    assert [f["metrics"]["train_slices"] for f in result["folds"]] and len(result["folds"]) == 2
    plain, never = result["rows"]["decoded chain"], result["rows"]["junction margin 1000"]
    for key in ("within_8mm", "median_mm", "level_shifts", "macro_f1", "mAP"):  # a margin nothing beats: no move
        assert never[key] == plain[key]
    assert 0.0 <= plain["within_8mm"] <= 1.0 and plain["level_shifts"] == len(plain["level_shift_studies"])
    assert "junction margin 0" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no fold"):
        bench.main(["--cv", str(tmp_path / "empty")])
