"""Domain-randomised phantoms (``SynthOptions.randomize``, ``synth --randomize``): wider protocols, same truth."""

from __future__ import annotations

import numpy as np
import pytest

from spine_kp.schema import load_schema
from spine_kp.synth import SynthOptions, make_study
from spine_kp.synth.phantom import MRSequence, tissue_signals
from spine_kp.synth.plan import randomize_plan, sample_plan

SCHEMA = load_schema()
RANDOM = SynthOptions(size=160, axial=False, tricky=False, randomize=True)


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4, 5])
def test_randomised_landmarks_sit_on_their_drawn_structure(index: int) -> None:
    study = make_study(4, index, options=RANDOM)
    labels = study.get("t2_sag").labels[study.annotated_index]
    h, w = labels.shape
    points = study.record.primary.points
    assert [p.identification for p in points] == list(SCHEMA.landmarks)
    for p in points:
        x, y = p.coord
        assert 0 <= x < w and 0 <= y < h, p
        assert labels[int(round(y)), int(round(x))] == study.label_id(p.identification), p


def test_randomised_protocols_cover_what_ordinary_phantoms_do_not() -> None:
    plain = [sample_plan(np.random.default_rng(i), i, None, False) for i in range(300)]
    wide = [randomize_plan(np.random.default_rng(1000 + i), p) for i, p in enumerate(plain)]
    fovs = np.array([p.fov for p in wide])
    assert fovs.min() < 255 and fovs.max() > 350  # tight crops and the whole lower spine
    assert all(240 <= f <= 380 for f in fovs)
    fat = np.array([p.series["t2_sag"].sequence.fat_scale for p in wide])
    assert 0.3 < np.mean(fat < 1.0) < 0.6  # fat-suppressed / water-image T2 in about 45 % of studies
    snr = np.array([p.series["t2_sag"].snr for p in wide])
    assert snr.max() > 2 * max(p.series["t2_sag"].snr for p in plain)  # much cleaner images exist
    xs = np.array([p.placement[0] for p in wide])
    assert xs.min() < 0.38 and xs.max() > 0.65
    # everything but the randomised fields is the ordinary plan
    assert all(w.n_sag == p.n_sag and w.series["t1_sag"] == p.series["t1_sag"] for w, p in zip(wide, plain))


def test_fat_suppression_darkens_only_fat() -> None:
    plain, sat = MRSequence(100.0, 4000.0), MRSequence(100.0, 4000.0, fat_scale=0.1)
    signals = tissue_signals([plain, sat])
    assert signals["fat"][1] == pytest.approx(0.1 * signals["fat"][0])
    for tissue in ("csf", "nucleus", "muscle", "marrow_water"):
        assert signals[tissue][1] == signals[tissue][0]


def test_randomising_changes_only_the_randomised_protocol_fields() -> None:
    """Same study with and without --randomize: same acquisition layout and anatomy, other field of view / contrast."""
    plain = make_study(3, 1, options=SynthOptions(size=96, axial=False))
    wide = make_study(3, 1, options=SynthOptions(size=96, axial=False, randomize=True))
    assert plain.plan.n_sag == wide.plan.n_sag and plain.plan.tricky == wide.plan.tricky
    assert plain.plan.series["t1_sag"] == wide.plan.series["t1_sag"]
    assert plain.grades == wide.grades  # the anatomy and its grades come from their own generators
    assert plain.plan.fov != wide.plan.fov
    assert plain.get("t2_sag").pixels.shape == wide.get("t2_sag").pixels.shape
    assert not np.array_equal(plain.get("t2_sag").pixels, wide.get("t2_sag").pixels)
