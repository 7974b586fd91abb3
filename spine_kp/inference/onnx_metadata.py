"""The model card of an ONNX export, read from its metadata and checked against its graph before anything is built.

An export's ``metadata_props`` hold one JSON document, the model card's dict form
(:meth:`spine_kp.inference.card.ModelCard.to_dict`). An ONNX file is downloaded and shared, so it is untrusted input:
:func:`validate_metadata` checks it by the card's rules (:mod:`spine_kp.inference.card_checks`) and against the graph's
input and output shapes, and returns the :class:`~spine_kp.inference.card.ModelCard`, or raises one
:class:`MetadataError` line naming the file and the field path, e.g.
``model.onnx: metadata preprocessing.neighbours: must be an int in 0..8, got 1000000000.0; export the model again``.

Exports written before the card (format 1: the same settings as flat keys, ``neighbours``, ``decode``,
``temperatures``, ``model``, ...) are read too: :func:`upgrade_format1` moves each key to its card section first.

No torch and no onnx here (a plain dict in); reading the file is :mod:`spine_kp.inference.onnx_predictor`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spine_kp.errors import UserError
from spine_kp.inference.card import FORMAT_VERSION, ModelCard
from spine_kp.inference.card_checks import CardError, Shapes

#: the keys of a format-1 document (flat) and their card sections
FORMAT1_PLACES = {
    "schema": ("schema",),
    "codec": ("codec",),
    "decode": ("decoding",),
    "trained": ("trained",),
    "neighbours": ("preprocessing", "neighbours"),
    "percentiles": ("preprocessing", "percentiles"),
    "target_spacing": ("preprocessing", "target_spacing"),
    "temperatures": ("calibration", "temperatures"),
    "score_calibration": ("calibration", "score_maps"),
    "grade_stage": ("grade_stage",),
}
FORMAT1_DERIVED = ("format", "input_size", "in_chans", "model", "graph")  # the card derives or drops these
FIX = "export the model again"


class OnnxModelError(UserError, ValueError):
    """An ONNX file that is missing, unreadable or not a spine_kp export; the message names the file."""


class MetadataError(OnnxModelError, CardError):
    """An ONNX export whose model card breaks a type, range or consistency rule; names file and field."""


def upgrade_format1(meta: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A format-1 document as a card's dict form (its values unchecked: the card's checks follow).

    Raises:
        MetadataError: a key format 1 did not have, or an ``input_size`` other than the codec's.
    """
    unknown = [k for k in meta if k not in FORMAT1_PLACES and k not in FORMAT1_DERIVED]
    if unknown:
        raise MetadataError(f"{source}: metadata document: unknown key {unknown[0]!r} (format 1); {FIX}")
    codec = meta.get("codec")
    if isinstance(codec, Mapping) and "input_size" in meta and meta["input_size"] != codec.get("input_size"):
        raise MetadataError(f"{source}: metadata input_size: must equal codec.input_size (format 1); {FIX}")
    card: dict[str, Any] = {"format": FORMAT_VERSION, "preprocessing": {}}
    for key, place in FORMAT1_PLACES.items():
        if key in meta:
            node = card
            for part in place[:-1]:
                node = node.setdefault(part, {})
            node[place[-1]] = meta[key]
    model = meta.get("model")
    if isinstance(model, Mapping):
        card["network"] = model.get("config")
        names = {"name": "name", "checkpoint": "checkpoint", "checkpoint_sha256": "sha256"}
        card["identity"] = {new: model[old] for old, new in (*names.items(), ("spine_kp_version",) * 2) if old in model}
    return card


def validate_metadata(meta: Any, source: str, shapes: Shapes | None = None) -> ModelCard:
    """Check the model card of an ONNX export (format 2, or format 1 upgraded) and build it.

    Args:
        meta: the parsed JSON document (untrusted: any JSON value).
        source: the file it came from, named in every error.
        shapes: the graph's input and output shapes, name -> axes (None: dynamic), checked against the card; None
            skips those checks.

    Raises:
        MetadataError: a rule of :mod:`spine_kp.inference.card_checks` is broken; one line naming ``source`` and the
            field path.
    """
    if isinstance(meta, Mapping) and meta.get("format") == 1 and type(meta.get("format")) is int:
        meta = upgrade_format1(meta, source)
    return ModelCard.from_dict(meta, source, shapes, what="metadata", fix=FIX, error=MetadataError)


__all__ = ["FORMAT_VERSION", "MetadataError", "OnnxModelError", "upgrade_format1", "validate_metadata"]
