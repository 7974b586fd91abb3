"""Building blocks shared by the decoders: conv-GN-act units, resizing, level bookkeeping."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spine_kp.models.norm import group_norm


def conv_gn_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    dilation: int = 1,
    act: bool = True,
) -> nn.Sequential:
    """Conv (no bias: GroupNorm has one) -> GroupNorm -> ReLU, 'same' padding for odd kernels."""
    padding = dilation * (kernel_size - 1) // 2
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation, bias=False),
        group_norm(out_channels),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def separable_conv_gn_act(in_channels: int, out_channels: int, dilation: int = 1) -> nn.Sequential:
    """Depthwise 3x3 (atrous) conv -> GN -> ReLU -> pointwise 1x1 -> GN -> ReLU (Xception / DeepLab v3+)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, padding=dilation, dilation=dilation, groups=in_channels, bias=False),
        group_norm(in_channels),
        nn.ReLU(inplace=True),
        conv_gn_act(in_channels, out_channels, 1),
    )


def resize_to(x: torch.Tensor, ref: torch.Tensor | Sequence[int], mode: str = "bilinear") -> torch.Tensor:
    """Resize ``x`` (B, C, h, w) to the spatial size of ``ref`` (a tensor or an (H, W) pair); no-op when equal."""
    size = tuple(ref.shape[-2:]) if isinstance(ref, torch.Tensor) else tuple(int(v) for v in ref)
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Bilinear upsampling by an integer factor (B, C, h, w) -> (B, C, h*f, w*f)."""
    if factor == 1:
        return x
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def validate_levels(feature_channels: Sequence[int], feature_reductions: Sequence[int], output_stride: int) -> None:
    """Check the backbone description a decoder is built from; errors say what is wrong."""
    if len(feature_channels) != len(feature_reductions) or not feature_channels:
        raise ValueError(
            f"decoder: need one channel count per feature level, got channels {list(feature_channels)} and "
            f"reductions {list(feature_reductions)}"
        )
    red = list(feature_reductions)
    if any(b <= a for a, b in zip(red, red[1:])):
        raise ValueError(f"decoder: feature reductions must increase shallow -> deep, got {red}")
    for r in [*red, output_stride]:
        if r < 1 or r & (r - 1):
            raise ValueError(f"decoder: reductions and output stride must be powers of 2, got {red} / {output_stride}")
    if red[-1] < output_stride:
        raise ValueError(f"decoder: output stride {output_stride} is coarser than the deepest feature level {red[-1]}")


def used_levels(feature_reductions: Sequence[int], output_stride: int) -> list[int]:
    """Indices of the levels at or coarser than the output stride (finer levels carry no extra context)."""
    return [i for i, r in enumerate(feature_reductions) if r >= output_stride]


def num_halvings(from_reduction: int, to_reduction: int) -> int:
    """Number of 2x steps between two strides (0 when equal)."""
    return int(round(math.log2(from_reduction / to_reduction)))


class UpsampleTail(nn.Module):
    """2x bilinear upsampling + conv-GN-ReLU, repeated until the output stride is reached.

    Used when the output stride is finer than every feature level (e.g. stride 1 or 2 heatmaps on a backbone
    whose finest level is at stride 4).

    Args:
        in_channels: channels entering the tail.
        out_channels: channels leaving it.
        from_reduction: stride of the input.
        to_reduction: target stride (<= ``from_reduction``).
    """

    def __init__(self, in_channels: int, out_channels: int, from_reduction: int, to_reduction: int) -> None:
        super().__init__()
        steps = num_halvings(from_reduction, to_reduction)
        blocks: list[nn.Module] = []
        ch = in_channels
        for _ in range(steps):
            blocks.append(conv_gn_act(ch, out_channels))
            ch = out_channels
        self.blocks = nn.ModuleList(blocks)
        self.proj = nn.Identity() if ch == out_channels else conv_gn_act(ch, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, h, w) -> (B, Cout, h * 2^n, w * 2^n)
        for block in self.blocks:
            x = block(upsample(x, 2))
        return self.proj(x)
