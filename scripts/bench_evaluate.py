"""Benchmark the evaluator on synthetic studies generated in memory.

Each study: the schema's landmarks (12 for the default schema) as ground truth along a gently curved spine, with
random grades (some multi-label, some empty), on an image with its own non-square spacing; about two predictions per
landmark (a jittered best guess and a lower-scored alternative grade), a few landmarks missed and a few spurious
points. Only ``evaluate_records`` is timed (records -> arrays -> matching -> metrics), not the generation.

    python scripts/bench_evaluate.py --studies 10000
    python scripts/bench_evaluate.py --studies 300 --report /tmp/eval_report   # also write the report to look at
"""

from __future__ import annotations

import argparse
import math
import random
import time

from spine_kp.evaluation import evaluate_records
from spine_kp.schema import Schema, load_schema
from spine_kp.types import ImageAnnotation, Point, StudyRecord


def _grades(rng: random.Random, schema: Schema, ident: str) -> tuple[str, ...]:
    kind = schema.kind(schema.kind_of(ident))
    u = rng.random()
    if u < 0.05:
        return ()  # empty label: ignore for grading
    if kind.multi_label and u > 0.8:
        return tuple(rng.sample(kind.grades, 2))
    return (kind.grades[0],) if rng.random() < 0.6 else (rng.choice(kind.grades[1:]),)


def make_studies(n: int, schema: Schema, seed: int = 0) -> tuple[list[StudyRecord], list[StudyRecord]]:
    """``n`` ground-truth and prediction records (predictions carry scores).

    Scalar draws use :mod:`random` (much faster per call than numpy's generator); only the timing is the point.
    """
    rng = random.Random(seed)
    names = schema.landmarks
    kinds = [schema.kind_of(name) for name in names]
    gts, preds = [], []
    for i in range(n):
        uid = f"1.2.999.{i}"
        spacing = (rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.9))  # (row_mm, col_mm)
        phase = rng.uniform(0, 3)
        gt_pts, pr_pts = [], []
        for t, (name, kind) in enumerate(zip(names, kinds)):
            y = 80.0 + t * 13.2 / spacing[0] + rng.gauss(0, 2)  # about 13 mm between landmarks
            x = 200.0 + 15.0 * math.sin(t / 4.0 + phase) + rng.gauss(0, 2)
            grades = _grades(rng, schema, name)
            gt_pts.append(Point(name, kind, (x, y), grades))
            if rng.random() < 0.05:
                continue  # missed landmark
            px, py = x + rng.gauss(0, 3.0) / spacing[1], y + rng.gauss(0, 3.0) / spacing[0]  # 3 mm error per axis
            guess = grades if grades and rng.random() < 0.7 else _grades(rng, schema, name)
            s = rng.uniform(0.4, 1.0)
            pr_pts.append(Point(name, kind, (px, py), guess, score=s))
            alt = rng.choice(schema.kind(kind).grades)
            pr_pts.append(Point(name, kind, (px, py), (alt,), score=s * rng.uniform(0.1, 0.6)))
        for _ in range(rng.choice((0, 0, 1, 1, 2))):  # spurious points anywhere on the image
            j = rng.randrange(len(names))
            xy = (rng.uniform(0, 400), rng.uniform(0, 500))
            grades = _grades(rng, schema, names[j]) or schema.kind(kinds[j]).grades[:1]
            pr_pts.append(Point(names[j], kinds[j], xy, grades, score=rng.uniform(0, 0.5)))
        gts.append(StudyRecord(uid, (ImageAnnotation("ser", "gt", tuple(gt_pts), 1, spacing),)))
        preds.append(StudyRecord(uid, (ImageAnnotation("ser", "mid", tuple(pr_pts), None, None),)))
    return gts, preds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1, help="time this many runs and report the best")
    ap.add_argument("--report", help="also write the report (tables + plots) of the result into this folder")
    args = ap.parse_args()
    schema = load_schema()
    t0 = time.perf_counter()
    gts, preds = make_studies(args.studies, schema, args.seed)
    gen = time.perf_counter() - t0
    n_gt = sum(len(r.points) for r in gts)
    n_pred = sum(len(r.points) for r in preds)
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = evaluate_records(gts, preds, schema)
        times.append(time.perf_counter() - t0)
    best = min(times)
    print(f"generated {args.studies} studies ({n_gt} GT points, {n_pred} predictions) in {gen:.1f} s")
    print(
        f"evaluate_records: {best:.2f} s  ({args.studies / best:,.0f} studies/s)  mAP {result.map:.4f}  "
        f"F1@6mm {result.f1_6mm:.4f}  median error {result.localization.overall.median:.2f} mm"
    )
    if args.report:
        from spine_kp.evaluation.report import write_report

        print("report:", ", ".join(str(p) for p in write_report(result, args.report).values()))


if __name__ == "__main__":
    main()
