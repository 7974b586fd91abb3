"""``spine-kp predict`` end to end: outputs, robustness to bad studies, untouched inputs, atomic outputs."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from spine_kp.cli.main import main
from spine_kp.evaluation.evaluate import evaluate_files
from spine_kp.io.annotations import read_annotations
from spine_kp.schema import load_schema
from spine_kp.synth.dicom_write import SeriesGeometry, SeriesMeta, write_series

SCHEMA = load_schema()


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _t1_only_study(folder: Path) -> None:
    """A study with a T1 sagittal series only: no T2 sagittal to predict on."""
    n = 5
    pos = np.stack([np.linspace(-10, 10, n), np.zeros(n), np.zeros(n)], axis=1)
    geom = SeriesGeometry(orientation=(0, 1, 0, 0, 0, -1), positions=pos, spacing=(0.7, 0.7), slice_thickness=4.0)
    meta = SeriesMeta(
        study_uid="1.2.3.999",
        series_uid="1.2.3.999.1",
        series_number=1,
        series_description="T1_TSE_SAG",
        protocol_name=None,
        echo_time=12.0,
        repetition_time=500.0,
    )
    write_series(folder, np.random.default_rng(0).uniform(0, 1000, (n, 64, 64)), geom, meta)


@pytest.fixture
def messy_root(synth_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "messy"
    shutil.copytree(synth_root / "studies", root)
    _t1_only_study(root / "t1_only")
    corrupt = root / "corrupt_study"
    corrupt.mkdir()
    for i, src in enumerate(sorted((synth_root / "studies").rglob("*.dcm"))[:3]):
        data = src.read_bytes()
        (corrupt / f"cut{i}.dcm").write_bytes(data[: len(data) // 3])  # truncated files
    (root / "notes.txt").write_text("not a DICOM file")
    return root


def test_predict_writes_json_csv_overlays_that_the_evaluator_reads(synth_root, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out" / "pred.json"
    code = main(
        [
            "predict",
            str(synth_root / "studies"),
            "--checkpoint",
            str(tiny_checkpoint),
            "-o",
            str(out),
            "--csv",
            str(tmp_path / "out" / "pred.csv"),
            "--overlays",
            str(tmp_path / "ov"),
            "--quiet",
            "--top-k-grades",
            "2",
        ]
    )
    assert code == 0
    records = read_annotations(out, SCHEMA)
    gt = read_annotations(synth_root / "annotations.json", SCHEMA)
    assert {r.study_uid for r in records} == {r.study_uid for r in gt}
    emitted = 0
    for rec in records:
        pts = rec.points
        assert all(p.score is not None and 0.0 <= p.score <= 1.0 for p in pts)
        trained = {p.identification for p in pts}
        assert trained <= set(SCHEMA.landmarks) and trained
        # a barely trained network may call chain ends outside the image, never a level in the middle
        present = [i for i, name in enumerate(SCHEMA.landmarks) if name in trained]
        assert present == list(range(present[0], present[-1] + 1))
        per_landmark = {name: sum(p.identification == name for p in pts) for name in trained}
        assert max(per_landmark.values()) >= 2  # --top-k-grades 2 emits alternatives
        emitted += len(trained)
    result = evaluate_files(synth_root / "annotations.json", out, SCHEMA)
    assert result.n_studies == len(gt) and not result.missing_studies
    rows = list(csv.DictReader((tmp_path / "out" / "pred.csv").open()))
    assert len(rows) == emitted and {"x_mm", "y_mm", "grade", "score", "p_disc_v7"} <= set(rows[0])
    pngs = sorted((tmp_path / "ov").glob("*.png"))
    assert len(pngs) == len(gt) and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert "predicted 5 studies, 0 failed" in capsys.readouterr().out


def test_bad_studies_are_listed_and_the_rest_go_on(messy_root, tiny_checkpoint, tmp_path, capsys):
    before = _tree_digest(messy_root)
    out = tmp_path / "pred.json"
    code = main(["predict", str(messy_root), "--checkpoint", str(tiny_checkpoint), "-o", str(out), "--quiet"])
    assert code == 0
    assert len(read_annotations(out, SCHEMA)) == 5  # every good study predicted
    errors = json.loads((tmp_path / "pred.errors.json").read_text())
    failed = {f["study"]: f["reason"] for f in errors["failed_studies"]}
    assert "1.2.3.999" in failed and "sagittal" in failed["1.2.3.999"].lower()
    skipped = {Path(s["path"]).name: s["reason"] for s in errors["skipped_files"]}
    assert "notes.txt" in skipped and "not DICOM" in skipped["notes.txt"]
    assert all(f"cut{i}.dcm" in skipped for i in range(3))
    err = capsys.readouterr().err
    assert "failed: study 1.2.3.999" in err
    assert _tree_digest(messy_root) == before  # inputs untouched, nothing written into the data root


def test_interrupted_write_leaves_no_partial_output(synth_root, tiny_checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "pred.json"

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    code = main(
        ["predict", str(synth_root / "studies"), "--checkpoint", str(tiny_checkpoint), "-o", str(out), "--quiet"]
    )
    assert code == 130
    assert list(tmp_path.iterdir()) == []  # no pred.json, no temporary file


def test_missing_checkpoint_is_a_one_line_error(synth_root, tmp_path, capsys):
    code = main(["predict", str(synth_root / "studies"), "--checkpoint", str(tmp_path / "nope.ckpt"), "-o", "x.json"])
    assert code == 2
    assert "nope.ckpt does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "expected"), [([], None), (["--flip-tta"], True), (["--no-flip-tta"], False)])
def test_flip_tta_flag_defaults_to_the_model_card(flags: list[str], expected: bool | None) -> None:
    """No flag leaves flip-TTA to the card's ``decoding.flip_tta``; either flag overrides it."""
    import argparse

    from spine_kp.cli.predict import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["ROOT", "--checkpoint", "x.ckpt", "-o", "p.json", *flags])
    assert args.flip_tta is expected


@pytest.mark.parametrize(
    ("flags", "expected"), [([], None), (["--top-k-grades", "0"], 0), (["--top-k-grades", "5"], 5)]
)
def test_top_k_grades_flag_defaults_to_the_model_card(flags: list[str], expected: int | None) -> None:
    """No flag leaves the alternatives to the card's ``decoding.top_k_grades``; the flag overrides it."""
    import argparse

    from spine_kp.cli.predict import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["ROOT", "--checkpoint", "x.ckpt", "-o", "p.json", *flags])
    assert args.top_k_grades == expected
