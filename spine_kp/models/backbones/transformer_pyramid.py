"""ViTDet-style simple feature pyramid: one stride-16 token map -> maps at strides 4, 8, 16 and 32.

Plain (non-hierarchical) transformers and MLPs (ViT, DeiT, BEiT, ConViT, ResMLP) keep a single 1/16 token grid.
Li et al., "Exploring Plain Vision Transformer Backbones for Object Detection" (ViTDet, 2022) showed that a
pyramid built only from the last map works as well as a hierarchical backbone: two stride-2 deconvolutions give
1/4, one gives 1/8, identity keeps 1/16 and a 2x2 max-pool gives 1/32; every level then gets a 1x1 projection
and a 3x3 conv. ViTDet normalises with LayerNorm; here GroupNorm (the project rule, same per-sample behaviour).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from spine_kp.models.norm import group_norm

#: Strides of the pyramid levels w.r.t. the image, given a stride-16 input map.
PYRAMID_REDUCTIONS = (4, 8, 16, 32)


def _deconv(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)


class SimpleFeaturePyramid(nn.Module):
    """Stride-16 map (B, C, H/16, W/16) -> [(B, c_i, H/r, W/r) for r in 4, 8, 16, 32].

    Args:
        in_channels: channels C of the token map (the transformer's embedding width).
        out_channels: channels of every level; ``None`` keeps ViTDet's intermediate widths
            (C/4, C/2, C, C), which keeps the high-resolution levels cheap.
    """

    def __init__(self, in_channels: int, out_channels: int | Sequence[int] | None = None) -> None:
        super().__init__()
        c = in_channels
        widths = [max(1, c // 4), max(1, c // 2), c, c]
        if out_channels is None:
            outs = widths
        elif isinstance(out_channels, int):
            outs = [out_channels] * 4
        else:
            outs = [int(o) for o in out_channels]
        if len(outs) != 4:
            raise ValueError(f"SimpleFeaturePyramid: need 4 output widths, got {outs}")
        self.out_channels = outs
        self.resample = nn.ModuleList(
            [
                nn.Sequential(_deconv(c, widths[1]), group_norm(widths[1]), nn.GELU(), _deconv(widths[1], widths[0])),
                _deconv(c, widths[1]),
                nn.Identity(),
                nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True),
            ]
        )
        self.project = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(w, o, kernel_size=1, bias=False),
                group_norm(o),
                nn.Conv2d(o, o, kernel_size=3, padding=1, bias=False),
                group_norm(o),
            )
            for w, o in zip(widths, outs, strict=True)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # (B, C, h, w) -> 4 maps at 4h, 2h, h, h/2
        return [proj(res(x)) for res, proj in zip(self.resample, self.project, strict=True)]


__all__ = ["PYRAMID_REDUCTIONS", "SimpleFeaturePyramid"]
