"""The predict-time stage: crops at decoded points, probabilities per slice, combination with the head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spine_kp.grading.config import GradeStageConfig
from spine_kp.grading.model import create_crop_grader
from spine_kp.inference.crop_stage import CropStage
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.schema import load_schema
from spine_kp.types import Slice


@pytest.fixture(scope="module")
def schema():
    return load_schema()


def _stage(schema, combine="average", kinds=()):
    # one plane: the slices below are built without a parasagittal stack
    cfg = GradeStageConfig(size_px=16, window_mm=32.0, channels=(8,), kinds=kinds, combine=combine, neighbours=0)
    torch.manual_seed(0)
    trained = TrainedLabels.all(schema)
    trained.grades["disc"][-1] = False  # a grade never seen in training
    return CropStage(create_crop_grader(cfg, schema), cfg, schema, trained)


def _slice(seed=0):
    pixels = np.random.default_rng(seed).gamma(2.0, 50.0, size=(96, 80)).astype(np.float32)
    return Slice(pixels, (0.8, 0.8), "1.2", "1.2.3", f"1.2.3.{seed}", 0, 1)


def test_grade_gives_probabilities_per_slice_and_masks_untrained_grades(schema, one_thread):
    stage = _stage(schema)
    k = schema.num_landmarks
    points = np.stack([np.full(k, 40.0), np.linspace(10, 85, k)], axis=1)
    points[3] = np.nan  # a landmark not found
    out = stage.grade([_slice(0), _slice(1)], [points, points])
    assert len(out) == 2
    for kind in schema.kinds:
        assert out[0][kind.name].shape == (len(schema.landmarks_of_kind(kind.name)), len(kind.grades))
    assert (out[0]["disc"][:, -1] == 0).all()
    np.testing.assert_allclose(out[0]["vertebra"].sum(-1), 1.0, rtol=1e-5)  # softmax for the single-label kind
    assert not np.allclose(out[0]["disc"], out[1]["disc"])  # other pixels, other grades


def test_combine_replaces_or_averages_only_the_graded_kinds(schema):
    head = {
        k.name: np.full((len(schema.landmarks_of_kind(k.name)), len(k.grades)), 0.2, np.float32) for k in schema.kinds
    }
    crop = {"disc": np.full_like(head["disc"], 0.6)}
    avg = _stage(schema, "average", ("disc",)).combine(head, crop)
    rep = _stage(schema, "replace", ("disc",)).combine(head, crop)
    np.testing.assert_allclose(avg["disc"], 0.4)
    np.testing.assert_allclose(rep["disc"], 0.6)
    np.testing.assert_array_equal(avg["vertebra"], head["vertebra"])
    np.testing.assert_array_equal(rep["vertebra"], head["vertebra"])
    assert _stage(schema).with_combine("replace").config.combine == "replace"


def test_disc_only_stage_crops_only_discs_but_orients_with_every_landmark(schema):
    stage = _stage(schema, kinds=("disc",))
    k = schema.num_landmarks
    y = np.linspace(10, 85, k)
    points = np.stack([40 + 15 * np.sin(y / 12), y], axis=1)  # a curved chain: the local axis turns
    crops = stage.crops(_slice(), points)
    assert crops.shape == (len(schema.landmarks_of_kind("disc")), 16, 16)
    without_vertebrae = np.where(np.array([kind == "disc" for kind in schema.landmark_kinds])[:, None], points, np.nan)
    assert not np.allclose(stage.crops(_slice(), without_vertebrae)[1:-1], crops[1:-1])  # the neighbours orient
    out = stage.grade([_slice()], [points])[0]
    assert list(out) == ["disc"]
