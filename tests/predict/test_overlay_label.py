"""The overlay's text per landmark: the confident grades, whatever alternatives the prediction file also carries."""

from __future__ import annotations

import re

import numpy as np

from spine_kp.inference.records import landmarks_to_record
from spine_kp.inference.slice_predictor import SlicePrediction
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.predict.overlay import overlay_label
from spine_kp.schema import load_schema
from spine_kp.types import Slice

SCHEMA = load_schema("tianchi")


def _prediction(top_k: int) -> SlicePrediction:
    k = len(SCHEMA.landmarks)
    coords = np.stack([np.full(k, 50.0), 20.0 + 10.0 * np.arange(k)], axis=1)
    peaks = np.full(k, 0.9)
    peaks[SCHEMA.index("L5-S1")] = 0.0  # declared outside the image: no point
    n_disc = len(SCHEMA.landmarks_of_kind("disc"))
    disc = np.tile(np.array([0.2, 0.7, 0.1, 0.05, 0.6]), (n_disc, 1))  # bulge and Schmorl's node both >= 0.5
    vertebra = np.tile(np.array([0.3, 0.7]), (len(SCHEMA.landmarks_of_kind("vertebra")), 1))
    probs = {"disc": disc, "vertebra": vertebra}
    record = landmarks_to_record(coords, peaks, probs, SCHEMA, TrainedLabels.all(SCHEMA), study_uid="s",
                                 series_uid="se", instance_uid="i", z_index=0, top_k_grades=top_k)  # fmt: skip
    slc = Slice(pixels=np.zeros((160, 100), np.float32), spacing=(1.0, 1.0), study_uid="s", series_uid="se",
                instance_uid="i", z_index=0, num_slices=1)  # fmt: skip
    return SlicePrediction(slc, record, coords, peaks, probs)


def test_the_label_shows_the_confident_grades_and_counts_the_alternatives() -> None:
    plain, every = _prediction(0), _prediction(5)
    assert len(every.record.points) > len(plain.record.points)  # the file carries the alternatives
    for pred, disc_alt, vertebra_alt in ((plain, "", ""), (every, " +3 alt", " +1 alt")):
        assert re.fullmatch(rf"L3-L4 v2/v5 0\.\d\d{re.escape(disc_alt)}", overlay_label(pred, SCHEMA, "L3-L4") or "")
        assert re.fullmatch(rf"L3 v2 0\.\d\d{re.escape(vertebra_alt)}", overlay_label(pred, SCHEMA, "L3") or "")
    assert overlay_label(plain, SCHEMA, "L5-S1") is None and overlay_label(every, SCHEMA, "L5-S1") is None
    ungraded = SlicePrediction(plain.slice, plain.record, plain.coords, plain.peaks,
                               {k: np.zeros_like(v) for k, v in plain.grade_probs.items()})  # fmt: skip
    assert re.fullmatch(r"L3 0\.\d\d( \+1 alt)?", overlay_label(ungraded, SCHEMA, "L3") or "")  # no grade invented
