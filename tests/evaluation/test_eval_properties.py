"""Property tests of the evaluator on random studies (hypothesis, modest example counts)."""

from __future__ import annotations

import dataclasses

from eval_fixtures import SCHEMA, pt, run, study
from hypothesis import given, settings
from hypothesis import strategies as st

from spine_kp.types import Point, StudyRecord

SETTINGS = settings(max_examples=50, deadline=None)
SPACINGS = [(1.0, 1.0), (0.5, 0.8), (0.7, 0.7)]


@st.composite
def gt_point(draw: st.DrawFn, xy: tuple[int, int]) -> Point:
    ident = draw(st.sampled_from(SCHEMA.landmarks))
    grades = SCHEMA.grades_of(ident)
    labels = draw(st.lists(st.sampled_from(grades), max_size=2, unique=True))
    return pt(ident, xy[0], xy[1], ",".join(labels))


@st.composite
def gt_studies(draw: st.DrawFn) -> list[StudyRecord]:
    out = []
    for i in range(draw(st.integers(1, 4))):
        coords = draw(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=8, unique=True))
        points = [draw(gt_point(c)) for c in coords]
        out.append(study(f"s{i}", points, spacing=draw(st.sampled_from(SPACINGS))))
    return out


@st.composite
def noisy_predictions(draw: st.DrawFn, gt: list[StudyRecord]) -> list[StudyRecord]:
    """Jittered copies of some ground-truth points with random grades and scores, plus random extras."""
    out = []
    for rec in gt:
        points = []
        for p in rec.points:
            if draw(st.booleans()):
                grades = draw(st.lists(st.sampled_from(SCHEMA.grades_of(p.identification)), max_size=2, unique=True))
                dx, dy = draw(st.integers(-12, 12)), draw(st.integers(-12, 12))
                score = draw(st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]))  # ties on purpose
                points.append(pt(p.identification, p.coord[0] + dx, p.coord[1] + dy, ",".join(grades), score))
        for _ in range(draw(st.integers(0, 3))):
            points.append(draw(gt_point((draw(st.integers(0, 60)), draw(st.integers(0, 60))))))
            points[-1] = dataclasses.replace(points[-1], score=draw(st.sampled_from([0.2, 0.4, 0.6])))
        if draw(st.booleans()) or points:
            out.append(study(rec.study_uid, points, spacing=None))
    return out


@SETTINGS
@given(gt=gt_studies(), data=st.data())
def test_perfect_predictions_give_ap_one_for_every_defined_class(gt, data):
    preds = [
        study(r.study_uid, [dataclasses.replace(p, score=data.draw(st.floats(0.01, 1.0))) for p in r.points])
        for r in gt
    ]
    res = run(gt, preds)
    for c in res.classes:
        if c.defined:
            assert c.ap == 1.0 and c.fp == 0 and c.fn == 0, c
        else:
            assert c.ap is None
    assert res.map in (None, 1.0)


@SETTINGS
@given(gt=gt_studies(), data=st.data())
def test_adding_a_far_lowest_score_false_positive_never_raises_ap(gt, data):
    preds = data.draw(noisy_predictions(gt))
    base = run(gt, preds)
    far = pt(data.draw(st.sampled_from(SCHEMA.landmarks)), 10_000, 10_000, "", 0.0)
    far = dataclasses.replace(far, grades=(data.draw(st.sampled_from(SCHEMA.grades_of(far.identification))),))
    target = data.draw(st.sampled_from([r.study_uid for r in gt]))
    extra = [study(target, [far], spacing=None)]  # merged with the study's other prediction record, if any
    worse = run(gt, preds + extra)
    for b, w in zip(base.classes, worse.classes):
        if b.defined:
            assert w.ap <= b.ap + 1e-12, (b, w)
    assert sum(w.fp for w in worse.classes) == sum(b.fp for b in base.classes) + 1


@SETTINGS
@given(gt=gt_studies(), data=st.data())
def test_results_do_not_depend_on_the_order_of_studies_or_points(gt, data):
    preds = data.draw(noisy_predictions(gt))
    base = run(gt, preds)

    def shuffled(records: list[StudyRecord]) -> list[StudyRecord]:
        records = data.draw(st.permutations(records))
        return [
            dataclasses.replace(
                r,
                images=tuple(
                    dataclasses.replace(im, points=tuple(data.draw(st.permutations(im.points)))) for im in r.images
                ),
            )
            for r in records
        ]

    again = run(shuffled(gt), shuffled(preds))
    assert again.to_dict() == base.to_dict()
    assert again.f1_6mm == base.f1_6mm
