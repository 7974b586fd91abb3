"""Step 1 of the score-map fit: (peak, within 8 mm) pairs, with the evaluator's 8 mm test."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from spine_kp.engine.score_map_fit import fit_maps, localization_pairs
from spine_kp.evaluation.matching import within_radius
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.schema import load_schema
from spine_kp.types import ImageAnnotation, Point, StudyRecord

SCHEMA = load_schema()


def test_within_radius_is_the_matching_rules_test_in_mm():
    spacing = (0.5, 2.0)  # (row_mm, col_mm): a column is 2 mm, a row 0.5 mm
    assert within_radius((14.0, 0.0), (10.0, 0.0), spacing)  # 4 columns = 8 mm: within (<=)
    assert not within_radius((14.01, 0.0), (10.0, 0.0), spacing)
    assert within_radius((10.0, 16.0), (10.0, 0.0), spacing) and not within_radius((10.0, 17.0), (10.0, 0.0), spacing)
    both = within_radius(np.array([[0.0, 0.0], [9.0, 0.0]]), np.zeros((2, 2)), spacing, radius=10.0)
    assert both.tolist() == [True, False]  # broadcasts over points


def test_pairs_count_placed_trained_landmarks_and_an_unannotated_one_is_a_miss():
    k = SCHEMA.num_landmarks
    coords = np.zeros((k, 2), np.float32)
    coords[:, 0] = 100.0
    peaks = np.full(k, 0.5, np.float32)
    peaks[2] = 0.0  # declared absent: no point, no pair
    trained = TrainedLabels.all(SCHEMA)
    trained.landmarks[3] = False  # untrained: never placed
    names = SCHEMA.landmarks
    kinds = SCHEMA.landmark_kinds
    gt_points = (
        Point(names[0], kinds[0], (103.0, 0.0)),  # 3 columns x 2 mm = 6 mm: within
        Point(names[1], kinds[1], (105.0, 0.0)),  # 10 mm: not within
        Point(names[4], kinds[4], (100.0, 0.0)),  # on the spot
    )
    image = ImageAnnotation("series", "instance", gt_points, pixel_spacing=(0.5, 2.0))
    truth = {"s": StudyRecord("s", (image,))}
    pred = SimpleNamespace(slice=SimpleNamespace(study_uid="s", spacing=(0.5, 2.0)), coords=coords, peaks=peaks)
    predictor = SimpleNamespace(schema=SCHEMA, trained=trained)
    pairs = localization_pairs([pred], truth, predictor)
    expected = {kind.name: [] for kind in SCHEMA.kinds}
    for i in range(k):
        if i not in (2, 3):  # the absent and the untrained landmark give no pair; the others not annotated: misses
            expected[kinds[i]].append(i in (0, 4))
    for kind, outcomes in expected.items():
        np.testing.assert_array_equal(pairs[kind][1], outcomes)
        np.testing.assert_allclose(pairs[kind][0], 0.5)
    maps = fit_maps(pairs, SCHEMA, min_points=1)
    assert set(maps) == {"vertebra", "disc"} and maps["vertebra"]["n"] == len(expected["vertebra"])
    assert fit_maps(pairs, SCHEMA, min_points=100) == {}  # too few pairs: identity (no map)
