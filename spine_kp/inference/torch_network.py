"""The PyTorch network as a :class:`spine_kp.inference.network_outputs.Network` (decode it with ``infer_views``).

Decoding, grading and scoring are backend-independent numpy in :mod:`spine_kp.inference.network_outputs` (shared with
the ONNX Runtime predictor); this module only runs the torch model.

Shapes: B batch, C channels, H x W input, K landmarks (schema order), K_kind of one kind, G grades.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


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


__all__ = ["TorchNetwork"]
