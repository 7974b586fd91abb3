"""The assembled landmark network: backbone -> decoder -> heatmap head + grade head, built from plain config.

Coordinate frame: input pixels, pixel centres at integers (``spine_kp.codec.heatmap``); heatmaps are at
``output_stride``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from spine_kp.codec.heatmap import cells_to_pixels, heatmap_argmax
from spine_kp.config import bounded, check_bounds
from spine_kp.models.backbones import create_backbone
from spine_kp.models.backbones.base import DEEPEST_REDUCTION
from spine_kp.models.context import create_context
from spine_kp.models.decoders import DECODERS, create_decoder
from spine_kp.models.heads import GradeHead, HeatmapHead
from spine_kp.models.norm import convert_bn_to_gn
from spine_kp.schema import Schema

#: Backbone names meaning "no external backbone" for a standalone decoder (the decoder reads the image).
NO_BACKBONE = ("none", "")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture description, plain data so checkpoints can store it (``spine_kp.config.to_dict`` /
    ``from_dict``, like every other config section; an unknown key fails there, naming it).

    Attributes:
        backbone: ``BACKBONES`` name, or "none" for a standalone decoder (``hourglass``).
        decoder: ``DECODERS`` name.
        in_chans: input channels (1, or 2k+1 with k neighbouring slices on each side).
        decoder_channels: width of the decoder output features (the heads' input).
        output_stride: heatmap stride w.r.t. the input (1, 2 or 4).
        drop_path_rate: stochastic depth rate passed to backbones that support it (when > 0).
        dropout: dropout in the grade head.
        pretrained: local weights file for the backbone (nothing is downloaded).
        backbone_kwargs: extra keyword arguments for the backbone builder.
        decoder_kwargs: extra keyword arguments for the decoder builder.
        head_kwargs: extra keyword arguments for :class:`~spine_kp.models.heads.GradeHead`.
        context: ``CONTEXTS`` name of a block run on the backbone's deepest map before the decoder ("attention":
            transformer layers over its cells, :mod:`spine_kp.models.context`); "none" for none.
        context_kwargs: keyword arguments for that block (dim, heads, layers, mlp_ratio, dropout).
    """

    backbone: str = "resnet34"
    decoder: str = "unet"
    in_chans: int = bounded(1, ge=1, le=17)  # 2k + 1 slices, k <= 8 (data.neighbours)
    decoder_channels: int = bounded(64, ge=1, le=4096)
    output_stride: int = 4
    drop_path_rate: float = bounded(0.0, ge=0, lt=1)
    dropout: float = bounded(0.0, ge=0, lt=1)
    pretrained: str | None = None
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    decoder_kwargs: dict[str, Any] = field(default_factory=dict)
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    context: str = "none"
    context_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.context != "none" and not self.uses_backbone:
            raise ValueError(
                f"model.context {self.context!r} needs a backbone; decoder {self.decoder!r} runs without one"
            )
        if self.output_stride not in (1, 2, 4):
            raise ValueError(f"ModelConfig: output_stride must be 1, 2 or 4, got {self.output_stride}")
        if self.pretrained is not None and not self.uses_backbone:  # checked at load, before any data is read
            raise ValueError(
                f"model.pretrained {self.pretrained!r} given, but decoder {self.decoder!r} runs without a backbone to "
                "load it into"
            )

    @property
    def uses_backbone(self) -> bool:
        """Whether :func:`create_model` builds a backbone (else a standalone decoder reads the image)."""
        if self.backbone in NO_BACKBONE:
            return False
        standalone = self.decoder in DECODERS and DECODERS.get(self.decoder).meta.get("standalone", False)
        return not (standalone and self.backbone == self.decoder)

    @property
    def size_divisor(self) -> int:
        """What the input's height and width must be multiples of: the network's total stride.

        Every backbone ends at stride :data:`~spine_kp.models.backbones.base.DEEPEST_REDUCTION` (32, checked when it
        is built); a standalone decoder (the hourglass, which pools odd sizes too) needs the output stride only.
        """
        return max(self.output_stride, DEEPEST_REDUCTION if self.uses_backbone else 1)


class LandmarkNet(nn.Module):
    """Backbone (multi-scale features) + decoder + heatmap head + grade head.

    Args:
        backbone: module returning a list of maps shallow -> deep, with ``feature_channels`` and
            ``feature_reductions`` attributes; ``None`` feeds the image itself to the decoder (reduction 1).
        decoder: built for that backbone (see ``spine_kp.models.decoders``), with ``out_channels``.
        schema: the landmark set (heatmap channels in schema order, grade logits per kind).
        output_stride: stride of the decoder output.
        head_kwargs: extra arguments for :class:`GradeHead`.
        dropout: grade-head dropout.
        context: a block run on the backbone's deepest map before the decoder (``spine_kp.models.context``).
    """

    def __init__(
        self,
        backbone: nn.Module | None,
        decoder: nn.Module,
        schema: Schema,
        output_stride: int,
        head_kwargs: dict[str, Any] | None = None,
        dropout: float = 0.0,
        context: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.context = context
        self.decoder = decoder
        self.schema = schema
        self.output_stride = output_stride
        self.size_divisor = max(output_stride, *(backbone.feature_reductions if backbone is not None else [1]))
        channels = int(decoder.out_channels)
        self.heatmap_head = HeatmapHead(channels, schema.num_landmarks)
        self.grade_head = GradeHead(channels, schema, output_stride, dropout=dropout, **(head_kwargs or {}))

    def forward(self, x: torch.Tensor, points: torch.Tensor | None = None) -> dict[str, Any]:
        """Heatmaps and grade logits.

        Args:
            x: (B, C, H, W) image(s); H and W divisible by ``size_divisor`` (32 with a backbone).
            points: (B, K, 2) xy in input pixels at which grade features are read (ground truth in training);
                ``None`` reads them at the heatmap argmax (cell centres, no gradient).

        Returns:
            ``heatmaps`` (B, K, H/s, W/s); ``aux_heatmaps`` list of (B, K, H/s, W/s) intermediate heatmaps for
            deep supervision (hourglass stacks; empty otherwise); ``grade_logits`` ``{kind: (B, K_kind, G_kind)}``;
            ``points`` (B, K, 2) the points the grades were read at; ``features`` (B, C, H/s, W/s) the decoder
            output, so a caller that picks points later (level-order decoding) can :meth:`grade` them without
            running the network again.
        """
        height, width = x.shape[-2:]
        if height % self.size_divisor or width % self.size_divisor:
            raise ValueError(f"LandmarkNet: input size {(height, width)} must be divisible by {self.size_divisor}")
        features = self.backbone(x) if self.backbone is not None else [x]
        if self.context is not None:
            features = [*features[:-1], self.context(features[-1])]
        out = self.decoder(features)
        feats, aux = out if isinstance(out, tuple) else (out, [])
        heatmaps = self.heatmap_head(feats)  # (B, K, H/s, W/s)
        if points is None:
            uv, _ = heatmap_argmax(heatmaps.detach())
            points = cells_to_pixels(uv, self.output_stride)
        return {
            "heatmaps": heatmaps,
            "aux_heatmaps": list(aux),
            "grade_logits": self.grade(feats, points),
            "points": points,
            "features": feats,
        }

    def grade(self, features: torch.Tensor, points: torch.Tensor) -> dict[str, torch.Tensor]:
        """Grade logits ``{kind: (B, K_kind, G_kind)}`` read from decoder ``features`` at input-pixel ``points``.

        Args:
            features: (B, C, H/s, W/s), the ``features`` entry of :meth:`forward`'s output.
            points: (B, K, 2) xy in input pixels, one per schema landmark.
        """
        return self.grade_head(features, points)


def build_landmark_net(backbone: nn.Module | None, cfg: ModelConfig, schema: Schema) -> LandmarkNet:
    """Assemble a :class:`LandmarkNet` around an already-built backbone (``None``: the decoder reads the image).

    Any BatchNorm left in the backbone is converted to GroupNorm (the project never trains BatchNorm).
    """
    entry = DECODERS.get(cfg.decoder)
    if backbone is None:
        if not entry.meta.get("standalone"):
            raise ValueError(f"decoder {cfg.decoder!r} needs a backbone; backbone {cfg.backbone!r} gives none")
        channels, reductions = [cfg.in_chans], [1]
    else:
        convert_bn_to_gn(backbone)
        channels, reductions = list(backbone.feature_channels), list(backbone.feature_reductions)
    kwargs = dict(cfg.decoder_kwargs)
    if entry.meta.get("intermediate_supervision"):
        kwargs.setdefault("num_landmarks", schema.num_landmarks)
    decoder = create_decoder(cfg.decoder, channels, reductions, cfg.decoder_channels, cfg.output_stride, **kwargs)
    context = create_context(cfg.context, channels[-1], **cfg.context_kwargs)
    return LandmarkNet(backbone, decoder, schema, cfg.output_stride, cfg.head_kwargs, cfg.dropout, context)


def create_model(cfg: ModelConfig, schema: Schema) -> LandmarkNet:
    """Build the network described by ``cfg`` for ``schema`` (random init unless ``cfg.pretrained`` names a file).

    A standalone decoder (``hourglass``) with backbone "none" or its own name runs on the image directly.
    """
    DECODERS.get(cfg.decoder)  # an unknown decoder fails before a backbone is built, naming the valid ones
    if not cfg.uses_backbone:
        if cfg.pretrained is not None:
            raise ValueError(
                f"model config: pretrained {cfg.pretrained!r} given, but decoder {cfg.decoder!r} runs "
                f"without a backbone to load it into"
            )
        backbone = None
    else:
        kwargs = dict(cfg.backbone_kwargs)
        if cfg.drop_path_rate > 0:
            kwargs.setdefault("drop_path_rate", cfg.drop_path_rate)
        backbone = create_backbone(cfg.backbone, in_chans=cfg.in_chans, pretrained=cfg.pretrained, **kwargs)
    return build_landmark_net(backbone, cfg, schema)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = ["NO_BACKBONE", "LandmarkNet", "ModelConfig", "build_landmark_net", "count_parameters", "create_model"]
