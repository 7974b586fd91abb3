"""``hourglass`` decoder: a :class:`~spine_kp.models.hourglass.StackedHourglass` on one input level.

With backbone ``none`` (or ``hourglass``) ``LandmarkNet`` hands it the image itself (reduction 1), making it the
complete stacked-hourglass network of Newell et al.; after another backbone it runs on the deepest feature level
that is not coarser than the output stride. It returns ``(features, intermediate heatmaps)`` for deep supervision.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from spine_kp.models.decoders.common import upsample, validate_levels
from spine_kp.models.hourglass import StackedHourglass
from spine_kp.models.registry import DECODERS


@DECODERS.register(
    "hourglass",
    family="Stacked Hourglass",
    source="own",
    paper="Newell et al. 2016",
    standalone=True,
    intermediate_supervision=True,
)
class HourglassDecoder(nn.Module):
    """Stacked hourglass over the deepest level at or finer than the output stride (else the finest, upsampled).

    Args:
        feature_channels: channels per input level, shallow -> deep.
        feature_reductions: stride per input level.
        out_channels: width of the hourglass and of the returned features.
        output_stride: stride of the returned features.
        num_landmarks: channels of the intermediate heatmaps (0: no intermediate supervision).
        num_stacks: number of hourglasses.
        depth: poolings per hourglass.
        num_blocks: residual units per position.
    """

    def __init__(
        self,
        feature_channels: Sequence[int],
        feature_reductions: Sequence[int],
        out_channels: int,
        output_stride: int,
        num_landmarks: int = 0,
        num_stacks: int = 2,
        depth: int = 4,
        num_blocks: int = 1,
    ) -> None:
        super().__init__()
        validate_levels(feature_channels, feature_reductions, feature_reductions[0])  # the stack checks the stride
        candidates = [i for i, r in enumerate(feature_reductions) if r <= output_stride]
        # Deepest level not coarser than the output stride; if every level is coarser, the finest one is
        # upsampled (bilinear) to the output stride first.
        self.level = candidates[-1] if candidates else 0
        self.pre_upsample = max(1, feature_reductions[self.level] // output_stride)
        self.out_channels = out_channels
        self.net = StackedHourglass(
            in_chans=feature_channels[self.level],
            num_stacks=num_stacks,
            depth=depth,
            width=out_channels,
            num_blocks=num_blocks,
            num_outputs=num_landmarks,
            in_reduction=feature_reductions[self.level] // self.pre_upsample,
            output_stride=output_stride,
        )

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # -> features (B, out_channels, H/s, W/s), num_stacks - 1 intermediate heatmaps (B, K, H/s, W/s)
        return self.net(upsample(features[self.level], self.pre_upsample))
