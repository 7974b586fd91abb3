"""GroupNorm helpers: the project never trains BatchNorm (batches of a few MRI slices make its statistics noise).

Group Normalization (Wu & He, notes 001) normalises over channel groups of one sample, so it behaves the same at
batch size 1 and 64. ``convert_bn_to_gn`` turns any timm/torchvision backbone into a GroupNorm network.
"""

from __future__ import annotations

import torch
from timm.layers import GroupNormAct
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

# Frozen BatchNorms (torchvision / timm) are not _BatchNorm subclasses; they are matched by class name.
_FROZEN_BN_NAMES = frozenset({"FrozenBatchNorm2d", "FrozenBatchNormAct2d"})


def is_batchnorm(module: nn.Module) -> bool:
    """True for any BatchNorm flavour: torch BatchNorm1d/2d/3d, SyncBatchNorm, timm BatchNormAct2d, frozen BN."""
    return isinstance(module, _BatchNorm) or type(module).__name__ in _FROZEN_BN_NAMES


def num_groups(channels: int, preferred: int = 32, min_channels_per_group: int = 2) -> int:
    """Largest divisor of ``channels`` that is at most ``preferred`` and leaves >= ``min_channels_per_group``.

    Args:
        channels: number of channels to normalise.
        preferred: the group count to aim for (32 in the GroupNorm paper).
        min_channels_per_group: keep groups at least this wide (1 channel per group degenerates to
            InstanceNorm); relaxed for very narrow layers.

    Returns:
        A group count that divides ``channels``.
    """
    if channels <= 0:
        raise ValueError(f"group_norm: channels must be positive, got {channels}")
    cap = max(1, min(preferred, channels // max(1, min_channels_per_group)))
    for g in range(cap, 0, -1):
        if channels % g == 0:
            return g
    return 1


def group_norm(channels: int, preferred_groups: int = 32, eps: float = 1e-5, affine: bool = True) -> nn.GroupNorm:
    """A ``nn.GroupNorm`` for ``channels`` with a valid group count (see :func:`num_groups`)."""
    return nn.GroupNorm(num_groups(channels, preferred_groups), channels, eps=eps, affine=affine)


def convert_bn_to_gn(module: nn.Module, preferred_groups: int = 32) -> nn.Module:
    """Replace every BatchNorm*/SyncBatchNorm in a module tree with GroupNorm of the same width.

    The affine scale/shift (weight/bias) are copied so a pretrained network keeps its learned per-channel
    affine transform; running statistics have no GroupNorm counterpart and are dropped. The module is changed
    in place and also returned (a bare BatchNorm given as ``module`` is returned converted).

    Args:
        module: any ``nn.Module``.
        preferred_groups: group count to aim for.

    Returns:
        The converted module.
    """
    if is_batchnorm(module):
        return _bn_to_gn(module, preferred_groups)
    for name, child in list(module.named_children()):
        if is_batchnorm(child):
            setattr(module, name, _bn_to_gn(child, preferred_groups))
        else:
            convert_bn_to_gn(child, preferred_groups)
    return module


def _bn_to_gn(bn: nn.Module, preferred_groups: int) -> nn.GroupNorm:
    weight = getattr(bn, "weight", None)
    bias = getattr(bn, "bias", None)
    channels = int(getattr(bn, "num_features", 0) or (weight.shape[0] if weight is not None else 0))
    affine = weight is not None
    groups = num_groups(channels, preferred_groups)
    eps = float(getattr(bn, "eps", 1e-5))
    gn: nn.GroupNorm
    if hasattr(bn, "act"):
        # timm's BatchNormAct2d fuses norm + drop + activation: keep its activation, or the net silently loses it.
        gn = GroupNormAct(channels, num_groups=groups, eps=eps, affine=affine, apply_act=False)
        gn.act = bn.act
        gn.drop = getattr(bn, "drop", nn.Identity())
    else:
        gn = nn.GroupNorm(groups, channels, eps=eps, affine=affine)
    if affine:
        with torch.no_grad():
            gn.weight.copy_(weight.detach())  # type: ignore[union-attr]
            gn.bias.copy_(bias.detach())  # type: ignore[union-attr]
        gn.to(device=weight.device, dtype=weight.dtype)  # type: ignore[union-attr]
    return gn


def has_batchnorm(module: nn.Module) -> bool:
    """True when any submodule is a BatchNorm (tests and ``create_model`` use this as a guard)."""
    return any(is_batchnorm(m) for m in module.modules())


__all__ = ["convert_bn_to_gn", "group_norm", "has_batchnorm", "is_batchnorm", "num_groups"]
