"""The crop grading stage's recipe (Lightning): the slices of a crop set as a dataset, the module, its validation mAP.

The stage trains after the landmark network (:mod:`spine_kp.engine.grade_stage_train` runs it); the crop model, the
crops and their config are :mod:`spine_kp.grading`'s. The optimiser and schedule are the landmark network's
(:mod:`spine_kp.engine.optim`); the losses are :mod:`spine_kp.engine.losses`'.

Shapes: B slices, K landmarks, S crop side, K_kind landmarks of a kind, G grades of that kind.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import Dataset

from spine_kp.data.labels import LabelStats
from spine_kp.engine.losses import multi_label_loss, ordinal_negative_weights, single_label_loss
from spine_kp.engine.optim import adamw_warmup_cosine
from spine_kp.evaluation.metrics import average_precision
from spine_kp.grading.config import GradeStageConfig, ordinal_chain
from spine_kp.grading.cropset import CropSet, random_recrop
from spine_kp.grading.model import create_crop_grader
from spine_kp.models.heads import grade_probabilities
from spine_kp.schema import Schema


class CropSlices(Dataset):
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
    """The stage's recipe: imbalance-aware grade losses; AdamW with warm-up and cosine decay
    (:func:`spine_kp.engine.optim.adamw_warmup_cosine`, the landmark network's, with ``grade_stage``'s settings).

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
        chain = torch.tensor(ordinal_chain(cfg, schema), dtype=torch.long)
        self.register_buffer("ordinal_chain", chain, persistent=False)
        self.shift_px = cfg.jitter_mm / cfg.step_mm
        self.best_score = -math.inf
        self.best_state: dict[str, Tensor] | None = None
        self.best_epoch = -1
        self.history: list[float] = []
        self._val: list[tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]] = []

    def loss(self, logits: dict[str, Tensor], batch: dict[str, Any], adjust: bool = False) -> Tensor:
        """Mean over the graded kinds of their grade loss; ``adjust`` (training) adds the logit adjustment and spares
        the ordinal chain's neighbours of a positive grade (``grade_stage.ordinal_*``)."""
        terms = []
        for kind in (self.schema.kind(k) for k in self.model.kind_names):
            x, y, m = logits[kind.name], batch["grades"][kind.name], batch["grade_mask"][kind.name]
            if adjust:
                x = x + getattr(self, f"adjust_{kind.name}")
            w = getattr(self, f"weight_{kind.name}")
            if kind.multi_label:
                spare = None
                if adjust and kind.name == self.cfg.ordinal_kind and self.ordinal_chain.numel():
                    spare = ordinal_negative_weights(y, self.ordinal_chain, self.cfg.ordinal_smoothing)
                trained = getattr(self, f"trained_{kind.name}")
                terms.append(multi_label_loss(x, y, m, w, trained, self.cfg.focal_gamma, spare))
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
        member_logits = getattr(self.model, "member_logits", None)  # an ensemble: every member its own loss
        outputs = member_logits(crops) if member_logits is not None else [self.model(crops)]
        loss = sum(self.loss(o, batch, adjust=True) for o in outputs) / len(outputs)
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
        c = self.cfg
        return adamw_warmup_cosine(self.model, self.trainer, c.lr, c.weight_decay, c.warmup_epochs, c.min_lr_ratio)


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


__all__ = ["CropGraderModule", "CropSlices", "crop_map"]
