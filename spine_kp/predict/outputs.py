"""Write a prediction run: competition JSON, the error list, the per-landmark CSV. Every file atomically.

CSV cells that a spreadsheet would run as a formula are neutralised (:mod:`spine_kp.io.csv_cells`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from spine_kp.inference.slice_predictor import SlicePrediction
from spine_kp.io.annotations import write_annotations
from spine_kp.io.atomic import atomic_write_text
from spine_kp.io.csv_cells import safe_row
from spine_kp.predict.runner import PredictRun
from spine_kp.schema import Schema


def errors_path(pred_json: str | Path) -> Path:
    """``PRED.json`` -> ``PRED.errors.json``."""
    p = Path(pred_json)
    return p.with_name(p.stem + ".errors.json")


def write_errors(run: PredictRun, path: str | Path) -> Path:
    """The studies that failed (with reasons), the files the scan skipped, and the warnings of predicted studies (e.g.
    a level count made without the lumbosacral junction in view, :mod:`spine_kp.inference.count_warning`)."""
    data = {
        "failed_studies": [f.to_dict() for f in run.failures],
        "skipped_files": [{"path": p, "reason": r} for p, r in run.skipped_files],
        "study_warnings": [{"study": r.study_uid, "warning": w} for r in run.records for w in r.warnings],
    }
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def csv_text(predictions: Sequence[SlicePrediction], schema: Schema) -> str:
    """One row per landmark: identity, position (pixels and mm), best grade, score, every grade probability."""
    grade_cols = [f"p_{k.name}_{g}" for k in schema.kinds for g in k.grades]
    header = ["study", "series", "instance", "zIndex", "identification", "kind", "x", "y", "x_mm", "y_mm"]
    header += ["grade", "score", "peak"] + grade_cols
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(safe_row(header))  # grade names come from a schema file
    for pred in predictions:
        s = pred.slice
        counters = {k.name: 0 for k in schema.kinds}
        for k, name in enumerate(schema.landmarks):
            kind = schema.landmark_kinds[k]
            j = counters[kind]
            counters[kind] += 1
            points = [p for p in pred.record.points if p.identification == name]
            if not points:  # untrained, or decoded as outside the image: never predicted
                continue
            best = max(points, key=lambda p: p.score or 0.0)
            x, y = (float(v) for v in pred.coords[k])
            probs = {f"p_{kind}_{g}": float(v) for g, v in zip(schema.kind(kind).grades, pred.grade_probs[kind][j])}
            row = [s.study_uid, s.series_uid, s.instance_uid, s.z_index, name, kind, f"{x:.2f}", f"{y:.2f}"]
            row += [f"{x * s.spacing[1]:.2f}", f"{y * s.spacing[0]:.2f}", ",".join(best.grades), f"{best.score:.4f}"]
            row += [f"{float(pred.peaks[k]):.4f}"] + [f"{probs[c]:.4f}" if c in probs else "" for c in grade_cols]
            writer.writerow(safe_row(row))  # UIDs come from the DICOM headers: untrusted text
    return buf.getvalue()


def write_outputs(
    run: PredictRun,
    schema: Schema,
    out_json: str | Path,
    csv_path: str | Path | None = None,
    overlays: str | Path | None = None,
) -> dict[str, Path]:
    """Write the JSON (+ ``.errors.json``), optionally the CSV and one overlay PNG per study."""
    written = {"predictions": write_annotations(out_json, run.records, schema=schema.name)}  # evaluate reads it
    written["errors"] = write_errors(run, errors_path(out_json))
    if csv_path is not None:
        written["csv"] = atomic_write_text(csv_path, csv_text(run.predictions, schema))
    if overlays is not None:
        from spine_kp.predict.overlay import write_overlays  # matplotlib only when asked for

        write_overlays(run.predictions, schema, overlays)
        written["overlays"] = Path(overlays)
    return written
