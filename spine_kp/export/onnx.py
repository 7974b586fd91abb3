"""Checkpoint -> ONNX graph + metadata, checked against PyTorch on the spot (``spine-kp export CKPT --onnx OUT``).

What is exported: the network of a checkpoint as ONE graph with two inputs, ``images`` (B, C, H, W) and ``points``
(B, K, 2), and the outputs ``heatmaps``, ``features`` (the decoder output the grade head reads) and one
``grade_logits.<kind>`` per grade kind (layout: :mod:`spine_kp.inference.onnx_predictor`). A checkpoint with a crop
grading stage adds its crop grader to the same graph as an independent third input ``crops`` (B, L * P, S, S) with one
``stage_logits.<kind>`` output per graded kind (traced together with the network as one module, so one file and one
verification); ``without_grade_stage`` leaves it out. A checkpoint with a junction check adds its crop CNN the same
way, after the stage: an independent input ``junction_crops`` (B, 1, S, S) and one output ``junction_logits`` (B, 5).
Decoding, crops, grading points, the junction decision and records stay in Python, shared with ``spine-kp predict
--checkpoint``; the ONNX predictor runs the graph in parts (cut at ``features``, the stage's and the junction
check's). The batch axis is dynamic, H and W are the trained input size.

Beside the graph, ``metadata_props["spine_kp"]`` holds the checkpoint's model card as JSON
(:mod:`spine_kp.inference.card`: schema, codec, preprocessing, decoding, trained labels, calibration, the crop grading
stage's and the junction check's settings when they are exported, the architecture config and the identity of the
source checkpoint), exactly what ``predict --onnx`` needs.

The exporter is torch's TorchScript-based ``torch.onnx.export(..., dynamo=False)`` at opset >= 17 (GridSample,
LayerNormalization). Every export is verified before it is written: ONNX Runtime runs the file on a random batch
of another size than the traced one and every output must match PyTorch within ``tolerance`` (relative to the
output's magnitude, at least 1). A backbone family whose graph cannot be exported or does not match is refused
with a one-line :class:`OnnxExportError` naming it; nothing is written then. The file is written atomically.
"""

from __future__ import annotations

import dataclasses
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spine_kp.checkpoint import CheckpointError
from spine_kp.errors import UserError
from spine_kp.fold_ensemble import SpineEnsemble, load_model_file
from spine_kp.inference.onnx_predictor import (
    CROPS,
    FEATURES,
    HEATMAPS,
    IMAGES,
    INSTALL_HINT,
    JUNCTION_CROPS,
    JUNCTION_LOGITS,
    METADATA_KEY,
    POINTS,
    grade_output,
    onnx_providers,
    stage_output,
)
from spine_kp.inference.torch_predictor import Predictor
from spine_kp.io.atomic import atomic_write_bytes
from spine_kp.models.registry import BACKBONES

MIN_OPSET = 17
DEFAULT_TOLERANCE = 1e-4


class OnnxExportError(UserError, ValueError):
    """A checkpoint whose network cannot be exported to ONNX faithfully; the message names the backbone family."""


class ExportNet(nn.Module):
    """The exported graph: ``(images, points) -> heatmaps, features, grade logits per kind (schema order)``; with a
    crop grader also ``crops -> stage logits per graded kind``, and with a junction check also ``junction_crops ->
    junction logits`` (each an independent input and outputs, in this order after the network's).

    Args:
        model: a :class:`spine_kp.models.net.LandmarkNet` (the same modules, no copy).
        stage: the crop grader of a crop grading stage (``CropStage.model``), or None.
        junction: the crop CNN of a junction check (``JunctionCheck.model``), or None.
    """

    def __init__(self, model: nn.Module, stage: nn.Module | None = None, junction: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.stage = stage
        self.junction = junction
        self.kinds = [k.name for k in model.schema.kinds]
        self.stage_kinds = list(stage.kind_names) if stage is not None else []

    def forward(self, images: torch.Tensor, points: torch.Tensor, *extra: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``extra``: the inputs after ``points`` that :meth:`input_names` lists (positional, because the tracer
        passes the example that way and a junction check may come without a stage); missing ones skip their part."""
        m = self.model
        out = m.decoder(m.backbone(images) if m.backbone is not None else [images])
        features = out[0] if isinstance(out, tuple) else out  # hourglass stacks: the last stack's features
        logits = m.grade(features, points)
        result = (m.heatmap_head(features), features, *(logits[k] for k in self.kinds))
        rest = list(extra)
        if self.stage is not None and rest:
            stage_logits = self.stage(rest.pop(0))
            result = (*result, *(stage_logits[k] for k in self.stage_kinds))
        if self.junction is not None and rest:
            result = (*result, self.junction(rest.pop(0)))
        return result

    def input_names(self) -> list[str]:
        names = [IMAGES, POINTS]
        names += [CROPS] if self.stage is not None else []
        return names + ([JUNCTION_CROPS] if self.junction is not None else [])

    def output_names(self) -> list[str]:
        names = [HEATMAPS, FEATURES, *(grade_output(k) for k in self.kinds)]
        names += [stage_output(k) for k in self.stage_kinds]
        return names + ([JUNCTION_LOGITS] if self.junction is not None else [])


@dataclass(frozen=True)
class ExportResult:
    """What was written and how closely ONNX Runtime reproduced PyTorch (max |difference| per output)."""

    path: Path
    family: str
    opset: int
    max_abs_diff: dict[str, float]
    size_bytes: int


def backbone_family(backbone: str) -> str:
    """The registry's family name of a backbone ("timm" for ``timm:<name>``, the name itself when unknown)."""
    import spine_kp.models.backbones  # noqa: F401  (registers the backbones)

    if backbone.startswith("timm:"):
        return f"timm ({backbone[5:]})"
    return str(BACKBONES.get(backbone).meta.get("family", backbone)) if backbone in BACKBONES else backbone


def export_card(predictor: Predictor, net: ExportNet | None = None) -> dict[str, Any]:
    """The model card ``predict --onnx`` rebuilds its predictor from: the checkpoint's (identity: the source checkpoint
    and its digest), without the ``grade_stage`` / ``junction`` section when ``net`` (None: the network alone) has no
    crop grader / junction CNN (a section without its part of the graph would be refused when the file is read)."""
    card = predictor.card
    if net is None or net.stage is None:
        card = dataclasses.replace(card, grade_stage=None)
    if net is None or net.junction is None:
        card = dataclasses.replace(card, junction=None)
    return card.to_dict()


def _example(
    batch: int,
    channels: int,
    size: tuple[int, int],
    landmarks: int,
    seed: int,
    crops: tuple[int, int] | None = None,
    junction_px: int | None = None,
) -> tuple[torch.Tensor, ...]:
    """Random inputs; ``crops`` = (L * P, S): also a (batch, L * P, S, S) crop batch; ``junction_px`` = S: also a
    (batch, 1, S, S) junction crop batch (in :meth:`ExportNet.input_names` order)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, channels, *size, generator=g)
    points = torch.rand(batch, landmarks, 2, generator=g) * torch.tensor([size[1] - 1.0, size[0] - 1.0])
    out: tuple[torch.Tensor, ...] = (images, points)
    if crops is not None:
        out += (torch.randn(batch, crops[0], crops[1], crops[1], generator=g),)
    if junction_px is not None:
        out += (torch.randn(batch, 1, junction_px, junction_px, generator=g),)
    return out


def _trace(net: ExportNet, example: tuple[torch.Tensor, ...], names: list[str], opset: int, family: str) -> bytes:
    buf = io.BytesIO()
    inputs = net.input_names()
    axes = {name: {0: "batch"} for name in [*inputs, *names]}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about fixed H, W; the exporter's deprecation notice
            torch.onnx.export(
                net,
                example,
                buf,
                dynamo=False,
                opset_version=opset,
                input_names=inputs,
                output_names=names,
                dynamic_axes=axes,
                do_constant_folding=True,
            )
    except Exception as exc:  # the exporter raises many types; the model is what is not supported
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OnnxExportError(f"backbone family {family} cannot be exported to ONNX: {first}") from exc
    return buf.getvalue()


def _compare(
    net: ExportNet, session: Any, check: tuple[torch.Tensor, ...], tolerance: float, family: str
) -> dict[str, float]:
    """Largest |ONNX Runtime - PyTorch| per output on the inputs ``check``.

    Raises:
        OnnxExportError: an output differs by more than ``tolerance`` x max(1, max |PyTorch|), or is NaN.
    """
    names = net.output_names()
    with torch.no_grad():
        expected = [t.numpy() for t in net(*check)]
    got = session.run(names, {name: t.numpy() for name, t in zip(net.input_names(), check)})
    diffs = {n: float(np.abs(g - e).max()) for n, g, e in zip(names, got, expected)}
    for name, e in zip(names, expected):
        limit = tolerance * max(1.0, float(np.abs(e).max()))
        if not diffs[name] <= limit:  # also catches NaN
            raise OnnxExportError(
                f"backbone family {family} is not supported by the ONNX export: ONNX Runtime's {name} differs from "
                f"PyTorch by {diffs[name]:.3g} (> {limit:.3g}); nothing written"
            )
    return diffs


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    opset: int = MIN_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
    without_grade_stage: bool = False,
) -> ExportResult:
    """Export ``checkpoint`` to ``out`` (see the module docstring); nothing is written unless the check passes.

    Args:
        opset: ONNX opset (at least 17).
        tolerance: largest accepted |ONNX Runtime - PyTorch| per output, relative to max(1, max |PyTorch|).
        without_grade_stage: leave a checkpoint's crop grading stage out (grades of ``predict --onnx`` then come from
            the grade head alone); by default it is exported with the network.

    Raises:
        CheckpointError: the checkpoint cannot be read. OnnxExportError: the network cannot be exported faithfully.
        UserError: bad options, or onnx / onnxruntime are not installed.
    """
    if opset < MIN_OPSET:
        raise UserError(f"--opset must be at least {MIN_OPSET} (GridSample, LayerNormalization), got {opset}")
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        raise UserError(f"ONNX export needs onnx and onnxruntime; {INSTALL_HINT}") from None
    ckpt = Path(checkpoint)
    source = load_model_file(ckpt)  # a bad file is a CheckpointError naming it
    if isinstance(source, SpineEnsemble):  # one graph per member would be a different export format
        raise CheckpointError(
            f"{ckpt}: a fold ensemble of {len(source.members)} members, and ONNX export takes one checkpoint: "
            f"export one member (e.g. {source.sources[0]}), or predict with the ensemble: --checkpoint {ckpt}"
        )
    predictor = Predictor.from_checkpoint(source, device="cpu")
    family = backbone_family(str(predictor.card.network.get("backbone", "")))
    stage = None if without_grade_stage else predictor.grade_stage
    junction = predictor.junction
    net = ExportNet(
        predictor.model,
        stage.model if stage is not None else None,
        junction.model if junction is not None else None,
    ).eval()
    names = net.output_names()
    channels = predictor.card.preprocessing.in_chans
    k = predictor.schema.num_landmarks
    crops = (len(stage.landmarks) * stage.config.planes, stage.config.size_px) if stage is not None else None
    junction_px = junction.config.size_px if junction is not None else None
    example = _example(2, channels, predictor.input_size, k, 0, crops, junction_px)
    model = onnx.load_from_string(_trace(net, example, names, opset, family))
    identity = predictor.card.identity
    model.producer_name, model.producer_version = "spine_kp", identity.spine_kp_version
    model.doc_string = f"{identity.name} from {ckpt.name}: images (B, C, H, W) -> heatmaps, grade logits"
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(export_card(predictor, net))
    data = model.SerializeToString()

    # Verify on another batch size than the traced one (the batch axis must really be dynamic).
    check = _example(3, channels, predictor.input_size, k, 1, crops, junction_px)
    session = ort.InferenceSession(data, providers=onnx_providers("cpu"))
    diffs = _compare(net, session, check, tolerance, family)
    path = atomic_write_bytes(out, data)
    return ExportResult(path, family, opset, diffs, len(data))


__all__ = ["DEFAULT_TOLERANCE", "MIN_OPSET", "ExportNet", "ExportResult", "OnnxExportError", "export_onnx"]
