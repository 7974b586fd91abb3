"""The PyTorch network as a :class:`spine_kp.inference.network_outputs.Network`, and :func:`infer_batch` on it.

Decoding, grading and scoring are backend-independent numpy in :mod:`spine_kp.inference.network_outputs` (shared with
the ONNX Runtime predictor); this module only runs the torch model.

Shapes: B batch, C channels, H x W input, K landmarks (schema order), K_kind of one kind, G grades.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.codec.level_order import LevelOrderConfig
from spine_kp.inference.network_outputs import BatchLandmarks, infer_views
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.schema import Schema


class TorchNetwork:
    """A :class:`spine_kp.models.net.LandmarkNet` behind the :class:`~spine_kp.inference.network_outputs.Network`
    interface.

    Args:
        model: ``forward(x)`` giving ``heatmaps`` and ``features``, and ``grade(features, points)``.
        device: where ndarray inputs go (tensor inputs stay where they are); default the model's device.
    """

    def __init__(self, model: nn.Module, device: torch.device | str | None = None) -> None:
        self.model = model
        self.device = torch.device(device) if device is not None else next(model.parameters()).device

    @torch.no_grad()
    def run(self, images: np.ndarray | Tensor, mirrored: bool = False) -> tuple[np.ndarray, Tensor]:
        x = torch.from_numpy(images).to(self.device) if isinstance(images, np.ndarray) else images
        out = self.model(torch.flip(x, dims=[-1]) if mirrored else x)
        return out["heatmaps"].float().cpu().numpy(), out["features"]

    @torch.no_grad()
    def grade(self, features: Tensor, points: np.ndarray) -> dict[str, np.ndarray]:
        logits = self.model.grade(features, torch.from_numpy(np.ascontiguousarray(points)).to(features.device))
        return {kind: v.float().cpu().numpy() for kind, v in logits.items()}


@torch.no_grad()
def infer_batch(
    model: nn.Module,
    images: Tensor | np.ndarray,
    codec: HeatmapCodec,
    schema: Schema,
    trained: TrainedLabels,
    decode: LevelOrderConfig | None = None,
    flip_tta: bool = False,
    extra_images: Sequence[Any] = (),
    timings: dict[str, float] | None = None,
    temperatures: Mapping[str, float] | None = None,
) -> BatchLandmarks:
    """Run the network, decode landmarks with level-order DP, grade them at the decoded points.

    :func:`spine_kp.inference.network_outputs.infer_views` on a :class:`TorchNetwork` (see there for the arguments).

    Args:
        model: a :class:`spine_kp.models.net.LandmarkNet`.
        images: (B, C, H, W) preprocessed input (a tensor on the model's device, or an ndarray).
    """
    return infer_views(
        TorchNetwork(model),
        images,
        codec,
        schema,
        trained,
        decode,
        flip_tta=flip_tta,
        extra_images=extra_images,
        timings=timings,
        temperatures=temperatures,
    )


__all__ = ["TorchNetwork", "infer_batch"]
