"""Backend-independent decoding (``spine_kp.inference.network_outputs``) agrees with the torch functions training
uses."""

from __future__ import annotations

import numpy as np
import torch

from spine_kp.codec.heatmap import heatmap_argmax
from spine_kp.inference.network_outputs import grade_probabilities
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.models.heads import grade_probabilities as torch_grade_probabilities
from spine_kp.schema import load_schema

SCHEMA = load_schema()


def test_grade_probabilities_equal_the_training_side_softmax_and_sigmoid() -> None:
    g = torch.Generator().manual_seed(0)
    logits = {k.name: torch.randn(3, 6, len(k.grades), generator=g) * 4 for k in SCHEMA.kinds}
    temperatures = {"vertebra": 2.0, "disc": 0.5}
    expected = torch_grade_probabilities({k: v / temperatures[k] for k, v in logits.items()}, SCHEMA)
    got = grade_probabilities(logits, SCHEMA, TrainedLabels.all(SCHEMA), temperatures)
    for kind, p in expected.items():
        np.testing.assert_allclose(got[kind], p.numpy(), atol=1e-6)
    # untrained grades are impossible and the rest renormalised (single-label) or left alone (multi-label)
    trained = TrainedLabels.all(SCHEMA)
    trained.grades["vertebra"][1] = False
    trained.grades["disc"][3] = False
    masked = grade_probabilities(logits, SCHEMA, trained)
    assert (masked["vertebra"][..., 1] == 0).all() and np.allclose(masked["vertebra"][..., 0], 1.0)
    assert (masked["disc"][..., 3] == 0).all()
    np.testing.assert_allclose(masked["disc"][..., 4], torch.sigmoid(logits["disc"][..., 4]).numpy(), atol=1e-6)


def test_heatmap_argmax_numpy_equals_torch_also_on_ties() -> None:
    rng = np.random.default_rng(1)
    maps = rng.random((2, 3, 7, 9)).astype(np.float32)
    maps[0, 1] = 0.5  # a flat map: the first cell wins on both paths
    maps[1, 2, 4, 4] = maps[1, 2, 2, 6] = 2.0
    uv_np, peaks_np = heatmap_argmax(maps)
    uv_t, peaks_t = heatmap_argmax(torch.from_numpy(maps))
    assert isinstance(uv_np, np.ndarray) and isinstance(uv_t, torch.Tensor)
    np.testing.assert_array_equal(uv_np, uv_t.numpy())
    np.testing.assert_array_equal(peaks_np, peaks_t.numpy())
    assert uv_np[0, 1].tolist() == [0.0, 0.0] and uv_np[1, 2].tolist() == [6.0, 2.0]
