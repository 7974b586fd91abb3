"""scripts/bench_real.py: the level metrics on hand-made studies, the CLI parsing, and --zero-shot end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from script_loader import load_script

from spine_kp.schema import load_schema
from spine_kp.types import ImageAnnotation, Point, StudyRecord

SPACING = (0.8, 0.8)  # (row_mm, col_mm)
RADIUS = 8.0


bench = load_script("bench_real")
SCHEMA = load_schema()
KINDS = [SCHEMA.landmarks_of_kind(k.name) for k in SCHEMA.kinds]


def _gt_coords() -> dict[str, tuple[float, float]]:
    """A slightly tilted spine: landmark i of the schema (cranio-caudal) 22 px = 17.6 mm below landmark i - 1."""
    return {n: (100.0 + 4.0 * i, 40.0 + 22.0 * i) for i, n in enumerate(SCHEMA.landmarks)}


def _record(uid: str, coords: dict[str, tuple[float, float]], scored: bool) -> StudyRecord:
    points = tuple(
        Point(n, SCHEMA.kind_of(n), xy, grades=(SCHEMA.grades_of(n)[0],), score=0.9 if scored else None)
        for n, xy in coords.items()
    )
    return StudyRecord(uid, (ImageAnnotation("se", "in", points, pixel_spacing=SPACING),))


def _study(pred: dict[str, tuple[float, float]]):
    return bench.study_points(_record("s", _gt_coords(), False), _record("s", pred, True))


def _shifted(levels: int) -> dict[str, tuple[float, float]]:
    """Every landmark predicted ``levels`` levels towards the feet (where its same-kind neighbour is, extrapolated)."""
    gt = _gt_coords()
    order = list(SCHEMA.landmarks)
    step = np.subtract(gt[order[2]], gt[order[0]])  # one level: two schema entries (vertebra, disc interleaved)
    return {n: tuple(np.add(gt[n], levels * step)) for n in order}


def test_perfect_prediction_scores_full_marks():
    s = _study(_gt_coords())
    assert all(bench.identification_hits(s, RADIUS))
    assert bench.identification_accuracy([s], RADIUS) == 1.0
    assert not bench.order_violation(s, SCHEMA.landmarks)
    assert bench.level_offset(s, KINDS) == pytest.approx(0.0)
    assert bench.whole_level_shift(bench.level_offset(s, KINDS)) == 0
    axis = bench.spine_axis(s)
    assert axis[1] > 0.95 and np.linalg.norm(axis) == pytest.approx(1.0)  # head -> feet, along the tilted spine


@pytest.mark.parametrize("levels", [1, -1])
def test_whole_level_shift_is_detected_and_costs_identification(levels):
    s = _study(_shifted(levels))
    # L4 sits exactly on L5's ground truth: close to a landmark, but the wrong level.
    assert bench.identification_accuracy([s], RADIUS) == 0.0
    assert bench.level_offset(s, KINDS) == pytest.approx(levels)
    assert bench.whole_level_shift(bench.level_offset(s, KINDS)) == levels
    assert not bench.order_violation(s, SCHEMA.landmarks)  # shifted, but still in order


def test_swapped_levels_are_an_order_violation():
    pred = _gt_coords()
    pred["L3"], pred["L4"] = pred["L4"], pred["L3"]
    s = _study(pred)
    assert bench.order_violation(s, SCHEMA.landmarks)
    hits = dict(zip([g.identification for g in s.gt], bench.identification_hits(s, RADIUS)))
    assert not hits["L3"] and not hits["L4"] and hits["L3-L4"]
    assert bench.identification_accuracy([s], RADIUS) == pytest.approx(10 / 12)
    assert bench.whole_level_shift(bench.level_offset(s, KINDS)) == 0


def test_close_but_nearer_to_another_level_is_not_identified():
    pred = _gt_coords()
    gt_l2, gt_l2l3 = np.array(pred["L2"]), np.array(pred["L2-L3"])
    pred["L2"] = tuple(gt_l2 + 0.7 * (gt_l2l3 - gt_l2))  # 12.5 mm off L2, 5.4 mm off L2-L3
    pred["L2-L3"] = tuple(gt_l2l3 + 0.4 * (gt_l2 - gt_l2l3))  # 7.2 mm off: within r, yet the L2 point is nearer
    s = _study(pred)
    hits = dict(zip([g.identification for g in s.gt], bench.identification_hits(s, RADIUS)))
    assert not hits["L2"] and not hits["L2-L3"] and hits["L1"]


def test_missing_predictions_are_misses_and_left_out_of_the_order():
    pred = {n: xy for n, xy in _gt_coords().items() if n not in ("L1", "L5-S1")}
    s = _study(pred)
    assert bench.identification_accuracy([s], RADIUS) == pytest.approx(10 / 12)
    assert not bench.order_violation(s, SCHEMA.landmarks)
    assert bench.level_offset(bench.StudyPoints("e", s.gt, {}), KINDS) is None


def test_whole_level_shift_needs_about_a_whole_level():
    assert [bench.whole_level_shift(x) for x in (None, 0.2, 0.5, 0.8, 1.25, 1.5, -2.1)] == [0, 0, 0, 1, 1, 0, -2]


def test_per_level_shares_count_never_predicted_as_misses():
    shares = bench.per_level_shares({"L1": np.array([1.0, np.nan, 9.0, 8.0]), "L2": np.array([])}, RADIUS)
    assert shares == {"L1": 0.5, "L2": None}


def test_score_pools_the_evaluator_and_level_metrics():
    gt = [_record(u, _gt_coords(), False) for u in ("a", "b", "c")]
    pred = [_record("a", _gt_coords(), True), _record("b", _shifted(1), True)]  # c never predicted
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
