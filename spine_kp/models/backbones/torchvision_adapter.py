"""torchvision backbones for the architectures timm lacks: AlexNet, GoogLeNet (Inception v1), ShuffleNet v2,
SqueezeNet.

Each is built with ``weights=None``, its stem conv rebuilt for ``in_chans``, BatchNorm swapped for GroupNorm,
and the multi-scale maps taken with ``create_feature_extractor`` (which keeps torchvision's parameter names,
so an original torchvision checkpoint still loads). Padding of a few layers is changed so that every level is
exactly (H / r, W / r) for inputs divisible by 32; padding has no weights, so checkpoints are unaffected:

* AlexNet: conv1 11x11/4 pad 2 -> 5 and the three 3x3/2 max-pools pad 0 -> 1 ("same"); levels
  relu1 (4), relu2 (8), relu5 (16), pool5 (32). Its large stride-4 stem gives no stride-2 level.
* GoogLeNet: unchanged (its pools already use ceil mode); conv1 (2), conv3 (4), 3b (8), 4e (16), 5b (32).
* ShuffleNet v2: unchanged; conv1 (2), maxpool (4), stage2 (8), stage3 (16), stage4 (32).
* SqueezeNet 1.1: conv1 3x3/2 pad 0 -> 1; relu1 (2), fire3 (4), fire5 (8), fire9 (16), plus a 2x2 max-pool of
  fire9 (32) because the network stops at stride 16.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from spine_kp.models.backbones.base import Backbone
from spine_kp.models.norm import convert_bn_to_gn
from spine_kp.models.registry import BACKBONES


def _replace_conv(conv: nn.Conv2d, in_chans: int, padding: int | None = None) -> nn.Conv2d:
    """A fresh conv like ``conv`` but reading ``in_chans`` channels (and optionally another padding)."""
    return nn.Conv2d(
        in_chans,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        conv.stride,  # type: ignore[arg-type]
        conv.padding if padding is None else padding,  # type: ignore[arg-type]
        bias=conv.bias is not None,
    )


def _warn_unused(name: str, drop_rate: float, drop_path_rate: float) -> None:
    if drop_rate or drop_path_rate:
        warnings.warn(f"backbone {name}: no dropout/stochastic depth in its features; ignoring them", stacklevel=3)


class TorchvisionBackbone(Backbone):
    """Feature maps of named torchvision graph nodes, optionally with extra 2x max-pooled levels at the end.

    Args:
        name: registry name.
        model: torchvision classifier, already adapted (stem conv, norms).
        nodes: graph node names in order shallow -> deep.
        channels: channels of those nodes.
        reductions: strides of those nodes.
        extra_pools: number of stride-2 max-pools appended after the deepest node (SqueezeNet stops at 16).
    """

    def __init__(
        self,
        name: str,
        model: nn.Module,
        nodes: list[str],
        channels: list[int],
        reductions: list[int],
        extra_pools: int = 0,
    ) -> None:
        all_channels = channels + [channels[-1]] * extra_pools
        all_reductions = reductions + [reductions[-1] * 2 ** (i + 1) for i in range(extra_pools)]
        super().__init__(name, all_channels, all_reductions)
        self.body = create_feature_extractor(model, return_nodes={n: str(i) for i, n in enumerate(nodes)})
        self.num_nodes = len(nodes)
        self.extra_pools = extra_pools

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.body(x)
        feats = [out[str(i)] for i in range(self.num_nodes)]
        for _ in range(self.extra_pools):
            feats.append(F.max_pool2d(feats[-1], kernel_size=2, stride=2, ceil_mode=True))
        return feats


def alexnet(in_chans: int = 1, drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> TorchvisionBackbone:
    """AlexNet (Krizhevsky et al. 2012) conv layers; levels at strides 4, 8, 16, 32."""
    _warn_unused("alexnet", drop_rate, drop_path_rate)
    model = torchvision.models.alexnet(weights=None)
    feats = model.features
    feats[0] = _replace_conv(feats[0], in_chans, padding=5)  # (H + 10 - 11) // 4 + 1 == H / 4
    for i in (2, 5, 12):
        feats[i] = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # even n -> n / 2
    nodes = ["features.1", "features.4", "features.11", "features.12"]
    return TorchvisionBackbone("alexnet", model, nodes, [64, 192, 256, 256], [4, 8, 16, 32])


def googlenet(in_chans: int = 1, drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> TorchvisionBackbone:
    """GoogLeNet / Inception v1 (Szegedy et al. 2015) without auxiliary heads; strides 2..32."""
    _warn_unused("googlenet", drop_rate, drop_path_rate)
    model = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=False, init_weights=True)
    model.conv1.conv = _replace_conv(model.conv1.conv, in_chans)
    convert_bn_to_gn(model)
    nodes = ["conv1", "conv3", "inception3b", "inception4e", "inception5b"]
    return TorchvisionBackbone("googlenet", model, nodes, [64, 192, 480, 832, 1024], [2, 4, 8, 16, 32])


_SHUFFLE_CHANNELS = {"shufflenet_v2_x0_5": [24, 24, 48, 96, 192], "shufflenet_v2_x1_0": [24, 24, 116, 232, 464]}


def _shufflenet(name: str) -> Callable[..., TorchvisionBackbone]:
    def build(in_chans: int = 1, drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> TorchvisionBackbone:
        _warn_unused(name, drop_rate, drop_path_rate)
        model = getattr(torchvision.models, name)(weights=None)
        model.conv1[0] = _replace_conv(model.conv1[0], in_chans)
        convert_bn_to_gn(model)
        nodes = ["conv1", "maxpool", "stage2", "stage3", "stage4"]
        return TorchvisionBackbone(name, model, nodes, _SHUFFLE_CHANNELS[name], [2, 4, 8, 16, 32])

    build.__name__ = name
    build.__doc__ = f"{name} (Ma et al. 2018) stages; strides 2..32 (the final 1x1 conv5 is not used)."
    return build


def squeezenet1_1(in_chans: int = 1, drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> TorchvisionBackbone:
    """SqueezeNet 1.1 (Iandola et al. 2016) fire modules; strides 2..16 plus a pooled stride-32 level."""
    _warn_unused("squeezenet1_1", drop_rate, drop_path_rate)
    model = torchvision.models.squeezenet1_1(weights=None)
    model.features[0] = _replace_conv(model.features[0], in_chans, padding=1)  # H / 2 instead of H / 2 - 1
    nodes = ["features.1", "features.4", "features.7", "features.12"]
    return TorchvisionBackbone("squeezenet1_1", model, nodes, [64, 128, 256, 512], [2, 4, 8, 16], extra_pools=1)


_ENTRIES: list[tuple[str, Callable[..., Any], str]] = [
    ("alexnet", alexnet, "AlexNet"),
    ("googlenet", googlenet, "Inception v1"),
    ("shufflenet_v2_x0_5", _shufflenet("shufflenet_v2_x0_5"), "ShuffleNet"),
    ("shufflenet_v2_x1_0", _shufflenet("shufflenet_v2_x1_0"), "ShuffleNet"),
    ("squeezenet1_1", squeezenet1_1, "SqueezeNet"),
]
for _name, _builder, _family in _ENTRIES:
    BACKBONES.add(_name, _builder, family=_family, source="torchvision", min_input=32)


__all__ = ["TorchvisionBackbone", "alexnet", "googlenet", "squeezenet1_1"]
