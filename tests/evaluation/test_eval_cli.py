"""``spine-kp evaluate``: tables, --json, --report files, warnings and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from eval_fixtures import SCHEMA, pt, study

from spine_kp.cli.main import main
from spine_kp.evaluation import evaluate_files
from spine_kp.io.annotations import write_annotations


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    gt = [
        study("s1", [pt("L1", 100, 100, "v2"), pt("L1-L2", 100, 130, "v2,v5"), pt("L2", 100, 160, "")], (0.5, 0.8)),
        study("s2", [pt("L1", 90, 100, "v1"), pt("L4-L5", 100, 300, "v1")], (0.7, 0.7)),
    ]
    pred = [
        study("s1", [pt("L1", 102, 100, "v2", 0.9), pt("L1-L2", 100, 133, "v5", 0.8), pt("L2", 140, 160, "v1", 0.4)]),
        study("s9", [pt("L1", 100, 100, "v2", 0.9)]),  # unknown study
    ]
    write_annotations(tmp_path / "gt.json", gt)
    write_annotations(tmp_path / "pred.json", pred)
    return tmp_path / "gt.json", tmp_path / "pred.json"


def _args(files: tuple[Path, Path], *extra: str) -> list[str]:
    return ["evaluate", "--annotations", str(files[0]), "--predictions", str(files[1]), *extra]


def test_prints_tables_with_every_class_map_and_localization(files, capsys):
    assert main(_args(files)) == 0
    out, err = capsys.readouterr()
    lib = evaluate_files(*files, SCHEMA)
    for name in ("vertebra/v1", "vertebra/v2", "disc/v5", "disc/v7"):
        assert name in out
    assert f"mAP over {len(lib.defined_classes)} classes with ground truth: {lib.map:.4f}" in out
    assert "Localization" in out and "never predicted" in out
    rows = {line.split()[0]: line.split()[1:5] for line in out.splitlines() if line.startswith(("vertebra/", "disc/"))}
    assert rows["vertebra/v2"] == ["1", "1", "0", "0"]  # GT, TP, FP, FN
    assert rows["vertebra/v1"] == ["1", "0", "1", "1"]  # s2 has no prediction; the far L2 point is an FP
    assert "s9" in err and "s2" in err  # unknown and missing studies reported


def test_json_output_equals_the_library_result(files, capsys):
    assert main(_args(files, "--json", "--radius", "6", "--match-level")) == 0
    out = capsys.readouterr().out
    lib = evaluate_files(*files, SCHEMA, radius=6.0, match_level=True)
    assert json.loads(out) == json.loads(json.dumps(lib.to_dict()))
    assert json.loads(out)["radius_mm"] == 6.0 and json.loads(out)["match_level"] is True
    assert json.loads(out)["unknown_studies"] == ["s9"] and json.loads(out)["missing_studies"] == ["s2"]


def test_report_writes_all_files_and_metrics_json_equals_the_library(files, tmp_path, capsys):
    out_dir = tmp_path / "rep"
    assert main(_args(files, "--report", str(out_dir))) == 0
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == ["errors.png", "metrics.json", "pr_curves.png", "reliability.png", "report.md"]  # no temp files
    lib = evaluate_files(*files, SCHEMA)
    assert json.loads((out_dir / "metrics.json").read_text()) == json.loads(json.dumps(lib.to_dict()))
    md = (out_dir / "report.md").read_text()
    assert "| vertebra/v2 |" in md and "mAP" in md and "pr_curves.png" in md
    for png in ("pr_curves.png", "errors.png", "reliability.png"):
        data = (out_dir / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_report_holds_the_reliability_plot_ece_brier_and_baseline_macro_f1(files, tmp_path, capsys):
    out_dir = tmp_path / "rep"
    assert main(_args(files, "--report", str(out_dir))) == 0
    assert "baseline macro F1 at 6 mm" in capsys.readouterr().out
    md = (out_dir / "report.md").read_text()
    # counted points: vertebra 0.9 TP (bin 13) and 0.4 FP (bin 6); disc 0.8 TP (bin 12); ECE = sum n_b/N |acc - conf|
    assert "| vertebra | 2 | 0.2500 | 0.0850 |" in md  # ECE (0.1 + 0.4) / 2, Brier (0.1^2 + 0.4^2) / 2
    assert "| disc | 1 | 0.2000 | 0.0400 |" in md
    assert "| all | 3 | 0.2333 | 0.0700 |" in md
    assert "![reliability of the scores](reliability.png)" in md and (out_dir / "reliability.png").stat().st_size
    metrics = json.loads((out_dir / "metrics.json").read_text())
    per_kind = {k["kind"]: k for k in metrics["calibration"]["per_kind"]}
    assert per_kind["vertebra"]["ece"] == pytest.approx(0.25) and per_kind["disc"]["brier"] == pytest.approx(0.04)
    assert sum(b["count"] for b in per_kind["all"]["bins"]) == 3 and len(per_kind["all"]["bins"]) == 15
    base = metrics["baseline_f1"]
    assert metrics["baseline_macro_f1"] == base["macro_f1"] and f"{base['macro_f1']:.4f}" in md
    rows, cols = base["confusion"]["rows"], base["confusion"]["columns"]

    def cell(row: str, col: str) -> int:
        return base["confusion"]["counts"][rows.index(row)][cols.index(col)]

    assert cell("vertebra/v2", "vertebra/v2") == 1  # s1 L1
    assert cell("disc/v5", "disc/v5") == 1 and cell("disc/v5", "disc/v2") == 1  # s1 L1-L2 "v2,v5" predicted v5
    assert cell("wrong", "vertebra/v1") == 1  # s1 L2, empty label = v1, predicted 32 mm away
    assert cell("not_hit", "vertebra/v1") == 1 and cell("not_hit", "disc/v1") == 1  # s2 has no prediction
    assert sum(map(sum, base["confusion"]["counts"])) == 6


def test_malformed_file_exits_2_with_one_line_naming_the_record(files, capsys):
    bad = json.loads(files[1].read_text())
    del bad[1]["data"][0]["annotation"][0]["data"]["point"][0]["coord"]
    files[1].write_text(json.dumps(bad))
    assert main(_args(files)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "record 1" in err and "s9" in err and "coord" in err


def test_missing_file_and_missing_spacing_exit_2(files, tmp_path, capsys):
    assert main(["evaluate", "--annotations", str(tmp_path / "nope.json"), "--predictions", str(files[1])]) == 2
    assert "nope.json" in capsys.readouterr().err
    write_annotations(files[0], [study("s7", [pt("L1", 1, 1, "v1")], spacing=None, series="9.9")])
    assert main(_args(files)) == 2
    err = capsys.readouterr().err
    assert "study s7" in err and len(err.strip().splitlines()) == 1


def test_bad_radius_and_schema_exit_2(files, tmp_path, capsys):
    assert main(_args(files, "--radius", "0")) == 2
    assert "--radius" in capsys.readouterr().err
    assert main(_args(files, "--schema", str(tmp_path / "none.yaml"))) == 2
    assert "none.yaml" in capsys.readouterr().err


def test_module_entry_point_runs_as_a_process(files):
    proc = subprocess.run(
        [sys.executable, "-m", "spine_kp", *_args(files, "--json")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n_studies"] == 2
    assert "torch" not in proc.stderr
