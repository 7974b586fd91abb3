"""The one reader of spine_kp checkpoints: a file -> :class:`SpineCheckpoint`, or one :class:`CheckpointError` line.

A spine_kp checkpoint is the Lightning checkpoint that training writes (``RUN/checkpoints/best.ckpt``,
``last.ckpt``); it holds everything prediction needs::

    {"state_dict": {"model.<LandmarkNet key>": tensor, ...},       # plus the recipe's buffers (label weights)
     "hyper_parameters": {"config": experiment config (plain data, spine_kp.engine.config),
                          "schema": Schema.to_dict(),
                          "label_stats": LabelStats.to_dict() or None,
                          "codec": HeatmapCodec.to_dict()},        # absent before the codec was stored
     "calibration": {"temperatures": {kind: T}, ...},              # absent when not fitted
     "score_calibration": {"localization": {kind: {"a", "b", ...}}, "scores": {...}, ...},  # absent when not fitted
     "decode_fit": {"absent_score": a, "step_tolerance": t, ...},  # absent when not fitted
     "model_card": ModelCard.to_dict(),                            # absent before the card existed
     ...}                                                          # Lightning's own entries (epoch, optimizer, ...)

The settings a runtime needs are read from these entries in one place only, the model card
(:func:`spine_kp.inference.checkpoint_card.card_from_checkpoint`): the stored ``model_card`` (written once training
has fitted everything), or, for a checkpoint written before it existed, the card built from the other entries.

Training (:class:`spine_kp.engine.module.LandmarkModule`), warm starts (:mod:`spine_kp.engine.init_weights`), the
predictor, the ONNX export and the DICOM SR writer all read it through :func:`load_checkpoint`, and the heatmap
codec of a model is rebuilt in one place, :func:`build_codec`, from the codec stored beside the weights (or, for
an older checkpoint without it, from the config as it was trained).

Checkpoints are read as data (:func:`spine_kp.torch_files.load_torch_file`: weights-only unpickling with an explicit
allow-list): a file that would need code to load is refused with one :class:`CheckpointError` line, and nothing of it
runs.

Imports only torch and the leaves below it (errors, schema, the codec): predict and export use it without the
training code.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.errors import UserError
from spine_kp.io.atomic import atomic_write_bytes
from spine_kp.schema import Schema, SchemaError
from spine_kp.torch_files import UnsafeFileError, load_torch_file

#: Prefix of the network's tensors in the module's state dict (``LandmarkModule.model``).
MODEL_PREFIX = "model."
#: Where the fitted grade temperatures are stored (see :mod:`spine_kp.engine.grade_logits`).
CALIBRATION_KEY = "calibration"
#: Where the Platt maps of the emitted scores are stored (see :mod:`spine_kp.engine.score_map_fit`).
SCORE_CALIBRATION_KEY = "score_calibration"
#: Where the decoding settings fitted on the validation split are stored (see :mod:`spine_kp.engine.decode_fit`).
DECODE_FIT_KEY = "decode_fit"
#: the junction check's entry (:mod:`spine_kp.engine.junction_train`)
JUNCTION_KEY = "junction"
#: Where the model card is stored (see :mod:`spine_kp.inference.card`).
MODEL_CARD_KEY = "model_card"
#: Hyper-parameter that holds ``HeatmapCodec.to_dict()``.
CODEC_KEY = "codec"
#: The checkpoint a run folder stands for (``--checkpoint RUN_DIR``), relative to it.
RUN_CHECKPOINT = Path("checkpoints") / "best.ckpt"

# What torch.load raises on a file that is not a torch checkpoint (or is truncated, or pickles unknown classes).
_UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, ImportError, AttributeError)


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, unreadable, not a spine_kp checkpoint, or damaged; the message names the file."""


@dataclass(frozen=True)
class SpineCheckpoint:
    """What a spine_kp checkpoint holds (plain data, as stored).

    Attributes:
        path: the file.
        config: the experiment config (``spine_kp.engine.config.experiment_to_dict``).
        schema: the schema the model was trained for.
        label_stats: ``LabelStats.to_dict()`` of the training split (None: every landmark and grade trained).
        state_dict: the module's tensors (``model.`` keys for the network).
        calibration: the fitted grade temperatures entry (None: not fitted, T = 1).
        codec: ``HeatmapCodec.to_dict()`` of the trained model (None: a checkpoint written before it was stored).
        grade_stage: the crop grading stage entry (``spine_kp.engine.grade_stage_train``; None: graded by the head
            alone).
        score_calibration: the Platt maps of the scores per kind (None: scores are ``peak x p``); read by
            :func:`spine_kp.calibration.apply.score_maps`.
        decode_fit: the level-order decoding settings fitted on the validation split (None: the config's).
        junction: the junction check's entry (``spine_kp.engine.junction_train``; None: no check of the level count).
        model_card: the stored model card's dict form (None: a checkpoint written before it; see
            :func:`spine_kp.inference.checkpoint_card.card_from_checkpoint`).
    """

    path: Path
    config: dict[str, Any]
    schema: Schema
    label_stats: dict[str, Any] | None
    state_dict: Mapping[str, Any]
    calibration: dict[str, Any] | None = None
    codec: dict[str, Any] | None = None
    grade_stage: dict[str, Any] | None = None
    score_calibration: dict[str, Any] | None = None
    decode_fit: dict[str, Any] | None = None
    junction: dict[str, Any] | None = None
    model_card: dict[str, Any] | None = None

    @property
    def model_config(self) -> dict[str, Any]:
        """The ``model`` section of the config (a copy)."""
        return dict(self.config["model"])

    @property
    def model_state(self) -> dict[str, torch.Tensor]:
        """The network's tensors, ``model.`` stripped (``LandmarkNet.load_state_dict`` keys)."""
        n = len(MODEL_PREFIX)
        return {k[n:]: v for k, v in self.state_dict.items() if k.startswith(MODEL_PREFIX) and torch.is_tensor(v)}

    @property
    def temperatures(self) -> dict[str, float] | None:
        """kind -> fitted grade temperature (None when the checkpoint has none)."""
        return (self.calibration or {}).get("temperatures")

    def heatmap_codec(self) -> HeatmapCodec:
        """The codec the model was trained with (see :func:`build_codec`).

        Raises:
            CheckpointError: the stored codec or config cannot build one.
        """
        try:
            return build_codec(self.config, self.codec)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{self.path}: damaged spine_kp checkpoint (codec: {exc})") from None


def build_codec(config: Mapping[str, Any], stored: Mapping[str, Any] | None = None) -> HeatmapCodec:
    """The heatmap codec of a model: training targets, validation and prediction all decode with this one.

    Args:
        config: plain-data experiment config; the codec is ``data.input_size``, ``model.output_stride`` and the
            ``codec`` section (``sigma``, ``refine``, optional ``blur_sigma``).
        stored: ``HeatmapCodec.to_dict()`` kept in a checkpoint; when given it wins over ``config``.
    """
    if stored:
        return HeatmapCodec.from_dict(dict(stored))
    section = config["codec"]
    return HeatmapCodec(
        tuple(config["data"]["input_size"]),
        stride=config["model"]["output_stride"],
        sigma=section["sigma"],
        refine=section["refine"],
        blur_sigma=section.get("blur_sigma"),
    )


def resolve_checkpoint_path(path: str | Path) -> Path:
    """The checkpoint file a user names: a file as it is, or a training run folder's ``checkpoints/best.ckpt``.

    The ``checkpoints`` folder itself stands for its ``best.ckpt`` too. A path that is neither is returned unchanged
    (:func:`load_checkpoint` then says it does not exist).

    Raises:
        CheckpointError: a folder without that file (naming ``last.ckpt`` when the run has only that one).
    """
    p = Path(path)
    if not p.is_dir():
        return p
    for candidate in (p / RUN_CHECKPOINT, p / RUN_CHECKPOINT.name):
        if candidate.is_file():
            return candidate
    last = next((c for c in (p / RUN_CHECKPOINT.parent / "last.ckpt", p / "last.ckpt") if c.is_file()), None)
    also = f" (it has {last}: give that file to use it)" if last is not None else ""
    raise CheckpointError(
        f"{p} is a folder without {RUN_CHECKPOINT}{also}; give a .ckpt file, or the folder of a spine-kp train run"
    )


def load_checkpoint(path: str | Path, mmap: bool = False, hint: str = "") -> SpineCheckpoint:
    """Read a spine_kp checkpoint as data (see module docstring: nothing in the file runs).

    Args:
        path: the ``.ckpt`` file, or a training run folder (its ``checkpoints/best.ckpt``, see
            :func:`resolve_checkpoint_path`).
        mmap: map the tensors instead of reading them (for a caller that needs only the config).
        hint: appended to the message for a readable file that is not a spine_kp checkpoint.

    Raises:
        CheckpointError: the file is missing, unreadable, not a spine_kp checkpoint, damaged, or needs code to load
            (one line naming it).
    """
    p = resolve_checkpoint_path(path)
    if not p.is_file():
        raise CheckpointError(
            f"checkpoint {p} does not exist; give a RUN/checkpoints/*.ckpt file of spine-kp train, or the RUN folder"
        )
    try:
        ckpt = load_torch_file(p, mmap=mmap)
    except UnsafeFileError as exc:
        raise CheckpointError(str(exc)) from None
    except _UNREADABLE as exc:
        raise CheckpointError(f"{p}: not a spine_kp checkpoint (not a readable torch file: {exc})") from None
    return checkpoint_from_data(p, ckpt, hint)


def checkpoint_from_data(path: str | Path, data: Any, hint: str = "") -> SpineCheckpoint:
    """What :func:`load_checkpoint` makes of a checkpoint's contents once read (also a member of a fold ensemble,
    :mod:`spine_kp.fold_ensemble`, which holds each member as such a dict).

    Args:
        path: the file, or the name a message gives the member (e.g. ``ENSEMBLE.ckpt#member2``).
        data: what :func:`spine_kp.torch_files.load_torch_file` read.
        hint: appended to the message for data that is not a spine_kp checkpoint.

    Raises:
        CheckpointError: not a spine_kp checkpoint, or damaged (one line naming ``path``).
    """
    p = Path(path)
    hp = data.get("hyper_parameters") if isinstance(data, Mapping) else None
    state = data.get("state_dict") if isinstance(data, Mapping) else None
    if not isinstance(hp, Mapping) or not {"config", "schema"} <= set(hp) or not isinstance(state, Mapping):
        raise CheckpointError(
            f"{p}: not a spine_kp checkpoint (needs state_dict and hyper_parameters with config and schema); "
            f"give a .ckpt written by spine-kp train{hint}"
        )
    try:
        schema = Schema.from_dict(hp["schema"], source=f"{p} schema")
        config = dict(hp["config"])
        if not isinstance(config.get("model"), Mapping):
            raise KeyError("config has no model section")
    except (SchemaError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{p}: damaged spine_kp checkpoint ({exc})") from None
    return SpineCheckpoint(
        path=p,
        config=config,
        schema=schema,
        label_stats=hp.get("label_stats"),
        state_dict=state,
        calibration=data.get(CALIBRATION_KEY) or None,
        codec=hp.get(CODEC_KEY) or None,
        grade_stage=data.get("grade_stage") or None,
        score_calibration=data.get(SCORE_CALIBRATION_KEY) or None,
        decode_fit=data.get(DECODE_FIT_KEY) or None,
        junction=data.get(JUNCTION_KEY) or None,
        model_card=data.get(MODEL_CARD_KEY) or None,
    )


def write_entry(path: str | Path, key: str, value: Any) -> None:
    """Store ``value`` under ``key`` of the checkpoint at ``path`` (atomically: temporary file + rename).

    Used for what is fitted after Lightning wrote the file: the crop grading stage and the score calibration. The
    model card is built from those entries, so writing any other entry drops a stored card (until it is stored again,
    the card is built from the entries as for a checkpoint written before it existed).
    """
    ckpt = load_torch_file(path)
    if key != MODEL_CARD_KEY:
        ckpt.pop(MODEL_CARD_KEY, None)
    ckpt[key] = value
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


__all__ = [
    "CALIBRATION_KEY",
    "CODEC_KEY",
    "DECODE_FIT_KEY",
    "JUNCTION_KEY",
    "MODEL_CARD_KEY",
    "MODEL_PREFIX",
    "RUN_CHECKPOINT",
    "CheckpointError",
    "SpineCheckpoint",
    "build_codec",
    "checkpoint_from_data",
    "load_checkpoint",
    "resolve_checkpoint_path",
    "write_entry",
]
