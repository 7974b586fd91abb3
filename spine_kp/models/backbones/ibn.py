"""IBN-Net (Pan et al., ECCV 2018; notes 003): ResNet with IBN-a blocks, GroupNorm in place of BatchNorm.

Instance normalisation removes per-image appearance (contrast, intensity scale) - useful across MRI scanners
and protocols - while batch-style normalisation keeps content. IBN-a replaces the first norm of every residual
block in stages 1-3 with an IBN layer: the first half of the channels is instance-normalised (affine), the rest
normalised as before; stage 4 stays unchanged because deep features must stay discriminative. As everywhere in
spine_kp the "batch" half is GroupNorm. Sub-module names ``IN``/``BN`` match the official checkpoints, so
``resnet50_ibn_a`` weights from the IBN-Net repository load by name.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spine_kp.models.backbones.timm_adapter import TimmBackbone, build_timm_backbone
from spine_kp.models.norm import group_norm
from spine_kp.models.registry import BACKBONES

#: Stages whose blocks get IBN-a (stage 4 keeps plain normalisation, as in the paper).
IBN_STAGES = ("layer1", "layer2", "layer3")


class IBN(nn.Module):
    """Half InstanceNorm, half GroupNorm: (B, C, H, W) -> (B, C, H, W).

    Args:
        channels: channels C to normalise.
        ratio: share of channels that get InstanceNorm (0.5 in IBN-a).
    """

    def __init__(self, channels: int, ratio: float = 0.5) -> None:
        super().__init__()
        self.half = int(channels * ratio)
        if not 0 < self.half < channels:
            raise ValueError(f"IBN: ratio {ratio} leaves no channels for one of the halves of {channels}")
        self.IN = nn.InstanceNorm2d(self.half, affine=True)  # names as in the official checkpoints
        self.BN = group_norm(channels - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat([self.IN(a.contiguous()), self.BN(b.contiguous())], dim=1)


def apply_ibn_a(backbone: TimmBackbone, ratio: float = 0.5) -> TimmBackbone:
    """Replace ``bn1`` of every block in stages 1-3 of a timm ResNet backbone with :class:`IBN` (in place)."""
    for stage_name in IBN_STAGES:
        stage = getattr(backbone.body, stage_name, None)
        if stage is None:
            raise ValueError(f"backbone {backbone.name}: no {stage_name}; IBN-a needs a timm ResNet")
        for block in stage:
            block.bn1 = IBN(block.conv1.out_channels, ratio)
    return backbone


def _builder(name: str, resnet: str) -> Any:
    def build(in_chans: int = 1, ibn_ratio: float = 0.5, **kwargs: Any) -> TimmBackbone:
        return apply_ibn_a(build_timm_backbone(resnet, in_chans, name=name, **kwargs), ibn_ratio)

    build.__name__ = name
    build.__doc__ = f"{resnet} with IBN-a in stages 1-3 (kwargs go to the timm ResNet constructor)."
    return build


for _name, _resnet in (("resnet18_ibn_a", "resnet18"), ("resnet50_ibn_a", "resnet50")):
    BACKBONES.add(_name, _builder(_name, _resnet), family="IBN-Net", source="own", min_input=32)


__all__ = ["IBN", "IBN_STAGES", "apply_ibn_a"]
