"""Warm start of the crop grading stage (``grade_stage.init``) and the stage file ``spine-kp pretrain-stage`` writes.

A source is either a **stage file** (``grade_stage.pt``: the stage trained on its own, e.g. on phantom crops, with the
grade names of each kind it was trained for) or a spine_kp **checkpoint** or run folder whose ``grade_stage`` entry
holds a trained stage. Both are read with the project's restricted unpickler (:func:`spine_kp.torch_files.
load_torch_file`): a file that asks for anything but tensors and plain data is refused, never run.

Every tensor of the new stage whose name and shape match the source's is copied; the rest keep their fresh
initialisation. A kind whose grade names differ from the source's keeps a fresh classifier: its rows would otherwise
take another grade's weights. A source of which nothing fits (another architecture, a ``members`` ensemble against a
single network) is an error, so a wrong path never trains silently from scratch.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spine_kp.checkpoint import CheckpointError, checkpoint_from_data, resolve_checkpoint_path
from spine_kp.io.atomic import atomic_write_bytes
from spine_kp.schema import Schema
from spine_kp.torch_files import load_torch_file

log = logging.getLogger(__name__)

STAGE_FILE_FORMAT = "spine_kp.grade_stage"
STAGE_FILE_VERSION = 1


def stage_grades(schema: Schema) -> dict[str, list[str]]:
    """kind -> its grade names, in the stage's output order."""
    return {k.name: list(k.grades) for k in schema.kinds}


def write_stage_file(path: str | Path, payload: Mapping[str, Any], schema: Schema) -> Path:
    """Write a stage payload (of :func:`~spine_kp.engine.grade_stage_train.train_grade_stage`) atomically."""
    buf = io.BytesIO()
    data = {
        "format": STAGE_FILE_FORMAT,
        "version": STAGE_FILE_VERSION,
        "schema": schema.name,
        "grades": stage_grades(schema),
        "grade_stage": dict(payload),
    }
    torch.save(data, buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def read_stage_source(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """The stage tensors and the grade names per kind of a stage file, checkpoint or run folder.

    Raises:
        CheckpointError: missing or unreadable file, not a stage file or spine_kp checkpoint, or one without a stage.
    """
    p = resolve_checkpoint_path(path)
    if not p.is_file():
        raise CheckpointError(f"grade_stage.init: {p} does not exist")
    try:
        data = load_torch_file(p)
    except Exception as exc:  # the loader's own errors name the file and what it asked for
        raise CheckpointError(f"grade_stage.init: {p}: {exc}") from None
    if isinstance(data, Mapping) and data.get("format") == STAGE_FILE_FORMAT:
        stage, grades = data.get("grade_stage"), data.get("grades")
    else:
        ckpt = checkpoint_from_data(p, data, hint=" or a grade_stage.pt of spine-kp pretrain-stage")
        stage, grades = ckpt.grade_stage, stage_grades(ckpt.schema)
        if stage is None:
            raise CheckpointError(f"grade_stage.init: {p} holds no crop grading stage (trained without grade_stage)")
    state = stage.get("state_dict") if isinstance(stage, Mapping) else None
    lists = isinstance(grades, Mapping) and all(isinstance(v, (list, tuple)) for v in grades.values())
    if not isinstance(state, Mapping) or not lists:
        raise CheckpointError(f"grade_stage.init: {p}: damaged stage entry (no state_dict or grade names)")
    tensors = {str(k): v for k, v in state.items() if torch.is_tensor(v)}
    return tensors, {str(k): [str(g) for g in v] for k, v in grades.items()}


def init_stage(model: nn.Module, source: str | Path, schema: Schema) -> tuple[int, int]:
    """Copy the source stage's tensors that fit ``model`` (same name and shape; a kind whose grade names differ
    keeps its fresh output rows).

    Returns:
        (tensors copied, tensors of the model).

    Raises:
        CheckpointError: the source cannot be read, or none of its tensors fits the model.
    """
    tensors, grades = read_stage_source(source)
    own = model.state_dict()
    differing = [k.name for k in schema.kinds if grades.get(k.name, list(k.grades)) != list(k.grades)]
    fits = {}
    for key, value in tensors.items():
        if key not in own or own[key].shape != value.shape:
            continue
        if any(_is_output_of(key, kind, own, schema) for kind in differing):
            continue
        fits[key] = value.to(own[key].dtype)
    if not fits:
        raise CheckpointError(
            f"grade_stage.init: no tensor of {source} fits this stage (another crop network, members or planes?)"
        )
    model.load_state_dict(fits, strict=False)
    log.info("grade stage initialised from %s: %d of %d tensors", source, len(fits), len(own))
    return len(fits), len(own)


def _is_output_of(key: str, kind: str, own: Mapping[str, torch.Tensor], schema: Schema) -> bool:
    """Whether ``key`` may be an output layer of ``kind`` (a classifier tensor whose first axis has as many rows as
    the kind has grades)."""
    n = len(schema.kind(kind).grades)
    return "classifiers" in key.split(".") and own[key].ndim >= 1 and own[key].shape[0] == n


__all__ = ["STAGE_FILE_FORMAT", "init_stage", "read_stage_source", "stage_grades", "write_stage_file"]
