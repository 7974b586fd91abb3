"""Training of the crop grading stage and its self-contained checkpoint payload.

Runs after the landmark network (``spine_kp.engine.train.train`` with ``grade_stage.enabled``): crops at the
ground-truth points of the training split's annotated slices (cached once, augmented by re-cropping), validated on
the validation split's slices at their ground-truth points by a per-class AP over landmarks (each graded landmark
is one ranked prediction per class). The weights of the best validation epoch (the last one without a validation
split) go into the payload that :func:`attach_grade_stage` writes into the run's checkpoints under ``"grade_stage"``,
with one temperature per graded kind fitted on the validation crops (:func:`fit_stage_temperatures`, the fit of
the grade head's temperatures).

The recipe itself (losses, optimiser, schedule) is :class:`spine_kp.engine.grade_stage_module.CropGraderModule`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader

from spine_kp.calibration.fit import fit_temperatures
from spine_kp.checkpoint import write_entry
from spine_kp.config import to_dict
from spine_kp.data.labels import LabelStats
from spine_kp.engine.grade_logits import GradeLogits
from spine_kp.engine.grade_stage_init import init_stage
from spine_kp.engine.grade_stage_module import CropGraderModule, CropSlices
from spine_kp.engine.stage_trainer import stage_trainer
from spine_kp.grading.config import GradeStageConfig
from spine_kp.grading.cropset import CropSet, build_cropset, outer_size
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.io.dicom import StudyIndex
from spine_kp.schema import Schema
from spine_kp.types import StudyRecord

log = logging.getLogger(__name__)

PAYLOAD_KEY = "grade_stage"
PAYLOAD_VERSION = 1
VAL_BATCH = 64


def stage_skip_reason(cfg: GradeStageConfig, n_train_studies: int) -> str | None:
    """Why the stage is not trained for a split of ``n_train_studies`` studies (None: it is trained)."""
    if not cfg.enabled:
        return "grade_stage.enabled is false"
    if n_train_studies < cfg.min_train_studies:
        return (
            f"only {n_train_studies} training studies (grade_stage.min_train_studies: {cfg.min_train_studies}); "
            "the grade head grades alone"
        )
    return None


def _trainer(
    cfg: GradeStageConfig, steps_per_epoch: int, run_dir: str | Path | None, accelerator: str, progress_bar: bool
) -> pl.Trainer:
    """One device, full precision, no Lightning checkpoints (the payload keeps the best weights itself)."""
    logger = CSVLogger(save_dir=str(run_dir), name="logs", version="grade_stage") if run_dir is not None else False
    return stage_trainer(cfg.epochs, steps_per_epoch, accelerator, progress_bar, logger)


def train_grade_stage(
    cfg: GradeStageConfig,
    schema: Schema,
    stats: LabelStats | None,
    train_records: Sequence[StudyRecord],
    val_records: Sequence[StudyRecord],
    studies: Mapping[str, StudyIndex],
    run_dir: str | Path | None = None,
    seed: int = 0,
    accelerator: str = "cpu",
    progress_bar: bool = False,
) -> dict[str, Any]:
    """Train the crop grader and return its checkpoint payload.

    Args:
        cfg: the stage config.
        schema: landmark set.
        stats: training label statistics (weights, untrained grades).
        train_records, val_records: annotation records of the landmark run's split.
        studies: study UID -> StudyIndex of their DICOM files.
        run_dir: CSV logs go to ``run_dir/logs/grade_stage``; None logs nothing.
        seed: seed of the stage (weights, batch order, augmentation).
        accelerator: Lightning accelerator ("cpu", "gpu", "auto"); one device.
        progress_bar: show Lightning's progress bar.

    Returns:
        ``{"version", "config", "state_dict", "temperatures", "metrics"}`` (plain data and CPU tensors), see
        :func:`attach_grade_stage`.

    Raises:
        ValueError: no training slice could be cropped.
    """
    t0 = time.perf_counter()
    pl.seed_everything(seed, workers=True, verbose=False)
    train_set = build_cropset(train_records, studies, schema, cfg, size_px=outer_size(cfg))
    val_set = build_cropset(val_records, studies, schema, cfg)
    if len(train_set) == 0:
        raise ValueError("grade stage: no training slice could be cropped")
    t_crops = time.perf_counter() - t0
    module = CropGraderModule(cfg, schema, stats)
    if cfg.init:
        init_stage(module.model, cfg.init, schema)
    drop_last = len(train_set) > cfg.batch_size  # a last batch of one or two slices makes a noisy step
    loader = DataLoader(CropSlices(train_set), batch_size=cfg.batch_size, shuffle=True, drop_last=drop_last)
    val_loader = DataLoader(CropSlices(val_set), batch_size=VAL_BATCH) if len(val_set) else None
    _trainer(cfg, len(loader), run_dir, accelerator, progress_bar).fit(module, loader, val_loader)
    state = module.best_state if module.best_state is not None else module.model.state_dict()
    module.model.load_state_dict(state)
    temperatures = fit_stage_temperatures(module.model, val_set, schema, stats) if len(val_set) else {}
    metrics = _metrics(module, len(train_set), len(val_set), temperatures, t_crops, time.perf_counter() - t0)
    log.info("grade stage: %s", metrics)
    return {
        "version": PAYLOAD_VERSION,
        "config": to_dict(cfg),
        "state_dict": {k: v.detach().cpu().clone() for k, v in state.items()},
        "temperatures": temperatures,
        "metrics": metrics,
    }


def _metrics(
    module: CropGraderModule,
    train_slices: int,
    val_slices: int,
    temperatures: dict[str, float],
    seconds_crops: float,
    seconds_total: float,
) -> dict[str, Any]:
    """The payload's ``metrics``: data sizes, the validation mAP per epoch and of the kept weights, timings."""
    best = module.best_state is not None
    return {
        "train_slices": train_slices,
        "val_slices": val_slices,
        "best_val_mAP": module.best_score if best else None,
        "best_epoch": module.best_epoch if best else module.cfg.epochs - 1,
        "val_mAP_per_epoch": [round(v, 4) for v in module.history],
        "temperatures": temperatures,
        "seconds_crops": round(seconds_crops, 1),
        "seconds_total": round(seconds_total, 1),
    }


@torch.no_grad()
def fit_stage_temperatures(
    model: torch.nn.Module, val_set: CropSet, schema: Schema, stats: LabelStats | None, min_points: int = 20
) -> dict[str, float]:
    """One temperature per graded kind, fitted (NLL) on the validation crops at the ground-truth points with the
    kept weights, by the grade head's fit (:class:`~spine_kp.engine.grade_logits.GradeLogits` collects the graded
    landmarks, :func:`spine_kp.calibration.fit.fit_temperatures` fits); applied at predict.

    Returns:
        kind -> T (1.0 where fewer than ``min_points`` graded landmarks of the kind were available).
    """
    trained = TrainedLabels.from_stats(schema, stats)
    model.eval()
    logits = GradeLogits()
    seen = 0
    for batch in DataLoader(CropSlices(val_set), batch_size=VAL_BATCH):
        n = batch["crops"].shape[0]
        keys = [f"{i:09d}" for i in range(seen, seen + n)]  # one entry per slice, stacked in slice order
        logits.add(model(batch["crops"]), batch["grades"], batch["grade_mask"], keys)
        seen += n
    kinds = [schema.kind(k) for k in model.kind_names]
    fits = fit_temperatures(logits.arrays(), kinds, trained.grades, min_points)
    return {k: float(f.temperature) for k, f in fits.items()}


def attach_grade_stage(checkpoints: Sequence[str | Path | None], payload: dict[str, Any]) -> list[Path]:
    """Write ``payload`` into each existing checkpoint under ``"grade_stage"`` (atomically: temporary file + rename).

    Returns:
        The checkpoints written.
    """
    done: list[Path] = []
    for path in checkpoints:
        if path is None or not Path(path).is_file() or Path(path) in done:
            continue
        write_entry(path, PAYLOAD_KEY, payload)
        done.append(Path(path))
    return done


__all__ = ["PAYLOAD_KEY", "attach_grade_stage", "fit_stage_temperatures", "stage_skip_reason", "train_grade_stage"]
