"""``create_backbone``: registry name (or ``timm:<name>``) -> GroupNorm backbone, optionally with local weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

# Imported for their side effect: each module registers its builders in BACKBONES.
from spine_kp.models.backbones import (  # noqa: F401
    hourglass_encoder,
    ibn,
    timm_adapter,
    torchvision_adapter,
    unet_encoder,
)
from spine_kp.models.backbones.timm_adapter import build_timm_backbone
from spine_kp.models.backbones.weights import load_backbone_weights
from spine_kp.models.registry import BACKBONES

#: ``create_backbone("timm:<model>")`` builds any timm model without registering it.
TIMM_PREFIX = "timm:"


def create_backbone(name: str, in_chans: int = 1, pretrained: str | None = None, **kwargs: Any) -> nn.Module:
    """Build a backbone by registry name, or ``timm:<any timm model>``.

    Args:
        name: a name from :func:`list_backbones`, or ``"timm:" + timm model name``.
        in_chans: image channels (1 for a single MRI slice, 2k+1 for stacked neighbouring slices).
        pretrained: local weights file (see ``backbones/weights.py``); ``None`` keeps random init. Nothing is
            ever downloaded.
        **kwargs: architecture arguments of the builder (timm constructor arguments such as ``drop_path_rate``,
            ``img_size``; ``width`` for ``unet``; ...).

    Returns:
        A module whose ``forward`` maps (B, in_chans, H, W) to a list of maps (B, C_i, H / r_i, W / r_i),
        shallow -> deep, with ``.feature_channels`` (C_i) and ``.feature_reductions`` (r_i, last one 32).

    Raises:
        KeyError: unknown name (the message lists the valid ones).
        FileNotFoundError: ``pretrained`` does not exist.
    """
    if pretrained is not None and not Path(pretrained).is_file():
        raise FileNotFoundError(f"{pretrained}: pretrained weights file for backbone {name!r} not found")
    if name.startswith(TIMM_PREFIX):
        model = build_timm_backbone(name[len(TIMM_PREFIX) :], in_chans, name=name, **kwargs)
    else:
        model = BACKBONES.get(name).builder(in_chans=in_chans, **kwargs)
    if pretrained is not None:
        load_backbone_weights(model, pretrained)
    return model


def list_backbones() -> list[str]:
    """Registered backbone names (``timm:<name>`` works in addition)."""
    return sorted(BACKBONES.names())


__all__ = ["TIMM_PREFIX", "create_backbone", "list_backbones"]
