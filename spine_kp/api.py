"""The user API (as mmpose's ``apis/inference.py``): load a trained model, predict a folder of studies, score them.

Example (after ``spine-kp demo``; ``tests/predict/test_api.py`` runs exactly these lines)::

    from spine_kp.api import evaluate, load_predictor, predict_folder

    predictor = load_predictor("spine_kp_demo/run", device="cpu")  # a .ckpt, a training run folder or a .onnx
    run = predict_folder("spine_kp_demo/test/studies", predictor)  # returns the predictions, writes nothing
    for record in run.records:  # one StudyRecord per study: its landmarks with grades and scores
        print(record.study_uid, len(record.points), "points")
    result = evaluate(run, "spine_kp_demo/test/annotations.json", schema=predictor.schema)  # the 8 mm rules
    print(f"mAP {result.map:.3f}, {result.localization.overall.within_radius:.0%} within 8 mm")
    predict_folder("spine_kp_demo/test/studies", predictor, output="predictions.json", csv="predictions.csv")

``spine-kp predict`` is a thin shell around these functions; the demo and the benchmarks under ``scripts/`` use them
too. Everything torch-specific is imported only for a checkpoint: an ONNX model predicts without torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spine_kp.errors import UserError
from spine_kp.evaluation.evaluate import evaluate_files, evaluate_predictions
from spine_kp.evaluation.matching import DEFAULT_RADIUS_MM
from spine_kp.evaluation.result import EvaluationResult
from spine_kp.inference.slice_predictor import SlicePredictor
from spine_kp.io.annotations import read_annotations
from spine_kp.io.dicom_types import StudyIndex
from spine_kp.predict import runner
from spine_kp.predict.runner import PredictOptions, PredictRun
from spine_kp.schema import Schema, load_schema
from spine_kp.types import StudyRecord

#: the model formats :func:`load_predictor` reads
BACKENDS = ("torch", "onnx")


def load_predictor(
    path: str | Path, device: str = "auto", *, backend: str | None = None, level_order: bool = True, **overrides: Any
) -> SlicePredictor:
    """A trained model, ready to predict decoded slices.

    Args:
        path: a checkpoint (``best.ckpt``, ``last.ckpt``, a fold ensemble), a training run folder (its
            ``checkpoints/best.ckpt``, :func:`spine_kp.checkpoint.resolve_checkpoint_path`) or an ONNX export.
        device: "auto" (CUDA when there is one), "cpu" or "cuda".
        backend: "torch" or "onnx"; None: "onnx" for a ``.onnx`` file, else "torch".
        level_order: False decodes each landmark by its own heatmap maximum (``predict --no-level-order``).
        overrides: stored settings to replace (``Predictor.from_checkpoint`` / ``OnnxPredictor.from_onnx``), e.g.
            ``grade_stage=None`` (no crop grading stage), ``junction=None`` (no junction check), ``temperatures={}``,
            ``score_calibration={}``.

    Raises:
        UserError: the file is missing, unreadable or not a spine_kp model (one line naming it), or ``device`` asks
            for a GPU that is not there.
    """
    if backend is None:
        backend = "onnx" if Path(path).suffix.lower() == ".onnx" and not Path(path).is_dir() else "torch"
    if backend == "onnx":  # never imports torch
        from spine_kp.inference.onnx_predictor import OnnxPredictor

        predictor: SlicePredictor = OnnxPredictor.from_onnx(path, device=device, **overrides)
    elif backend == "torch":
        from spine_kp.checkpoint import resolve_checkpoint_path
        from spine_kp.inference.torch_predictor import Predictor, resolve_device

        try:
            resolve_device(device)
        except RuntimeError as exc:  # "cuda" without a GPU
            raise UserError(str(exc)) from exc
        predictor = Predictor.from_checkpoint(resolve_checkpoint_path(path), device=device, **overrides)
    else:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)} or None, got {backend!r}")
    if not level_order:
        predictor = predictor.with_decode(dataclasses.replace(predictor.decode, enabled=False))
    return predictor


def _options(flags: Mapping[str, Any]) -> PredictOptions:
    """:class:`PredictOptions` from keyword flags; quiet unless ``progress=True`` (a library prints no bar)."""
    return PredictOptions(**{"progress": False, **flags})


def predict_folder(
    root: str | Path,
    predictor: SlicePredictor,
    *,
    output: str | Path | None = None,
    csv: str | Path | None = None,
    overlays: str | Path | None = None,
    dicom_sr: str | Path | None = None,
    model: str | Path | None = None,
    **options: Any,
) -> PredictRun:
    """Predict every study under ``root`` (the middle frame of each chosen T2 sagittal series).

    Writes nothing unless ``output`` is given; then as :func:`write_predictions`.

    Args:
        root: folder holding DICOM studies (any depth); only read.
        predictor: from :func:`load_predictor`.
        output, csv, overlays, dicom_sr, model: see :func:`write_predictions`.
        options: :class:`~spine_kp.predict.runner.PredictOptions` fields: ``batch_size``, ``workers``, ``flip_tta``,
            ``fuse_neighbours``, ``top_k_grades``, ``progress`` (default False).

    Returns:
        The run: ``run.records`` (one :class:`~spine_kp.types.StudyRecord` per study, sorted by study UID),
        ``run.predictions`` (with the slices, heatmap peaks and grade probabilities), ``run.failures`` (studies that
        could not be predicted, with the reason) and ``run.skipped_files``.

    Raises:
        UserError: ``root`` is not a folder, or holds no DICOM study (naming why the files were skipped).
    """
    if any(v is not None for v in (csv, overlays, dicom_sr)) and output is None:
        raise ValueError("predict_folder: csv, overlays and dicom_sr are written with output=PRED.json; give it")
    run = runner.predict_folder(root, predictor, _options(options))
    runner.require_studies(run, root)
    if output is not None:
        write_predictions(run, predictor, output, csv=csv, overlays=overlays, dicom_sr=dicom_sr, model=model)
    return run


def predict_studies(studies: Sequence[StudyIndex], predictor: SlicePredictor, **options: Any) -> PredictRun:
    """Predict studies already scanned (``spine_kp.io.dicom.scan(root).studies``); the run sorted by study UID.

    Args:
        options: as :func:`predict_folder`.
    """
    run = runner.predict_studies(list(studies), predictor, _options(options))
    run.predictions.sort(key=lambda p: p.slice.study_uid)
    return run


def write_predictions(
    run: PredictRun,
    predictor: SlicePredictor,
    output: str | Path,
    *,
    csv: str | Path | None = None,
    overlays: str | Path | None = None,
    dicom_sr: str | Path | None = None,
    model: str | Path | None = None,
) -> dict[str, Any]:
    """Write a run as ``spine-kp predict`` does, every file atomically.

    Args:
        output: the predictions JSON (competition format); the failures go to ``<output>.errors.json``.
        csv: one row per landmark (pixels and mm, grade, score, every grade probability).
        overlays: folder for one PNG per study.
        dicom_sr: folder for one DICOM SR (TID 1500) per study; a report that fails is added to the failures.
        model: the file (or run folder) the predictor was loaded from; the reports then name the model from that
            file, as ``spine-kp predict`` does (None: from the predictor's model card). Read only with ``dicom_sr``.

    Returns:
        ``predictions``, ``errors`` (and ``csv``) paths; with ``overlays``/``dicom_sr``: that folder and the files
        written in it (``overlay_files``, ``sr_files``).
    """
    from spine_kp.predict.outputs import write_outputs

    written: dict[str, Any] = {}
    if dicom_sr is not None:  # before the JSON, so that reports that fail are listed in the errors file
        from spine_kp.predict.sr import write_dicom_srs

        written["sr_files"] = write_dicom_srs(run, predictor.schema, dicom_sr, _sr_algorithm(predictor, model))
        written["dicom_sr"] = Path(dicom_sr)
    written.update(write_outputs(run, predictor.schema, output, csv))
    if overlays is not None:
        from spine_kp.predict.overlay import write_overlays  # matplotlib only when asked for

        written["overlay_files"] = write_overlays(run.predictions, predictor.schema, overlays)
        written["overlays"] = Path(overlays)
    return written


def _sr_algorithm(predictor: SlicePredictor, model: str | Path | None) -> Any:
    """How the DICOM SRs name the model: its card's identity; a checkpoint named by ``model`` from that file (a fold
    ensemble's reports then name the ensemble file, not its first member)."""
    from spine_kp.predict.sr import algorithm_from_card, algorithm_from_checkpoint

    if model is None or Path(model).suffix.lower() == ".onnx":
        return algorithm_from_card(predictor.card)
    from spine_kp.checkpoint import resolve_checkpoint_path  # torch: only for a checkpoint

    return algorithm_from_checkpoint(resolve_checkpoint_path(model))


def evaluate(
    predictions: PredictRun | Sequence[StudyRecord] | str | Path,
    annotations: Sequence[StudyRecord] | str | Path,
    *,
    schema: Schema | str | Path | None = None,
    data_root: str | Path | None = None,
    studies: Mapping[str, StudyIndex] | None = None,
    radius: float = DEFAULT_RADIUS_MM,
    match_level: bool = False,
) -> EvaluationResult:
    """Score predictions against ground truth with the 8 mm rules (as ``spine-kp evaluate``).

    Ground-truth images without ``pixelSpacing`` take it from ``studies`` / ``data_root``, else from the predictions
    of the same series (:func:`spine_kp.evaluation.evaluate.evaluate_predictions`).

    Args:
        predictions: a run of :func:`predict_folder`, its records, or a predictions JSON.
        annotations: ground-truth records, or an annotations JSON (competition format).
        schema: the landmark set (a Schema, packaged name or YAML path); None: the default schema, or for two
            files the schema they name (:func:`spine_kp.evaluation.evaluate.evaluate_files`, which also refuses
            swapped files and repeated studies).
        data_root: DICOM data root, scanned only when some ground-truth image has no spacing.
        studies: the data root already scanned (spacing, and both sets checked against its images).
        radius: r in mm.
        match_level: a prediction can only match ground truth of its own identification.
    """
    if isinstance(predictions, (str, Path)) and isinstance(annotations, (str, Path)):  # both read and checked
        return evaluate_files(annotations, predictions, schema, data_root, radius, match_level)
    schema = schema if isinstance(schema, Schema) else load_schema(schema)
    if isinstance(predictions, PredictRun):
        pred = predictions.records
    elif isinstance(predictions, (str, Path)):
        pred = read_annotations(predictions, schema)
    else:
        pred = list(predictions)
    gt = read_annotations(annotations, schema) if isinstance(annotations, (str, Path)) else list(annotations)
    return evaluate_predictions(gt, pred, schema, radius, match_level, studies=studies, data_root=data_root)


__all__ = ["evaluate", "load_predictor", "predict_folder", "predict_studies", "write_predictions"]
