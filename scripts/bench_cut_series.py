"""Series cut above the sacrum: how the level count and its warning fare when the lumbosacral junction is not in view.

    python scripts/bench_cut_series.py --cv CV_DIR [--at L5 L4] [--margin-px 4] [--work DIR] [--out cut.json]

The levels are counted from the sacrum. This benchmark takes the fold runs of ``scripts/bench_real.py`` in CV_DIR
(``fold*/``: the run, its ``test_annotations.json``), and for every ``--at`` landmark (a vertebral body, e.g. ``L5``)
cuts each fold's test studies at the row of that annotated landmark: every image of the study loses the rows from
there down (a copy under ``--work``; the inputs are never modified), and the ground truth keeps the landmarks that lie
at least ``--margin-px`` rows above the cut. ``none`` is the uncut studies. Each fold's test studies are predicted with
the fold's own checkpoint as trained (junction check included when it has one) and, when it has one, without the
check; the folds are pooled and scored by the project's evaluator. Besides the share within 8 mm and the studies a
level off, each row counts the studies whose prediction carries the warning that the count was made without the
junction in view (:mod:`spine_kp.inference.count_warning`) and how many of those were a level off.

The cut is along image rows: meant for one-slice studies like the Tianchi development set, whose annotated image is
the only one; in a study with several series every image is cut at the same row.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from spine_kp.api import evaluate, load_predictor, predict_studies
from spine_kp.engine.config import load_experiment
from spine_kp.evaluation.levels import level_metrics
from spine_kp.evaluation.spacing import fill_spacing
from spine_kp.io.annotations import read_annotations
from spine_kp.io.atomic import atomic_write_text
from spine_kp.io.dicom import scan
from spine_kp.schema import Schema, load_schema
from spine_kp.types import StudyRecord

UNCUT = "none"


def cut_image(path: Path, rows: int) -> bool:
    """Keep the first ``rows`` rows of the single-frame image at ``path`` (rewritten uncompressed); False when it has
    no pixel data, several frames, or no more than ``rows`` rows (left as it is)."""
    ds = pydicom.dcmread(path)
    if "PixelData" not in ds or int(ds.get("NumberOfFrames", 1) or 1) != 1 or int(ds.Rows) <= rows:
        return False
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    pixels = np.ascontiguousarray(ds.pixel_array[:rows])
    ds.PixelData = pixels.tobytes()
    ds.Rows = rows
    ds.save_as(path)
    return True


def cut_record(record: StudyRecord, rows: int, margin: float) -> StudyRecord:
    """The ground truth of a study cut to ``rows`` rows: the points at least ``margin`` rows above the cut."""
    images = tuple(
        dataclasses.replace(im, points=tuple(p for p in im.points if p.coord[1] < rows - margin))
        for im in record.images
    )
    return dataclasses.replace(record, images=images)


def cut_row(record: StudyRecord, at: str) -> int | None:
    """The row of the annotated landmark ``at`` on the study's annotated image (None when not annotated)."""
    primary = record.primary
    for p in primary.points if primary is not None else ():
        if p.identification == at:
            return int(round(p.coord[1]))
    return None


def figures(gt: list[StudyRecord], pred: list[StudyRecord], schema: Schema) -> dict[str, Any]:
    """Localization, level and warning figures of pooled predictions (ground truth with its spacing filled)."""
    res = evaluate(pred, gt, schema=schema)
    levels = level_metrics(gt, pred, schema, 8.0)
    loc = res.localization.overall
    shifted = set(levels["level_shift_studies"])
    warned = {r.study_uid for r in pred if r.warnings}
    return {
        "studies": len(gt),
        "landmarks": loc.count,
        "within_8mm": loc.within_radius,
        "median_mm": loc.median,
        "never_predicted": loc.never_predicted,
        "level_shifts": levels["level_shifts"],
        "order_violations": levels["order_violations"],
        "warned": len(warned),
        "warned_and_shifted": len(warned & shifted),
        "shifted_unwarned": sorted(shifted - warned),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cv", type=Path, required=True, help="a bench_real.py --out folder (fold*/ runs)")
    ap.add_argument("--at", nargs="+", default=[UNCUT, "L5", "L4"], help="cut at these annotated landmarks")
    ap.add_argument("--margin-px", type=float, default=4.0, help="ground truth kept this far above the cut")
    ap.add_argument("--work", type=Path, default=None, help="where the cut copies go (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=None, help="JSON of the rows")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    runs = sorted(p.parent for p in args.cv.glob("fold*/config.yaml"))
    if not runs:
        raise SystemExit(f"--cv {args.cv}: no fold*/config.yaml (run scripts/bench_real.py --out {args.cv} first)")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        rows: dict[str, dict[str, list]] = {}
        schema = None
        for run in runs:
            cfg = load_experiment(run / "config.yaml")
            schema = load_schema(cfg.schema)
            index = scan(cfg.data.root).studies
            gt_all = [r for r in read_annotations(run / "test_annotations.json", schema) if r.study_uid in index]
            predictors = {"as trained": load_predictor(run, device="cpu")}
            if predictors["as trained"].junction is not None:
                predictors["without the junction check"] = load_predictor(run, device="cpu", junction=None)
            for at in args.at:
                root = work / at / run.name
                gt = []
                for rec in gt_all:
                    row = None if at == UNCUT else cut_row(rec, at)
                    if at != UNCUT and row is None:
                        continue
                    dst = root / f"study{len(gt):04d}"
                    shutil.copytree(index[rec.study_uid].folder, dst)
                    if row is not None:
                        for f in sorted(p for p in dst.rglob("*") if p.is_file()):
                            try:
                                cut_image(f, row)
                            except Exception:  # not DICOM: the scan skips it as it would the original
                                continue
                    gt.append(rec if row is None else cut_record(rec, row, args.margin_px))
                cut_index = scan(root).studies
                studies = [cut_index[r.study_uid] for r in gt if r.study_uid in cut_index]
                for name, predictor in predictors.items():
                    out = predict_studies(studies, predictor, workers=1)
                    pred = [p.record for p in out.predictions]
                    row_acc = rows.setdefault(f"cut at {at}, {name}" if at != UNCUT else f"uncut, {name}", {})
                    row_acc.setdefault("gt", []).extend(fill_spacing(gt, pred_records=pred, studies=cut_index))
                    row_acc.setdefault("pred", []).extend(pred)
    assert schema is not None
    result = {name: figures(r["gt"], r["pred"], schema) for name, r in rows.items()}
    head = f"{'row':<46} {'studies':>7} {'<=8mm':>6} {'shifted':>7} {'order':>5} {'warned':>6} {'warned&shifted':>14}"
    print(head)
    for name, m in result.items():
        print(
            f"{name:<46} {m['studies']:>7} {m['within_8mm'] or 0:>6.3f} {m['level_shifts']:>7} "
            f"{m['order_violations']:>5} {m['warned']:>6} {m['warned_and_shifted']:>14}"
        )
    if args.out is not None:
        payload = {"cv": str(args.cv), "at": args.at, "margin_px": args.margin_px, "rows": result}
        atomic_write_text(args.out, json.dumps(payload, indent=2) + "\n")
        print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
