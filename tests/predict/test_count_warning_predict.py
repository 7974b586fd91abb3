"""The level-count warning through predict: attached by the predictor, printed and listed by ``spine-kp predict``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spine_kp.api import load_predictor
from spine_kp.cli.main import main
from spine_kp.inference import slice_predictor
from spine_kp.inference.count_warning import count_warning
from spine_kp.io.dicom import read_study


def test_the_predictor_attaches_the_warning_of_its_own_prediction(synth_root: Path, tiny_checkpoint: Path) -> None:
    predictor = load_predictor(tiny_checkpoint, device="cpu")
    slices = [read_study(p) for p in sorted((synth_root / "studies").iterdir())]
    preds = predictor.predict(slices)
    assert len(preds) == len(slices)
    for p in preds:
        expected = count_warning(p.coords, p.peaks, predictor.trained.landmarks, predictor.schema, p.slice.pixels.shape)
        assert p.record.warnings == (() if expected is None else (expected,))


def test_predict_prints_and_lists_the_warned_studies(
    synth_root: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    calls = []

    def first_only(*args):  # the first predicted study gets a warning, the others none
        calls.append(args)
        return "L5-S1 lies 0.4 level from the image edge: test" if len(calls) == 1 else None

    monkeypatch.setattr(slice_predictor, "count_warning", first_only)
    out = tmp_path / "pred.json"
    assert main(["predict", str(synth_root / "studies"), "--checkpoint", str(tiny_checkpoint), "-o", str(out)]) == 0
    n = len(list((synth_root / "studies").iterdir()))
    assert len(calls) == n  # asked once per predicted study
    captured = capsys.readouterr()
    errors = json.loads((tmp_path / "pred.errors.json").read_text())
    assert len(errors["study_warnings"]) == 1
    warned = errors["study_warnings"][0]
    assert warned["warning"] == "L5-S1 lies 0.4 level from the image edge: test"
    assert warned["study"] in {r["studyUid"] for r in json.loads(out.read_text())}
    assert f"warning: study {warned['study']}: L5-S1 lies 0.4 level from the image edge: test" in captured.err
    assert captured.err.count("warning: study ") == 1
    assert f"1 predicted studies carry a warning (listed in {tmp_path / 'pred.errors.json'})" in captured.out
    assert len(json.loads(out.read_text())) == n  # every study predicted, the warned one too


def test_no_warning_lists_nothing(synth_root: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(slice_predictor, "count_warning", lambda *a: None)
    out = tmp_path / "pred.json"
    assert main(["predict", str(synth_root / "studies"), "--checkpoint", str(tiny_checkpoint), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "warning: study" not in captured.err and "carry a warning" not in captured.out
    assert json.loads((tmp_path / "pred.errors.json").read_text())["study_warnings"] == []
