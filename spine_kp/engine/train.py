"""Build the Lightning Trainer (callbacks, loggers, devices) and run a training job.

Run directory layout::

    RUN_DIR/config.yaml            the resolved experiment config
    RUN_DIR/checkpoints/best.ckpt  best by ``trainer.monitor`` (self-contained: predict needs only it)
    RUN_DIR/checkpoints/last.ckpt  always the latest epoch (``--resume`` continues from it)
    RUN_DIR/logs/                  TensorBoard and CSV logs (``logs/grade_stage``: the crop grading stage)

Once the landmark network is trained, the end-of-training fits (crop grading stage, decoding settings, score
calibration, then the model card of it all) are stored in best.ckpt and last.ckpt
(:mod:`spine_kp.engine.after_training`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from spine_kp.checkpoint import CheckpointError, build_codec, load_checkpoint
from spine_kp.data.datamodule import SpineDataModule
from spine_kp.data.labels import LabelStats, label_stats
from spine_kp.data.sources import DataSource
from spine_kp.engine.after_training import fit_after_training
from spine_kp.engine.checkpoint_io import AtomicCheckpointIO
from spine_kp.engine.config import ExperimentConfig, experiment_to_dict
from spine_kp.engine.grade_stage_init import init_stage
from spine_kp.engine.grade_stage_train import stage_skip_reason
from spine_kp.engine.init_weights import init_from_checkpoint, read_spine_checkpoint
from spine_kp.engine.module import LandmarkModule
from spine_kp.engine.state_mapping import InitReport
from spine_kp.errors import MissingInputError
from spine_kp.grading.config import ordinal_chain
from spine_kp.grading.model import create_crop_grader
from spine_kp.io.atomic import atomic_write_text
from spine_kp.schema import Schema, load_schema
from spine_kp.torch_files import allowed_globals

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Where a training run left its checkpoints, the best monitored value, and what ``init`` loaded.

    Under DDP every process returns one; ``is_global_zero`` marks rank 0's, the one whose summary to show.
    """

    run_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    best_score: float | None
    epochs: int
    init_report: InitReport | None = None
    grade_stage: dict[str, Any] | None = None
    score_calibration: dict[str, Any] | None = None
    decode_fit: dict[str, Any] | None = None
    junction: dict[str, Any] | None = None  # the junction check's metrics (engine.junction_train), None: not trained
    skipped: tuple[str, ...] = ()  # data.skip_missing: one line per annotated record left out
    is_global_zero: bool = True


def build_trainer(
    cfg: ExperimentConfig, run_dir: Path, fast_dev_run: bool | int = False, callbacks: list[Any] | None = None
) -> pl.Trainer:
    """A Trainer configured from ``cfg.trainer`` (accelerator/devices/strategy/precision all from config)."""
    tc = cfg.trainer
    ckpt_dir = run_dir / "checkpoints"
    cbs: list[Any] = [
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="best",
            monitor=tc.monitor,
            mode=tc.monitor_mode,
            save_top_k=1,
            enable_version_counter=False,
        ),
        # Lightning's save_last=True only refreshes last.ckpt when the monitored value improves; --resume needs
        # the latest epoch, so a second callback without a monitor rewrites last.ckpt every epoch.
        ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1, enable_version_counter=False),
        LearningRateMonitor(logging_interval="step"),
    ]
    if tc.early_stopping_patience > 0:
        cbs.append(EarlyStopping(monitor=tc.monitor, mode=tc.monitor_mode, patience=tc.early_stopping_patience))
    if tc.progress_bar:
        cbs.append(TQDMProgressBar(refresh_rate=max(1, tc.log_every_n_steps // 2)))
    cbs.extend(callbacks or [])
    loggers = [
        TensorBoardLogger(save_dir=str(run_dir), name="logs", version="tensorboard", default_hp_metric=False),
        CSVLogger(save_dir=str(run_dir), name="logs", version="csv"),
    ]
    optional = {}
    if tc.limit_train_batches is not None:
        optional["limit_train_batches"] = tc.limit_train_batches
    if tc.limit_val_batches is not None:
        optional["limit_val_batches"] = tc.limit_val_batches
    return pl.Trainer(
        default_root_dir=str(run_dir),
        max_epochs=tc.max_epochs,
        accelerator=tc.accelerator,
        devices=tc.devices,
        num_nodes=tc.num_nodes,
        strategy=tc.strategy,
        precision=tc.precision,
        check_val_every_n_epoch=tc.check_val_every_n_epoch,
        log_every_n_steps=tc.log_every_n_steps,
        gradient_clip_val=cfg.optim.grad_clip or None,
        accumulate_grad_batches=tc.accumulate_grad_batches,
        deterministic=cfg.deterministic,
        benchmark=tc.benchmark,
        callbacks=cbs,
        logger=loggers,
        enable_progress_bar=tc.progress_bar,
        enable_model_summary=False,
        fast_dev_run=fast_dev_run,
        plugins=[AtomicCheckpointIO()],  # best.ckpt / last.ckpt: temp + rename, a full disk keeps the previous one
        **optional,
    )


def _resume_from(cfg: ExperimentConfig, last: Path, init: str | Path | None) -> str:
    """The checkpoint ``--resume`` continues from (``last``), warning where it overrides the config or ``--init``.

    Raises:
        FileNotFoundError: no ``last`` (a :class:`MissingInputError`).
        CheckpointError: ``last`` is not a spine_kp checkpoint.
    """
    if not last.exists():
        raise MissingInputError(f"--resume: {last} does not exist (nothing to continue)")
    try:
        stored = load_checkpoint(last, mmap=True).config
    except CheckpointError as exc:
        raise CheckpointError(f"--resume: {exc}") from None
    if stored != experiment_to_dict(cfg):
        log.warning("resuming %s with a config that differs from the checkpoint's; using the new one", last)
    if init is not None:
        log.warning("--init %s ignored: resuming from %s (its weights, epoch and optimizer state)", init, last)
    return str(last)


def _set_up(cfg: ExperimentConfig, run_dir: Path) -> tuple[Schema, LabelStats, SpineDataModule, LandmarkModule]:
    """The schema, the training split's label statistics, the data module and the module of a run; writes the
    resolved config to ``run_dir/config.yaml``."""
    schema = load_schema(cfg.schema)
    if cfg.grade_stage.enabled:
        ordinal_chain(cfg.grade_stage, schema)  # a stage setting the schema contradicts fails before any training
        if cfg.grade_stage.init:  # and a stage to start from that cannot be read or does not fit
            init_stage(create_crop_grader(cfg.grade_stage, schema), cfg.grade_stage.init, schema)
    config = experiment_to_dict(cfg)
    # The one heatmap codec of this run: the loaders encode the training targets with it (in their workers), and the
    # module decodes with it and stores it in every checkpoint.
    codec = build_codec(config)
    datamodule = SpineDataModule(cfg.data, schema=schema, codec=codec)
    datamodule.setup("fit")
    stats = label_stats(datamodule.train_records, schema)
    if stats.untrained_landmarks or stats.untrained_grades:
        log.warning(
            "never in the training annotations, so not trained and never predicted: landmarks %s, grades %s",
            list(stats.untrained_landmarks),
            [f"{k}/{g}" for k, g in stats.untrained_grades],
        )
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    module = LandmarkModule(config, schema.to_dict(), stats.to_dict(), codec=codec.to_dict())
    return schema, stats, datamodule, module


def train(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    resume: bool = False,
    fast_dev_run: bool | int = False,
    callbacks: list[Any] | None = None,
    init: str | Path | None = None,
) -> TrainResult:
    """Train a model; ``cfg.data`` names the data root and annotations.

    Args:
        cfg: the experiment.
        run_dir: output folder (created).
        resume: continue from ``run_dir/checkpoints/last.ckpt`` (epoch, optimizer and scheduler state).
        fast_dev_run: Lightning's smoke test (one batch of train and val, no checkpoints).
        callbacks: extra Lightning callbacks.
        init: warm start from this spine_kp checkpoint (every tensor that fits, heads mapped by landmark and
            grade name; see :mod:`spine_kp.engine.init_weights`). Ignored with ``resume``: last.ckpt wins.

    Raises:
        FileNotFoundError: ``resume`` without ``run_dir/checkpoints/last.ckpt`` (a :class:`MissingInputError`).
        CheckpointError: ``init`` (or, with ``resume``, last.ckpt) is not a spine_kp checkpoint, or nothing of
            ``init`` fits the model.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt_path = _resume_from(cfg, last, init) if resume else None
    # Read the init checkpoint before the data set-up, so a wrong path fails at once.
    source = read_spine_checkpoint(init) if init is not None and not resume else None
    schema, stats, datamodule, module = _set_up(cfg, run_dir)
    init_report = init_from_checkpoint(module, source) if source is not None else None
    trainer = build_trainer(cfg, run_dir, fast_dev_run=fast_dev_run, callbacks=callbacks)
    with allowed_globals():  # --resume reads last.ckpt as data, as every other checkpoint load does
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    ckpt_cb = trainer.checkpoint_callback
    best = Path(ckpt_cb.best_model_path) if ckpt_cb is not None and ckpt_cb.best_model_path else None
    score = ckpt_cb.best_model_score if ckpt_cb is not None else None
    skip = stage_skip_reason(cfg.grade_stage, len(datamodule.train_records))
    if skip is not None and cfg.grade_stage.enabled:
        log.warning("grade stage not trained: %s", skip)
    stage_metrics = decode_entry = score_entry = junction_metrics = None
    if not fast_dev_run and trainer.is_global_zero:
        checkpoints = [best, last if last.exists() else None]
        fits = fit_after_training(cfg, run_dir, schema, stats, datamodule, checkpoints, train_stage=skip is None)
        stage_metrics, decode_entry, score_entry, junction_metrics = fits
    return TrainResult(
        run_dir=run_dir,
        best_checkpoint=best,
        last_checkpoint=last if last.exists() else None,
        best_score=float(score) if score is not None else None,
        epochs=trainer.current_epoch,
        init_report=init_report,
        grade_stage=stage_metrics,
        score_calibration=score_entry,
        decode_fit=decode_entry,
        junction=junction_metrics,
        skipped=tuple(datamodule.skipped),
        is_global_zero=trainer.is_global_zero,
    )


def replace_data_paths(cfg: ExperimentConfig, root: str | Path, annotations: str | Path) -> ExperimentConfig:
    """The same experiment on another data root / annotation file."""
    return replace_data_sources(cfg, [(root, annotations)])


def replace_data_sources(cfg: ExperimentConfig, pairs: Sequence[tuple[str | Path, str | Path]]) -> ExperimentConfig:
    """The same experiment on other data: one ``(root, annotations)`` pair, or several trained as one.

    One pair sets ``data.root`` / ``data.annotations`` (the config then reads as before); several set
    ``data.sources`` (:mod:`spine_kp.data.sources`). Either way the other form is cleared.
    """
    if not pairs:
        raise ValueError("replace_data_sources: no (root, annotations) pair")
    if len(pairs) == 1:
        root, annotations = pairs[0]
        data = dataclasses.replace(cfg.data, root=str(root), annotations=str(annotations), sources=())
    else:
        sources = tuple(DataSource(str(root), str(annotations)) for root, annotations in pairs)
        data = dataclasses.replace(cfg.data, root="", annotations="", sources=sources)
    return dataclasses.replace(cfg, data=data)
