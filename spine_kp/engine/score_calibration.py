"""Score calibration at the end of training: one Platt map per landmark kind, so a score s means "right a share s".

Why: an emitted score is ``peak x p(grade)``. The grade probability is temperature-scaled
(:mod:`spine_kp.engine.calibration`), but the heatmap peak is not a probability: correct landmarks peak at 0.3-0.6,
so raw scores are under-confident (ECE 0.44 for vertebrae on phantoms) although localization is nearly perfect.

What is fitted: the finished checkpoint (landmark network, its temperatures and the crop grading stage, as predict
uses them) predicts the validation split's annotated slices; the project's evaluator matches the points with the
8 mm rules; each kind's counted (point, class) pairs, the very population whose ECE ``spine-kp evaluate`` reports,
give (score, TP) pairs, and :func:`spine_kp.evaluation.calibration.fit_platt` fits ``s' = sigmoid(a logit(s) + b)``.
A class (kind/grade) with at least ``calibration.min_points`` pairs gets its own map (the grades of one kind are not
equally reliable: a normal disc's scores and a rare grade's mean different things), the other classes their kind's;
a kind with fewer pairs keeps its raw scores. Every map is strictly increasing (a > 0) and a class's points all go
through the same map, so it changes no ranking within a class and no AP.

Stored in the checkpoint under ``"score_calibration"``::

    {"kinds": {kind: {a, b, n, n_tp, ece_before, ece_after}}, "classes": {"kind/grade": {...}},
     "fitted_on": "...", "radius_mm": 8.0, "n_studies": n, "seconds": s}

and applied by both predictors (torch and ONNX Runtime) when they write records. Each checkpoint (best, last) is
fitted on its own predictions. The validation split is the one that picked ``best.ckpt``, so these ECE figures are
in-sample: judge calibration on held-out data with ``spine-kp evaluate``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spine_kp.checkpoint import SCORE_CALIBRATION_KEY, write_entry
from spine_kp.evaluation.calibration import fit_platt
from spine_kp.evaluation.evaluate import evaluate_records
from spine_kp.evaluation.matching import DEFAULT_RADIUS_MM
from spine_kp.evaluation.spacing import fill_spacing
from spine_kp.inference.predictor import Predictor
from spine_kp.io.dicom import IngestError, StudyIndex, load_instance
from spine_kp.types import StudyRecord

log = logging.getLogger(__name__)

FITTED_ON = "validation split, annotated slices, counted (point, class) pairs of the 8 mm rules"


def fit_score_calibration(
    checkpoint: str | Path,
    records: Sequence[StudyRecord],
    studies: Mapping[str, StudyIndex],
    min_points: int = 20,
    device: str = "cpu",
    batch_size: int = 8,
) -> dict[str, Any] | None:
    """Predict ``records``' annotated slices with ``checkpoint`` and fit one Platt map per kind.

    Args:
        checkpoint: a finished spine_kp checkpoint (its own score calibration, if any, is ignored).
        records: validation annotation records (each uses ``record.primary``).
        studies: study UID -> StudyIndex holding them.
        min_points: least scored pairs of a kind to fit its map.
        device: where the network runs ("cpu", "auto", ...).
        batch_size: slices per forward pass.

    Returns:
        The checkpoint entry (see the module docstring), or None when no record could be predicted.
    """
    t0 = time.perf_counter()
    predictor = Predictor.from_checkpoint(checkpoint, device=device, score_calibration={})
    slices = []
    for rec in records:
        if rec.primary is None or rec.study_uid not in studies:
            continue
        try:
            slices.append(load_instance(studies[rec.study_uid], rec.primary.instance_uid, predictor.slices_needed()))
        except IngestError as exc:  # the training already reported it; calibrate on the rest
            log.warning("score calibration: %s", exc)
    if not slices:
        return None
    predicted = [
        p.record for i in range(0, len(slices), batch_size) for p in predictor.predict(slices[i : i + batch_size])
    ]
    seen = {r.study_uid for r in predicted}
    gt = fill_spacing([r for r in records if r.study_uid in seen], pred_records=predicted)
    result = evaluate_records(gt, predicted, predictor.schema, radius=DEFAULT_RADIUS_MM)
    fits: dict[str, dict[str, Any]] = {"kinds": {}, "classes": {}}
    for kind in predictor.schema.kinds:
        names = [("kinds", kind.name)] + [("classes", f"{kind.name}/{g}") for g in kind.grades]
        for level, name in names:
            scores, is_tp = result.scored.get(name, ((), ()))
            fit = fit_platt(scores, is_tp, min_points=min_points)
            if fit.n >= min_points:
                fits[level][name] = fit.to_dict()
    return {
        **fits,
        "fitted_on": FITTED_ON,
        "radius_mm": DEFAULT_RADIUS_MM,
        "n_studies": len(seen),
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
            k: (round(f["ece_before"] or 0, 3), round(f["ece_after"] or 0, 3)) for k, f in entry["kinds"].items()
        }
        log.info("score calibration of %s: ECE before/after per kind %s", Path(path).name, summary)
    return done


__all__ = ["FITTED_ON", "calibrate_checkpoints", "fit_score_calibration"]
