"""The contracting path of U-Net (Ronneberger et al. 2015; notes 000), with GroupNorm.

Each level is (max-pool 2x2) -> double conv (3x3 conv, GroupNorm, ReLU, twice), widths doubling per level.
The paper stops at stride 16 with 1024 channels; here a full-resolution double conv feeds five pooled levels at
strides 2, 4, 8, 16, 32 (the backbone contract ends at 32) and widths are capped at ``max_width``.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from spine_kp.models.backbones.base import Backbone
from spine_kp.models.norm import group_norm
from spine_kp.models.registry import BACKBONES


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """(conv3x3 -> GroupNorm -> ReLU) x 2, size-preserving: (B, Cin, H, W) -> (B, Cout, H, W)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        group_norm(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        group_norm(out_channels),
        nn.ReLU(inplace=True),
    )


class UNetEncoder(Backbone):
    """Plain U-Net encoder: levels at strides 2, 4, 8, 16, 32.

    Args:
        in_chans: input channels.
        width: channels of the full-resolution double conv; level i (stride 2**i) has ``width * 2**i``.
        max_width: cap on a level's channels (keeps the stride-32 level affordable).
    """

    def __init__(self, in_chans: int = 1, width: int = 32, max_width: int = 512) -> None:
        if width < 1 or max_width < width:
            raise ValueError(f"UNetEncoder: need 1 <= width <= max_width, got {width} / {max_width}")
        widths = [min(width * 2**i, max_width) for i in range(1, 6)]
        super().__init__("unet", widths, [2, 4, 8, 16, 32])
        self.stem = double_conv(in_chans, width)  # stride 1, not returned
        chans = [width, *widths]
        self.levels = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), double_conv(chans[i], chans[i + 1])) for i in range(5)
        )

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)  # (B, width, H, W)
        feats = []
        for level in self.levels:
            x = level(x)  # (B, w_i, H / 2**i, W / 2**i)
            feats.append(x)
        return feats


@BACKBONES.register("unet", family="U-Net", source="own", min_input=32)
def unet(
    in_chans: int = 1, width: int = 32, max_width: int = 512, drop_rate: float = 0.0, drop_path_rate: float = 0.0
) -> UNetEncoder:
    """U-Net encoder (see :class:`UNetEncoder`); it has no dropout, so drop rates are ignored with a warning."""
    if drop_rate or drop_path_rate:
        warnings.warn("backbone unet: no dropout/stochastic depth; ignoring them", stacklevel=2)
    return UNetEncoder(in_chans, width, max_width)


__all__ = ["UNetEncoder", "double_conv", "unet"]
