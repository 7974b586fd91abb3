"""Validation outputs of every DDP rank, merged once per study: the epoch's metrics measure the whole split.

Under DDP each rank validates its own shard of the validation split, and Lightning's ``DistributedSampler`` pads
the shards to equal length by repeating studies. Each rank keeps its outputs keyed by study UID;
:func:`gather_by_study` collects all ranks' (``torch.distributed.all_gather_object``: the outputs are Python objects
of any size, which ``LightningModule.all_gather`` cannot carry), keeps one copy of a study the sampler repeated and
orders the studies by UID. Every rank then holds the same outputs, in the same order as a single process would, so
metrics computed from them are those of the whole split and equal on every rank.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

import torch.distributed as dist

T = TypeVar("T")


def is_distributed() -> bool:
    """A torch.distributed process group is running (DDP with more than one process)."""
    return dist.is_available() and dist.is_initialized()


def merge_by_study(parts: Iterable[Mapping[str, T]]) -> dict[str, T]:
    """Several ranks' study UID -> output maps as one, by UID; a study in several parts keeps its first output.

    A repeated study is the same image through the same weights, so its copies are equal: which one is kept does
    not matter, only that it counts once.
    """
    merged: dict[str, T] = {}
    for part in parts:
        for uid, item in part.items():
            merged.setdefault(uid, item)
    return dict(sorted(merged.items()))


def gather_by_study(local: Mapping[str, T]) -> dict[str, T]:
    """Every rank's outputs merged (:func:`merge_by_study`); a single process gets its own, ordered by UID.

    Collective under DDP: every rank must call it, with its own (possibly empty) outputs.
    """
    if not is_distributed():
        return merge_by_study([local])
    parts: list[Mapping[str, T] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, dict(local))
    return merge_by_study(p for p in parts if p is not None)


__all__ = ["gather_by_study", "is_distributed", "merge_by_study"]
