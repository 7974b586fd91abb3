"""scripts/bench_real.py: its figures on hand-made studies, the CLI parsing, --zero-shot and nested CV end to end
(the level metrics themselves: tests/evaluation/test_eval_levels.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from level_records import SCHEMA, gt_coords, record, shifted
from script_loader import load_script

RADIUS = 8.0


bench = load_script("bench_real")


def test_score_pools_the_evaluator_and_level_metrics():
    gt = [record(u, gt_coords(), False) for u in ("a", "b", "c")]
    pred = [record("a", gt_coords(), True), record("b", shifted(1), True)]  # c never predicted
    m = bench.score(gt, pred, SCHEMA, RADIUS)
    assert m["n_studies"] == 3 and m["n_landmarks"] == 36 and m["never_predicted"] == 12
    assert m["within_radius"] == pytest.approx(1 / 3)
    assert m["identification_accuracy"] == pytest.approx(1 / 3)
    assert m["level_shifts"] == 1 and m["level_shift_studies"] == {"b": 1}
    assert m["order_violations"] == 0 and m["missing_studies"] == ["c"]
    assert set(m["per_level_within_radius"]) == set(SCHEMA.landmarks)
    assert all(math.isclose(v, 1 / 3) for v in m["per_level_within_radius"].values())
    json.dumps(m)  # the report must be JSON-serializable


def test_parse_args_collects_overrides_and_guards_the_split():
    args, ov = bench.parse_args(
        ["--data", "d", "--annotations", "a", "--out", "o", "--set", "optim.lr=1e-3", "--trainer.max_epochs", "1"]
        + ["--data.input_size", "[96, 96]"]
    )
    assert ov == {"optim.lr": "1e-3", "trainer.max_epochs": "1", "data.input_size": "[96, 96]"}
    assert args.data == "d" and args.folds == 5
    assert args.checkpoint == "best" and not args.flip_tta  # best is chosen on the inner validation split
    args, _ = bench.parse_args(
        ["--data", "d", "--annotations", "a", "--out", "o", "--checkpoint", "last", "--flip-tta"]
    )
    assert args.checkpoint == "last" and args.flip_tta
    with pytest.raises(SystemExit):
        bench.parse_args(["--data", "d", "--annotations", "a", "--out", "o", "--data.fold", "1"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--data", "d", "--annotations", "a", "--out", "o", "--folds", "3", "--only-fold", "3"])


def test_zero_shot_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    import torch

    from spine_kp.engine.config import experiment_to_dict, load_experiment
    from spine_kp.engine.module import LandmarkModule
    from spine_kp.synth import make_dataset

    make_dataset(tmp_path / "ph", n_studies=2, seed=5, size=128, axial=False)
    cfg = load_experiment("demo_cpu", {"data.input_size": "[64, 64]", "model.decoder_channels": "8"})
    module = LandmarkModule(experiment_to_dict(cfg), SCHEMA.to_dict())  # untrained: the pipeline, not accuracy
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, ckpt)
    gt_path = tmp_path / "ph" / "annotations.json"
    argv = ["--data", str(tmp_path / "ph" / "studies"), "--annotations", str(gt_path), "--out", str(tmp_path / "o")]
    assert bench.main([*argv, "--zero-shot", str(ckpt), "--device", "cpu", "--workers", "1"]) == 0
    report = json.loads((tmp_path / "o" / "bench_real.json").read_text())
    m = report["zero_shot"]["metrics"]
    n_gt = sum(len(im["annotation"][0]["data"]["point"]) for r in json.loads(gt_path.read_text()) for im in r["data"])
    assert m["n_studies"] == 2 and m["n_landmarks"] == n_gt and m["missing_studies"] == []
    assert 0.0 <= m["identification_accuracy"] <= 1.0 and 0 <= m["order_violations"] <= 2
    assert (tmp_path / "o" / "zero_shot" / "predictions.json").exists()
    out = capsys.readouterr().out
    assert "zero-shot" in out and "L4-L5" in out


def test_nested_cv_never_trains_on_a_fold_s_test_studies(synth_root: Path, tmp_path: Path, capsys) -> None:
    """Two folds of tiny training: each fold's test studies are absent from its training annotations (not even in its
    validation split), every study is tested exactly once, and the report carries the competition's figures."""
    tiny = ["--data.input_size", "[64, 64]", "--data.batch_size", "2", "--model.decoder_channels", "8",
            "--trainer.max_epochs", "1", "--data.val_fraction", "0.34"]  # fmt: skip
    data = ["--data", str(synth_root / "studies"), "--annotations", str(synth_root / "annotations.json")]
    argv = [*data, "--out", str(tmp_path / "cv"), "--config", "demo_cpu", "--folds", "2", "--device", "cpu", *tiny]
    assert bench.main(argv) == 0
    report = json.loads((tmp_path / "cv" / "bench_real.json").read_text())
    tested: list[str] = []
    for fold in report["cv"]:
        trained = {r["studyUid"] for r in json.loads((tmp_path / "cv" / f"fold{fold['fold']}" /
                                                       "train_annotations.json").read_text())}  # fmt: skip
        assert trained and not trained & set(fold["held_out_studies"])
        tested += fold["held_out_studies"]
    all_uids = {r["studyUid"] for r in json.loads((synth_root / "annotations.json").read_text())}
    assert sorted(tested) == sorted(all_uids)
    pooled = report["pooled"]
    assert pooled["n_studies"] == len(all_uids) and 0.0 <= pooled["macro_f1"] <= 1.0
    assert set(pooled["ece"]) == {"vertebra", "disc"} and pooled["ap"]
    assert "macroF1" in capsys.readouterr().out
    # --pool scores the finished folds together again, without training: the same pooled figures
    assert bench.main(["--data", str(synth_root / "studies"), "--annotations", str(synth_root / "annotations.json"),
                       "--out", str(tmp_path / "cv"), "--pool"]) == 0  # fmt: skip
    again = json.loads((tmp_path / "cv" / "bench_real_pooled.json").read_text())
    assert again["pooled_folds"] == ["fold0", "fold1"]
    for key in ("n_studies", "n_landmarks", "within_radius", "macro_f1", "map"):
        assert again["pooled"][key] == pytest.approx(pooled[key]), key
