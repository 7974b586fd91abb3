"""SegFormer all-MLP decoder (Xie et al. 2021; notes 004).

A hierarchical encoder already mixes local and global context, so the decoder stays light: a per-level linear
layer (1x1 conv) unifies the widths, every level is upsampled to the finest used stride, the concatenation is
fused by one more linear layer (+ GroupNorm, ReLU) and projected to the output width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from spine_kp.models.decoders.common import UpsampleTail, conv_gn_act, resize_to, used_levels, validate_levels
from spine_kp.models.registry import DECODERS


@DECODERS.register("segformer", family="SegFormer", source="own", paper="Xie et al. 2021")
class SegFormerDecoder(nn.Module):
    """All-MLP decoder returning features at the output stride.

    Args:
        feature_channels: channels per backbone level, shallow -> deep.
        feature_reductions: stride per level, shallow -> deep.
        out_channels: channels of the returned features.
        output_stride: stride of the returned features.
        embed_dim: common width of the per-level linear layers (256 for SegFormer-B0; default 2 x out).
        dropout: dropout after fusion (0.1 in the paper).
    """

    def __init__(
        self,
        feature_channels: Sequence[int],
        feature_reductions: Sequence[int],
        out_channels: int,
        output_stride: int,
        embed_dim: int | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        validate_levels(feature_channels, feature_reductions, output_stride)
        self.levels = used_levels(feature_reductions, output_stride)
        self.out_channels = out_channels
        dim = embed_dim or 2 * out_channels
        self.linear = nn.ModuleList(nn.Conv2d(feature_channels[i], dim, 1) for i in self.levels)
        self.fuse = nn.Sequential(conv_gn_act(dim * len(self.levels), dim, 1), nn.Dropout(dropout))
        self.project = conv_gn_act(dim, out_channels, 1)
        self.tail = UpsampleTail(out_channels, out_channels, feature_reductions[self.levels[0]], output_stride)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:  # levels -> (B, out_channels, H/s, W/s)
        target = features[self.levels[0]]
        mixed = [resize_to(lin(features[i]), target) for lin, i in zip(self.linear, self.levels)]
        # Deep-to-shallow concatenation order, as in the reference implementation.
        return self.tail(self.project(self.fuse(torch.cat(mixed[::-1], dim=1))))
