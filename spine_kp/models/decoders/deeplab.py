"""DeepLab v3+ decoder: atrous spatial pyramid pooling + a low-level skip (Chen et al. 2017/2018; notes 000).

Atrous (dilated) 3x3 convolutions enlarge the receptive field without downsampling or extra parameters (the
DeepLab v1 note). ASPP runs parallel atrous branches at several rates plus an image-level pooling branch over
the deepest features; the v3+ decoder upsamples the result, concatenates 1x1-reduced low-level features (the
finest level at or above the output stride) and refines with two 3x3 convs. Rates (6, 12, 18) are the paper's
for stride-16 features and are scaled to the actual stride of the deepest level.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from spine_kp.models.decoders.common import (
    UpsampleTail,
    conv_gn_act,
    resize_to,
    separable_conv_gn_act,
    used_levels,
    validate_levels,
)
from spine_kp.models.registry import DECODERS


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling.

    Args:
        in_channels: channels of the input features.
        channels: width of each branch and of the output.
        rates: dilation rates of the atrous branches.
        separable: depthwise-separable atrous convs (DeepLab v3+ with Xception) instead of dense ones.
        dropout: dropout after the projection.
    """

    def __init__(
        self, in_channels: int, channels: int, rates: Sequence[int], separable: bool = False, dropout: float = 0.1
    ) -> None:
        super().__init__()
        branches: list[nn.Module] = [conv_gn_act(in_channels, channels, 1)]
        for rate in rates:
            if separable:
                branches.append(separable_conv_gn_act(in_channels, channels, dilation=rate))
            else:
                branches.append(conv_gn_act(in_channels, channels, 3, dilation=rate))
        self.branches = nn.ModuleList(branches)
        # Image pooling: a 1x1 spatial map has too few values per group for GroupNorm, so no norm here.
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, channels, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(conv_gn_act(channels * (len(rates) + 2), channels, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, h, w) -> (B, channels, h, w)
        outs = [branch(x) for branch in self.branches]
        outs.append(self.pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(outs, dim=1))


@DECODERS.register("deeplab", family="DeepLab v3+", source="own", paper="Chen et al. 2018")
class DeepLabV3PlusDecoder(nn.Module):
    """ASPP on the deepest level + low-level skip, returning features at the output stride.

    Args:
        feature_channels: channels per backbone level, shallow -> deep.
        feature_reductions: stride per level, shallow -> deep.
        out_channels: channels of the returned features.
        output_stride: stride of the returned features.
        aspp_channels: ASPP width (256 in the paper; default ``min(256, 4 * out_channels)``).
        low_level_channels: width of the reduced low-level skip (48 in the paper).
        rates: atrous rates at stride 16 (scaled to the deepest level's stride).
        separable: depthwise-separable atrous and decoder convs.
        dropout: ASPP dropout.
    """

    def __init__(
        self,
        feature_channels: Sequence[int],
        feature_reductions: Sequence[int],
        out_channels: int,
        output_stride: int,
        aspp_channels: int | None = None,
        low_level_channels: int = 48,
        rates: Sequence[int] = (6, 12, 18),
        separable: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        validate_levels(feature_channels, feature_reductions, output_stride)
        levels = used_levels(feature_reductions, output_stride)
        self.deep, self.low = levels[-1], levels[0]
        self.out_channels = out_channels
        ac = aspp_channels or min(256, 4 * out_channels)
        deep_reduction = feature_reductions[self.deep]
        scaled = [max(1, round(r * 16 / deep_reduction)) for r in rates]
        self.rates = scaled
        self.aspp = ASPP(feature_channels[self.deep], ac, scaled, separable=separable, dropout=dropout)
        if self.low != self.deep:
            self.reduce = conv_gn_act(feature_channels[self.low], low_level_channels, 1)
            fuse_in = ac + low_level_channels
        else:  # a single usable level: no skip to add
            self.reduce = None
            fuse_in = ac
        block = separable_conv_gn_act if separable else conv_gn_act
        self.fuse = nn.Sequential(block(fuse_in, out_channels), block(out_channels, out_channels))
        self.tail = UpsampleTail(out_channels, out_channels, feature_reductions[self.low], output_stride)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:  # levels -> (B, out_channels, H/s, W/s)
        x = self.aspp(features[self.deep])
        if self.reduce is not None:
            skip = self.reduce(features[self.low])
            x = torch.cat([resize_to(x, skip), skip], dim=1)
        return self.tail(self.fuse(x))
