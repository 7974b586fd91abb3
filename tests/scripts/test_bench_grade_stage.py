"""scripts/bench_grade_stage.py: the crop stage retrained per variant on one run, each scored on held-out studies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from script_loader import load_script, tiny_cv

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


def test_cv_mode_retrains_the_stage_per_fold_and_pools_the_test_studies(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    cv = tiny_cv(synth_root, tmp_path / "cv")
    bench = load_script("bench_grade_stage")
    out = tmp_path / "rows.json"
    assert bench.main(["--cv", str(cv), "--epochs", "1", "--variant", "tiny", "size_px=24", "channels=[8]",
                       "--out", str(out)]) == 0  # fmt: skip
    rows = json.loads(out.read_text())
    assert list(rows) == ["head", "tiny"] and rows["tiny"]["train_s"] > 0 and rows["head"]["train_s"] == 0
    n_studies = len(json.loads((synth_root / "annotations.json").read_text()))
    for row in rows.values():
        assert 0.0 <= row["macro_f1"] <= 1.0 and row["ap"] and set(row["ece"]) >= {"vertebra", "disc"}
    assert "2-fold CV" in capsys.readouterr().out
    pooled = json.loads((cv / "bench_real.json").read_text())["pooled"]
    assert pooled["n_studies"] == n_studies
    # predict-time variants: flip-TTA, score maps refitted per row, and a combine-only variant sharing the stage
    paired = tmp_path / "paired.json"
    tiny_stage = ["size_px=24", "channels=[8]"]
    argv = ["--cv", str(cv), "--epochs", "1", "--flip-tta", "--refit-score-maps", "--out", str(paired),
            "--variant", "replace", *tiny_stage, "--variant", "average", *tiny_stage, "combine=average"]  # fmt: skip
    assert bench.main(argv) == 0
    rows = json.loads(paired.read_text())
    assert list(rows) == ["head", "replace", "average"]
    assert rows["replace"]["train_s"] > 0 and rows["average"]["train_s"] == 0  # trained once, graded twice
    assert rows["average"]["overrides"]["combine"] == "average"
    assert rows["average"]["ece"] != rows["replace"]["ece"]  # the same stage, combined with the head: other scores


def _tiny_run(tmp_path: Path, train_tiny) -> tuple[Any, Any, list, Any]:
    """A tiny run without the stage: its folder, data module, all its records and its predictor."""
    from spine_kp.api import load_predictor
    from spine_kp.data.datamodule import SpineDataModule
    from spine_kp.engine.config import load_experiment

    run = train_tiny(tmp_path / "run", {"grade_stage.enabled": "false"})
    dm = SpineDataModule(load_experiment(run.run_dir / "config.yaml").data)
    dm.setup("fit")
    return run, dm, [*dm.train_records, *dm.val_records], load_predictor(run.run_dir, device="cpu")


def test_fit_score_maps_ignores_the_predictors_own_maps(synth_root: Path, tmp_path: Path, train_tiny, one_thread):
    from spine_kp.engine.score_map_fit import fit_score_calibration, fit_score_maps

    run, dm, records, plain = _tiny_run(tmp_path, train_tiny)
    skewed = plain.with_card(plain.card.overridden(score_calibration={"scores": {"disc": (3.0, -2.0)}}))
    entries = [fit_score_maps(p, records, dm.studies, min_points=1) for p in (plain, skewed)]
    entries.append(fit_score_calibration(run.run_dir / "checkpoints" / "best.ckpt", records, dm.studies, min_points=1))
    for entry in entries:
        entry.pop("seconds")
    assert entries[0]["localization"] and entries[0] == entries[1] == entries[2]


def test_fit_score_maps_fits_the_points_the_card_writes(synth_root: Path, tmp_path: Path, train_tiny, one_thread):
    """With ``decoding.top_k_grades`` in the card, the score maps are fitted on every written grade, as predicted."""
    import dataclasses

    from spine_kp.engine.score_map_fit import fit_score_maps

    _, dm, records, plain = _tiny_run(tmp_path, train_tiny)
    every = plain.with_card(plain.card.overridden(decode=dataclasses.replace(plain.decode, top_k_grades=7)))
    fits = [fit_score_maps(p, records, dm.studies, min_points=1)["scores"] for p in (plain, every)]
    for kind in ("vertebra", "disc"):
        assert fits[1][kind]["n"] > fits[0][kind]["n"]  # the alternatives are fitted too
