"""Load backbone weights from a local file (never downloads).

Accepted: ``torch.save`` files (raw state dict, or a dict holding it under ``state_dict``/``model``; read as data
by :func:`spine_kp.torch_files.load_torch_file`, which refuses a file that needs code to load) and ``.safetensors``.
Keys are matched to the backbone even when names differ by
wrappers: ``module.``/``model.`` prefixes are stripped, then the (checkpoint-prefix, model-prefix) pair that maps
the most tensors onto parameters of the same shape is used, comparing names with ``_`` and ``.`` treated alike
(timm's feature wrappers rename ``layers.0`` to ``layers_0``). So an original timm/torchvision checkpoint, a
backbone's own ``state_dict()`` and a whole-network checkpoint (``backbone.`` prefix) all load.
A 3-channel stem conv loaded into a model with another ``in_chans`` is adapted with timm's ``adapt_input_conv``
(summed over RGB for 1 channel); a square absolute position embedding of another grid size (a ViT trained at 224
loaded into one built for 512) is resampled with timm's ``resample_abs_pos_embed``. Relative-position tables
(BEiT, Swin) and ResMLP's token-mixing layers are tied to their grid: a size mismatch there is skipped. Unmatched
tensors are reported in one warning.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from timm.layers import resample_abs_pos_embed
from timm.models import adapt_input_conv
from torch import nn

from spine_kp.torch_files import load_torch_file

_WRAPPER_PREFIXES = ("module.", "model.")
_NESTED_KEYS = ("state_dict", "model")
_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")
# A prefix is a candidate only if this share of keys carries it (keeps the search small and meaningful).
_MIN_PREFIX_SHARE = 0.1


@dataclass
class LoadReport:
    """What :func:`load_backbone_weights` did (all names are checkpoint / model keys)."""

    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    dropped_bn_stats: int = 0


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` (see module docstring), with wrapper prefixes stripped.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pretrained weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj: object = load_file(str(path), device="cpu")
    else:
        obj = load_torch_file(path)  # as data: a file that needs code to load is refused (UnsafeFileError)
    for key in _NESTED_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(obj).__name__}")
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"{path}: no tensors in the checkpoint")
    for prefix in _WRAPPER_PREFIXES:
        while all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _norm(key: str) -> str:
    return key.replace("_", ".")


def _prefixes(keys: Iterable[str], max_depth: int) -> list[str]:
    """'' plus every leading dotted prefix (up to ``max_depth`` parts) carried by enough of ``keys``."""
    keys = list(keys)
    counts: Counter[str] = Counter()
    for k in keys:
        parts = k.split(".")
        for d in range(1, min(max_depth, len(parts) - 1) + 1):
            counts[".".join(parts[:d]) + "."] += 1
    return [""] + [p for p, n in counts.items() if n >= _MIN_PREFIX_SHARE * len(keys)]


def _square_grid(tokens: int) -> int | None:
    side = int(round(tokens**0.5))
    return side if side > 0 and side * side == tokens else None


def _pos_embed_prefix(src: torch.Tensor, dst: torch.Tensor) -> int | None:
    """Prefix (class/distillation) token count for which both (1, N, C) embeddings are square grids."""
    if src.ndim != 3 or dst.ndim != 3 or src.shape[0] != 1 or src.shape[2] != dst.shape[2]:
        return None
    for prefix in (0, 1, 2):
        if _square_grid(src.shape[1] - prefix) and _square_grid(dst.shape[1] - prefix):
            return prefix
    return None


def _is_input_conv(src: torch.Tensor, dst: torch.Tensor) -> bool:
    """A conv weight that differs only in input channels from a 3-channel (RGB) source."""
    return (
        src.ndim == 4
        and dst.ndim == 4
        and src.shape[1] == 3
        and src.shape[0] == dst.shape[0]
        and src.shape[2:] == dst.shape[2:]
    )


def _compatible(src: torch.Tensor, dst: torch.Tensor) -> bool:
    """Same shape, an RGB stem conv (adapted to ``in_chans``) or a square position embedding (resampled)."""
    return src.shape == dst.shape or _is_input_conv(src, dst) or _pos_embed_prefix(src, dst) is not None


def _adapt(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Make a compatible tensor fit: sum/repeat RGB over ``in_chans``, or resample the position grid."""
    if _is_input_conv(src, dst):
        return adapt_input_conv(dst.shape[1], src.float())
    prefix = _pos_embed_prefix(src, dst)
    if prefix is None:
        raise ValueError(f"cannot adapt a tensor of shape {tuple(src.shape)} to {tuple(dst.shape)}")
    old, new = _square_grid(src.shape[1] - prefix), _square_grid(dst.shape[1] - prefix)
    return resample_abs_pos_embed(src.float(), [new, new], [old, old], num_prefix_tokens=prefix)  # type: ignore[list-item]


def _target(key: str, ck_prefix: str, own_prefix: str, own_by_norm: Mapping[str, str]) -> str | None:
    """Model key a checkpoint key maps to under a prefix pair (``None``: no such name in the model)."""
    if not key.startswith(ck_prefix):
        return None
    return own_by_norm.get(_norm(own_prefix + key[len(ck_prefix) :]))


def _match(state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]) -> tuple[dict[str, str], str, str]:
    """Checkpoint key -> model key for the best (checkpoint prefix, model prefix) pair, and that pair."""
    own_by_norm = {_norm(k): k for k in own}
    best: tuple[dict[str, str], str, str] = ({}, "", "")
    for ck_prefix in _prefixes(state, 2):
        for own_prefix in _prefixes(own, 3):
            pairs = {}
            for k, v in state.items():
                target = _target(k, ck_prefix, own_prefix, own_by_norm)
                if target is not None and _compatible(v, own[target]):
                    pairs[k] = target
            if len(pairs) > len(best[0]):
                best = (pairs, ck_prefix, own_prefix)
    return best


def load_backbone_weights(model: nn.Module, path: str | Path) -> LoadReport:
    """Load the tensors of ``path`` that match ``model`` (in place) and warn about the rest.

    Args:
        model: the backbone (or any module).
        path: local checkpoint file.

    Returns:
        A :class:`LoadReport`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no tensor of the checkpoint matches the model.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    mapping, ck_prefix, own_prefix = _match(state, own)
    if not mapping:
        raise ValueError(f"{path}: no tensor matches {type(model).__name__} (is it a checkpoint of this backbone?)")
    report = LoadReport()
    new_state = {}
    for src_key, dst_key in mapping.items():
        value = state[src_key]
        if value.shape != own[dst_key].shape:
            value = _adapt(value, own[dst_key])
            report.adapted.append(dst_key)
        new_state[dst_key] = value
        report.loaded.append(dst_key)
    model.load_state_dict(new_state, strict=False)
    own_by_norm = {_norm(k): k for k in own}
    for k in state:
        if k in mapping:
            continue
        if k.rsplit(".", 1)[-1] in _BN_STATS:
            report.dropped_bn_stats += 1
        elif (target := _target(k, ck_prefix, own_prefix, own_by_norm)) is not None:
            report.mismatched.append(f"{k} {tuple(state[k].shape)} vs {tuple(own[target].shape)}")
        else:
            report.unexpected.append(k)
    report.missing = [k for k in own if k not in new_state]
    if report.missing or report.unexpected or report.mismatched:
        warnings.warn(_describe(path, report, len(own)), stacklevel=2)
    return report


def short_names(names: list[str], limit: int = 8) -> str:
    """``a, b, c (+N more)``: at most ``limit`` names for a one-line report."""
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _describe(path: str | Path, report: LoadReport, total: int) -> str:
    parts = [f"{path}: loaded {len(report.loaded)}/{total} backbone tensors"]
    if report.adapted:
        parts.append(f"adapted (input conv / position grid): {short_names(report.adapted)}")
    if report.missing:
        parts.append(f"{len(report.missing)} missing, left at init: {short_names(report.missing)}")
    if report.mismatched:
        parts.append(f"{len(report.mismatched)} skipped for shape: {short_names(report.mismatched)}")
    if report.unexpected:
        parts.append(f"{len(report.unexpected)} unexpected, ignored: {short_names(report.unexpected)}")
    if report.dropped_bn_stats:
        parts.append(f"{report.dropped_bn_stats} BatchNorm running statistics dropped (GroupNorm has none)")
    return "; ".join(parts)


__all__ = ["LoadReport", "load_backbone_weights", "read_state_dict"]
