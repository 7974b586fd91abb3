"""Prediction through ONNX Runtime: an exported ``.onnx`` file alone, no torch.

The file (written by :mod:`spine_kp.export.onnx`) holds one graph and, in its ``metadata_props`` under
:data:`METADATA_KEY`, the model card as JSON (:mod:`spine_kp.inference.card`: everything the predictor needs around
the graph, the same document a checkpoint holds). The graph::

    images (B, C, H, W) float32 ─► backbone ─► decoder ─► features (B, F, H/s, W/s) ─► heatmap head ─► heatmaps
                                                              │                                        (B, K, H/s, W/s)
    points (B, K, 2) float32, input pixels ──────────────────►grade head ─► grade_logits.<kind> (B, K_kind, G)

    crops (B, L, S, S) float32 ─► crop grader ─► stage_logits.<kind> (B, K_kind, G)    (with a crop grading stage)

    junction_crops (B, 1, S, S) float32 ─► junction CNN ─► junction_logits (B, 5)      (with a junction check)

Decoding happens between the two halves (the grading points are the decoded landmarks), so the predictor cuts the
graph at ``features`` into two sessions: ``images -> heatmaps, features`` and ``features, points -> grade logits``.
With a crop grading stage (metadata ``"grade_stage"``), another session runs ``crops -> stage logits`` on crops of the
slices' native pixels at the decoded points (:class:`OnnxCropStage`: the crops, temperatures and combination are
:class:`spine_kp.inference.crop_stage_base.StageBase`'s, shared with the PyTorch stage). With a junction check
(metadata ``"junction"``), one more runs ``junction_crops -> junction_logits`` on crops around the decoded chain's
last discs (:class:`OnnxJunctionCheck`: candidates, crops and the decision are
:class:`spine_kp.inference.junction_check.JunctionCheckBase`'s, shared with the PyTorch check).
The card is untrusted input: it is checked against its rules and the graph's shapes
(:func:`spine_kp.inference.onnx_metadata.validate_metadata`) before any session is built or any study read.
Everything else is the backend-independent :class:`spine_kp.inference.slice_predictor.SlicePredictor`, exactly as for a
checkpoint. The batch axis is dynamic; H and W are fixed to the trained input size.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spine_kp.errors import UserError
from spine_kp.grading.config import GradeStageConfig
from spine_kp.inference.card import ModelCard
from spine_kp.inference.crop_stage_base import StageBase
from spine_kp.inference.junction_check import JunctionCheckBase
from spine_kp.inference.onnx_metadata import FORMAT_VERSION, OnnxModelError, validate_metadata
from spine_kp.inference.slice_predictor import SlicePredictor
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.junction.config import JunctionConfig
from spine_kp.schema import Schema

#: metadata_props key of the model card's JSON (its layout: :mod:`spine_kp.inference.card`)
METADATA_KEY = "spine_kp"
#: graph input and output names
IMAGES, POINTS, HEATMAPS, FEATURES, CROPS = "images", "points", "heatmaps", "features", "crops"
#: the junction check's graph input and output
JUNCTION_CROPS, JUNCTION_LOGITS = "junction_crops", "junction_logits"
GRADE_PREFIX = "grade_logits."
STAGE_PREFIX = "stage_logits."
INSTALL_HINT = 'install the ONNX extra: pip install -e ".[onnx]" (onnx and onnxruntime)'


def grade_output(kind: str) -> str:
    """Graph output name of one kind's grade logits."""
    return GRADE_PREFIX + kind


def stage_output(kind: str) -> str:
    """Graph output name of one kind's crop grader logits (crop grading stage)."""
    return STAGE_PREFIX + kind


def _load_model(path: Path) -> Any:
    try:
        import onnx
    except ImportError:
        raise UserError(f"{path}: reading an ONNX model needs the onnx package; {INSTALL_HINT}") from None
    if not path.is_file():
        raise OnnxModelError(f"ONNX model {path} does not exist")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf decode errors have no common base class
        raise OnnxModelError(f"{path}: not an ONNX model ({type(exc).__name__}: {exc})") from None


def read_metadata(model: Any, path: str | Path) -> dict[str, Any]:
    """The spine_kp JSON document (the model card's dict form, unchecked) of a loaded ONNX model
    (``onnx.ModelProto``); errors name ``path``."""
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise OnnxModelError(f"{path}: not a spine_kp ONNX export (no {METADATA_KEY!r} metadata; use spine-kp export)")
    try:
        meta = json.loads(props[METADATA_KEY])
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError; nesting beyond the stack
        raise OnnxModelError(f"{path}: damaged spine_kp metadata ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict):
        raise OnnxModelError(f"{path}: damaged spine_kp metadata (a JSON {type(meta).__name__}, not an object)")
    return meta


def load_card(path: str | Path) -> ModelCard:
    """The model card of an export, checked against its graph (no session is built).

    Raises:
        OnnxModelError: see :meth:`OnnxPredictor.from_onnx`.
    """
    p = Path(path)
    return _checked_card(_load_model(p), p)


def _checked_card(model: Any, path: Path) -> ModelCard:
    """The card of a loaded export: as untrusted as the graph, so checked against its rules and the graph's shapes."""
    return validate_metadata(read_metadata(model, path), str(path), graph_shapes(model))


def graph_shapes(model: Any) -> dict[str, tuple[int | None, ...]]:
    """Name -> axes of every input and output of a loaded ONNX model's graph (None: a dynamic or unknown axis)."""
    out = {}
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        out[value.name] = tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in dims)
    return out


def onnx_providers(device: str = "auto") -> list[str]:
    """ONNX Runtime execution providers for ``device`` ("auto": CUDA when this onnxruntime build has it)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device.startswith("cuda"):
        raise UserError(f"--device cuda asked for, but this onnxruntime has no CUDA provider (it has {available})")
    return ["CPUExecutionProvider"]


class OnnxNetwork:
    """The two halves of an exported graph as ONNX Runtime sessions (a
    :class:`~spine_kp.inference.network_outputs.Network`).

    Args:
        network: session ``images -> heatmaps, features``.
        grader: session ``features, points -> grade logits``.
        kinds: grade kinds in schema order.
    """

    def __init__(self, network: Any, grader: Any, kinds: list[str]) -> None:
        self.network = network
        self.grader = grader
        self.kinds = kinds

    def run(self, images: np.ndarray, mirrored: bool = False) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(images[..., ::-1] if mirrored else images, dtype=np.float32)
        heatmaps, features = self.network.run([HEATMAPS, FEATURES], {IMAGES: x})
        return heatmaps, features

    def grade(self, features: np.ndarray, points: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {FEATURES: features, POINTS: np.ascontiguousarray(points, dtype=np.float32)}
        logits = self.grader.run([grade_output(k) for k in self.kinds], feeds)
        return dict(zip(self.kinds, logits))


class OnnxCropStage(StageBase):
    """The crop grading stage of an export: the ``crops -> stage_logits.<kind>`` part of the graph as a session.

    Args:
        session: ONNX Runtime session ``crops -> stage logits``.
        kinds: graded kinds (the session's outputs, in this order).
        others: see :class:`~spine_kp.inference.crop_stage_base.StageBase`.
    """

    def __init__(
        self,
        session: Any,
        kinds: list[str],
        config: GradeStageConfig,
        schema: Schema,
        trained: TrainedLabels,
        landmarks: list[int],
        temperatures: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(config, schema, trained, landmarks, temperatures)
        self.session = session
        self.kinds = list(kinds)

    def logits(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        out = self.session.run([stage_output(k) for k in self.kinds], {CROPS: batch})
        return dict(zip(self.kinds, out))


class OnnxJunctionCheck(JunctionCheckBase):
    """The junction check of an export: the ``junction_crops -> junction_logits`` part of the graph as a session.

    Args:
        session: ONNX Runtime session ``junction_crops -> junction_logits``.
        config: the check's config (the card's ``junction`` section).
        schema: landmark set.
    """

    def __init__(self, session: Any, config: JunctionConfig, schema: Schema) -> None:
        super().__init__(config, schema)
        self.session = session

    def logits(self, batch: np.ndarray) -> np.ndarray:
        (out,) = self.session.run([JUNCTION_LOGITS], {JUNCTION_CROPS: batch})
        return np.asarray(out)


class OnnxPredictor(SlicePredictor):
    """A spine_kp ONNX export, predicting through ONNX Runtime (see the module docstring).

    Args:
        network: the sessions.
        card: the export's model card.
        grade_stage: the crop grading stage's session, None to grade with the head alone.
        junction: the junction check's session, None for no check of the level count.
    """

    def __init__(
        self,
        network: OnnxNetwork,
        card: ModelCard,
        grade_stage: OnnxCropStage | None = None,
        junction: OnnxJunctionCheck | None = None,
    ) -> None:
        super().__init__(card, grade_stage, junction)
        self._network = network

    @property
    def network(self) -> OnnxNetwork:
        return self._network

    @classmethod
    def from_onnx(
        cls, path: str | Path, device: str = "auto", threads: int | None = None, **overrides: Any
    ) -> OnnxPredictor:
        """Load an export written by ``spine-kp export``.

        Args:
            device: "auto", "cpu" or "cuda" (ONNX Runtime providers, see :func:`onnx_providers`).
            threads: intra-op threads of each session (None: ONNX Runtime's default, one per physical core).
            overrides: replace settings of the card (:meth:`~spine_kp.inference.card.ModelCard.overridden`), e.g.
                ``decode=LevelOrderConfig(enabled=False)``, ``temperatures={}``, ``score_calibration={}``; or
                ``grade_stage=None`` (grade with the head alone), ``junction=None`` (no junction check).

        Raises:
            OnnxModelError: the file is missing, not ONNX, not a spine_kp export, or its graph is unusable;
                MetadataError (a subclass): its model card breaks a rule of :mod:`spine_kp.inference.card_checks`.
        """
        p = Path(path)
        model = _load_model(p)
        card = _checked_card(model, p)  # before any session is built or any study read
        try:
            import onnxruntime as ort
            from onnx.utils import Extractor
        except ImportError:
            raise UserError(f"{p}: predicting with an ONNX model needs onnxruntime; {INSTALL_HINT}") from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        providers = onnx_providers(device)
        kinds = [k.name for k in card.schema.kinds]
        try:
            extractor = Extractor(model)
            halves = (
                extractor.extract_model([IMAGES], [HEATMAPS, FEATURES]),
                extractor.extract_model([FEATURES, POINTS], [grade_output(k) for k in kinds]),
            )
            if card.grade_stage is not None:
                halves += (extractor.extract_model([CROPS], [stage_output(k) for k in card.grade_stage.kinds]),)
            if card.junction is not None:
                halves += (extractor.extract_model([JUNCTION_CROPS], [JUNCTION_LOGITS]),)
            sessions = [ort.InferenceSession(h.SerializeToString(), options, providers=providers) for h in halves]
        except Exception as exc:  # onnx / onnxruntime raise their own types; the file is what is wrong
            raise OnnxModelError(f"{p}: not a usable spine_kp graph ({type(exc).__name__}: {exc})") from None
        return cls.from_sessions(sessions, card, **overrides)

    @classmethod
    def from_sessions(cls, sessions: Sequence[Any], card: ModelCard, **overrides: Any) -> OnnxPredictor:
        """A predictor from its sessions (network, grader, then the crop grading stage's and the junction check's
        when the card has them, in this order) and the checked card
        (:func:`~spine_kp.inference.onnx_metadata.validate_metadata`); ``overrides``: see :meth:`from_onnx`."""
        extra = iter(sessions[2:])  # the optional parts' sessions follow in the order the card lists them
        stage: OnnxCropStage | None = None
        if card.grade_stage is not None:
            s = card.grade_stage
            stage = OnnxCropStage(
                next(extra), s.kinds, s.config, card.schema, card.trained, s.landmarks, s.temperatures
            )
        junction: OnnxJunctionCheck | None = None
        if card.junction is not None:
            junction = OnnxJunctionCheck(next(extra), card.junction.config, card.schema)
        stage = overrides.pop("grade_stage", stage)
        junction = overrides.pop("junction", junction)
        kinds = [k.name for k in card.schema.kinds]
        network = OnnxNetwork(sessions[0], sessions[1], kinds)
        return cls(network, card.overridden(**overrides), grade_stage=stage, junction=junction)


__all__ = [
    "FORMAT_VERSION",
    "JUNCTION_CROPS",
    "JUNCTION_LOGITS",
    "METADATA_KEY",
    "OnnxModelError",
    "OnnxCropStage",
    "OnnxJunctionCheck",
    "OnnxNetwork",
    "OnnxPredictor",
    "grade_output",
    "graph_shapes",
    "load_card",
    "onnx_providers",
    "read_metadata",
    "stage_output",
]
