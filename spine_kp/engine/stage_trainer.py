"""The Lightning Trainer of the stages trained after the landmark network (the crop grading stage, the junction check):
one device, full precision, no Lightning checkpoints (each stage keeps the weights it returns itself)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


def stage_trainer(
    epochs: int, steps_per_epoch: int, accelerator: str, progress_bar: bool, logger: Any = False
) -> pl.Trainer:
    """A Trainer for ``epochs`` epochs of about ``steps_per_epoch`` steps (logged once per epoch), gradients clipped
    at norm 1.

    Args:
        accelerator: Lightning accelerator ("cpu", "gpu", "auto"); one device.
        logger: a Lightning logger, or False for none.
    """
    return pl.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=1,
        precision="32-true",
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, steps_per_epoch),
        gradient_clip_val=1.0,
    )


__all__ = ["stage_trainer"]
