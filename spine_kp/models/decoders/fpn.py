"""Feature Pyramid Network decoder (Lin et al. 2017, as in RetinaNet; notes 001), merged to one map.

Lateral 1x1 convs bring every level to a common width, a top-down pathway adds the upsampled coarser level,
and a 3x3 conv smooths each pyramid level (GroupNorm, as the RetinaNet/RetinaMask notes recommend). Dense
prediction needs one map, so the pyramid is merged as in Panoptic FPN's semantic branch: each level is brought
to the finest used stride by (conv-GN-ReLU + 2x upsample) steps and the results are summed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from spine_kp.models.decoders.common import (
    UpsampleTail,
    conv_gn_act,
    num_halvings,
    resize_to,
    upsample,
    used_levels,
    validate_levels,
)
from spine_kp.models.registry import DECODERS


class _ScaleUp(nn.Module):
    """conv-GN-ReLU then 2x upsample, ``steps`` times (one conv and no upsampling when ``steps`` is 0)."""

    def __init__(self, in_channels: int, out_channels: int, steps: int) -> None:
        super().__init__()
        n = max(1, steps)
        self.convs = nn.ModuleList(conv_gn_act(in_channels if i == 0 else out_channels, out_channels) for i in range(n))
        self.steps = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, h, w) -> (B, Cout, h * 2^steps, w * 2^steps)
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < self.steps:
                x = upsample(x, 2)
        return x


@DECODERS.register("fpn", family="FPN", source="own", paper="Lin et al. 2017 (RetinaNet pyramid)")
class FPNDecoder(nn.Module):
    """FPN top-down pyramid + Panoptic-FPN-style merge, returning features at the output stride.

    Args:
        feature_channels: channels per backbone level, shallow -> deep.
        feature_reductions: stride per level, shallow -> deep.
        out_channels: channels of the returned features.
        output_stride: stride of the returned features.
        pyramid_channels: width of the pyramid levels (256 in the paper; default 2 x ``out_channels``).
    """

    def __init__(
        self,
        feature_channels: Sequence[int],
        feature_reductions: Sequence[int],
        out_channels: int,
        output_stride: int,
        pyramid_channels: int | None = None,
    ) -> None:
        super().__init__()
        validate_levels(feature_channels, feature_reductions, output_stride)
        self.levels = used_levels(feature_reductions, output_stride)
        self.out_channels = out_channels
        pc = pyramid_channels or 2 * out_channels
        self.lateral = nn.ModuleList(nn.Conv2d(feature_channels[i], pc, 1) for i in self.levels)
        self.smooth = nn.ModuleList(conv_gn_act(pc, pc) for _ in self.levels)
        finest = feature_reductions[self.levels[0]]
        self.scale_up = nn.ModuleList(
            _ScaleUp(pc, out_channels, num_halvings(feature_reductions[i], finest)) for i in self.levels
        )
        self.tail = UpsampleTail(out_channels, out_channels, finest, output_stride)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:  # levels -> (B, out_channels, H/s, W/s)
        lat = [conv(features[i]) for conv, i in zip(self.lateral, self.levels)]
        for j in range(len(lat) - 2, -1, -1):  # top-down: coarse context flows into finer levels
            lat[j] = lat[j] + resize_to(lat[j + 1], lat[j], mode="nearest")
        pyramid = [smooth(p) for smooth, p in zip(self.smooth, lat)]
        merged = pyramid[0].new_zeros(())
        for up, p in zip(self.scale_up, pyramid):
            merged = merged + resize_to(up(p), pyramid[0])
        return self.tail(merged)
