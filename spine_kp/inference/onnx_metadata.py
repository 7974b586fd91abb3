"""The spine_kp document of an ONNX export's metadata, checked like a config before anything is built from it.

An ONNX file is downloaded and shared, so its metadata is untrusted input: a value out of range or of the wrong type
would otherwise allocate without bound (``neighbours: 1e9``), give NaN scores (a temperature of 0) or absurd
coordinates (a negative ``target_spacing``) with exit status 0, or end in a traceback. :func:`validate_metadata`
takes the plain JSON document (and the graph's input and output shapes) and returns the typed
:class:`ModelSettings`, or raises one :class:`MetadataError` line naming the file and the field path, e.g.
``model.onnx: metadata neighbours: must be an int in 0..8, got 1000000000.0; export the model again``.

The rules ("the graph": its static axes, when the shapes are given):

* ``format`` is :data:`FORMAT_VERSION`; no key outside :data:`KEYS`; the first seven are required.
* ``schema``: :meth:`~spine_kp.schema.Schema.from_dict`; the graph's ``points`` (B, K, 2) and ``heatmaps`` have its
  K landmarks, each ``grade_logits.<kind>`` (B, K_kind, G) its landmarks and grades.
* ``input_size``: [H, W], ints in 16..4096, the codec's and the graph's ``images`` (B, C, H, W).
* ``neighbours``: an int in 0..8; ``images`` and ``in_chans`` have C = 2 * neighbours + 1 channels.
* ``codec``: :meth:`~spine_kp.codec.heatmap.HeatmapCodec.from_dict`, with an int ``stride`` in 1..64 (``heatmaps``
  is (B, K, H / stride, W / stride)) and ``sigma``, ``blur_sigma`` finite in (0, 64] cells (kernels are 6 sigma wide).
* ``percentiles``: null or [low, high], 0 <= low < high <= 100; ``target_spacing``: null or in (0, 20] mm.
* ``decode`` and ``grade_stage.config``: :class:`~spine_kp.codec.level_order.LevelOrderConfig` and
  :class:`~spine_kp.grading.config.GradeStageConfig` through the config loader (types, and the ranges of their
  fields), every number finite.
* ``trained``: a bool per landmark, and per kind a bool per grade.
* ``temperatures``, ``grade_stage.temperatures``: kind -> T in [0.001, 1000] (fits are bounded to [0.1, 10]);
  ``score_calibration``: step -> kind -> Platt [a, b], each in [-1000, 1000] (fits are a few units).
* ``grade_stage`` (optional): ``kinds`` distinct schema kinds, ``landmarks`` the schema indices of their landmarks;
  the graph's ``crops`` is (B, L * P, S, S) with L landmarks, P = 2 * neighbours + 1 planes, S = size_px, and each
  ``stage_logits.<kind>`` is (B, K_kind, G).
* ``model`` and ``graph`` (descriptive; the DICOM SR names the model from ``model``): mappings of strings
  (``model.config``: a mapping).

No torch and no onnx here (a plain dict in, so the checks can move to a model card); reading the file is
:mod:`spine_kp.inference.onnx_predictor`'s.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.codec.level_order import LevelOrderConfig
from spine_kp.config import ConfigError, from_dict
from spine_kp.errors import UserError
from spine_kp.grading.config import GradeStageConfig
from spine_kp.inference.decoding import TrainedLabels
from spine_kp.inference.records import SCORE_MAP_STEPS
from spine_kp.schema import Schema, SchemaError

#: version of the document's layout
FORMAT_VERSION = 1
#: the document's keys (the first seven are required)
KEYS = ("format", "schema", "codec", "input_size", "neighbours", "decode", "trained")
KEYS += ("in_chans", "percentiles", "target_spacing", "temperatures", "score_calibration", "grade_stage")
KEYS += ("model", "graph")
MAX_NEIGHBOURS = 8
INPUT_SIZE = (16, 4096)
MAX_STRIDE, MAX_SIGMA = 64, 64.0
MAX_TARGET_SPACING = 20.0
TEMPERATURE = (1e-3, 1e3)
MAX_PLATT = 1e3
#: graph shapes: name -> axes, None for a dynamic one
Shapes = Mapping[str, Sequence[int | None]]
_MISSING = object()


class OnnxModelError(UserError, ValueError):
    """An ONNX file that is missing, unreadable or not a spine_kp export; the message names the file."""


class MetadataError(OnnxModelError):
    """An ONNX export whose spine_kp metadata breaks a type, range or consistency rule; names file and field."""


@dataclass(frozen=True)
class StageSettings:
    """The ``grade_stage`` entry: config (crop geometry, combine), graded kinds and landmarks, temperatures."""

    config: GradeStageConfig
    kinds: tuple[str, ...]
    landmarks: tuple[int, ...]
    temperatures: dict[str, float]


@dataclass(frozen=True)
class ModelSettings:
    """What a runtime needs around an exported graph, checked (see the module docstring)."""

    schema: Schema
    codec: HeatmapCodec
    trained: TrainedLabels
    input_size: tuple[int, int]
    neighbours: int
    decode: LevelOrderConfig
    percentiles: tuple[float, float] | None
    target_spacing: float | None
    temperatures: dict[str, float]
    score_calibration: dict[str, dict[str, tuple[float, float]]]
    grade_stage: StageSettings | None

    def predictor_kwargs(self) -> dict[str, Any]:
        """The :class:`~spine_kp.inference.pipeline.SlicePredictor` arguments (all but the crop stage itself)."""
        names = [f.name for f in dataclasses.fields(self) if f.name != "grade_stage"]
        return {name: getattr(self, name) for name in names}


def _float(value: Any) -> float | None:
    """A JSON number as a float (an int beyond any float: inf); None for anything else, booleans included."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _clip(text: str, limit: int = 60) -> str:
    """At most ``limit`` characters (a hostile value may be megabytes long; the error stays one short line)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: Any) -> str:
    return _clip(repr(value))


class _Checker:
    """Typed reads of the document; every failure is one :class:`MetadataError` naming ``source`` and the path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, rule: str, value: Any = _MISSING) -> MetadataError:
        said = rule if value is _MISSING else f"{rule}, got {_show(value)}"
        return MetadataError(f"{self.source}: metadata {path}: {said}; export the model again")

    def mapping(self, value: Any, path: str, keys: Sequence[str] | None = None) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, "must be a mapping", value)
        unknown = [k for k in value if keys is not None and k not in keys]
        if unknown:
            raise self.fail(path, f"unknown key {_show(unknown[0])} (valid: {', '.join(keys or ())})")
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
            raise MetadataError(f"{self.source}: the graph has no {name!r} input or output ({path}); export again")
        got = list(shapes[name])
        if len(got) != len(expected) or any(g is not None and e is not None and g != e for g, e in zip(got, expected)):
            shown = "(" + ", ".join("?" if g is None else str(g) for g in got) + ")"
            raise self.fail(path, f"{given}, but the graph's {name} is {shown}")

    def converted(self, cls: type, value: Any, path: str) -> Any:
        """``cls`` from a mapping through the config loader (its errors, re-raised naming the path), every number
        finite."""
        try:
            obj = from_dict(cls, dict(self.mapping(value, path)), source=f"{self.source}: metadata", prefix=path + ".")
        except ConfigError as exc:
            raise MetadataError(f"{_clip(str(exc), 400)}; export the model again") from None
        except OverflowError:  # an int beyond any float where a float is expected
            raise self.fail(path, "holds a number beyond float range", value) from None
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise self.fail(f"{path}.{f.name}", "must be a finite number", v)
        return obj


def _schema(c: _Checker, meta: Mapping[str, Any], shapes: Shapes | None) -> Schema:
    data = c.mapping(c.get(meta, "schema", ""), "schema")
    where = f"{c.source}: metadata schema"
    try:
        schema = Schema.from_dict(dict(data), source=where)
    except SchemaError as exc:  # the dataclasses' own checks do not know the file
        raise c.fail("schema", _clip(str(exc).removeprefix(where + ": "), 300)) from None
    k = schema.num_landmarks
    c.shape(shapes, "points", "schema.landmarks", f"{k} landmarks", [None, k, 2])
    for kind in schema.kinds:
        _logits_shape(c, schema, kind.name, shapes, "grade_logits.", f"schema.kinds.{kind.name}")
    return schema


def _logits_shape(c: _Checker, schema: Schema, kind: str, shapes: Shapes | None, prefix: str, path: str) -> None:
    """``<prefix><kind>`` is (B, K_kind, G): the kind's landmarks and grades."""
    k, g = len(schema.landmarks_of_kind(kind)), len(schema.kind(kind).grades)
    c.shape(shapes, prefix + kind, path, f"{k} landmarks x {g} grades", [None, k, g])


def _geometry(c: _Checker, meta: Mapping[str, Any], shapes: Shapes | None) -> tuple[tuple[int, int], int]:
    """``input_size`` and ``neighbours`` (with ``in_chans``)."""
    size_value = c.sequence(c.get(meta, "input_size", ""), "input_size", 2)
    h, w = (c.integer(v, "input_size", *INPUT_SIZE) for v in size_value)
    n = c.integer(c.get(meta, "neighbours", ""), "neighbours", 0, MAX_NEIGHBOURS)
    c.shape(shapes, "images", "input_size", f"[{h}, {w}]", [None, None, h, w])
    c.shape(shapes, "images", "neighbours", f"{n} ({2 * n + 1} = 2 * {n} + 1 channels)", [None, 2 * n + 1, None, None])
    in_chans = meta.get("in_chans")
    if in_chans is not None and (type(in_chans) is not int or in_chans != 2 * n + 1):
        raise c.fail("in_chans", f"must be 2 * neighbours + 1 = {2 * n + 1}", in_chans)
    return (h, w), n


def _codec(c: _Checker, meta: Mapping[str, Any], size: tuple[int, int], k: int, shapes: Shapes | None) -> HeatmapCodec:
    data = c.mapping(c.get(meta, "codec", ""), "codec", ("input_size", "stride", "sigma", "refine", "blur_sigma"))
    stride = c.integer(data.get("stride", 4), "codec.stride", 1, MAX_STRIDE)
    for key in ("sigma", "blur_sigma"):
        if data.get(key) is not None or key == "sigma":
            c.number(data.get(key, 2.0), f"codec.{key}", 0.0, MAX_SIGMA, open_low=True)
    if c.sequence(c.get(data, "input_size", "codec."), "codec.input_size", 2) != list(size):
        raise c.fail("codec.input_size", f"must equal input_size {list(size)}", data["input_size"])
    if not isinstance(data.get("refine", "dark"), str):
        raise c.fail("codec.refine", "must be a string", data["refine"])
    try:
        codec = HeatmapCodec.from_dict(dict(data))
    except ValueError as exc:
        raise c.fail("codec", str(exc).removeprefix("HeatmapCodec: "), dict(data)) from None
    cells = [size[0] // stride, size[1] // stride]
    c.shape(shapes, "heatmaps", "codec.stride", f"{stride} ({k} maps of {cells[0]} x {cells[1]})", [None, k, *cells])
    return codec


def _trained(c: _Checker, meta: Mapping[str, Any], schema: Schema) -> TrainedLabels:
    data = c.mapping(c.get(meta, "trained", ""), "trained", ("landmarks", "grades"))
    landmarks = c.bools(c.get(data, "landmarks", "trained."), "trained.landmarks", schema.num_landmarks)
    grades = c.kinds_map(c.get(data, "grades", "trained."), "trained.grades", [k.name for k in schema.kinds])
    masks = {}
    for kind in schema.kinds:
        masks[kind.name] = c.bools(
            c.get(grades, kind.name, "trained.grades."), f"trained.grades.{kind.name}", len(kind.grades)
        )
    return TrainedLabels(landmarks, masks)


def _optional(c: _Checker, meta: Mapping[str, Any]) -> tuple[tuple[float, float] | None, float | None]:
    """``percentiles`` and ``target_spacing``."""
    percentiles = None
    if meta.get("percentiles") is not None:
        lo, hi = (c.number(v, "percentiles", 0.0, 100.0) for v in c.sequence(meta["percentiles"], "percentiles", 2))
        if not lo < hi:
            raise c.fail("percentiles", "must be [low, high] with low < high", meta["percentiles"])
        percentiles = (lo, hi)
    spacing = meta.get("target_spacing")
    if spacing is not None:
        spacing = c.number(spacing, "target_spacing", 0.0, MAX_TARGET_SPACING, open_low=True)
    return percentiles, spacing


def _score_calibration(c: _Checker, value: Any, kinds: Sequence[str]) -> dict[str, dict[str, tuple[float, float]]]:
    data = c.mapping({} if value is None else value, "score_calibration", SCORE_MAP_STEPS)
    out: dict[str, dict[str, tuple[float, float]]] = {step: {} for step in SCORE_MAP_STEPS}
    for step, fits in data.items():
        for kind, fit in c.kinds_map({} if fits is None else fits, f"score_calibration.{step}", kinds).items():
            path = f"score_calibration.{step}.{kind}"
            pair = [fit.get("a"), fit.get("b")] if isinstance(fit, Mapping) else c.sequence(fit, path, 2)
            a, b = (c.number(v, path, -MAX_PLATT, MAX_PLATT) for v in pair)
            out[step][kind] = (a, b)
    return out


def _stage(c: _Checker, value: Any, schema: Schema, shapes: Shapes | None) -> StageSettings:
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
    return StageSettings(config, tuple(kinds), tuple(landmarks), temperatures)


def _descriptive(c: _Checker, meta: Mapping[str, Any]) -> None:
    """``model`` (name, config, source checkpoint, version: read by the DICOM SR writer) and ``graph``."""
    model = c.mapping(
        meta.get("model", {}), "model", ("name", "config", "checkpoint", "checkpoint_sha256", "spine_kp_version")
    )
    for key, v in model.items():
        if not (isinstance(v, Mapping) if key == "config" else isinstance(v, str)):
            raise c.fail(f"model.{key}", "must be a mapping" if key == "config" else "must be a string", v)
    for key, names in c.mapping(meta.get("graph", {}), "graph", ("inputs", "outputs")).items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise c.fail(f"graph.{key}", "must be a list of names", names)


def validate_metadata(meta: Any, source: str, shapes: Shapes | None = None) -> ModelSettings:
    """Check the spine_kp document of an ONNX export and build the settings a predictor needs from it.

    Args:
        meta: the parsed JSON document (untrusted: any JSON value).
        source: the file it came from, named in every error.
        shapes: the graph's input and output shapes, name -> axes (None: dynamic), checked against the document;
            None skips those checks.

    Raises:
        MetadataError: a rule of the module docstring is broken; one line naming ``source`` and the field path.
    """
    c = _Checker(source)
    meta = c.mapping(meta, "document", KEYS)
    if type(meta.get("format")) is not int or meta["format"] != FORMAT_VERSION:
        raise MetadataError(
            f"{source}: spine_kp ONNX format {_show(meta.get('format'))}, this version reads {FORMAT_VERSION}; "
            "export again"
        )
    schema = _schema(c, meta, shapes)
    kinds = [k.name for k in schema.kinds]
    size, neighbours = _geometry(c, meta, shapes)
    codec = _codec(c, meta, size, schema.num_landmarks, shapes)
    percentiles, target_spacing = _optional(c, meta)
    _descriptive(c, meta)
    stage = meta.get("grade_stage")
    return ModelSettings(
        schema=schema,
        codec=codec,
        trained=_trained(c, meta, schema),
        input_size=size,
        neighbours=neighbours,
        decode=c.converted(LevelOrderConfig, c.get(meta, "decode", ""), "decode"),
        percentiles=percentiles,
        target_spacing=target_spacing,
        temperatures=c.temperatures(meta.get("temperatures"), "temperatures", kinds),
        score_calibration=_score_calibration(c, meta.get("score_calibration"), kinds),
        grade_stage=_stage(c, stage, schema, shapes) if stage is not None else None,
    )


__all__ = ["FORMAT_VERSION", "MetadataError", "ModelSettings", "OnnxModelError", "StageSettings", "validate_metadata"]
