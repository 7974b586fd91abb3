from __future__ import annotations

import numpy as np

from spine_kp.inference.network_outputs import grade_probabilities
from spine_kp.inference.records import chosen_grades, landmarks_to_record
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.schema import load_schema

SCHEMA = load_schema()


def test_chosen_grades_single_multi_and_alternatives():
    probs = np.array([0.1, 0.7, 0.6, 0.0])
    assert chosen_grades(probs, multi_label=False) == [1]
    assert chosen_grades(probs, multi_label=True) == [1, 2]
    assert chosen_grades(probs, multi_label=False, top_k=3) == [1, 2, 0]
    assert chosen_grades(probs, multi_label=False, top_k=9) == [1, 2, 0]  # never an impossible (p = 0) grade


def test_record_scores_coords_and_untrained_labels():
    import torch

    k = SCHEMA.num_landmarks
    coords = np.stack([np.full(k, 50.0), np.arange(k) * 10.0], axis=1)
    peaks = np.linspace(0.5, 1.0, k)
    trained_lm = np.ones(k, dtype=bool)
    trained_lm[0] = False  # T12 never annotated in training
    disc_mask = np.ones(7, dtype=bool)
    disc_mask[5] = False  # v6 never seen
    trained = TrainedLabels(trained_lm, {"vertebra": np.ones(2, bool), "disc": disc_mask})
    logits = {"vertebra": torch.zeros(1, 6, 2), "disc": torch.full((1, 6, 7), -3.0)}
    logits["disc"][0, :, 5] = 10.0  # the model "wants" v6, which it was never trained on
    logits["disc"][0, :, 1] = 2.0
    probs = {kind: v[0] for kind, v in grade_probabilities(logits, SCHEMA, trained).items()}
    assert probs["disc"][:, 5].max() == 0.0
    rec = landmarks_to_record(
        coords,
        peaks,
        probs,
        SCHEMA,
        trained,
        study_uid="s",
        series_uid="se",
        instance_uid="i",
        z_index=4,
        spacing=(0.5, 0.6),
    )
    names = [p.identification for p in rec.points]
    assert "T12" not in names and names[0] == "T12-L1"
    assert all("v6" not in p.grades for p in rec.points)
    disc = next(p for p in rec.points if p.identification == "L1-L2")
    assert disc.grades == ("v2",) and disc.coord == (50.0, 30.0) and disc.z_index == 4
    expected = peaks[3] * probs["disc"][1, 1]
    assert abs(disc.score - expected) < 1e-5
    vert = next(p for p in rec.points if p.identification == "L1")
    assert abs(vert.score - peaks[2] * 0.5) < 1e-5
    assert rec.primary.pixel_spacing == (0.5, 0.6)


def test_landmark_decoded_outside_the_image_gets_no_point():
    k = SCHEMA.num_landmarks
    coords = np.stack([np.full(k, 50.0), np.arange(k) * 10.0], axis=1)
    peaks = np.full(k, 0.8)
    peaks[[0, k - 1]] = 0.0  # T12 and L5-S1 above / below the field of view
    probs = {"vertebra": np.full((6, 2), 0.5), "disc": np.full((6, 7), 0.1)}
    rec = landmarks_to_record(
        coords,
        peaks,
        probs,
        SCHEMA,
        TrainedLabels.all(SCHEMA),
        study_uid="s",
        series_uid="se",
        instance_uid="i",
        z_index=0,
    )
    names = {p.identification for p in rec.points}
    assert names == set(SCHEMA.landmarks[1:-1])
