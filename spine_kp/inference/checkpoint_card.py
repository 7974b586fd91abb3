"""The model card of a checkpoint: the stored one, or one built from the entries of a checkpoint written before it.

:func:`card_from_checkpoint` is the one function that reads a runtime's settings from a checkpoint
(:class:`spine_kp.checkpoint.SpineCheckpoint`); :func:`store_card` writes the card into a checkpoint once training
has fitted everything (:func:`spine_kp.checkpoint.write_entry` drops it again when another entry changes). The identity
(the file's name and sha256) is read from the file itself, which cannot hold its own digest.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spine_kp.calibration.apply import SCORE_MAP_STEPS
from spine_kp.codec.level_order import LevelOrderConfig
from spine_kp.config import ConfigError, from_dict
from spine_kp.data.labels import LabelStats
from spine_kp.data.normalization import DEFAULT_PERCENTILES
from spine_kp.inference import card_checks as checks
from spine_kp.inference.card import CHECKPOINT_FIX, MODEL_CARD_KEY, CardError, Identity, ModelCard, StageCard
from spine_kp.inference.card_checks import Checker
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.schema import Schema

if TYPE_CHECKING:
    from spine_kp.checkpoint import SpineCheckpoint

#: decoding settings training fits on its validation split (``decode_fit`` entry, :mod:`spine_kp.engine.decode_fit`)
FITTED_DECODING = ("absent_score", "absent_score_caudal", "step_tolerance")
#: grade-stage architecture keys a stage written before they existed lacks, with the value it was trained with
STAGE_WRITTEN_BEFORE = {"pool": "avg"}


def package_version() -> str:
    """The installed spine_kp version ("unknown" for a source tree that is not installed)."""
    try:
        return version("spine_kp")
    except PackageNotFoundError:
        return "unknown"


def file_identity(path: Path, network: Mapping[str, Any], spine_kp_version: str | None = None) -> Identity:
    """The identity of the model in the checkpoint file ``path`` (its digest; empty for a fold ensemble member)."""
    digest = hashlib.sha256()
    if path.is_file():
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    arch = "+".join(str(network[k]) for k in ("backbone", "decoder") if k in network)
    return Identity(
        name=f"spine_kp {arch}".strip(),
        checkpoint=path.name,
        sha256=digest.hexdigest() if path.is_file() else "",
        spine_kp_version=spine_kp_version or package_version(),
    )


def card_from_checkpoint(ckpt: SpineCheckpoint) -> ModelCard:
    """The card of a checkpoint: its stored ``model_card``, or for one written before the card existed, the card
    built from its config, label statistics, codec and fitted entries (the one function that reads them).

    Raises:
        CardError: the stored card, or what the old entries make of one, breaks a rule (one line naming the file).
    """
    source = str(ckpt.path)
    if ckpt.model_card is not None:
        card = ModelCard.from_dict(ckpt.model_card, source)
        version = card.identity.spine_kp_version
    else:
        card = ModelCard.from_dict(_old_card_dict(ckpt), source)
        version = None
    return dataclasses.replace(card, identity=file_identity(Path(ckpt.path), card.network, version))


def _old_card_dict(ckpt: SpineCheckpoint) -> dict[str, Any]:
    """The dict form of the card of a checkpoint without one (see :mod:`spine_kp.checkpoint` for its entries)."""
    cfg, schema = ckpt.config, ckpt.schema
    data = cfg.get("data") or {}
    try:
        decoding = from_dict(LevelOrderConfig, cfg.get("decode", {}), source=f"{ckpt.path} decode")
        fitted = {k: float(ckpt.decode_fit[k]) for k in FITTED_DECODING if k in (ckpt.decode_fit or {})}
        decoding = dataclasses.replace(decoding, **fitted)  # the settings the validation split chose
    except (ConfigError, TypeError, ValueError) as exc:
        raise CardError(f"{ckpt.path}: damaged decode or decode_fit entry ({checks.clip(str(exc), 300)})") from None
    stats = LabelStats.from_dict(ckpt.label_stats, schema) if ckpt.label_stats else None
    card = ModelCard(schema, ckpt.heatmap_codec(), TrainedLabels.from_stats(schema, stats), decoding=decoding)
    out = card.to_dict()
    percentiles = data.get("percentiles", DEFAULT_PERCENTILES)
    out["preprocessing"] = {
        "neighbours": data.get("neighbours", 0),
        "percentiles": list(percentiles) if percentiles is not None else None,
        "target_spacing": data.get("target_spacing"),
    }
    out["network"] = ckpt.model_config
    maps = ckpt.score_calibration or {}  # beside the maps: what they were fitted on
    out["calibration"] = {
        "temperatures": ckpt.temperatures or {},
        "score_maps": {s: maps.get(s) for s in SCORE_MAP_STEPS},
    }
    out["grade_stage"] = _old_stage(ckpt.grade_stage, schema) if ckpt.grade_stage is not None else None
    junction = ckpt.junction
    out["junction"] = {"config": junction.get("config")} if isinstance(junction, Mapping) else junction
    return out


def _old_stage(payload: Any, schema: Schema) -> Any:
    """The ``grade_stage`` section from a checkpoint's stage entry (graded landmarks: as the crop grader picks them)."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("config"), Mapping):
        return payload  # the card's checks name what is wrong
    config = {**STAGE_WRITTEN_BEFORE, **payload["config"]}
    wanted = list(config.get("kinds") or [k.name for k in schema.kinds])
    landmarks = [i for i, k in enumerate(schema.landmark_kinds) if k in wanted]
    kinds = [k.name for k in schema.kinds if k.name in {schema.landmark_kinds[i] for i in landmarks}]
    return {"config": config, "kinds": kinds, "landmarks": landmarks, "temperatures": payload.get("temperatures")}


def stage_card(payload: Any, schema: Schema, source: str = "checkpoint") -> StageCard:
    """The ``grade_stage`` section of a checkpoint's stage entry, checked as a card's.

    Raises:
        CardError: a rule of :mod:`spine_kp.inference.card_checks` is broken (one line naming ``source``).
    """
    c = Checker(source, "model_card", CHECKPOINT_FIX)
    return StageCard(*checks.read_stage(c, _old_stage(payload, schema), schema, None))


def store_card(path: str | Path) -> None:
    """Write the card of the checkpoint at ``path`` into it, under :data:`MODEL_CARD_KEY`.

    Training calls this once its fitted entries are written; writing another entry later drops the card
    (:func:`~spine_kp.checkpoint.write_entry`)."""
    from spine_kp.checkpoint import load_checkpoint, write_entry  # torch: never on the ONNX path

    card = card_from_checkpoint(load_checkpoint(path))
    stored = card.to_dict()
    stored["identity"] |= {"checkpoint": "", "sha256": ""}  # a file cannot hold its own digest: read from the file
    write_entry(path, MODEL_CARD_KEY, stored)


__all__ = [
    "FITTED_DECODING",
    "card_from_checkpoint",
    "file_identity",
    "package_version",
    "stage_card",
    "store_card",
]
