"""BiSeNet decoder: spatial path + context path, ARMs and a feature fusion module (Yu et al. 2018; notes 004).

Adaptation to a shared backbone: BiSeNet's spatial path is three conv-GN-ReLU layers that keep spatial
detail; here it reads the finest backbone level (strided as needed to land on the output stride) rather than the
raw image. The context path is the backbone's two deepest levels, each re-weighted by an attention refinement
module (ARM: global pooling -> 1x1 conv -> sigmoid channel gate), plus a global-average "tail" added to the
deepest. The feature fusion module (FFM) concatenates both paths, mixes them with a conv-GN-ReLU and re-weights
channels with a squeeze-excitation style gate (``x + x * gate``).
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
    validate_levels,
)
from spine_kp.models.registry import DECODERS


class AttentionRefinement(nn.Module):
    """ARM: 3x3 conv-GN-ReLU, then a channel gate from globally pooled features (no norm on the 1x1 vector)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = conv_gn_act(in_channels, out_channels)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(out_channels, out_channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, h, w) -> (B, Cout, h, w)
        x = self.conv(x)
        return x * self.gate(x)


class FeatureFusion(nn.Module):
    """FFM: concat -> 1x1 conv-GN-ReLU -> x + x * SE-gate(x)."""

    def __init__(self, in_channels: int, out_channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.mix = conv_gn_act(in_channels, out_channels, 1)
        hidden = max(1, out_channels // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(out_channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:  # -> (B, Cout, h, w)
        x = self.mix(torch.cat([spatial, context], dim=1))
        return x + x * self.gate(x)


@DECODERS.register("bisenet", family="BiSeNet", source="own", paper="Yu et al. 2018")
class BiSeNetDecoder(nn.Module):
    """Spatial path + context path (ARMs, global tail) + FFM, returning features at the output stride.

    Args:
        feature_channels: channels per backbone level, shallow -> deep.
        feature_reductions: stride per level, shallow -> deep.
        out_channels: channels of the returned features.
        output_stride: stride of the returned features.
        spatial_channels: width of the spatial path (default 2 x out).
        context_channels: width of the context path (128 in the paper; default 2 x out).
    """

    def __init__(
        self,
        feature_channels: Sequence[int],
        feature_reductions: Sequence[int],
        out_channels: int,
        output_stride: int,
        spatial_channels: int | None = None,
        context_channels: int | None = None,
    ) -> None:
        super().__init__()
        validate_levels(feature_channels, feature_reductions, output_stride)
        self.out_channels = out_channels
        sc = spatial_channels or 2 * out_channels
        cc = context_channels or 2 * out_channels
        fine_r = feature_reductions[0]
        self.spatial_reduction = max(output_stride, fine_r)
        strides = num_halvings(self.spatial_reduction, fine_r)
        layers = []
        ch = feature_channels[0]
        for i in range(max(3, strides)):  # three layers as in the paper, the first ones strided if needed
            layers.append(conv_gn_act(ch, sc, 3, stride=2 if i < strides else 1))
            ch = sc
        self.spatial = nn.Sequential(*layers)
        # Context: the two deepest levels (one when the backbone has a single level).
        self.context_levels = list(range(len(feature_channels)))[-2:]
        self.arms = nn.ModuleList(AttentionRefinement(feature_channels[i], cc) for i in self.context_levels)
        deepest = feature_channels[self.context_levels[-1]]
        self.global_tail = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(deepest, cc, 1), nn.ReLU(inplace=True))
        self.refine = nn.ModuleList(conv_gn_act(cc, cc) for _ in self.context_levels)
        self.ffm = FeatureFusion(sc + cc, out_channels)
        self.tail = UpsampleTail(out_channels, out_channels, self.spatial_reduction, output_stride)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:  # levels -> (B, out_channels, H/s, W/s)
        spatial = self.spatial(features[0])
        deepest = features[self.context_levels[-1]]
        context = self.global_tail(deepest)  # (B, cc, 1, 1), broadcast over the deepest level
        for arm, refine, level in zip(reversed(self.arms), reversed(self.refine), reversed(self.context_levels)):
            feat = features[level]
            context = refine(arm(feat) + resize_to(context, feat))  # the 1x1 tail resizes to a constant map
        return self.tail(self.ffm(spatial, resize_to(context, spatial)))
