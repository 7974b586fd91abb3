"""Fold ensembles as one file: several trained checkpoints that ``predict`` loads and averages as one model.

``spine-kp ensemble A.ckpt B.ckpt ... -o ENSEMBLE.ckpt`` writes (torch.save, plain data and tensors only)::

    {"spine_kp_ensemble": {"version": 1,
                           "sources": ["runs/fold0/checkpoints/best.ckpt", ...],   # what each member was made from
                           "members": [member, ...]}}                              # at least 2

where each member is the part of its checkpoint that prediction reads, in the checkpoint's own layout (so
:func:`spine_kp.checkpoint.checkpoint_from_data` reads it as it reads a checkpoint): ``state_dict`` (the network's
``model.`` tensors only; optimizer states and the recipe's buffers are left out), ``hyper_parameters`` (config,
schema, label_stats, codec), ``calibration``, ``grade_stage``, ``score_calibration`` and ``decode_fit``.

Members see one input and their heatmaps are averaged before one level-order decoding, so they must agree on
:data:`SHARED_FIELDS` (schema, input size, heatmap codec, intensity percentiles, target spacing, neighbouring
slices); this is checked when the file is written and again when it is read. How prediction averages them:
:mod:`spine_kp.inference.ensemble`.

The file is read as data (:func:`spine_kp.torch_files.load_torch_file`), as every checkpoint is: one that needs code
to load is refused with one line, and nothing of it runs.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spine_kp.checkpoint import (
    CALIBRATION_KEY,
    CODEC_KEY,
    DECODE_FIT_KEY,
    MODEL_PREFIX,
    SCORE_CALIBRATION_KEY,
    CheckpointError,
    SpineCheckpoint,
    checkpoint_from_data,
    load_checkpoint,
)
from spine_kp.io.atomic import atomic_write_bytes
from spine_kp.schema import Schema
from spine_kp.torch_files import UnsafeFileError, load_torch_file

#: Top-level key of an ensemble file.
ENSEMBLE_KEY = "spine_kp_ensemble"
ENSEMBLE_VERSION = 1
MIN_MEMBERS = 2

# What torch.load raises on a file that is not a readable torch file (as spine_kp.checkpoint).
_UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, ImportError, AttributeError)


def _data(c: SpineCheckpoint) -> Mapping[str, Any]:
    return c.config.get("data") or {}


def _schema_text(c: SpineCheckpoint) -> str:
    return f"{c.schema.name!r} ({c.schema.num_landmarks} landmarks)"


#: field -> (comparable value, how a message shows it) of a member; members must agree on each.
SHARED_FIELDS: dict[str, tuple[Callable[[SpineCheckpoint], Any], Callable[[SpineCheckpoint], str]]] = {
    "schema": (lambda c: c.schema.to_dict(), _schema_text),
    "data.input_size": (lambda c: tuple(_data(c).get("input_size") or ()), lambda c: str(_data(c).get("input_size"))),
    "codec": (lambda c: c.heatmap_codec().to_dict(), lambda c: str(c.heatmap_codec().to_dict())),
    "data.percentiles": (lambda c: _data(c).get("percentiles"), lambda c: str(_data(c).get("percentiles"))),
    "data.target_spacing": (lambda c: _data(c).get("target_spacing"), lambda c: str(_data(c).get("target_spacing"))),
    "data.neighbours": (lambda c: int(_data(c).get("neighbours", 0)), lambda c: str(_data(c).get("neighbours", 0))),
}


@dataclass(frozen=True)
class SpineEnsemble:
    """A fold ensemble read from one file.

    Attributes:
        path: the file.
        members: each member as :func:`spine_kp.checkpoint.load_checkpoint` reads a checkpoint (its ``path`` is
            ``FILE#memberN``, for messages); at least :data:`MIN_MEMBERS`, agreeing on :data:`SHARED_FIELDS`.
        sources: the checkpoint each member was made from, as given to ``spine-kp ensemble``.
    """

    path: Path
    members: tuple[SpineCheckpoint, ...]
    sources: tuple[str, ...]

    @property
    def schema(self) -> Schema:
        """The members' (common) schema."""
        return self.members[0].schema


def check_members(members: Sequence[SpineCheckpoint]) -> None:
    """Raise unless there are at least :data:`MIN_MEMBERS` members and they agree on :data:`SHARED_FIELDS`.

    Raises:
        CheckpointError: one line naming the two member files and the field that differs.
    """
    if len(members) < MIN_MEMBERS:
        names = ", ".join(str(m.path) for m in members) or "none"
        raise CheckpointError(
            f"a fold ensemble needs at least {MIN_MEMBERS} member checkpoints, got {len(members)} ({names})"
        )
    first = members[0]
    for name, (value, show) in SHARED_FIELDS.items():
        for other in members[1:]:
            if value(other) != value(first):
                raise CheckpointError(
                    f"ensemble members {first.path} and {other.path} differ in {name} ({show(first)} vs "
                    f"{show(other)}); members must be trained with the same {name}, e.g. the folds of one config"
                )


def member_data(c: SpineCheckpoint) -> dict[str, Any]:
    """What an ensemble file keeps of a checkpoint (see the module docstring): plain data and the network's tensors."""
    hp = {"config": c.config, "schema": c.schema.to_dict(), "label_stats": c.label_stats, CODEC_KEY: c.codec}
    return {
        "state_dict": {k: v for k, v in c.state_dict.items() if k.startswith(MODEL_PREFIX) and torch.is_tensor(v)},
        "hyper_parameters": hp,
        CALIBRATION_KEY: c.calibration,
        "grade_stage": c.grade_stage,
        SCORE_CALIBRATION_KEY: c.score_calibration,
        DECODE_FIT_KEY: c.decode_fit,
    }


def write_ensemble(members: Sequence[SpineCheckpoint], out: str | Path) -> Path:
    """Check ``members`` (:func:`check_members`) and write them as one ensemble file, atomically.

    Returns:
        The file written.

    Raises:
        CheckpointError: fewer than two members, or members that differ in a shared field.
    """
    check_members(members)
    payload = {
        "version": ENSEMBLE_VERSION,
        "sources": [str(m.path) for m in members],
        "members": [member_data(m) for m in members],
    }
    buf = io.BytesIO()
    torch.save({ENSEMBLE_KEY: payload}, buf)
    return atomic_write_bytes(Path(out), buf.getvalue())


def load_model_file(path: str | Path) -> SpineCheckpoint | SpineEnsemble:
    """Read what ``predict --checkpoint`` accepts: a fold ensemble, or anything
    :func:`spine_kp.checkpoint.load_checkpoint` reads (which then reports every problem of the file).

    An ensemble is recognised by its top-level key on a memory-mapped read (the pickled structure is read, the
    tensors are mapped, not copied), and its members are taken from that read.

    Raises:
        CheckpointError: the file is missing, unreadable, needs code to load, or is neither a spine_kp checkpoint nor
            a well-formed ensemble (one line naming it).
    """
    p = Path(path)
    data = _peek(p)
    if isinstance(data, Mapping) and ENSEMBLE_KEY in data:
        return _ensemble_from_data(p, data[ENSEMBLE_KEY])
    return load_checkpoint(p)


def _peek(p: Path) -> Any:
    """The file read as data with its tensors mapped; None when it cannot be (load_checkpoint then says why)."""
    if not p.is_file():
        return None
    try:
        return load_torch_file(p, mmap=True)
    except (UnsafeFileError, *_UNREADABLE):
        return None


def load_ensemble(path: str | Path) -> SpineEnsemble:
    """Read a fold ensemble file (:func:`load_model_file`, refusing a single checkpoint).

    Raises:
        CheckpointError: see :func:`load_model_file`; also a file that is one checkpoint, not an ensemble.
    """
    read = load_model_file(path)
    if not isinstance(read, SpineEnsemble):
        raise CheckpointError(f"{path}: one checkpoint, not a fold ensemble; write one with spine-kp ensemble")
    return read


def _ensemble_from_data(p: Path, entry: Any) -> SpineEnsemble:
    members = entry.get("members") if isinstance(entry, Mapping) else None
    if not isinstance(members, list):
        raise CheckpointError(f"{p}: damaged fold ensemble (no members list); write it again with spine-kp ensemble")
    if entry.get("version") != ENSEMBLE_VERSION:
        raise CheckpointError(
            f"{p}: fold ensemble version {entry.get('version')!r}, this spine_kp reads {ENSEMBLE_VERSION}; "
            "write it again with this version's spine-kp ensemble"
        )
    hint = "; write the ensemble again with spine-kp ensemble"
    read = tuple(checkpoint_from_data(f"{p}#member{i + 1}", m, hint) for i, m in enumerate(members))
    check_members(read)
    sources = entry.get("sources")
    names = tuple(str(s) for s in sources) if isinstance(sources, list) and len(sources) == len(read) else ()
    return SpineEnsemble(path=p, members=read, sources=names or tuple(str(m.path) for m in read))


__all__ = [
    "ENSEMBLE_KEY",
    "MIN_MEMBERS",
    "SHARED_FIELDS",
    "SpineEnsemble",
    "check_members",
    "load_ensemble",
    "load_model_file",
    "member_data",
    "write_ensemble",
]
