"""U-Net expanding path over any backbone's feature pyramid (Ronneberger et al. 2015; notes 000).

Starting from the deepest level, each step upsamples (bilinear, or a learned 2x2 up-convolution as in the
paper), concatenates the skip features of the next shallower level and applies two 3x3 conv-GN-ReLU. Widths
halve as resolution doubles; levels finer than the output stride are not used.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from spine_kp.models.decoders.common import UpsampleTail, conv_gn_act, resize_to, used_levels, validate_levels
from spine_kp.models.registry import DECODERS


class UpBlock(nn.Module):
    """Upsample ``x`` to the skip's size, concatenate, then two 3x3 conv-GN-ReLU.

    Args:
        in_channels: channels of the deeper input.
        skip_channels: channels of the skip features.
        out_channels: output channels.
        factor: stride ratio deeper / skip level (used by the transposed convolution).
        mode: "bilinear" or "transpose" (learned up-convolution).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, factor: int, mode: str) -> None:
        super().__init__()
        if mode not in ("bilinear", "transpose"):
            raise ValueError(f"unet decoder: upsample must be 'bilinear' or 'transpose', got {mode!r}")
        self.up: nn.Module = (
            nn.ConvTranspose2d(in_channels, in_channels, factor, stride=factor)
            if mode == "transpose"
            else nn.Identity()
        )
        self.convs = nn.Sequential(
            conv_gn_act(in_channels + skip_channels, out_channels), conv_gn_act(out_channels, out_channels)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # x (B, Cin, h, w), skip (B, Cs, h*f, w*f) -> (B, Cout, h*f, w*f)
        x = resize_to(self.up(x), skip)
        return self.convs(torch.cat([x, skip], dim=1))


@DECODERS.register("unet", family="U-Net", source="own", paper="Ronneberger et al. 2015")
class UNetDecoder(nn.Module):
    """U-Net decoder returning features at the output stride.

    Args:
        feature_channels: channels per backbone level, shallow -> deep.
        feature_reductions: stride per level, shallow -> deep.
        out_channels: channels of the returned features.
        output_stride: stride of the returned features.
        max_channels: cap on the widths of the deeper decoder blocks.
        upsample: "bilinear" or "transpose".
    """

    def __init__(
        self,
        feature_channels: Sequence[int],
        feature_reductions: Sequence[int],
        out_channels: int,
        output_stride: int,
        max_channels: int = 256,
        upsample: str = "bilinear",
    ) -> None:
        super().__init__()
        validate_levels(feature_channels, feature_reductions, output_stride)
        self.levels = used_levels(feature_reductions, output_stride)
        self.out_channels = out_channels

        def width(reduction: int) -> int:
            return max(out_channels, min(max_channels, out_channels * reduction // output_stride))

        deepest = self.levels[-1]
        ch = feature_channels[deepest]
        blocks = []
        for deeper, level in zip(reversed(self.levels[1:]), reversed(self.levels[:-1])):
            r = feature_reductions[level]
            factor = feature_reductions[deeper] // r
            blocks.append(UpBlock(ch, feature_channels[level], width(r), factor, upsample))
            ch = width(r)
        self.blocks = nn.ModuleList(blocks)
        finest = feature_reductions[self.levels[0]]
        # A single usable level still gets a conv block so the decoder is never just an identity.
        self.single = conv_gn_act(ch, width(finest)) if not blocks else nn.Identity()
        ch = width(finest) if not blocks else ch
        self.tail = UpsampleTail(ch, out_channels, finest, output_stride)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:  # levels -> (B, out_channels, H/s, W/s)
        x = features[self.levels[-1]]
        for block, level in zip(self.blocks, reversed(self.levels[:-1])):
            x = block(x, features[level])
        return self.tail(self.single(x))
