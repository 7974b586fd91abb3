"""timm backbones: ``features_only=True`` models wrapped to the spine_kp backbone contract.

Every architecture timm has is built by timm (``pretrained=False``; weights come only from a local file, see
``weights.py``), then BatchNorm is swapped for GroupNorm. Three adaptations make all of them look alike:

* levels finer than stride 2 (VGG, CSPDarknet expose a stride-1 map) are dropped, so levels are 2..32 or 4..32;
* channels-last outputs (Swin) are permuted to (B, C, H, W);
* plain transformers/MLPs with one token grid (ViT, DeiT, BEiT, ConViT, ResMLP) get a ViTDet simple pyramid, and
  those whose patch embedding only accepts one size (``strict_img_size``; BEiT, ConViT, ResMLP: timm cannot
  resample their relative-position tables / token-mixing MLPs on the fly) see the input resized to their
  ``img_size`` (224 unless given), with the features resized back to the input grid.
"""

from __future__ import annotations

import warnings
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.layers import Format, PatchEmbed
from torch import nn

from spine_kp.models.backbones.base import DEEPEST_REDUCTION, Backbone, align_to_input
from spine_kp.models.backbones.transformer_pyramid import PYRAMID_REDUCTIONS, SimpleFeaturePyramid
from spine_kp.models.norm import convert_bn_to_gn
from spine_kp.models.registry import BACKBONES

# Passed through when the architecture supports them; silently meaningless elsewhere, so dropped with a warning.
_OPTIONAL_KWARGS = ("drop_rate", "drop_path_rate")
#: Stride of the token grid a plain transformer's map is resampled to before the pyramid.
_PLAIN_REDUCTION = 16


def create_timm_features(model_name: str, in_chans: int = 1, **kwargs: Any) -> nn.Module:
    """``timm.create_model(features_only=True, pretrained=False)``, dropping unsupported drop rates.

    Args:
        model_name: any name in ``timm.list_models()``.
        in_chans: input channels (the stem conv is built for them).
        **kwargs: model constructor arguments; ``drop_rate``/``drop_path_rate`` are dropped with a warning when
            the architecture has no such argument (e.g. VGG has no stochastic depth).

    Returns:
        timm's feature extractor (``FeatureListNet`` / ``FeatureGetterNet``), still with its own norm layers.
    """
    if not timm.is_model(model_name):
        raise KeyError(f"timm has no model {model_name!r} (timm {timm.__version__}); see timm.list_models()")
    kwargs = dict(kwargs)
    while True:
        try:
            return timm.create_model(model_name, pretrained=False, features_only=True, in_chans=in_chans, **kwargs)
        except TypeError as err:
            dropped = [k for k in _OPTIONAL_KWARGS if k in kwargs and f"'{k}'" in str(err)]
            if not dropped:
                raise
            for key in dropped:
                warnings.warn(f"timm {model_name}: no {key} argument; ignoring {key}={kwargs.pop(key)}", stacklevel=2)


def _is_plain(body: nn.Module) -> bool:
    """True for a single-stride token model (every level at the same reduction)."""
    return len(set(body.feature_info.reduction())) == 1  # type: ignore[union-attr,operator]


def _fixed_input_size(body: nn.Module) -> tuple[int, int] | None:
    """The only input size the model's first ``PatchEmbed`` accepts, or ``None`` when any size works."""
    for module in body.modules():
        if isinstance(module, PatchEmbed):
            if module.strict_img_size and module.img_size is not None:
                return (int(module.img_size[0]), int(module.img_size[1]))
            return None
    return None


class TimmBackbone(Backbone):
    """A timm feature extractor behind the backbone contract (see module docstring).

    Args:
        name: registry name.
        body: a timm ``features_only`` model.
        pyramid_channels: output width(s) of the simple pyramid of a plain transformer (``None``: C/4, C/2, C, C).
    """

    def __init__(self, name: str, body: nn.Module, pyramid_channels: int | list[int] | None = None) -> None:
        info = body.feature_info  # type: ignore[union-attr]
        reductions = [int(r) for r in info.reduction()]
        channels = [int(c) for c in info.channels()]
        pyramid: SimpleFeaturePyramid | None = None
        if _is_plain(body):
            levels = [len(reductions) - 1]
            pyramid = SimpleFeaturePyramid(channels[-1], pyramid_channels)
            out_channels, out_reductions = pyramid.out_channels, list(PYRAMID_REDUCTIONS)
        else:
            # Keep the deepest map per stride in 2..32 (a stride-1 map would cost full-resolution memory).
            by_stride = {r: i for i, r in enumerate(reductions) if 2 <= r <= DEEPEST_REDUCTION}
            levels = [by_stride[r] for r in sorted(by_stride)]
            out_channels = [channels[i] for i in levels]
            out_reductions = [reductions[i] for i in levels]
        super().__init__(name, out_channels, out_reductions)
        self.body = body
        self.pyramid = pyramid
        self.levels = levels
        self.channels_last = getattr(body, "output_fmt", Format.NCHW) == Format.NHWC
        self.fixed_input_size = _fixed_input_size(body)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        in_hw = x.shape[-2:]
        if self.fixed_input_size is not None and tuple(in_hw) != self.fixed_input_size:
            x = F.interpolate(x, size=self.fixed_input_size, mode="bilinear", align_corners=False)
        outs = self.body(x)
        feats = [outs[i] for i in self.levels]
        if self.channels_last:
            feats = [f.permute(0, 3, 1, 2) for f in feats]  # (B, H, W, C) -> (B, C, H, W)
        if self.pyramid is not None:
            (grid,) = align_to_input(feats[-1:], in_hw, [_PLAIN_REDUCTION])  # (B, C, H/16, W/16)
            return self.pyramid(grid)
        return feats


def build_timm_backbone(
    model_name: str,
    in_chans: int = 1,
    *,
    name: str | None = None,
    pyramid_channels: int | list[int] | None = None,
    **kwargs: Any,
) -> TimmBackbone:
    """Build any timm model as a GroupNorm backbone (also serves ``create_backbone("timm:<name>")``).

    A plain transformer not already restricted to its last block is rebuilt with ``out_indices=(-1,)`` and,
    where timm allows it, ``dynamic_img_size=True`` (position embeddings resampled to any input size).

    Args:
        model_name: timm model name.
        in_chans: input channels.
        name: registry name for messages (defaults to ``"timm:" + model_name``).
        pyramid_channels: see :class:`TimmBackbone`.
        **kwargs: timm constructor arguments (``img_size``, ``drop_path_rate``, ``embed_dim``, ...).

    Returns:
        The backbone, without any BatchNorm.
    """
    body = create_timm_features(model_name, in_chans, **kwargs)
    if _is_plain(body) and len(body.feature_info.reduction()) > 1 and "out_indices" not in kwargs:  # type: ignore[union-attr,arg-type]
        rebuild = {"out_indices": (-1,), **kwargs}
        try:
            body = create_timm_features(model_name, in_chans, **{"dynamic_img_size": True, **rebuild})
        except TypeError:
            body = create_timm_features(model_name, in_chans, **rebuild)
    convert_bn_to_gn(body)
    return TimmBackbone(name or f"timm:{model_name}", body, pyramid_channels)


# name, timm model, paper family, fixed constructor arguments (user kwargs override them).
_PLAIN_DYNAMIC = {"out_indices": (-1,), "dynamic_img_size": True}
_PLAIN_FIXED = {"out_indices": (-1,)}
TIMM_BACKBONES: list[tuple[str, str, str, dict[str, Any]]] = [
    # features_only discards VGG's 4096-wide 7x7 "pre_logits" conv; shrinking it skips ~100M wasted inits (2.5 s).
    ("vgg11", "vgg11", "VGG", {"mlp_ratio": 1 / 4096}),
    ("vgg11_bn", "vgg11_bn", "VGG", {"mlp_ratio": 1 / 4096}),
    ("resnet18", "resnet18", "ResNet", {}),
    ("resnet34", "resnet34", "ResNet", {}),
    ("resnet50", "resnet50", "ResNet", {}),
    ("resnet18d", "resnet18d", "ResNet-D", {}),
    ("resnet50d", "resnet50d", "ResNet-D", {}),
    ("resnetrs50", "resnetrs50", "ResNet-RS", {}),
    ("resnext50_32x4d", "resnext50_32x4d", "ResNeXt", {}),
    ("resnest14d", "resnest14d", "ResNeSt", {}),
    ("wide_resnet50_2", "wide_resnet50_2", "WRN", {}),
    ("inception_v3", "inception_v3", "Inception v3", {}),
    ("inception_v4", "inception_v4", "Inception v4", {}),
    ("seresnet18", "seresnet18", "SE-Net", {}),
    ("xception", "legacy_xception", "Xception", {}),
    ("xception41", "xception41", "Xception", {}),
    ("mobilenetv1_100", "mobilenetv1_100", "MobileNet v1", {}),
    ("mobilenetv2_100", "mobilenetv2_100", "MobileNet v2", {}),
    ("mobilenetv3_small_100", "mobilenetv3_small_100", "MobileNet v3", {}),
    ("mobilenetv3_large_100", "mobilenetv3_large_100", "MobileNet v3", {}),
    ("efficientnet_b0", "efficientnet_b0", "EfficientNet", {}),
    ("ese_vovnet19b_dw", "ese_vovnet19b_dw", "VoVNet", {}),
    ("cspresnet50", "cspresnet50", "CSPNet", {}),
    ("cspdarknet53", "cspdarknet53", "CSPNet", {}),
    ("densenet121", "densenet121", "DenseNet", {}),
    ("vit_tiny_patch16_224", "vit_tiny_patch16_224", "ViT", _PLAIN_DYNAMIC),
    ("deit_tiny_patch16_224", "deit_tiny_patch16_224", "DeiT", _PLAIN_DYNAMIC),
    ("deit_tiny_distilled_patch16_224", "deit_tiny_distilled_patch16_224", "DeiT", _PLAIN_DYNAMIC),
    ("swin_tiny_patch4_window7_224", "swin_tiny_patch4_window7_224", "Swin", {"dynamic_img_size": True}),
    ("pvt_v2_b0", "pvt_v2_b0", "PVT", {}),
    # SegFormer's MiT-B0 is PVTv2-B0 (overlapping patch embed, spatial-reduction attention, Mix-FFN with a
    # depthwise conv, same widths/depths/heads/reduction ratios) except for its 4x (not 8x) MLPs in stages 1-2.
    ("mit_b0", "pvt_v2_b0", "SegFormer MiT", {"mlp_ratios": (4, 4, 4, 4)}),
    ("twins_pcpvt_small", "twins_pcpvt_small", "Twins", {}),
    ("twins_svt_small", "twins_svt_small", "Twins", {}),
    ("convit_tiny", "convit_tiny", "ConViT", _PLAIN_FIXED),
    # timm has BEiT only from base size (86M); this is BEiT's architecture at DeiT-tiny width (5.5M).
    ("beit_tiny_patch16_224", "beit_base_patch16_224", "BEiT", {**_PLAIN_FIXED, "embed_dim": 192, "num_heads": 3}),
    ("resmlp_12_224", "resmlp_12_224", "ResMLP", _PLAIN_FIXED),
]

# Unpadded convolutions: below this input side the deepest maps vanish.
_MIN_INPUT = {"inception_v3": 96, "inception_v4": 96}
# Built for one input size (``img_size``, default 224); other sizes are resized to it and back.
_FIXED_INPUT = {"convit_tiny", "beit_tiny_patch16_224", "resmlp_12_224"}


def _make_builder(name: str, model_name: str, fixed: dict[str, Any]) -> Any:
    def builder(in_chans: int = 1, **kwargs: Any) -> TimmBackbone:
        return build_timm_backbone(model_name, in_chans, name=name, **{**fixed, **kwargs})

    builder.__name__ = f"build_{name}"
    builder.__doc__ = f"timm ``{model_name}`` as a GroupNorm backbone (kwargs go to the timm constructor)."
    return builder


for _name, _model, _family, _fixed in TIMM_BACKBONES:
    BACKBONES.add(
        _name,
        _make_builder(_name, _model, _fixed),
        family=_family,
        source="timm",
        timm_name=_model,
        min_input=_MIN_INPUT.get(_name, 32),
        fixed_input=_name in _FIXED_INPUT,
    )


__all__ = ["TIMM_BACKBONES", "TimmBackbone", "build_timm_backbone", "create_timm_features"]
