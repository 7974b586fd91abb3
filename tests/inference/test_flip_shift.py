"""Prediction points carry ``landmarkScore`` always and ``flipShiftMm`` under flip-TTA (what ``spine-kp review``
orders studies by): the distance between the landmark decoded on the plain and on the mirrored view alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.inference.card import ModelCard, Preprocessing
from spine_kp.inference.slice_predictor import SlicePredictor
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.io.annotations import records_to_json
from spine_kp.schema import load_schema
from spine_kp.types import Slice

SCHEMA = load_schema()
SIZE = 64
SPACING = (0.5, 2.0)  # (row_mm, col_mm): a column step is 2 mm, so a sideways shift is easy to tell from a row one
SHIFT_PX = 3  # the mirrored view places every landmark this many pixels further right, once mirrored back


class TwoViews:
    """A stand-in network: one Gaussian per landmark down the middle column; the mirrored view's, mirrored back,
    lies ``SHIFT_PX`` columns to the right."""

    def __init__(self) -> None:
        k = SCHEMA.num_landmarks
        self.rows = np.linspace(4, SIZE - 5, k)
        self.yy, self.xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)

    def _maps(self, column: float) -> np.ndarray:
        d2 = (self.xx[None] - column) ** 2 + (self.yy[None] - self.rows[:, None, None]) ** 2
        return np.exp(-d2 / 4.0).astype(np.float32)

    def run(self, images: Any, mirrored: bool = False) -> tuple[np.ndarray, Any]:
        b = np.asarray(images).shape[0]
        # the mirrored input's landmarks at column c' map back to SIZE - 1 - c'
        column = SIZE - 1 - (SIZE / 2 + SHIFT_PX) if mirrored else SIZE / 2
        return np.repeat(self._maps(column)[None], b, axis=0), None

    def grade(self, features: Any, points: np.ndarray) -> dict[str, np.ndarray]:
        b = points.shape[0]
        return {
            k.name: np.zeros((b, len(SCHEMA.landmarks_of_kind(k.name)), len(k.grades)), np.float32)
            for k in SCHEMA.kinds
        }


class Fake(SlicePredictor):
    def __init__(self) -> None:
        codec = HeatmapCodec((SIZE, SIZE), stride=1, sigma=1.5)
        super().__init__(ModelCard(SCHEMA, codec, TrainedLabels.all(SCHEMA), Preprocessing()))
        self.net = TwoViews()

    @property
    def network(self) -> TwoViews:
        return self.net


def _slice() -> Slice:
    pixels = np.random.default_rng(0).normal(100, 5, (SIZE, SIZE)).astype(np.float32)
    return Slice(pixels, SPACING, "1.2", "1.2.3", "1.2.3.4", 0, 1)


def _points(flip: bool) -> list[dict[str, Any]]:
    (pred,) = Fake().predict([_slice()], flip_tta=flip)
    return [p for im in records_to_json([pred.record])[0]["data"] for p in im["annotation"][0]["data"]["point"]]


def test_flip_tta_writes_how_far_apart_the_two_views_put_each_landmark() -> None:
    points = _points(flip=True)
    assert points and all(p["flipShiftMm"] == pytest.approx(SHIFT_PX * SPACING[1], abs=0.05) for p in points)


def test_every_point_carries_its_landmark_score_and_no_flip_shift_without_flip_tta() -> None:
    points = _points(flip=False)
    assert points and all("flipShiftMm" not in p for p in points)
    # no score calibration: the landmark's confidence is its heatmap peak, shared by every grade of the landmark
    by_id: dict[str, set[float]] = {}
    for p in points:
        assert 0.0 < p["landmarkScore"] <= 1.0
        by_id.setdefault(p["tag"]["identification"], set()).add(p["landmarkScore"])
    assert all(len(v) == 1 for v in by_id.values())
