"""The end-of-training fits of a landmark run, each stored in its checkpoints (best.ckpt, last.ckpt), in this order.

With ``grade_stage.enabled`` the crop grader (:mod:`spine_kp.engine.grade_stage_train`) is trained once the landmark
network is done, on the same split, and stored under ``"grade_stage"``; with ``junction.enabled`` the junction check
(:mod:`spine_kp.engine.junction_train`) follows, stored under ``"junction"``. With ``decode.fit``, the run's annotated
studies choose the level-order decoding's absent scores and step tolerance (``"decode_fit"``,
:mod:`spine_kp.engine.decode_fit`), so the scores are calibrated as predict will decode. Then, with
``calibration.scores``, each checkpoint predicts the validation split and a Platt map per kind is fitted to its scores
and stored under ``"score_calibration"`` (:mod:`spine_kp.engine.score_map_fit`). Last, the model card built from all
of it is stored under ``"model_card"`` (:mod:`spine_kp.inference.checkpoint_card`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from spine_kp.checkpoint import JUNCTION_KEY, write_entry
from spine_kp.data.datamodule import SpineDataModule
from spine_kp.data.labels import LabelStats
from spine_kp.engine.config import ExperimentConfig
from spine_kp.engine.decode_fit import fit_decode_checkpoints
from spine_kp.engine.grade_stage_train import attach_grade_stage, train_grade_stage
from spine_kp.engine.junction_train import train_junction
from spine_kp.engine.score_map_fit import calibrate_checkpoints
from spine_kp.inference.checkpoint_card import store_card
from spine_kp.schema import Schema

log = logging.getLogger("spine_kp.engine.train")  # these fits log as part of the training run, where its filters apply


def fit_after_training(
    cfg: ExperimentConfig,
    run_dir: Path,
    schema: Schema,
    stats: LabelStats,
    datamodule: SpineDataModule,
    checkpoints: list[Path | None],
    train_stage: bool,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None]:
    """The end-of-training fits, each written into ``checkpoints`` (best, last; None: absent) in turn: the crop
    grading stage (``train_stage``), the decoding settings and the score calibration (where the config asks), then
    the model card of it all, which is what predict reads.

    Returns:
        The grade stage's metrics, the decode-fit and score-calibration entries of the best checkpoint, and the
        junction check's metrics (None: not fitted).
    """
    best = checkpoints[0]
    device = "cpu" if cfg.trainer.accelerator == "cpu" else "auto"
    stage_metrics = decode_entry = score_entry = None
    if train_stage:
        payload = train_grade_stage(
            cfg.grade_stage,
            schema,
            stats,
            datamodule.train_records,
            datamodule.val_records,
            datamodule.studies,
            run_dir=run_dir,
            seed=cfg.seed,
            accelerator=device,
            progress_bar=cfg.trainer.progress_bar,
        )
        written = attach_grade_stage(checkpoints, payload)
        log.info("grade stage written into %s", ", ".join(str(p) for p in written))
        stage_metrics = payload["metrics"]
    junction = train_junction(
        cfg.junction,
        schema,
        datamodule.train_records,
        datamodule.val_records,
        datamodule.studies,
        seed=cfg.seed,
        accelerator=device,
        progress_bar=cfg.trainer.progress_bar,
    )
    if junction is not None:  # before the score maps: they are fitted on what predict will place
        for path in dict.fromkeys(p for p in checkpoints if p is not None and Path(p).is_file()):
            write_entry(path, JUNCTION_KEY, junction)
    if cfg.decode.enabled and cfg.decode.fit:
        fitted = fit_decode_checkpoints(  # on every annotated study of the run: see decode_fit's docstring
            checkpoints, [*datamodule.train_records, *datamodule.val_records], datamodule.studies, device=device
        )
        decode_entry = fitted.get(str(best)) if best is not None else None
    if cfg.calibration.enabled and cfg.calibration.scores:
        entries = calibrate_checkpoints(
            checkpoints,
            datamodule.val_records,
            datamodule.studies,
            min_points=cfg.calibration.min_points,
            device=device,
        )
        score_entry = entries.get(str(best)) if best is not None else None
    for path in checkpoints:  # everything is fitted: the card is what predict will read
        if path is not None:
            store_card(path)
    return stage_metrics, decode_entry, score_entry, junction["metrics"] if junction is not None else None


__all__ = ["fit_after_training"]
