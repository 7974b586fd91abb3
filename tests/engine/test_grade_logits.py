"""Temperature scaling in training: validation logits -> per-kind temperatures -> every checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spine_kp.calibration.fit import TEMPERATURE_BOUNDS, Calibration, fit_temperature
from spine_kp.checkpoint import CALIBRATION_KEY as CHECKPOINT_KEY
from spine_kp.engine.config import experiment_to_dict, load_experiment
from spine_kp.engine.gather import merge_by_study
from spine_kp.engine.grade_logits import GradeLogits, stack_studies
from spine_kp.engine.module import LandmarkModule
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.schema import load_schema

SCHEMA = load_schema()


def _batch(rng: np.random.Generator, b: int, scale: float, name: str = "s") -> tuple[dict, dict, dict, list]:
    """Grade logits, multi-hot targets, masks and study UIDs of ``b`` images, like a validation batch."""
    logits, targets, masks = {}, {}, {}
    for kind in SCHEMA.kinds:
        k, g = len(SCHEMA.landmarks_of_kind(kind.name)), len(kind.grades)
        z = rng.normal(0, 1.5, (b, k, g))
        if kind.multi_label:  # labels drawn from the unscaled probabilities
            labels = rng.random((b, k, g)) < 1 / (1 + np.exp(-z))
        else:
            p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
            labels = np.eye(g)[(rng.random((b, k, 1)) > np.cumsum(p, -1)).sum(-1)]
        logits[kind.name] = torch.tensor(scale * z, dtype=torch.float32)
        targets[kind.name] = torch.tensor(labels, dtype=torch.float32)
        masks[kind.name] = torch.tensor(rng.random((b, k)) < 0.8)
    return logits, targets, masks, [f"{name}.{i:02d}" for i in range(b)]


def test_graded_landmarks_are_collected_and_fitted_per_kind():
    rng = np.random.default_rng(0)
    buf = GradeLogits()
    batches = [_batch(rng, 8, 3.0, f"s{j:02d}") for j in range(20)]
    for batch in batches:
        buf.add(*batch)
    arrays = buf.arrays()
    disc_mask = torch.cat([m["disc"] for _, _, m, _ in batches])
    assert arrays["disc"][0].shape == (int(disc_mask.sum()), len(SCHEMA.kind("disc").grades))
    cal = Calibration.fit(arrays, SCHEMA.kinds, TrainedLabels.all(SCHEMA).grades, min_points=20)
    for kind in SCHEMA.kinds:
        z, y = arrays[kind.name]
        assert cal.temperatures[kind.name] == pytest.approx(fit_temperature(z, y, kind.multi_label).temperature)
        assert cal.temperatures[kind.name] > 1.5  # the logits were scaled up 3x: over-confident
    # two DDP ranks' shards (the second one padded with a study of the first, as DistributedSampler does, and in
    # another order) give the same arrays as one process
    first, second = GradeLogits(), GradeLogits()
    for batch in batches[:10]:
        first.add(*batch)
    for batch in [*batches[:9:-1], batches[0]]:
        second.add(*batch)
    merged = stack_studies(merge_by_study([second.studies, first.studies]))
    for kind in ("vertebra", "disc"):
        for got, want in zip(merged[kind], arrays[kind]):
            np.testing.assert_array_equal(got, want)
    buf.clear()
    assert Calibration.fit(buf.arrays(), SCHEMA.kinds, TrainedLabels.all(SCHEMA).grades, 1).temperatures == {
        "vertebra": 1.0,
        "disc": 1.0,
    }


def _arrays() -> dict:
    buf = GradeLogits()
    buf.add(*_batch(np.random.default_rng(1), 16, 2.0))
    return buf.arrays()


def _module(**overrides: str) -> LandmarkModule:
    cfg = load_experiment("demo_cpu", {"data.input_size": "[64, 64]", "model.decoder_channels": "16", **overrides})
    return LandmarkModule(experiment_to_dict(cfg), SCHEMA.to_dict())


def test_checkpoint_entry_round_trips_and_is_absent_when_disabled():
    module = _module()
    fits = Calibration.fit(_arrays(), SCHEMA.kinds, TrainedLabels.all(SCHEMA).grades, 1)
    module.calibration = fits
    ckpt: dict = {}
    module.on_save_checkpoint(ckpt)
    assert ckpt[CHECKPOINT_KEY]["temperatures"] == fits.temperatures
    back = _module()
    back.on_load_checkpoint(ckpt)
    assert back.calibration == Calibration.from_checkpoint(ckpt[CHECKPOINT_KEY])
    assert back.calibration.temperatures == fits.temperatures
    back.on_load_checkpoint({})  # an old checkpoint: nothing fitted
    assert back.calibration is None

    off = _module(**{"calibration.enabled": "false"})
    off.calibration = fits  # e.g. resumed from a calibrated run: not written for the new weights
    ckpt = {}
    off.on_save_checkpoint(ckpt)
    assert CHECKPOINT_KEY not in ckpt


def test_unknown_calibration_key_fails_at_load():
    from spine_kp.config import ConfigError

    with pytest.raises(ConfigError, match="calibration.enable"):
        load_experiment("demo_cpu", {"calibration.enable": "true"})


def test_best_and_last_checkpoints_carry_the_temperatures_of_their_epoch(train_tiny, tmp_path, one_thread):
    result = train_tiny(tmp_path / "run", {"calibration.min_points": "1"})
    entries = []
    for path in (result.best_checkpoint, result.last_checkpoint):
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        entry = ckpt[CHECKPOINT_KEY]
        entries.append(entry)
        assert set(entry["temperatures"]) == {"vertebra", "disc"}
        for kind, fit in entry["fits"].items():
            assert fit["n"] > 0, kind  # fitted on the validation landmarks, not defaulted
            assert TEMPERATURE_BOUNDS[0] <= entry["temperatures"][kind] <= TEMPERATURE_BOUNDS[1]
            assert fit["nll_after"] <= fit["nll_before"]
        assert entry["seconds"] < 1.0
    assert entries[0]["temperatures"] == entries[1]["temperatures"]  # one epoch: the same weights
    loaded = LandmarkModule.load_from_checkpoint(result.last_checkpoint, map_location="cpu")
    assert loaded.calibration is not None and loaded.calibration.temperatures == entries[1]["temperatures"]
