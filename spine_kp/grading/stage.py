"""Training of the crop grading stage (Lightning) and its self-contained checkpoint payload.

Runs after the landmark network (``spine_kp.engine.train.train`` with ``grade_stage.enabled``): crops at the
ground-truth points of the training split's annotated slices (cached once, augmented by re-cropping), validated on
the validation split's slices at their ground-truth points by a per-class AP over landmarks (each graded landmark
is one ranked prediction per class). The weights of the best validation epoch (the last one without a validation
split) go into the payload that ``attach_grade_stage`` writes into the run's checkpoints under ``"grade_stage"``.

Shapes: B slices, K landmarks, S crop side, K_kind landmarks of a kind, G grades of that kind.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from spine_kp.checkpoint import write_entry
from spine_kp.config import to_dict
from spine_kp.data.labels import LabelStats
from spine_kp.engine.losses import multi_label_loss, single_label_loss
from spine_kp.evaluation.metrics import average_precision
from spine_kp.grading.config import GradeStageConfig
from spine_kp.grading.cropset import CropSet, build_cropset, outer_size, random_recrop
from spine_kp.grading.model import create_crop_grader
from spine_kp.inference.decoding import TrainedLabels
from spine_kp.io.dicom import StudyIndex
from spine_kp.models.heads import grade_probabilities
from spine_kp.schema import Schema
from spine_kp.types import StudyRecord

log = logging.getLogger(__name__)

PAYLOAD_KEY = "grade_stage"
PAYLOAD_VERSION = 1


class _Slices(Dataset):
    """One item per slice of a :class:`CropSet`: its K crops and grade targets."""

    def __init__(self, data: CropSet) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        d = self.data
        return {
            "crops": torch.from_numpy(d.crops[i]),
            "grades": {k: torch.from_numpy(v[i]) for k, v in d.grades.items()},
            "grade_mask": {k: torch.from_numpy(v[i]) for k, v in d.grade_mask.items()},
        }


class CropGraderModule(pl.LightningModule):
    """The stage's recipe: imbalance-aware grade losses, AdamW, cosine schedule.

    Imbalance (config): multi-label positives weigh ``pos_weight ** pos_weight_power``, an optional focal term
    (``focal_gamma``), and optional logit adjustment (``logit_adjust``: the training loss reads the logits plus
    ``tau * log prior``; validation and prediction read the plain logits). Single-label kinds use the
    inverse-square-root class weights (and the adjustment, if set).

    Args:
        cfg: the stage config.
        schema: landmark set.
        stats: training label statistics (class weights, untrained grades); None weighs every grade 1.
    """

    def __init__(self, cfg: GradeStageConfig, schema: Schema, stats: LabelStats | None) -> None:
        super().__init__()
        self.cfg = cfg
        self.schema = schema
        self.model = create_crop_grader(cfg, schema)
        for kind in schema.kinds:
            trained = stats.grade_mask(kind.name) if stats is not None else np.ones(len(kind.grades), bool)
            mask = torch.as_tensor(trained, dtype=torch.float32)
            if stats is None:
                weight = torch.ones(len(kind.grades))
            elif kind.multi_label:
                weight = torch.as_tensor(stats.pos_weight(kind.name)).pow(cfg.pos_weight_power) * mask
            else:
                weight = torch.as_tensor(stats.class_weights(kind.name)) * mask
            prior = torch.as_tensor(stats.log_prior(kind.name)) if stats is not None else torch.zeros(len(kind.grades))
            self.register_buffer(f"weight_{kind.name}", weight)
            self.register_buffer(f"trained_{kind.name}", mask)
            self.register_buffer(f"adjust_{kind.name}", cfg.logit_adjust * prior)
        self.shift_px = cfg.jitter_mm / cfg.step_mm
        self.best_score = -math.inf
        self.best_state: dict[str, Tensor] | None = None
        self.best_epoch = -1
        self.history: list[float] = []
        self._val: list[tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]] = []

    def loss(self, logits: dict[str, Tensor], batch: dict[str, Any], adjust: bool = False) -> Tensor:
        """Mean over the graded kinds of their grade loss; ``adjust`` adds the logit adjustment (training)."""
        terms = []
        for kind in (self.schema.kind(k) for k in self.model.kind_names):
            x, y, m = logits[kind.name], batch["grades"][kind.name], batch["grade_mask"][kind.name]
            if adjust:
                x = x + getattr(self, f"adjust_{kind.name}")
            w = getattr(self, f"weight_{kind.name}")
            if kind.multi_label:
                trained = getattr(self, f"trained_{kind.name}")
                terms.append(multi_label_loss(x, y, m, w, trained, focal_gamma=self.cfg.focal_gamma))
            else:
                terms.append(single_label_loss(x, y, m, w))
        return sum(terms) / max(1, len(terms))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        c = self.cfg
        rotate = math.radians(c.rotate_deg)
        crops = random_recrop(
            batch["crops"],
            c.size_px,
            self.shift_px,
            rotate,
            c.intensity,
            planes=c.planes,
            mirror=c.mirror,
            flip_cc=c.flip_cc,
        )
        loss = self.loss(self.model(crops), batch, adjust=True)
        self.log("grade_stage/train_loss", loss, batch_size=crops.shape[0], on_step=False, on_epoch=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self.model(batch["crops"])
        self.log("grade_stage/val_loss", self.loss(logits, batch), batch_size=batch["crops"].shape[0])
        probs = grade_probabilities(logits, self.schema)
        self._val.append((probs, batch["grades"], batch["grade_mask"]))

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self._val:
            return
        score = crop_map(self._val, self.schema)
        self.log("grade_stage/val_mAP", score)
        self.history.append(score)
        if score > self.best_score:
            self.best_score, self.best_epoch = score, self.current_epoch
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})

    def configure_optimizers(self) -> dict[str, Any]:
        decay = [p for n, p in self.model.named_parameters() if p.ndim > 1]
        no_decay = [p for n, p in self.model.named_parameters() if p.ndim <= 1]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.cfg.lr,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(total - 1, max(1, total // max(1, self.cfg.epochs)))  # one epoch

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            t = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def crop_map(
    batches: Sequence[tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]], schema: Schema
) -> float:
    """Mean over (kind, grade) classes with a positive of the AP of ranking graded landmarks by probability.

    Args:
        batches: per batch ``(probs, grades, grade_mask)``, each ``{kind: (B, K_kind, G) / (B, K_kind)}``.

    Returns:
        The mean AP (0 when no class has a positive).
    """
    aps = []
    for kind in (schema.kind(k) for k in batches[0][0]) if batches else ():
        p = torch.cat([b[0][kind.name][b[2][kind.name]] for b in batches]).float().cpu().numpy()  # (N, G)
        y = torch.cat([b[1][kind.name][b[2][kind.name]] for b in batches]).cpu().numpy() > 0.5
        for g in range(len(kind.grades)):
            ap = average_precision(p[:, g], y[:, g], int(y[:, g].sum()))
            if ap is not None:
                aps.append(ap)
    return float(np.mean(aps)) if aps else 0.0


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
        ``{"version", "config", "state_dict", "metrics"}`` (plain data and CPU tensors), see :func:`attach_grade_stage`.

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
    drop_last = len(train_set) > cfg.batch_size  # a last batch of one or two slices makes a noisy step
    loader = DataLoader(_Slices(train_set), batch_size=cfg.batch_size, shuffle=True, drop_last=drop_last)
    val_loader = DataLoader(_Slices(val_set), batch_size=64) if len(val_set) else None
    logger = CSVLogger(save_dir=str(run_dir), name="logs", version="grade_stage") if run_dir is not None else False
    trainer = pl.Trainer(
        max_epochs=cfg.epochs,
        accelerator=accelerator,
        devices=1,
        precision="32-true",
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, len(loader)),
        gradient_clip_val=1.0,
    )
    trainer.fit(module, loader, val_loader)
    state = module.best_state if module.best_state is not None else module.model.state_dict()
    module.model.load_state_dict(state)
    temperatures = fit_stage_temperatures(module.model, val_set, schema, stats) if len(val_set) else {}
    metrics = {
        "train_slices": len(train_set),
        "val_slices": len(val_set),
        "best_val_mAP": module.best_score if module.best_state is not None else None,
        "best_epoch": module.best_epoch if module.best_state is not None else cfg.epochs - 1,
        "val_mAP_per_epoch": [round(v, 4) for v in module.history],
        "temperatures": temperatures,
        "seconds_crops": round(t_crops, 1),
        "seconds_total": round(time.perf_counter() - t0, 1),
    }
    log.info("grade stage: %s", metrics)
    return {
        "version": PAYLOAD_VERSION,
        "config": to_dict(cfg),
        "state_dict": {k: v.detach().cpu().clone() for k, v in state.items()},
        "temperatures": temperatures,
        "metrics": metrics,
    }


@torch.no_grad()
def fit_stage_temperatures(
    model: torch.nn.Module, val_set: CropSet, schema: Schema, stats: LabelStats | None, min_points: int = 20
) -> dict[str, float]:
    """One temperature per graded kind, fitted (NLL) on the validation crops at the ground-truth points with the
    kept weights, as the grade head's calibration is (:mod:`spine_kp.evaluation.calibration`); applied at predict.

    Returns:
        kind -> T (1.0 where fewer than ``min_points`` graded landmarks of the kind were available).
    """
    from spine_kp.evaluation.calibration import fit_temperature

    trained = TrainedLabels.from_stats(schema, stats)
    model.eval()
    batches = [b for b in DataLoader(_Slices(val_set), batch_size=64)]
    out = {}
    for kind in (schema.kind(k) for k in model.kind_names):
        z, y, m = [], [], []
        for b in batches:
            z.append(model(b["crops"])[kind.name].reshape(-1, len(kind.grades)))
            y.append(b["grades"][kind.name].reshape(-1, len(kind.grades)))
            m.append(b["grade_mask"][kind.name].reshape(-1))
        keep = torch.cat(m).bool()
        fit = fit_temperature(
            torch.cat(z)[keep].numpy(),
            torch.cat(y)[keep].numpy(),
            kind.multi_label,
            grade_mask=trained.grades[kind.name],
            min_points=min_points,
        )
        out[kind.name] = float(fit.temperature)
    return out


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


__all__ = ["PAYLOAD_KEY", "CropGraderModule", "attach_grade_stage", "crop_map", "train_grade_stage"]
