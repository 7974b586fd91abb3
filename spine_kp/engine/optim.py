"""The one optimiser and learning-rate schedule of every training stage: AdamW, linear warm-up, cosine decay per step.

Used by the landmark network (:class:`spine_kp.engine.module.LandmarkModule`) and the crop grading stage
(:class:`spine_kp.engine.grade_stage_module.CropGraderModule`), each with its own config section.

Weight decay follows timm's ``param_groups_weight_decay`` (:func:`param_groups_weight_decay`): biases and every 1-D
tensor (normalisation scales and shifts) get none, frozen parameters are left out. The multiplier of the
base learning rate at optimiser step s of T, with W warm-up steps and floor m (``min_lr_ratio``)::

    s < W:   (s + 1) / (W + 1)
    s >= W:  m + (1 - m) * (1 + cos(pi * min(1, (s - W) / (T - W)))) / 2

W is ``warmup_epochs`` epochs' worth of the T steps, rounded, and at most T - 1.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def param_groups_weight_decay(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: ``[{decayed >= 2-D weights}, {biases and 1-D tensors, weight_decay 0}]``.

    timm's rule (``timm.optim.param_groups_weight_decay``) in the order this package has always saved its optimiser
    states: timm lists the undecayed group first, and a ``last.ckpt`` written with the other order would give each
    group the other's moments on ``--resume`` (and the summation order of the gradient norm would change training).
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_steps(total_steps: int, epochs: int, warmup_epochs: float) -> int:
    """W: ``warmup_epochs`` of ``epochs`` epochs spanning ``total_steps`` steps, rounded, at most T - 1."""
    return min(total_steps - 1, int(round(warmup_epochs * total_steps / max(1, epochs))))


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup: int, min_lr_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """The per-step schedule of the module docstring on ``optimizer``'s learning rates."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        t = (step - warmup) / max(1, total_steps - warmup)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def adamw_warmup_cosine(
    model: torch.nn.Module,
    trainer: Any,
    lr: float,
    weight_decay: float,
    warmup_epochs: float,
    min_lr_ratio: float,
) -> dict[str, Any]:
    """What a LightningModule's ``configure_optimizers`` returns: AdamW on ``model`` with the per-step schedule.

    Args:
        model: the trained network (its parameters, grouped by weight decay).
        trainer: the Lightning Trainer (``estimated_stepping_batches`` and ``max_epochs`` size the schedule).
        lr: base learning rate.
        weight_decay: AdamW's decoupled weight decay of the >= 2-D weights.
        warmup_epochs: length of the linear warm-up, in epochs.
        min_lr_ratio: the floor of the cosine decay, as a share of ``lr``.
    """
    optimizer = torch.optim.AdamW(param_groups_weight_decay(model, weight_decay), lr=lr)
    total = max(1, int(trainer.estimated_stepping_batches))
    epochs = max(1, trainer.max_epochs or 1)
    scheduler = warmup_cosine(optimizer, total, warmup_steps(total, epochs, warmup_epochs), min_lr_ratio)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


__all__ = ["adamw_warmup_cosine", "param_groups_weight_decay", "warmup_cosine", "warmup_steps"]
