"""Score calibration at the end of training: two Platt maps per kind, so a score s means "a TP a share s of the time".

Why: an emitted score is ``peak x p(grade)``. The grade probability is temperature-scaled (the grade head's and the
crop stage's, :mod:`spine_kp.calibration.fit`), but the heatmap peak is not a probability: correct landmarks peak at
0.3-0.6, so raw scores are under-confident (ECE 0.44 for vertebrae on phantoms) although localization is nearly
perfect; and the grades a landmark emits (its most probable one, the others at >= 0.5) are right less often than
their probability says.

What is fitted, on the finished checkpoint (landmark network, temperatures and crop grading stage, as predict uses
them) predicting the validation split's annotated slices:

1. ``localization``: per kind, P(within 8 mm of the annotated landmark of the same identification) as
   ``sigmoid(a logit(peak) + b)``, from one (peak, within) pair per placed landmark; "within" is the evaluator's test
   (:func:`spine_kp.evaluation.matching.within_radius`) on the unrounded decoded point. The confidence of a point is
   then that probability instead of the raw peak (this reorders points of different landmarks, so APs change; on
   phantoms they rose).
2. ``scores``: per kind, ``sigmoid(a logit(s) + b)`` of the resulting score ``s = P(within) x p(grade)``, fitted on
   the (point, class) pairs the 8 mm rules count as TP or FP (:func:`spine_kp.evaluation.evaluate.evaluate_records`),
   the very population whose ECE ``spine-kp evaluate`` reports. It is strictly increasing and one per kind, so it
   keeps every order within a kind: no AP changes, and no landmark's top grade (the one the competition F1s read).

Both with :func:`spine_kp.calibration.fit.fit_platt` (a > 0); a kind with fewer than ``calibration.min_points``
pairs gets no map (identity). One map per class in step 2 calibrated a little better but reordered the grades of a
landmark: the top grade of some discs changed and the F1s fell (0.804 -> 0.768 on the README demo). The maps are
applied by :mod:`spine_kp.calibration.apply`, in both predictors (torch and ONNX Runtime).

Stored in the checkpoint under ``"score_calibration"``::

    {"localization": {kind: {a, b, n, n_tp, ece_before, ece_after}}, "scores": {kind: {...}},
     "fitted_on": "...", "radius_mm": 8.0, "n_studies": n, "seconds": s}

(``n_tp`` counts landmarks within 8 mm in step 1 and TPs in step 2.) Each checkpoint (best, last) is fitted on its own
predictions. The validation split also picked ``best.ckpt``, so the fit is in-sample: judge calibration on held-out
data with ``spine-kp evaluate``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spine_kp.calibration.fit import fit_platt
from spine_kp.checkpoint import SCORE_CALIBRATION_KEY, write_entry
from spine_kp.engine.annotated_slices import load_annotated_slices
from spine_kp.evaluation.evaluate import evaluate_predictions
from spine_kp.evaluation.matching import DEFAULT_RADIUS_MM, within_radius
from spine_kp.inference.slice_predictor import SlicePrediction, SlicePredictor
from spine_kp.inference.torch_predictor import Predictor
from spine_kp.io.dicom import StudyIndex
from spine_kp.schema import Schema
from spine_kp.types import StudyRecord

log = logging.getLogger(__name__)

FITTED_ON = "validation split, annotated slices: peak vs within 8 mm, then score vs TP of the 8 mm rules"

Pairs = Mapping[str, tuple[np.ndarray, np.ndarray]]  # kind -> ((N,) scores, (N,) bool outcomes)


def _predict_annotated(
    predictor: SlicePredictor, records: Sequence[StudyRecord], studies: Mapping[str, StudyIndex], batch_size: int
) -> list[SlicePrediction]:
    """The predictions of every record's annotated slice (``record.primary``) that loads."""
    loaded = load_annotated_slices(records, studies, predictor.slices_needed(), "score calibration")
    slices = [slc for _, slc in loaded]
    return [p for i in range(0, len(slices), batch_size) for p in predictor.predict(slices[i : i + batch_size])]


def localization_pairs(
    predicted: Sequence[SlicePrediction], truth: Mapping[str, StudyRecord], predictor: SlicePredictor
) -> Pairs:
    """Step 1's pairs: kind -> (peaks, within 8 mm) of every placed trained landmark (one not annotated: not within).

    Args:
        predicted: predictions of annotated slices.
        truth: study UID -> the annotation record holding each prediction's slice as ``primary``.
    """
    schema = predictor.schema
    peaks: dict[str, list[float]] = {k.name: [] for k in schema.kinds}
    within: dict[str, list[bool]] = {k.name: [] for k in schema.kinds}
    for pred in predicted:
        ann = truth[pred.slice.study_uid].primary
        gt = {p.identification: p.coord for p in ann.points} if ann is not None else {}
        for k, name in enumerate(schema.landmarks):
            if not predictor.trained.landmarks[k] or pred.peaks[k] <= 0:  # not placed: no point, no score
                continue
            kind = schema.landmark_kinds[k]
            peaks[kind].append(float(pred.peaks[k]))
            hit = name in gt and bool(within_radius(pred.coords[k], gt[name], pred.slice.spacing, DEFAULT_RADIUS_MM))
            within[kind].append(hit)
    return {k: (np.asarray(peaks[k]), np.asarray(within[k], bool)) for k in peaks}


def fit_maps(pairs: Pairs, schema: Schema, min_points: int) -> dict[str, dict[str, Any]]:
    """kind -> the stored Platt fit of its pairs; kinds with fewer than ``min_points`` pairs get none (identity)."""
    maps = {}
    for kind in schema.kinds:
        fit = fit_platt(*pairs.get(kind.name, (np.zeros(0), np.zeros(0, bool))), min_points=min_points)
        if fit.n >= min_points:
            maps[kind.name] = fit.to_dict()
    return maps


def fit_score_calibration(
    checkpoint: str | Path,
    records: Sequence[StudyRecord],
    studies: Mapping[str, StudyIndex],
    min_points: int = 20,
    device: str = "cpu",
    batch_size: int = 8,
) -> dict[str, Any] | None:
    """Predict ``records``' annotated slices with ``checkpoint`` and fit the two Platt maps per kind
    (:func:`fit_score_maps` of the checkpoint's predictor).

    Args:
        checkpoint: a finished spine_kp checkpoint (its own score calibration, if any, is ignored).
        records: validation annotation records (each uses ``record.primary``).
        studies: study UID -> StudyIndex holding them.
        min_points: least pairs of a kind to fit each of its maps.
        device: where the network runs ("cpu", "auto", ...).
        batch_size: slices per forward pass.

    Returns:
        The checkpoint entry (see the module docstring), or None when no record could be predicted.
    """
    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    return fit_score_maps(predictor, records, studies, min_points=min_points, batch_size=batch_size)


def fit_score_maps(
    predictor: SlicePredictor,
    records: Sequence[StudyRecord],
    studies: Mapping[str, StudyIndex],
    min_points: int = 20,
    batch_size: int = 8,
) -> dict[str, Any] | None:
    """Predict ``records``' annotated slices as ``predictor`` does (its decoding, flip-TTA, crop stage and combine
    mode) and fit the two Platt maps per kind on them; the predictor's own score maps are ignored.

    Returns:
        The checkpoint entry (see the module docstring), or None when no record could be predicted.
    """
    t0 = time.perf_counter()
    predictor = predictor.with_card(predictor.card.overridden(score_calibration={}))
    predicted = _predict_annotated(predictor, records, studies, batch_size)
    if not predicted:
        return None
    truth = {r.study_uid: r for r in records}
    schema = predictor.schema
    localization = fit_maps(localization_pairs(predicted, truth, predictor), schema, min_points)
    step1 = {"localization": localization}
    rescored = [predictor.record(p.slice, p.coords, p.peaks, p.grade_probs, score_calibration=step1) for p in predicted]
    result = evaluate_predictions([truth[r.study_uid] for r in rescored], rescored, schema, radius=DEFAULT_RADIUS_MM)
    return {
        "localization": localization,
        "scores": fit_maps(result.scored, schema, min_points),
        "fitted_on": FITTED_ON,
        "radius_mm": DEFAULT_RADIUS_MM,
        "n_studies": len(predicted),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def calibrate_checkpoints(
    checkpoints: Sequence[str | Path | None],
    records: Sequence[StudyRecord],
    studies: Mapping[str, StudyIndex],
    min_points: int = 20,
    device: str = "cpu",
) -> dict[str, dict[str, Any]]:
    """Fit and store the score calibration of each existing checkpoint (each on its own predictions).

    Returns:
        checkpoint path -> the entry written (checkpoints without an entry are left as they were).
    """
    done: dict[str, dict[str, Any]] = {}
    for path in checkpoints:
        if path is None or not Path(path).is_file() or str(path) in done:
            continue
        entry = fit_score_calibration(path, records, studies, min_points=min_points, device=device)
        if entry is None:
            continue
        write_entry(path, SCORE_CALIBRATION_KEY, entry)
        done[str(path)] = entry
        summary = {
            k: (round(f["ece_before"] or 0, 3), round(f["ece_after"] or 0, 3)) for k, f in entry["scores"].items()
        }
        log.info("score calibration of %s: ECE of the scores before/after per kind %s", Path(path).name, summary)
    return done


__all__ = [
    "FITTED_ON",
    "calibrate_checkpoints",
    "fit_maps",
    "fit_score_calibration",
    "fit_score_maps",
    "localization_pairs",
]
