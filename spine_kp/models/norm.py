"""GroupNorm helpers: the project never trains BatchNorm (batches of a few MRI slices make its statistics noise).

Group Normalization (Wu & He, notes 001) normalises over channel groups of one sample, so it behaves the same at
batch size 1 and 64. ``convert_bn_to_gn`` turns any timm/torchvision backbone into a GroupNorm network.
"""

from __future__ import annotations

import torch
from torch import nn

_BN_TYPES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def num_groups(channels: int, preferred: int = 32, min_channels_per_group: int = 4) -> int:
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
    if isinstance(module, _BN_TYPES):
        return _bn_to_gn(module, preferred_groups)
    for name, child in list(module.named_children()):
        if isinstance(child, _BN_TYPES):
            setattr(module, name, _bn_to_gn(child, preferred_groups))
        else:
            convert_bn_to_gn(child, preferred_groups)
    return module


def _bn_to_gn(bn: nn.Module, preferred_groups: int) -> nn.GroupNorm:
    channels = int(bn.num_features)  # type: ignore[arg-type]
    affine = bool(getattr(bn, "affine", True))
    gn = group_norm(channels, preferred_groups, eps=float(bn.eps), affine=affine)  # type: ignore[arg-type]
    if affine and getattr(bn, "weight", None) is not None:
        with torch.no_grad():
            gn.weight.copy_(bn.weight.detach())  # type: ignore[union-attr]
            gn.bias.copy_(bn.bias.detach())  # type: ignore[union-attr]
    ref = getattr(bn, "weight", None)
    if ref is not None:
        gn.to(device=ref.device, dtype=ref.dtype)
    return gn


def has_batchnorm(module: nn.Module) -> bool:
    """True when any submodule is a BatchNorm (tests and ``create_model`` use this as a guard)."""
    return any(isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.SyncBatchNorm)) for m in module.modules())


__all__ = ["convert_bn_to_gn", "group_norm", "has_batchnorm", "num_groups"]
