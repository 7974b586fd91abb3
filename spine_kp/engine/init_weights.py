"""Warm start (``spine-kp train --init CKPT``): copy every tensor of a spine_kp checkpoint that fits a new model.

Accepted: a Lightning checkpoint written by :class:`~spine_kp.engine.module.LandmarkModule` (``state_dict`` with
``model.`` keys, ``hyper_parameters`` holding ``config`` and ``schema``), read by
:func:`spine_kp.checkpoint.load_checkpoint`. A backbone-only state dict is not one: that belongs in the
``model.pretrained`` config key. Checkpoints are pickles: read only files you trust.

Names are matched by :func:`spine_kp.engine.state_mapping.map_state` (landmark rows and grade rows by name; a
backbone or decoder of another registry name is not compared); everything not loaded keeps its fresh initialisation
and is reported.

The recipe's buffers outside ``model.`` (label-frequency weights and masks) are never copied: they describe the
new training set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spine_kp.checkpoint import CheckpointError, SpineCheckpoint, load_checkpoint
from spine_kp.config import to_dict
from spine_kp.engine.module import LandmarkModule
from spine_kp.engine.state_mapping import InitReport, map_state

log = logging.getLogger(__name__)


def read_spine_checkpoint(path: str | Path) -> SpineCheckpoint:
    """Read a spine_kp checkpoint to warm-start from (a trusted file: it is unpickled).

    Raises:
        CheckpointError: the file is missing, unreadable, or not a spine_kp checkpoint (a backbone-only state dict
            is told to go in ``model.pretrained``).
    """
    return load_checkpoint(path, hint=", or put a backbone-only state dict in model.pretrained")


def _differing_parts(source: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, str]:
    """Key prefix -> reason for the parts whose registry name differs between the two model configs."""
    skip = {}
    for part in ("backbone", "decoder"):
        if source.get(part) != target.get(part):
            skip[f"{part}."] = f"{part} differs (checkpoint {source.get(part)!r}, model {target.get(part)!r})"
    return skip


def init_from_checkpoint(module: LandmarkModule, source: str | Path | SpineCheckpoint) -> InitReport:
    """Warm-start ``module`` (in place) from a spine_kp checkpoint; log and return what loaded.

    Args:
        module: a freshly built module (its config and schema may differ from the checkpoint's).
        source: the checkpoint file, or what :func:`read_spine_checkpoint` read from it.

    Returns:
        An :class:`InitReport`.

    Raises:
        CheckpointError: the file is not a spine_kp checkpoint, or no weight of it (beyond 1-D ones) fits the model.
    """
    ckpt = source if isinstance(source, SpineCheckpoint) else read_spine_checkpoint(source)
    ours = to_dict(module.cfg.model)
    skip = _differing_parts(ckpt.model_config, ours)
    new_state, report = map_state(ckpt.model_state, ckpt.schema, module.model.state_dict(), module.schema, skip)
    report.source = str(ckpt.path)
    # Biases and norm scales alone (1-D, often equal by coincidence) are no warm start.
    if not any(v.ndim > 1 for v in new_state.values()):
        raise CheckpointError(
            f"{ckpt.path}: no weight fits this model (checkpoint backbone {ckpt.model_config.get('backbone')!r}, "
            f"decoder {ckpt.model_config.get('decoder')!r}; model {ours['backbone']!r}, {ours['decoder']!r}); "
            f"use a checkpoint of the same architecture or train without --init"
        )
    module.model.load_state_dict(new_state, strict=False)
    log.log(logging.INFO if report.complete else logging.WARNING, "init: %s", report.summary())
    return report


__all__ = ["init_from_checkpoint", "read_spine_checkpoint"]
