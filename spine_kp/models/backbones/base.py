"""The contract every backbone honours, and the size alignment that makes it hold for any input.

A backbone maps an image (B, C, H, W) to a list of feature maps, shallow -> deep. Level ``i`` has
``feature_channels[i]`` channels and stride ``feature_reductions[i]`` w.r.t. the input: its spatial size is
exactly (ceil(H / r), ceil(W / r)), so a decoder can add/concatenate levels without cropping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Every backbone ends at this stride, so decoders can rely on it.
DEEPEST_REDUCTION = 32


def align_to_input(
    features: Sequence[torch.Tensor], input_hw: Sequence[int], reductions: Sequence[int]
) -> list[torch.Tensor]:
    """Resample each map whose size is not (ceil(H / r), ceil(W / r)) onto that grid.

    Only networks with unpadded ("valid") convolutions (Inception v3/v4, original Xception) or a fixed token
    grid (ResMLP, ConViT, BEiT) produce other sizes; for the rest this is a no-op. Bilinear resampling with
    ``align_corners=False`` maps the feature grid onto the full image extent, so point coordinates keep their
    meaning (pixel centre of level-r cell j is at r * (j + 0.5) - 0.5 input pixels).

    Args:
        features: maps (B, C_i, h_i, w_i), shallow -> deep.
        input_hw: (H, W) of the network input.
        reductions: stride of each map.

    Returns:
        Maps (B, C_i, ceil(H / r_i), ceil(W / r_i)).
    """
    height, width = int(input_hw[0]), int(input_hw[1])
    out = []
    for f, r in zip(features, reductions, strict=True):
        size = (math.ceil(height / r), math.ceil(width / r))
        if tuple(f.shape[-2:]) != size:
            f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
        out.append(f)
    return out


def check_levels(name: str, channels: Sequence[int], reductions: Sequence[int]) -> None:
    """Raise ``ValueError`` unless reductions strictly increase and end at :data:`DEEPEST_REDUCTION`."""
    red = list(reductions)
    if not red or len(red) != len(channels):
        raise ValueError(f"backbone {name}: need one channel count per level, got {list(channels)} / {red}")
    if any(b <= a for a, b in zip(red, red[1:])) or red[-1] != DEEPEST_REDUCTION:
        raise ValueError(f"backbone {name}: reductions must increase and end at {DEEPEST_REDUCTION}, got {red}")


class Backbone(nn.Module):
    """Base class: subclasses implement :meth:`forward_features`; :meth:`forward` aligns sizes.

    Args:
        name: registry name (for error messages).
        feature_channels: channels per level, shallow -> deep.
        feature_reductions: stride per level w.r.t. the input, strictly increasing, last one 32.
    """

    def __init__(self, name: str, feature_channels: Sequence[int], feature_reductions: Sequence[int]) -> None:
        super().__init__()
        check_levels(name, feature_channels, feature_reductions)
        self.name = name
        self.feature_channels = [int(c) for c in feature_channels]
        self.feature_reductions = [int(r) for r in feature_reductions]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Raw maps, possibly a pixel or two off the exact grid (see :func:`align_to_input`)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, H, W) -> [(B, feature_channels[i], ceil(H / r_i), ceil(W / r_i))], shallow -> deep."""
        return align_to_input(self.forward_features(x), x.shape[-2:], self.feature_reductions)


__all__ = ["DEEPEST_REDUCTION", "Backbone", "align_to_input", "check_levels"]
