"""The packaged ``tianchi`` schema end to end through the CLI: synth -> train -> predict -> evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_configs import TINY_HOURGLASS

from spine_kp.api import load_predictor
from spine_kp.cli.main import main
from spine_kp.io.annotation_parse import parse_grades
from spine_kp.schema import Schema, load_schema

TINY = {  # a tiny hourglass, one training batch at 64 x 64: seconds on a CPU
    "schema": "tianchi",
    **TINY_HOURGLASS,
    "model.head_kwargs": "{hidden: 16, embed_dim: 4}",
    "data.batch_size": "2",
    "data.val_fraction": "0.4",
    "data.augment.enabled": "false",
    "trainer.progress_bar": "false",
    "trainer.log_every_n_steps": "1",
    "trainer.max_epochs": "1",
    "trainer.limit_train_batches": "1",
}


def _points(path: Path) -> list[dict]:
    return [
        p
        for rec in json.loads(path.read_text())
        for img in rec["data"]
        for ann in img["annotation"]
        for p in ann["data"]["point"]
    ]


def _assert_in_schema(points: list[dict], schema: Schema) -> None:
    assert points
    for p in points:
        tag = p["tag"]
        kind = schema.kind_of(tag["identification"])  # KeyError for a landmark outside the schema (e.g. T12)
        labels = parse_grades(tag[kind])
        assert set(labels) <= set(schema.kind(kind).grades), tag


def test_tianchi_synth_train_predict_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schema = load_schema("tianchi")
    data = tmp_path / "phantoms"
    assert main(["synth", str(data), "--schema", "tianchi", "--studies", "3", "--seed", "1", "--size", "96",
                 "--no-axial", "--preview"]) == 0  # fmt: skip
    truth = _points(data / "annotations.json")
    _assert_in_schema(truth, schema)
    assert {p["tag"]["identification"] for p in truth} == set(schema.landmarks)  # L1-L5, T12-L1..L5-S1, no T12

    run = tmp_path / "run"
    argv = ["train", "--config", "demo_cpu", "--data", str(data / "studies")]
    argv += ["--annotations", str(data / "annotations.json"), "--out", str(run)]
    assert main([*argv, *[f"--{k}={v}" for k, v in TINY.items()]]) == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    stored = torch.load(ckpt, map_location="cpu", weights_only=False)["hyper_parameters"]["schema"]
    assert Schema.from_dict(stored) == schema  # the checkpoint keeps the schema, meanings included

    pred = tmp_path / "pred.json"
    assert main(["predict", str(data / "studies"), "--checkpoint", str(ckpt), "-o", str(pred), "--quiet"]) == 0
    _assert_in_schema(_points(pred), schema)

    # A checkpoint written before grades had meanings (grades: {label: description}) predicts the same.
    old = torch.load(ckpt, map_location="cpu", weights_only=False)
    for spec in old["hyper_parameters"]["schema"]["kinds"].values():
        spec["grades"] = {g: v["description"] for g, v in spec["grades"].items()}
    torch.save(old, tmp_path / "old.ckpt")
    argv = ["predict", str(data / "studies"), "--checkpoint", str(tmp_path / "old.ckpt")]
    assert main([*argv, "-o", str(tmp_path / "o.json"), "--quiet"]) == 0
    assert _points(tmp_path / "o.json") == _points(pred)

    capsys.readouterr()
    argv = ["evaluate", "--annotations", str(data / "annotations.json"), "--predictions", str(pred)]
    assert main([*argv, "--schema", "tianchi", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [c["class"] for c in result["classes"]] == [f"{k}/{g}" for k, g in schema.classes]


def test_tianchi_cpu_trains_predicts_every_grade_and_evaluates_without_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The packaged ``tianchi_cpu`` recipe, shrunk to seconds: its stage and card settings reach ``predict``, which
    writes every grade of each landmark (``decode.top_k_grades``), and ``evaluate`` reads the schema from the file."""
    schema = load_schema("tianchi")
    data = tmp_path / "phantoms"
    assert main(["synth", str(data), "--schema", "tianchi", "--studies", "4", "--seed", "3", "--size", "96",
                 "--no-axial"]) == 0  # fmt: skip
    run = tmp_path / "run"
    tiny = {
        "data.input_size": "[64, 64]",
        "data.batch_size": "2",
        "data.val_fraction": "0.5",
        "model.decoder_channels": "8",
        "trainer.max_epochs": "1",
        "trainer.limit_train_batches": "1",
        "trainer.progress_bar": "false",
        "grade_stage.epochs": "1",
        "grade_stage.min_train_studies": "1",
        "grade_stage.channels": "[8]",
        "junction.enabled": "false",
    }
    argv = ["train", "--config", "tianchi_cpu", "--data", str(data / "studies")]
    argv += ["--annotations", str(data / "annotations.json"), "--out", str(run)]
    assert main([*argv, *[f"--{k}={v}" for k, v in tiny.items()]]) == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    pred = tmp_path / "pred.json"
    assert main(["predict", str(data / "studies"), "--checkpoint", str(ckpt), "-o", str(pred), "--quiet"]) == 0
    points = _points(pred)
    _assert_in_schema(points, schema)
    per_landmark: dict[tuple[str, str], int] = {}
    for record in json.loads(pred.read_text()):
        for p in record["data"][0]["annotation"][0]["data"]["point"]:
            key = (record["studyUid"], p["tag"]["identification"])
            per_landmark[key] = per_landmark.get(key, 0) + 1
    trained = load_predictor(ckpt, device="cpu").trained.grades  # grades the phantoms never showed stay at p = 0
    assert int(trained["disc"].sum()) >= 2 and int(trained["vertebra"].sum()) == 2
    for (_, name), n in per_landmark.items():
        assert n == int(trained[schema.kind_of(name)].sum()), name  # every trained grade, not only the confident
    capsys.readouterr()
    argv = ["evaluate", "--annotations", str(data / "annotations.json"), "--predictions", str(pred), "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert [c["class"] for c in result["classes"]] == [f"{k}/{g}" for k, g in schema.classes]  # 7 classes, no --schema
