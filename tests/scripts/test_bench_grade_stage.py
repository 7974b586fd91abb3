"""scripts/bench_grade_stage.py: the crop stage retrained per variant on one run, each scored on held-out studies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_loader import load_script

STAGE = {
    "grade_stage.enabled": "false",  # the bench trains its own stages
    "grade_stage.size_px": "24",
    "grade_stage.channels": "[8]",
}


def test_bench_retrains_the_stage_per_variant_and_scores_each(
    train_tiny, synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    run = train_tiny(tmp_path / "run", STAGE)
    bench = load_script("bench_grade_stage")
    out = tmp_path / "rows.json"
    args = ["--run", str(run.run_dir), "--test-root", str(synth_root / "studies")]
    args += ["--test-annotations", str(synth_root / "annotations.json"), "--epochs", "1", "--out", str(out)]
    assert bench.main([*args, "--variant", "plain", "--variant", "sqrt", "pos_weight_power=0.5"]) == 0
    rows = json.loads(out.read_text())
    assert list(rows) == ["head", "plain", "sqrt"]
    assert rows["sqrt"]["overrides"] == {"pos_weight_power": 0.5} and rows["plain"]["overrides"] == {}
    for row in rows.values():
        assert 0.0 <= row["mAP"] <= 1.0 and set(row["ece"]) >= {"vertebra", "disc"}
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| sqrt |")]
    assert len(table) == 1
    with pytest.raises(SystemExit):  # a bad value of a variant is refused by the stage config
        bench.main([*args, "--variant", "bad", "pos_weight_power=-1"])
    seeds = tmp_path / "seeds.json"
    args[-1] = str(seeds)
    assert bench.main([*args, "--variant", "plain", "--seeds", "0", "1"]) == 0
    rows = json.loads(seeds.read_text())
    assert list(rows) == ["head", "plain seed 0", "plain seed 1", "plain mean"]
    assert [rows[f"plain seed {s}"]["seed"] for s in (0, 1)] == [0, 1] and rows["plain mean"]["seeds"] == [0, 1]
    mean = (rows["plain seed 0"]["mAP"] + rows["plain seed 1"]["mAP"]) / 2
    assert rows["plain mean"]["mAP"] == pytest.approx(mean)
