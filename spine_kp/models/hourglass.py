"""Stacked Hourglass network (Newell, Yang & Deng, ECCV 2016; notes 003), with GroupNorm.

Each hourglass pools down ``depth`` times and comes back up with nearest-neighbour upsampling, adding a
residual skip branch at every scale, so one module sees both local detail and global context. Stacks are
chained; after every stack but the last an intermediate heatmap is predicted (intermediate supervision) and
mapped back into the feature stream with 1x1 convolutions, so later stacks can re-evaluate earlier guesses.
The last stack's prediction head is left to the caller (``LandmarkNet``'s heatmap head).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spine_kp.models.norm import group_norm


class Residual(nn.Module):
    """Pre-activation bottleneck residual unit: (GN-ReLU-conv1x1) -> (GN-ReLU-conv3x3) -> (GN-ReLU-conv1x1) + skip.

    Args:
        in_channels: input channels.
        out_channels: output channels; a 1x1 projection skip is used when they differ.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = max(1, out_channels // 2)
        self.body = nn.Sequential(
            group_norm(in_channels),
            nn.ReLU(inplace=False),
            nn.Conv2d(in_channels, mid, 1, bias=False),
            group_norm(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            group_norm(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 1),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W) -> (B, Cout, H, W)
        return self.skip(x) + self.body(x)


def _residuals(in_channels: int, out_channels: int, num_blocks: int) -> nn.Sequential:
    blocks = [Residual(in_channels, out_channels)]
    blocks += [Residual(out_channels, out_channels) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


class Hourglass(nn.Module):
    """One hourglass of a given ``depth`` (number of 2x poolings), built recursively.

    Args:
        depth: number of downsampling steps (4 in the paper: 64x64 -> 4x4).
        channels: feature width, constant through the hourglass.
        num_blocks: residual units per position.
    """

    def __init__(self, depth: int, channels: int, num_blocks: int = 1) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"Hourglass: depth must be >= 1, got {depth}")
        self.up1 = _residuals(channels, channels, num_blocks)
        self.low1 = _residuals(channels, channels, num_blocks)
        self.low2: nn.Module = (
            Hourglass(depth - 1, channels, num_blocks) if depth > 1 else _residuals(channels, channels, num_blocks)
        )
        self.low3 = _residuals(channels, channels, num_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        up1 = self.up1(x)
        low = self.low3(self.low2(self.low1(F.max_pool2d(x, 2))))
        # Upsample to the skip's exact size so odd-sized maps (inputs not divisible by 2**depth) still work.
        return up1 + F.interpolate(low, size=up1.shape[-2:], mode="nearest")


class StackedHourglass(nn.Module):
    """A complete stacked-hourglass network: stem -> ``num_stacks`` hourglasses with intermediate supervision.

    Args:
        in_chans: channels of the input (the image: 1, or 2k+1 stacked slices; or a backbone feature map).
        num_stacks: number of chained hourglasses (8 in the paper; 2 is a good small default).
        depth: downsampling steps inside each hourglass.
        width: feature channels through the stacks (256 in the paper).
        num_blocks: residual units per position inside each hourglass.
        num_outputs: heatmap channels of the intermediate predictions (the number of landmarks); 0 disables
            intermediate heads (then only features are merged between stacks).
        in_reduction: stride of the input w.r.t. the image (1 for the image itself).
        output_stride: stride of the output features w.r.t. the image (1, 2, 4, ...; >= ``in_reduction``).

    Forward:
        ``x`` (B, in_chans, H / in_reduction, W / in_reduction) ->
        ``(features (B, width, H / output_stride, W / output_stride), intermediate heatmaps)`` where the list
        holds ``num_stacks - 1`` maps (B, num_outputs, H / output_stride, W / output_stride) when
        ``num_outputs > 0``, else is empty.
    """

    def __init__(
        self,
        in_chans: int = 1,
        num_stacks: int = 2,
        depth: int = 4,
        width: int = 128,
        num_blocks: int = 1,
        num_outputs: int = 0,
        in_reduction: int = 1,
        output_stride: int = 4,
    ) -> None:
        super().__init__()
        if num_stacks < 1:
            raise ValueError(f"StackedHourglass: num_stacks must be >= 1, got {num_stacks}")
        factor = output_stride // in_reduction
        if output_stride % in_reduction or factor & (factor - 1):
            raise ValueError(
                f"StackedHourglass: output_stride {output_stride} must be a power-of-2 multiple of input "
                f"reduction {in_reduction}"
            )
        self.out_channels = width
        self.reduction = output_stride
        self.num_stacks = num_stacks
        self.num_outputs = num_outputs
        self.stem = self._make_stem(in_chans, width, int(math.log2(factor)))
        self.stacks = nn.ModuleList(Hourglass(depth, width, num_blocks) for _ in range(num_stacks))
        self.after = nn.ModuleList(
            nn.Sequential(
                _residuals(width, width, num_blocks),
                nn.Conv2d(width, width, 1, bias=False),
                group_norm(width),
                nn.ReLU(inplace=True),
            )
            for _ in range(num_stacks)
        )
        n_inter = num_stacks - 1
        self.merge_features = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(n_inter))
        if num_outputs > 0:
            self.intermediate_heads = nn.ModuleList(nn.Conv2d(width, num_outputs, 1) for _ in range(n_inter))
            self.merge_predictions = nn.ModuleList(nn.Conv2d(num_outputs, width, 1) for _ in range(n_inter))
            for head in self.intermediate_heads:  # start near zero like the final heatmap head
                nn.init.normal_(head.weight, std=1e-3)
                nn.init.zeros_(head.bias)
        else:
            self.intermediate_heads = nn.ModuleList()
            self.merge_predictions = nn.ModuleList()

    @staticmethod
    def _make_stem(in_chans: int, width: int, num_halvings: int) -> nn.Sequential:
        """Paper stem (7x7/2 conv, residual, max-pool, residuals) generalised to any number of halvings."""
        half = max(1, width // 2)
        if num_halvings == 0:
            first = nn.Conv2d(in_chans, half, 3, padding=1, bias=False)
        else:
            first = nn.Conv2d(in_chans, half, 7, stride=2, padding=3, bias=False)
        layers: list[nn.Module] = [first, group_norm(half), nn.ReLU(inplace=True), Residual(half, width)]
        for _ in range(max(0, num_halvings - 1)):
            layers += [nn.MaxPool2d(2), Residual(width, width)]
        layers.append(Residual(width, width))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.stem(x)  # (B, width, h, w) at output_stride
        intermediate: list[torch.Tensor] = []
        features = x
        for i in range(self.num_stacks):
            features = self.after[i](self.stacks[i](x))
            if i < self.num_stacks - 1:
                merged = x + self.merge_features[i](features)
                if self.num_outputs > 0:
                    pred = self.intermediate_heads[i](features)  # (B, K, h, w)
                    intermediate.append(pred)
                    merged = merged + self.merge_predictions[i](pred)
                x = merged
        return features, intermediate


__all__ = ["Hourglass", "Residual", "StackedHourglass"]
