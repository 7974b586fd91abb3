"""Decoders: backbone feature pyramid -> one feature map at the output stride, registered in ``DECODERS``.

Contract (every decoder builder): ``builder(feature_channels, feature_reductions, out_channels, output_stride,
**kwargs) -> nn.Module`` with an ``out_channels`` attribute. ``forward(features)`` takes the backbone's list of
maps (shallow -> deep, any number of levels) and returns (B, out_channels, H / output_stride, W / output_stride).
Decoders registered with ``intermediate_supervision=True`` also accept ``num_landmarks`` and return
``(features, intermediate_heatmaps)``. Registry meta ``standalone=True`` marks a decoder that can run on the image
itself (backbone ``none``). GroupNorm everywhere, never BatchNorm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

# Importing the modules registers their decoders.
from spine_kp.models.decoders import bisenet, deeplab, fpn, hourglass, segformer, unet  # noqa: F401
from spine_kp.models.registry import DECODERS


def create_decoder(
    name: str,
    feature_channels: Sequence[int],
    feature_reductions: Sequence[int],
    out_channels: int,
    output_stride: int = 4,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered decoder; an unknown name fails listing the valid ones."""
    entry = DECODERS.get(name)
    return entry.builder(list(feature_channels), list(feature_reductions), out_channels, output_stride, **kwargs)


__all__ = ["DECODERS", "create_decoder"]
