"""Stacked Hourglass (Newell et al. 2016; notes 003) read as a multi-scale encoder.

An hourglass is itself an encoder-decoder at constant output resolution. To fit the backbone contract the
network is built at output stride 4 with hourglass depth 3, so the innermost scale is stride 32; the levels
returned are the final stack's output (stride 4) and the last hourglass's up-path maps (``low3``, after its
coarser scales were merged back in) at strides 8, 16 and 32. The modules come from
:class:`spine_kp.models.hourglass.StackedHourglass`; this file only re-walks them to expose the inner scales
(the equivalence with ``StackedHourglass.forward`` is tested).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from spine_kp.models.backbones.base import Backbone
from spine_kp.models.hourglass import Hourglass, StackedHourglass
from spine_kp.models.registry import BACKBONES

#: Output stride of the stacks and the number of halvings that take it to 32.
_OUTPUT_STRIDE = 4
_DEPTH = 3


def _hourglass_levels(hourglass: Hourglass, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run one hourglass as its own ``forward`` does, also returning the up-path map of every inner scale.

    Returns:
        (output (B, C, h, w), [low3 at h/2, h/4, ...]).
    """
    up1 = hourglass.up1(x)
    low = hourglass.low1(F.max_pool2d(x, 2))
    deeper: list[torch.Tensor] = []
    if isinstance(hourglass.low2, Hourglass):
        low, deeper = _hourglass_levels(hourglass.low2, low)
    else:
        low = hourglass.low2(low)
    low = hourglass.low3(low)
    return up1 + F.interpolate(low, size=up1.shape[-2:], mode="nearest"), [low, *deeper]


class HourglassEncoder(Backbone):
    """Stacked hourglass features at strides 4, 8, 16, 32 (every level ``width`` channels).

    Args:
        in_chans: input channels.
        num_stacks: chained hourglasses.
        width: channels throughout.
        num_blocks: residual units per position.
    """

    def __init__(self, in_chans: int = 1, num_stacks: int = 2, width: int = 128, num_blocks: int = 1) -> None:
        super().__init__("hourglass", [width] * 4, [4, 8, 16, 32])
        self.net = StackedHourglass(
            in_chans=in_chans,
            num_stacks=num_stacks,
            depth=_DEPTH,
            width=width,
            num_blocks=num_blocks,
            num_outputs=0,  # intermediate supervision belongs to the decoder/heads, not the encoder
            output_stride=_OUTPUT_STRIDE,
        )

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        net = self.net
        x = net.stem(x)  # (B, width, H/4, W/4)
        features, inner = x, []
        for i, stack in enumerate(net.stacks):
            out, inner = _hourglass_levels(stack, x)
            features = net.after[i](out)
            if i < net.num_stacks - 1:
                x = x + net.merge_features[i](features)
        return [features, *inner]


@BACKBONES.register("hourglass", family="Stacked Hourglass", source="own", min_input=32)
def hourglass(
    in_chans: int = 1,
    num_stacks: int = 2,
    width: int = 128,
    num_blocks: int = 1,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
) -> HourglassEncoder:
    """Stacked hourglass encoder (see :class:`HourglassEncoder`); drop rates are ignored with a warning."""
    if drop_rate or drop_path_rate:
        warnings.warn("backbone hourglass: no dropout/stochastic depth; ignoring them", stacklevel=2)
    return HourglassEncoder(in_chans, num_stacks, width, num_blocks)


__all__ = ["HourglassEncoder", "hourglass"]
