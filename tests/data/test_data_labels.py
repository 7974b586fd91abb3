"""Targets from annotations and label statistics."""

from __future__ import annotations

import numpy as np
import pytest

from spine_kp.data.labels import LabelStats, encode_targets, label_stats
from spine_kp.data.preprocess import Geometry
from spine_kp.schema import load_schema
from spine_kp.types import ImageAnnotation, Point, StudyRecord

SCHEMA = load_schema()


def pt(name: str, x: float, y: float, grades: tuple[str, ...] = ()) -> Point:
    return Point(identification=name, kind=SCHEMA.kind_of(name), coord=(x, y), grades=grades)


def record(uid: str, points: list[Point]) -> StudyRecord:
    return StudyRecord(study_uid=uid, images=(ImageAnnotation(series_uid="s", instance_uid="i", points=tuple(points)),))


def test_encode_targets_masks_missing_and_maps_to_input() -> None:
    ann = record("a", [pt("L1", 10, 20, ("v2",)), pt("L1-L2", 12, 30, ("v5", "v2")), pt("L2-L3", 14, 40)]).primary
    geom = Geometry(scale_x=0.5, scale_y=0.5, offset_x=1.0, offset_y=2.0, orig_shape=(100, 100))
    t = encode_targets(ann, SCHEMA, geom)
    k = SCHEMA.num_landmarks
    assert t.keypoints.shape == (k, 2) and t.keypoints.dtype == np.float32 and t.visible.shape == (k,)
    assert t.visible.sum() == 3
    assert not t.visible[SCHEMA.index("T12")]  # missing: masked, not background
    np.testing.assert_allclose(t.keypoints[SCHEMA.index("L1")], (6.0, 12.0))
    discs = SCHEMA.landmarks_of_kind("disc")
    grades = SCHEMA.kind("disc").grades
    row = discs.index("L1-L2")
    assert t.grades["disc"].shape == (len(discs), len(grades))
    assert set(np.flatnonzero(t.grades["disc"][row])) == {grades.index("v2"), grades.index("v5")}
    assert t.grade_mask["disc"][row]
    assert not t.grade_mask["disc"][discs.index("L2-L3")]  # empty grade: not graded, still localized
    assert t.visible[SCHEMA.index("L2-L3")]
    assert not t.grade_mask["disc"][discs.index("L4-L5")]  # missing
    vrow = SCHEMA.landmarks_of_kind("vertebra").index("L1")
    assert t.grades["vertebra"][vrow, SCHEMA.kind("vertebra").grades.index("v2")] == 1.0


def test_encode_targets_first_duplicate_and_outside_points() -> None:
    ann = record("a", [pt("L3", 5, 5, ("v1",)), pt("L3", 50, 50, ("v2",)), pt("L4", 500, 5, ("v1",))]).primary
    t = encode_targets(ann, SCHEMA, image_shape=(64, 64))
    np.testing.assert_allclose(t.keypoints[SCHEMA.index("L3")], (5, 5))
    assert t.grades["vertebra"][SCHEMA.landmarks_of_kind("vertebra").index("L3")].tolist() == [1.0, 0.0]
    assert not t.visible[SCHEMA.index("L4")]  # outside the 64x64 image
    assert not t.grade_mask["vertebra"][SCHEMA.landmarks_of_kind("vertebra").index("L4")]


def make_records() -> list[StudyRecord]:
    # T12 never annotated; disc grades v6/v7 never used; v1 common, v5 rare
    recs = []
    for i in range(8):
        pts = [pt("L1", 1, 1, ("v1",)), pt("L1-L2", 2, 2, ("v1",)), pt("L2-L3", 3, 3, ("v1",) if i else ("v5",))]
        pts.append(pt("L3-L4", 4, 4, ("v2", "v3") if i < 2 else ()))
        recs.append(record(f"s{i}", pts))
    recs.append(StudyRecord(study_uid="empty", images=()))
    return recs


def test_label_stats_counts_and_untrained() -> None:
    stats = label_stats(make_records(), SCHEMA)
    assert stats.num_records == 8
    assert stats.landmark_counts["L1"] == 8 and stats.landmark_counts["T12"] == 0
    assert "T12" in stats.untrained_landmarks and "L1" not in stats.untrained_landmarks
    assert stats.landmark_mask()[SCHEMA.index("T12")] == False  # noqa: E712
    assert stats.grade_counts[("disc", "v1")] == 15 and stats.grade_counts[("disc", "v5")] == 1
    assert stats.grade_counts[("disc", "v2")] == 2 and stats.graded_counts["disc"] == 18
    assert ("disc", "v7") in stats.untrained_grades and ("disc", "v1") not in stats.untrained_grades
    assert ("vertebra", "v2") in stats.untrained_grades
    grades = SCHEMA.kind("disc").grades
    mask = stats.grade_mask("disc")
    assert mask.tolist() == [g in ("v1", "v2", "v3", "v5") for g in grades]


def test_label_stats_weights() -> None:
    stats = label_stats(make_records(), SCHEMA)
    grades = SCHEMA.kind("disc").grades
    pw = stats.pos_weight("disc")
    assert pw[grades.index("v1")] == pytest.approx(3 / 15)
    assert pw[grades.index("v5")] == pytest.approx(17 / 1)
    assert pw[grades.index("v7")] == 0.0
    cw = stats.class_weights("disc")
    trained = stats.grade_mask("disc")
    assert cw[trained].mean() == pytest.approx(1.0)
    assert cw[grades.index("v5")] / cw[grades.index("v1")] == pytest.approx(np.sqrt(15.0))  # inverse sqrt frequency
    assert cw[grades.index("v6")] == 0.0
    back = LabelStats.from_dict(stats.to_dict(), SCHEMA)
    assert back == stats


def test_label_stats_log_prior_for_logit_adjustment() -> None:
    stats = label_stats(make_records(), SCHEMA)
    grades = SCHEMA.kind("disc").grades
    prior = stats.log_prior("disc")  # multi-label: log-odds of each grade among the 18 graded discs
    assert prior[grades.index("v1")] == pytest.approx(np.log(15 / 3))
    assert prior[grades.index("v5")] == pytest.approx(np.log(1 / 17))
    assert prior[grades.index("v7")] == 0.0  # untrained
    vert = stats.log_prior("vertebra")  # single-label: log share
    assert vert[SCHEMA.kind("vertebra").grades.index("v1")] == pytest.approx(0.0)  # every graded vertebra is v1
