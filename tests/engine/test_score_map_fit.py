"""Score calibration at the end of training: fitted on the validation split, stored, applied by both predictors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spine_kp.calibration.apply import platt, score_maps
from spine_kp.checkpoint import SCORE_CALIBRATION_KEY, load_checkpoint
from spine_kp.inference.torch_predictor import Predictor
from spine_kp.io.dicom import read_study

TINY = {
    "trainer.log_every_n_steps": "1",
    "grade_stage.enabled": "false",
    "calibration.min_points": "1",  # two validation studies: fit every kind that has a pair
}


@pytest.fixture(scope="module")
def run(train_tiny, tmp_path_factory, one_thread):
    return train_tiny(tmp_path_factory.mktemp("score_calibration") / "run", TINY)


@pytest.fixture(scope="module")
def slices(synth_root):
    return [read_study(p) for p in sorted((synth_root / "studies").iterdir())]


def _scores(predictions):
    """(study, identification, kind, grade) -> score of every emitted point."""
    return {
        (p.record.study_uid, pt.identification, pt.kind, pt.grades[0]): pt.score
        for p in predictions
        for pt in p.record.primary.points
    }


def test_best_and_last_carry_a_fitted_map_per_kind(run):
    assert run.score_calibration is not None
    assert set(run.score_calibration["localization"]) == set(run.score_calibration["scores"]) == {"vertebra", "disc"}
    for path in (run.best_checkpoint, run.last_checkpoint):
        entry = torch.load(path, map_location="cpu", weights_only=False)[SCORE_CALIBRATION_KEY]
        assert entry["n_studies"] == 2 and entry["radius_mm"] == 8.0
        for fit in [*entry["localization"].values(), *entry["scores"].values()]:
            assert fit["a"] >= 0.2 and np.isfinite(fit["b"]) and fit["n"] >= 1
        maps = score_maps(load_checkpoint(path).score_calibration)
        assert {s: set(m) for s, m in maps.items()} == {s: set(entry[s]) for s in ("localization", "scores")}


def test_predictor_maps_the_peak_then_the_score_and_keeps_each_landmarks_grade_order(run, slices, one_thread):
    calibrated = Predictor.from_checkpoint(run.best_checkpoint, device="cpu")
    raw = Predictor.from_checkpoint(run.best_checkpoint, device="cpu", score_calibration={})
    assert all(calibrated.score_calibration.values()) and not any(raw.score_calibration.values())
    preds = calibrated.predict(slices)
    got, ref = _scores(preds), _scores(raw.predict(slices))
    assert got.keys() == ref.keys()
    names = calibrated.schema.landmarks
    peaks = {(p.record.study_uid, name): float(p.peaks[k]) for p in preds for k, name in enumerate(names)}
    changed = 0
    for key, s in ref.items():
        study, name, kind, _ = key
        peak, maps = peaks[(study, name)], calibrated.score_calibration
        within = float(platt(peak, *maps["localization"][kind]))  # P(within 8 mm) of the peak
        expected = float(platt(s / peak * within, *maps["scores"][kind]))  # then the product -> P(TP)
        assert got[key] == pytest.approx(expected, abs=1e-4)  # s was rounded to 1e-6
        changed += abs(got[key] - s) > 1e-3
    assert changed  # the map does something
    for landmark in {k[:2] for k in ref}:  # a landmark's grades keep their order: its top grade is unchanged
        keys = [k for k in ref if k[:2] == landmark]
        assert max(keys, key=ref.get) == max(keys, key=got.get)


def test_disabled_score_calibration_writes_nothing(train_tiny, tmp_path, one_thread):
    result = train_tiny(tmp_path / "run", {**TINY, "calibration.scores": "false"})
    assert result.score_calibration is None
    assert SCORE_CALIBRATION_KEY not in torch.load(result.best_checkpoint, map_location="cpu", weights_only=False)
    assert load_checkpoint(result.best_checkpoint).score_calibration is None
    raw = Predictor.from_checkpoint(result.best_checkpoint, device="cpu")
    assert not any(raw.score_calibration.values())  # predicts the raw peak x p


def test_onnx_export_carries_the_maps_and_scores_like_torch(run, slices, tmp_path, one_thread):
    pytest.importorskip("onnxruntime")
    import onnx

    from spine_kp.export.onnx import export_onnx
    from spine_kp.inference.onnx_predictor import METADATA_KEY, OnnxPredictor

    exported = export_onnx(run.best_checkpoint, tmp_path / "m.onnx")
    meta = json.loads({p.key: p.value for p in onnx.load(str(exported.path)).metadata_props}[METADATA_KEY])
    ref = Predictor.from_checkpoint(run.best_checkpoint, device="cpu")
    stored = {step: {k: tuple(v) for k, v in m.items()} for step, m in meta["calibration"]["score_maps"].items()}
    assert stored == ref.score_calibration  # JSON keeps the floats
    got = _scores(OnnxPredictor.from_onnx(exported.path, device="cpu").predict(slices))
    want = _scores(ref.predict(slices))
    assert got.keys() == want.keys()
    for key, s in want.items():
        assert abs(got[key] - s) < 1e-3
