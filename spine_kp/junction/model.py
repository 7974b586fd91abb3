"""The junction check's crop CNN: one crop in, its disc's offset from the junction out (torch)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from spine_kp.junction.geometry import OFFSETS
from spine_kp.models.norm import group_norm


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False),
        group_norm(c_out, 8),
        nn.GELU(),
        nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
        group_norm(c_out, 8),
        nn.GELU(),
    ]


class JunctionNet(nn.Module):
    """Offset-class logits of disc-centred crops.

    Stride-2 blocks of two conv3x3-GroupNorm-GELU, average and max pooling concatenated, dropout, one linear layer to
    the :data:`~spine_kp.junction.geometry.OFFSETS` classes.

    Args:
        channels: widths of the blocks.
        dropout: before the classifier.
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 64, 96), dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c in (int(w) for w in channels):
            layers += _block(c_in, c)
            c_in = c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c_in, len(OFFSETS)))

    def forward(self, crops: Tensor) -> Tensor:
        """(N, 1, S, S) normalized crops -> (N, 5) logits."""
        maps = self.features(crops.float())
        return self.classifier(torch.cat([maps.mean((2, 3)), maps.amax((2, 3))], dim=1))


__all__ = ["JunctionNet"]
