"""Typed reads of a model card's dict form, checked like a config: every failure is one line naming the field.

A card comes from a checkpoint or, as an ONNX export's metadata, from a downloaded file: untrusted input. A value out
of range or of the wrong type would otherwise allocate without bound (``neighbours: 1e9``), give NaN scores (T = 0) or
absurd coordinates (a negative ``target_spacing``) with exit status 0, or end in a traceback. Each ``read_*`` function
takes one section of the plain document and returns library types or plain values;
:meth:`spine_kp.inference.card.ModelCard.from_dict` assembles them. The rules (``the graph``: the static axes of an ONNX
export's inputs and outputs, when they are given):

* ``schema``: :meth:`~spine_kp.schema.Schema.from_dict`; the graph's ``points`` (B, K, 2) and ``heatmaps`` have its
  K landmarks, each ``grade_logits.<kind>`` (B, K_kind, G) its landmarks and grades.
* ``preprocessing.neighbours``: an int in 0..8, the graph's ``images`` have 2 * neighbours + 1 channels (and so has
  ``network.in_chans`` when given); ``percentiles``: [low, high], 0 <= low < high <= 100; ``target_spacing``: null or
  in (0, 20] mm.
* ``codec``: :meth:`~spine_kp.codec.heatmap.HeatmapCodec.from_dict`; ``input_size`` [H, W] ints in 16..4096 (the
  graph's ``images`` is (B, C, H, W)), an int ``stride`` in 1..64 (``heatmaps`` is (B, K, H / stride, W / stride)),
  ``sigma`` and ``blur_sigma`` finite in (0, 64] cells (kernels are 6 sigma wide).
* ``decoding`` and ``grade_stage.config``: :class:`~spine_kp.codec.level_order.LevelOrderConfig` and
  :class:`~spine_kp.grading.config.GradeStageConfig` through the config loader (types and the ranges of their fields),
  every number finite.
* ``trained``: a bool per landmark, and per kind a bool per grade.
* ``calibration.temperatures``, ``grade_stage.temperatures``: kind -> T in [0.001, 1000] (fits are bounded to
  [0.1, 10]); ``calibration.score_maps``: step -> kind -> Platt [a, b], each in [-1000, 1000].
* ``grade_stage`` (optional): ``kinds`` distinct schema kinds, ``landmarks`` the schema indices of their landmarks;
  the graph's ``crops`` is (B, L * P, S, S) with L landmarks, P = 2 * neighbours + 1 planes, S = size_px, and each
  ``stage_logits.<kind>`` is (B, K_kind, G).
* ``identity``: strings; ``network`` (the architecture config the torch predictor builds the network from): a mapping
  (:mod:`spine_kp.inference.card`).

No torch and no onnx here (a plain dict in).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from spine_kp.calibration.apply import SCORE_MAP_STEPS
from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.config import ConfigError, from_dict
from spine_kp.errors import UserError
from spine_kp.grading.config import GradeStageConfig
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.junction.config import JunctionConfig
from spine_kp.schema import Schema, SchemaError

MAX_NEIGHBOURS = 8
INPUT_SIZE = (16, 4096)
MAX_STRIDE, MAX_SIGMA = 64, 64.0
MAX_TARGET_SPACING = 20.0
TEMPERATURE = (1e-3, 1e3)
MAX_PLATT = 1e3
#: graph shapes: name -> axes, None for a dynamic one
Shapes = Mapping[str, Sequence[int | None]]
_MISSING = object()


class CardError(UserError, ValueError):
    """A model card that breaks a type, range or consistency rule; the message names the file and the field."""


def _float(value: Any) -> float | None:
    """A JSON number as a float (an int beyond any float: inf); None for anything else, booleans included."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf


def clip(text: str, limit: int = 60) -> str:
    """At most ``limit`` characters (a hostile value may be megabytes long; the error stays one short line)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show(value: Any) -> str:
    """``repr`` clipped to one short line."""
    return clip(repr(value))


class Checker:
    """Typed reads of the document; every failure is one ``error`` line naming ``source``, ``what`` and the path.

    Args:
        source: the file the card came from. what: what the card is in it (``metadata``, ``model_card``).
        fix: what to do about a bad card. error: the exception class raised.
    """

    def __init__(self, source: str, what: str, fix: str, error: type[UserError] = CardError) -> None:
        self.source, self.what, self.fix, self.error = source, what, fix, error

    def fail(self, path: str, rule: str, value: Any = _MISSING) -> UserError:
        said = rule if value is _MISSING else f"{rule}, got {show(value)}"
        return self.error(f"{self.source}: {self.what} {path}: {said}; {self.fix}")

    def mapping(self, value: Any, path: str, keys: Sequence[str] | None = None) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, "must be a mapping", value)
        unknown = [k for k in value if keys is not None and k not in keys]
        if unknown:
            raise self.fail(path, f"unknown key {show(unknown[0])} (valid: {', '.join(keys or ())})")
        return value

    def get(self, data: Mapping[str, Any], key: str, path: str) -> Any:
        if key not in data:
            raise self.fail(path + key, "missing (required)")
        return data[key]

    def integer(self, value: Any, path: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(path, f"must be an int in {lo}..{hi}", value)
        return int(value)

    def number(self, value: Any, path: str, lo: float, hi: float, open_low: bool = False) -> float:
        x = _float(value)
        if x is None or not math.isfinite(x) or not (lo < x if open_low else lo <= x) or not x <= hi:
            raise self.fail(path, f"must be a finite number in {'(' if open_low else '['}{lo:g}, {hi:g}]", value)
        return x

    def sequence(self, value: Any, path: str, length: int | None = None) -> list[Any]:
        if not isinstance(value, list) or (length is not None and len(value) != length):
            raise self.fail(path, "must be a list" + (f" of {length}" if length is not None else ""), value)
        return value

    def bools(self, value: Any, path: str, length: int) -> np.ndarray:
        items = self.sequence(value, path, length)
        if not all(isinstance(v, bool) for v in items):
            raise self.fail(path, "must hold only true or false", value)
        return np.asarray(items, dtype=bool)

    def kinds_map(self, value: Any, path: str, kinds: Sequence[str]) -> Mapping[str, Any]:
        data = self.mapping(value, path)
        unknown = [k for k in data if k not in kinds]
        if unknown:
            raise self.fail(f"{path}.{unknown[0]}", f"not a kind of the schema ({', '.join(kinds)})", data[unknown[0]])
        return data

    def temperatures(self, value: Any, path: str, kinds: Sequence[str]) -> dict[str, float]:
        data = self.kinds_map({} if value is None else value, path, kinds)
        return {k: self.number(t, f"{path}.{k}", *TEMPERATURE) for k, t in data.items()}

    def shape(self, shapes: Shapes | None, name: str, path: str, given: str, expected: Sequence[int | None]) -> None:
        """The graph's ``name`` must have ``len(expected)`` axes, each static one equal to the expected one (None:
        any); ``given`` says what the field at ``path`` makes of it, for the message."""
        if shapes is None:
            return
        if name not in shapes:
            raise self.error(f"{self.source}: the graph has no {name!r} input or output ({path}); {self.fix}")
        got = list(shapes[name])
        if len(got) != len(expected) or any(g is not None and e is not None and g != e for g, e in zip(got, expected)):
            shown = "(" + ", ".join("?" if g is None else str(g) for g in got) + ")"
            raise self.fail(path, f"{given}, but the graph's {name} is {shown}")

    def converted(self, cls: type, value: Any, path: str) -> Any:
        """``cls`` from a mapping through the config loader (its errors, re-raised naming the path), every number
        finite."""
        try:
            obj = from_dict(
                cls, dict(self.mapping(value, path)), source=f"{self.source}: {self.what}", prefix=path + "."
            )
        except ConfigError as exc:
            raise self.error(f"{clip(str(exc), 400)}; {self.fix}") from None
        except OverflowError:  # an int beyond any float where a float is expected
            raise self.fail(path, "holds a number beyond float range", value) from None
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise self.fail(f"{path}.{f.name}", "must be a finite number", v)
        return obj


def read_schema(c: Checker, value: Any, shapes: Shapes | None) -> Schema:
    data = c.mapping(value, "schema")
    where = f"{c.source}: {c.what} schema"
    try:
        schema = Schema.from_dict(dict(data), source=where)
    except SchemaError as exc:  # the dataclasses' own checks do not know the file
        raise c.fail("schema", clip(str(exc).removeprefix(where + ": "), 300)) from None
    k = schema.num_landmarks
    c.shape(shapes, "points", "schema.landmarks", f"{k} landmarks", [None, k, 2])
    for kind in schema.kinds:
        _logits_shape(c, schema, kind.name, shapes, "grade_logits.", f"schema.kinds.{kind.name}")
    return schema


def _logits_shape(c: Checker, schema: Schema, kind: str, shapes: Shapes | None, prefix: str, path: str) -> None:
    """``<prefix><kind>`` is (B, K_kind, G): the kind's landmarks and grades."""
    k, g = len(schema.landmarks_of_kind(kind)), len(schema.kind(kind).grades)
    c.shape(shapes, prefix + kind, path, f"{k} landmarks x {g} grades", [None, k, g])


def read_preprocessing(
    c: Checker, value: Any, shapes: Shapes | None
) -> tuple[int, tuple[float, float] | None, float | None]:
    """``(neighbours, percentiles or None, target_spacing or None)``."""
    data = c.mapping(value, "preprocessing", ("neighbours", "percentiles", "target_spacing"))
    n = c.integer(c.get(data, "neighbours", "preprocessing."), "preprocessing.neighbours", 0, MAX_NEIGHBOURS)
    given = f"{n} ({2 * n + 1} = 2 * {n} + 1 channels)"
    c.shape(shapes, "images", "preprocessing.neighbours", given, [None, 2 * n + 1, None, None])
    percentiles = None
    if data.get("percentiles") is not None:
        path = "preprocessing.percentiles"
        lo, hi = (c.number(v, path, 0.0, 100.0) for v in c.sequence(data["percentiles"], path, 2))
        if not lo < hi:
            raise c.fail(path, "must be [low, high] with low < high", data["percentiles"])
        percentiles = (lo, hi)
    spacing = data.get("target_spacing")
    if spacing is not None:
        spacing = c.number(spacing, "preprocessing.target_spacing", 0.0, MAX_TARGET_SPACING, open_low=True)
    return n, percentiles, spacing


def read_codec(c: Checker, value: Any, k: int, shapes: Shapes | None) -> HeatmapCodec:
    data = c.mapping(value, "codec", ("input_size", "stride", "sigma", "refine", "blur_sigma"))
    size_value = c.sequence(c.get(data, "input_size", "codec."), "codec.input_size", 2)
    h, w = (c.integer(v, "codec.input_size", *INPUT_SIZE) for v in size_value)
    c.shape(shapes, "images", "codec.input_size", f"[{h}, {w}]", [None, None, h, w])
    stride = c.integer(data.get("stride", 4), "codec.stride", 1, MAX_STRIDE)
    for key in ("sigma", "blur_sigma"):
        if data.get(key) is not None or key == "sigma":
            c.number(data.get(key, 2.0), f"codec.{key}", 0.0, MAX_SIGMA, open_low=True)
    if not isinstance(data.get("refine", "dark"), str):
        raise c.fail("codec.refine", "must be a string", data["refine"])
    try:
        codec = HeatmapCodec.from_dict(dict(data))
    except ValueError as exc:
        raise c.fail("codec", str(exc).removeprefix("HeatmapCodec: "), dict(data)) from None
    cells = [h // stride, w // stride]
    c.shape(shapes, "heatmaps", "codec.stride", f"{stride} ({k} maps of {cells[0]} x {cells[1]})", [None, k, *cells])
    return codec


def read_trained(c: Checker, value: Any, schema: Schema) -> TrainedLabels:
    data = c.mapping(value, "trained", ("landmarks", "grades"))
    landmarks = c.bools(c.get(data, "landmarks", "trained."), "trained.landmarks", schema.num_landmarks)
    grades = c.kinds_map(c.get(data, "grades", "trained."), "trained.grades", [k.name for k in schema.kinds])
    masks = {}
    for kind in schema.kinds:
        masks[kind.name] = c.bools(
            c.get(grades, kind.name, "trained.grades."), f"trained.grades.{kind.name}", len(kind.grades)
        )
    return TrainedLabels(landmarks, masks)


def read_calibration(
    c: Checker, value: Any, kinds: Sequence[str]
) -> tuple[dict[str, float], dict[str, dict[str, tuple[float, float]]]]:
    """``(temperatures, score maps)`` of ``calibration``."""
    data = c.mapping({} if value is None else value, "calibration", ("temperatures", "score_maps"))
    temperatures = c.temperatures(data.get("temperatures"), "calibration.temperatures", kinds)
    maps = c.mapping({} if data.get("score_maps") is None else data["score_maps"], "calibration.score_maps")
    c.mapping(maps, "calibration.score_maps", SCORE_MAP_STEPS)
    out: dict[str, dict[str, tuple[float, float]]] = {step: {} for step in SCORE_MAP_STEPS}
    for step, fits in maps.items():
        for kind, fit in c.kinds_map({} if fits is None else fits, f"calibration.score_maps.{step}", kinds).items():
            path = f"calibration.score_maps.{step}.{kind}"
            pair = [fit.get("a"), fit.get("b")] if isinstance(fit, Mapping) else c.sequence(fit, path, 2)
            a, b = (c.number(v, path, -MAX_PLATT, MAX_PLATT) for v in pair)
            out[step][kind] = (a, b)
    return temperatures, out


def read_stage(
    c: Checker, value: Any, schema: Schema, shapes: Shapes | None
) -> tuple[GradeStageConfig, tuple[str, ...], tuple[int, ...], dict[str, float]]:
    """``(config, graded kinds, their landmarks, temperatures)`` of ``grade_stage``."""
    data = c.mapping(value, "grade_stage", ("config", "landmarks", "kinds", "temperatures"))
    config = c.converted(GradeStageConfig, c.get(data, "config", "grade_stage."), "grade_stage.config")
    n, size = config.neighbours, config.size_px  # within the ranges of the config's fields
    schema_kinds = [k.name for k in schema.kinds]
    kinds = c.sequence(c.get(data, "kinds", "grade_stage."), "grade_stage.kinds")
    if not kinds or len(set(map(str, kinds))) != len(kinds) or not all(k in schema_kinds for k in kinds):
        raise c.fail("grade_stage.kinds", f"must be distinct kinds of the schema ({', '.join(schema_kinds)})", kinds)
    expected = [i for i, kind in enumerate(schema.landmark_kinds) if kind in kinds]
    landmarks = c.sequence(c.get(data, "landmarks", "grade_stage."), "grade_stage.landmarks")
    if landmarks != expected or not all(type(i) is int for i in landmarks):
        raise c.fail("grade_stage.landmarks", f"must be the schema indices of the graded kinds {expected}", landmarks)
    if config.kinds and set(config.kinds) != set(kinds):
        raise c.fail("grade_stage.config.kinds", f"must name the graded kinds {kinds} (or none: all)", config.kinds)
    given = f"neighbours {n}, size_px {size} ({len(landmarks)} landmarks x {2 * n + 1} planes of {size} x {size})"
    c.shape(shapes, "crops", "grade_stage.config", given, [None, len(landmarks) * (2 * n + 1), size, size])
    for kind in kinds:
        _logits_shape(c, schema, kind, shapes, "stage_logits.", f"grade_stage.kinds.{kind}")
    temperatures = c.temperatures(data.get("temperatures"), "grade_stage.temperatures", kinds)
    return config, tuple(kinds), tuple(landmarks), temperatures


def read_junction(c: Checker, value: Any, schema: Schema, shapes: Shapes | None) -> JunctionConfig:
    """The ``config`` of ``junction``; the schema must have a chain the check can read (its last kind, three or more
    landmarks evenly spaced in schema order), and an export's ``junction_crops`` input must fit the crop size."""
    from spine_kp.inference.junction_check import JunctionLayout  # numpy only; the layout rule lives there

    data = c.mapping(value, "junction", ("config",))
    config = c.converted(JunctionConfig, c.get(data, "config", "junction."), "junction.config")
    if JunctionLayout.of(schema) is None:
        raise c.fail("junction", f"needs three or more evenly spaced {schema.landmark_kinds[-1]} landmarks", value)
    size = config.size_px
    c.shape(shapes, "junction_crops", "junction.config", f"size_px {size}", [None, 1, size, size])
    return config


__all__ = ["CardError", "Checker", "Shapes"]
