"""The predictor applies the grade temperatures stored in a checkpoint (T = 1 for a checkpoint without them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spine_kp.inference.torch_predictor import Predictor
from spine_kp.types import Slice

TEMPERATURES = {"vertebra": 2.0, "disc": 0.5}


def _slice() -> Slice:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    pixels = (200 * np.exp(-((xx - 64) ** 2) / 300) + 20 * rng.random((128, 128))).astype(np.float32)
    return Slice(pixels, (1.0, 1.0), "1.2.3", "1.2.3.4", "1.2.3.4.5", z_index=3, num_slices=7)


def _with_calibration(src: Path, dst: Path, entry: dict | None) -> Path:
    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    ckpt.pop("calibration", None)
    ckpt.pop("model_card", None)  # built from the entries again, with this calibration
    if entry is not None:
        ckpt["calibration"] = entry
    torch.save(ckpt, dst)
    return dst


@pytest.fixture(scope="module")
def predictions(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("calibrated")
    calibrated = _with_calibration(tiny_checkpoint, tmp / "calibrated.ckpt", {"temperatures": TEMPERATURES})
    old = _with_calibration(tiny_checkpoint, tmp / "old.ckpt", None)
    s = _slice()
    return {
        "stored": Predictor.from_checkpoint(calibrated, device="cpu"),
        "calibrated": Predictor.from_checkpoint(calibrated, device="cpu").predict([s])[0],
        "raw": Predictor.from_checkpoint(calibrated, device="cpu", temperatures={}).predict([s])[0],
        "old": Predictor.from_checkpoint(old, device="cpu").predict([s])[0],
        "old_predictor": Predictor.from_checkpoint(old, device="cpu"),
    }


def test_the_trained_checkpoint_carries_an_entry(tiny_checkpoint):
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)
    assert set(ckpt["calibration"]["temperatures"]) == {"vertebra", "disc"}


def test_predictor_reads_the_temperatures(predictions):
    assert predictions["stored"].temperatures == TEMPERATURES
    assert predictions["old_predictor"].temperatures == {}  # an old checkpoint still loads: T = 1


def test_probabilities_follow_the_temperature(predictions):
    raw, cal = predictions["raw"], predictions["calibrated"]
    np.testing.assert_array_equal(cal.coords, raw.coords)  # localization is untouched
    np.testing.assert_array_equal(cal.peaks, raw.peaks)
    # single-label (softmax): p_T proportional to p ** (1 / T); T = 2 flattens the distribution
    p = raw.grade_probs["vertebra"].astype(np.float64)
    expect = p ** (1 / TEMPERATURES["vertebra"])
    expect /= expect.sum(-1, keepdims=True)
    np.testing.assert_allclose(cal.grade_probs["vertebra"], expect, atol=1e-5)
    assert np.abs(cal.grade_probs["vertebra"] - p).max() > 1e-3
    assert np.all(cal.grade_probs["vertebra"].max(-1) <= p.max(-1) + 1e-6)
    # multi-label (sigmoid): logit / T; T = 0.5 sharpens; untrained grades stay impossible
    q = raw.grade_probs["disc"].astype(np.float64)
    trained = q > 0
    logit = np.log(q[trained] / (1 - q[trained]))
    np.testing.assert_allclose(cal.grade_probs["disc"][trained], 1 / (1 + np.exp(-logit / 0.5)), atol=1e-4)
    assert np.all(cal.grade_probs["disc"][~trained] == 0)
    assert not np.allclose(cal.grade_probs["disc"], q)


def test_a_checkpoint_without_temperatures_predicts_the_raw_probabilities(predictions):
    for kind in ("vertebra", "disc"):
        np.testing.assert_array_equal(predictions["old"].grade_probs[kind], predictions["raw"].grade_probs[kind])
