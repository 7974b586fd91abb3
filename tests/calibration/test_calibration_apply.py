"""Calibration at prediction time: the stored score maps, a point's calibrated score, temperature-scaled grades."""

from __future__ import annotations

import numpy as np
import pytest

from spine_kp.calibration.apply import platt, point_confidence, point_score, probabilities, score_maps
from spine_kp.calibration.fit import Calibration, fit_temperatures
from spine_kp.schema import load_schema

SCHEMA = load_schema()


def test_score_maps_read_fit_records_and_pairs_and_ignore_other_keys():
    entry = {
        "localization": {"disc": {"a": 2.0, "b": -1.0, "n": 30, "ece_before": 0.2}},
        "scores": {"vertebra": [0.5, 0.25]},
        "fitted_on": "validation split",
        "radius_mm": 8.0,
    }
    assert score_maps(entry) == {"localization": {"disc": (2.0, -1.0)}, "scores": {"vertebra": (0.5, 0.25)}}
    assert score_maps(None) == {"localization": {}, "scores": {}}


def test_a_point_is_scored_peak_times_probability_without_maps():
    maps = score_maps({})
    assert point_confidence(np.float32(0.4), "disc", maps) == pytest.approx(0.4)
    assert point_score(0.4, np.float32(0.5), "disc", maps) == pytest.approx(0.2)
    assert point_score(3.0, 0.9, "disc", maps) == 1.0  # clipped to [0, 1]


def test_the_localization_map_then_the_score_map_of_the_points_kind():
    maps = score_maps({"localization": {"disc": (2.0, 0.5)}, "scores": {"disc": (0.5, -0.3)}})
    conf = point_confidence(0.4, "disc", maps)
    assert conf == pytest.approx(float(platt(0.4, 2.0, 0.5)))
    assert point_score(conf, 0.7, "disc", maps) == pytest.approx(float(platt(conf * 0.7, 0.5, -0.3)))
    assert point_confidence(0.4, "vertebra", maps) == pytest.approx(0.4)  # another kind: no map, identity
    assert point_score(0.4, 0.5, "vertebra", maps) == pytest.approx(0.2)
    # strictly increasing: a kind's points keep their order
    s = np.linspace(0.01, 0.99, 50)
    assert np.all(np.diff([point_score(1.0, p, "disc", maps) for p in s]) > 0)


def test_temperature_flattens_the_probabilities_and_keeps_the_argmax():
    z = np.array([[2.0, 0.0, -1.0]])
    hot, cool = probabilities(z, multi_label=False), probabilities(z, multi_label=False, temperature=2.0)
    np.testing.assert_allclose(hot.sum(), 1.0)
    assert cool.argmax() == hot.argmax() and cool.max() < hot.max()
    np.testing.assert_allclose(probabilities(z, True, 2.0), 1 / (1 + np.exp(-z / 2)))


def test_fit_temperatures_fits_the_kinds_named_and_defaults_those_without_landmarks():
    rng = np.random.default_rng(0)
    g = len(SCHEMA.kind("disc").grades)
    z = rng.normal(0, 1, (200, g))
    y = (rng.random((200, g)) < 1 / (1 + np.exp(-z))).astype(float)  # drawn from sigmoid(z): over-confident at 3z
    masks = {k.name: np.ones(len(k.grades), bool) for k in SCHEMA.kinds}
    fits = fit_temperatures({"disc": (3 * z, y)}, SCHEMA.kinds, masks, min_points=20)
    assert list(fits) == ["vertebra", "disc"]
    assert fits["vertebra"].temperature == 1.0 and fits["vertebra"].n == 0
    assert fits["disc"].temperature == pytest.approx(3.0, rel=0.25) and fits["disc"].n == 200
    only_disc = fit_temperatures({"disc": (3 * z, y)}, [SCHEMA.kind("disc")], masks, min_points=20)
    assert list(only_disc) == ["disc"] and only_disc["disc"] == fits["disc"]
    entry = Calibration.fit({"disc": (3 * z, y)}, SCHEMA.kinds, masks, 20).to_checkpoint()
    back = Calibration.from_checkpoint(entry)
    assert back.temperatures == {k: f.temperature for k, f in fits.items()} and back.fits == fits
