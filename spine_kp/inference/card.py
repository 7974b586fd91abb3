"""The model card: everything a runtime needs around a trained network, as one typed document.

One document per trained model (as a MONAI bundle's ``metadata.json`` or nnU-Net's plans): the torch
:class:`~spine_kp.inference.torch_predictor.Predictor` and the ONNX Runtime
:class:`~spine_kp.inference.onnx_predictor.OnnxPredictor` are both built from a :class:`ModelCard`, and nothing else
reads settings from a checkpoint or an export. Its dict form (:meth:`ModelCard.to_dict`, plain JSON data) is stored
the same way in a checkpoint (under :data:`MODEL_CARD_KEY`) and in an ONNX export (the one ``metadata_props`` entry)
and read back by :meth:`ModelCard.from_dict`, which checks it like a config (:mod:`spine_kp.inference.card_checks`)::

    format: 2
    identity:      {name, checkpoint, sha256, spine_kp_version}       # DICOM SR model identification
    network:       {backbone, decoder, ...}                            # architecture config (the torch predictor's)
    schema:        Schema.to_dict()
    codec:         {input_size, stride, sigma, refine, blur_sigma}     # the one home of the network input size
    preprocessing: {neighbours, percentiles, target_spacing}
    decoding:      LevelOrderConfig fields, the fitted ones (decode_fit) applied
    trained:       {landmarks: [bool], grades: {kind: [bool]}}
    calibration:   {temperatures: {kind: T}, score_maps: {localization: {kind: [a, b]}, scores: {...}}}
    grade_stage:   null or {config: GradeStageConfig, kinds, landmarks, temperatures}
    junction:      null or {config: JunctionConfig}                    # the check of the level count (optional)

A checkpoint written before the card existed (no ``model_card`` entry) gets one built from its config and fitted
entries by :func:`spine_kp.inference.checkpoint_card.card_from_checkpoint`, the one place that reads them. A new
setting a runtime needs is one field in a section here (or in :class:`~spine_kp.codec.level_order.LevelOrderConfig`,
the ``decoding`` section) plus its use.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spine_kp.calibration.apply import SCORE_MAP_STEPS, score_maps
from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.codec.level_order import LevelOrderConfig
from spine_kp.config import to_dict
from spine_kp.data.normalization import DEFAULT_PERCENTILES
from spine_kp.grading.config import GradeStageConfig
from spine_kp.inference import card_checks as checks
from spine_kp.inference.card_checks import CardError, Checker, Shapes
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.junction.config import JunctionConfig
from spine_kp.schema import Schema

if TYPE_CHECKING:
    pass

#: version of the dict form's layout (1: the flat ONNX metadata of earlier exports, :mod:`~.onnx_metadata`)
FORMAT_VERSION = 2
#: where a checkpoint keeps its card (also :data:`spine_kp.checkpoint.MODEL_CARD_KEY`)
MODEL_CARD_KEY = "model_card"
SECTIONS = ("format", "identity", "network", "schema", "codec", "preprocessing", "decoding", "trained")
SECTIONS += ("calibration", "grade_stage", "junction")
CHECKPOINT_FIX = "the checkpoint is damaged; train it again"


@dataclass(frozen=True)
class Identity:
    """Which model this is: the DICOM SR's algorithm name and version (:mod:`spine_kp.predict.sr`).

    Attributes:
        name: ``spine_kp <backbone>+<decoder>``.
        checkpoint, sha256: the checkpoint file the model comes from and its digest (an export keeps its source's).
        spine_kp_version: the spine_kp version that wrote the card.
    """

    name: str = "spine_kp"
    checkpoint: str = ""
    sha256: str = ""
    spine_kp_version: str = "unknown"

    @property
    def version(self) -> str:
        """``<spine_kp version> sha256:<12 hex digits>``: two checkpoints of one architecture never share it."""
        return f"{self.spine_kp_version} sha256:{self.sha256[:12]}"


@dataclass(frozen=True)
class Preprocessing:
    """Slice -> network input: ``neighbours`` slices per side as channels (``in_chans`` = 2 * neighbours + 1),
    intensity clip ``percentiles``, ``target_spacing`` mm per input pixel (None: each image fitted to the input)."""

    neighbours: int = 0
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    target_spacing: float | None = None

    @property
    def in_chans(self) -> int:
        return 2 * self.neighbours + 1


@dataclass(frozen=True)
class Calibration:
    """Grade ``temperatures`` (kind -> T; a kind not named: T = 1) and the Platt ``score_maps`` of the scores
    (``{step: {kind: (a, b)}}``, steps :data:`~spine_kp.calibration.apply.SCORE_MAP_STEPS`; empty: ``peak x p``)."""

    temperatures: dict[str, float] = field(default_factory=dict)
    score_maps: dict[str, dict[str, tuple[float, float]]] = field(
        default_factory=lambda: {s: {} for s in SCORE_MAP_STEPS}
    )


@dataclass(frozen=True)
class StageCard:
    """The crop grading stage's settings (its weights stay in the checkpoint or the graph): config (crop geometry,
    align, combine), graded kinds and their landmarks (schema indices), temperatures."""

    config: GradeStageConfig
    kinds: tuple[str, ...]
    landmarks: tuple[int, ...]
    temperatures: dict[str, float]


@dataclass(frozen=True)
class JunctionCard:
    """The junction check's settings (its weights stay in the checkpoint or the graph): crop geometry, margin."""

    config: JunctionConfig


@dataclass(frozen=True, eq=False)  # eq: the trained masks are arrays; compare to_dict() instead
class ModelCard:
    """Everything a runtime needs around a trained network (see the module docstring)."""

    schema: Schema
    codec: HeatmapCodec
    trained: TrainedLabels
    preprocessing: Preprocessing = Preprocessing()
    decoding: LevelOrderConfig = LevelOrderConfig()
    calibration: Calibration = field(default_factory=Calibration)
    grade_stage: StageCard | None = None
    junction: JunctionCard | None = None
    network: dict[str, Any] = field(default_factory=dict)
    identity: Identity = Identity()

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) network input, the codec's (its one home)."""
        return self.codec.input_size

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (lists, dicts, str, numbers, bools, None), as stored in a checkpoint and an export."""
        cal, stage = self.calibration, self.grade_stage
        return {
            "format": FORMAT_VERSION,
            "identity": dataclasses.asdict(self.identity),
            "network": to_dict(dict(self.network)),
            "schema": self.schema.to_dict(),
            "codec": self.codec.to_dict(),
            "preprocessing": to_dict(self.preprocessing),
            "decoding": to_dict(self.decoding),
            "trained": {
                "landmarks": [bool(v) for v in self.trained.landmarks],
                "grades": {k: [bool(v) for v in m] for k, m in self.trained.grades.items()},
            },
            "calibration": {
                "temperatures": {k: float(t) for k, t in cal.temperatures.items()},
                "score_maps": {
                    s: {k: [float(a), float(b)] for k, (a, b) in m.items()} for s, m in cal.score_maps.items()
                },
            },
            "grade_stage": None
            if stage is None
            else {
                "config": to_dict(stage.config),
                "kinds": list(stage.kinds),
                "landmarks": list(stage.landmarks),
                "temperatures": {k: float(t) for k, t in stage.temperatures.items()},
            },
            "junction": None if self.junction is None else {"config": to_dict(self.junction.config)},
        }

    @classmethod
    def from_dict(
        cls,
        data: Any,
        source: str = "model card",
        shapes: Shapes | None = None,
        *,
        what: str = "model_card",
        fix: str = CHECKPOINT_FIX,
        error: type[CardError] | None = None,
    ) -> ModelCard:
        """Check the dict form (untrusted: any JSON value) and build the card.

        Args:
            source: the file it came from, named in every error; what: what the card is in it; fix: the advice.
            shapes: an ONNX graph's input and output shapes, name -> axes (None: dynamic), checked against the card.
            error: the exception class (a :class:`CardError` subclass; default CardError).

        Raises:
            CardError: a rule of :mod:`spine_kp.inference.card_checks` is broken; one line naming source and field.
        """
        c = Checker(source, what, fix, error or CardError)
        data = c.mapping(data, "document", SECTIONS)
        if type(data.get("format")) is not int or data["format"] != FORMAT_VERSION:
            shown = checks.show(data.get("format"))
            raise c.error(f"{source}: spine_kp model card format {shown}, this version reads {FORMAT_VERSION}; {fix}")
        schema = checks.read_schema(c, c.get(data, "schema", ""), shapes)
        kinds = [k.name for k in schema.kinds]
        neighbours, percentiles, spacing = checks.read_preprocessing(c, c.get(data, "preprocessing", ""), shapes)
        temperatures, score_maps = checks.read_calibration(c, data.get("calibration"), kinds)
        stage = data.get("grade_stage")
        junction = data.get("junction")
        return cls(
            schema=schema,
            codec=checks.read_codec(c, c.get(data, "codec", ""), schema.num_landmarks, shapes),
            trained=checks.read_trained(c, c.get(data, "trained", ""), schema),
            preprocessing=Preprocessing(neighbours, percentiles or DEFAULT_PERCENTILES, spacing),
            decoding=c.converted(LevelOrderConfig, c.get(data, "decoding", ""), "decoding"),
            calibration=Calibration(temperatures, score_maps),
            grade_stage=StageCard(*checks.read_stage(c, stage, schema, shapes)) if stage is not None else None,
            junction=JunctionCard(checks.read_junction(c, junction, schema, shapes)) if junction is not None else None,
            network=_network(c, data.get("network"), neighbours),
            identity=Identity(**_identity(c, data.get("identity"))),
        )

    def overridden(self, **overrides: Any) -> ModelCard:
        """This card with the settings a caller replaces: ``decode`` (a LevelOrderConfig), ``temperatures`` and
        ``score_calibration`` (:func:`~spine_kp.inference.records.score_maps` input; ``{}``: raw scores).

        Raises:
            TypeError: another keyword.
        """
        unknown = set(overrides) - {"decode", "temperatures", "score_calibration"}
        if unknown:
            raise TypeError(f"unknown model card overrides: {sorted(unknown)}")
        cal = self.calibration
        if "temperatures" in overrides:
            cal = dataclasses.replace(cal, temperatures=dict(overrides["temperatures"] or {}))
        if "score_calibration" in overrides:
            cal = dataclasses.replace(cal, score_maps=score_maps(overrides["score_calibration"]))
        return dataclasses.replace(self, decoding=overrides.get("decode", self.decoding), calibration=cal)


def _identity(c: Checker, value: Any) -> dict[str, str]:
    data = c.mapping({} if value is None else value, "identity", tuple(f.name for f in dataclasses.fields(Identity)))
    for key, v in data.items():
        if not isinstance(v, str):
            raise c.fail(f"identity.{key}", "must be a string", v)
    return dict(data)


def _network(c: Checker, value: Any, neighbours: int) -> dict[str, Any]:
    """The architecture config (checked by the torch predictor's config loader when it builds the network); its
    ``in_chans``, when given, is the preprocessing's 2 * neighbours + 1."""
    data = dict(c.mapping({} if value is None else value, "network"))
    in_chans = data.get("in_chans")
    if in_chans is not None and (type(in_chans) is not int or in_chans != 2 * neighbours + 1):
        raise c.fail("network.in_chans", f"must be 2 * neighbours + 1 = {2 * neighbours + 1}", in_chans)
    return data


__all__ = [
    "FORMAT_VERSION",
    "MODEL_CARD_KEY",
    "Calibration",
    "CardError",
    "Identity",
    "JunctionCard",
    "ModelCard",
    "Preprocessing",
    "StageCard",
]
