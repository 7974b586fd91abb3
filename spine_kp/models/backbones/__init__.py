"""Backbones: image (B, C, H, W) -> feature maps shallow -> deep, strides ending at 32, GroupNorm only.

Sources, by preference: timm (``timm_adapter``), torchvision for what timm lacks (``torchvision_adapter``),
own code for the rest (``ibn``, ``unet_encoder``, ``hourglass_encoder``). Importing this package registers all
of them in :data:`spine_kp.models.registry.BACKBONES`.
"""

from __future__ import annotations

from spine_kp.models.backbones.base import DEEPEST_REDUCTION, Backbone, align_to_input
from spine_kp.models.backbones.factory import TIMM_PREFIX, create_backbone, list_backbones
from spine_kp.models.backbones.weights import LoadReport, load_backbone_weights, read_state_dict

__all__ = [
    "DEEPEST_REDUCTION",
    "TIMM_PREFIX",
    "Backbone",
    "LoadReport",
    "align_to_input",
    "create_backbone",
    "list_backbones",
    "load_backbone_weights",
    "read_state_dict",
]
