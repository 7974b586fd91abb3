"""The crop grader: a small GroupNorm CNN over landmark-centred crops, plus a landmark-identity embedding.

Shapes: B slices, K landmarks (schema order), P planes per landmark, S crop side, K_kind landmarks of a kind, G grades
of that kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spine_kp.grading.config import GradeStageConfig
from spine_kp.models.norm import group_norm
from spine_kp.schema import Schema

POOLS = ("avg", "avgmax")
CONTEXTS = ("none", "mean")


def _conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), group_norm(c_out, 8), nn.GELU())


def graded_landmarks(schema: Schema, kinds: Sequence[str] = ()) -> tuple[int, ...]:
    """Schema indices of the landmarks of ``kinds`` (all kinds when empty), in schema order.

    Raises:
        KeyError: a kind the schema does not have (the message lists the schema's kinds).
    """
    wanted = {schema.kind(k).name for k in kinds} if kinds else {k.name for k in schema.kinds}
    return tuple(i for i, k in enumerate(schema.landmark_kinds) if k in wanted)


class CropGrader(nn.Module):
    """Grade logits per kind from one crop per graded landmark.

    One block per entry of ``channels``: a stride-2 conv3x3-GN-GELU, then ``depth - 1`` conv3x3-GN-GELU at that
    stride; global average pooling (``pool="avgmax"``: average and max pooling, concatenated, so a finding a few
    pixels wide is not diluted by the whole crop); concatenation with a learned embedding of the landmark's identity
    (every level has its own prior); a hidden layer; one linear classifier per graded kind: softmax logits for
    single-label kinds, independent sigmoid logits for multi-label kinds (the loss and ``grade_probabilities``
    differ, the logits do not). The output matches :class:`spine_kp.models.heads.GradeHead`'s for the graded kinds,
    so both can be combined landmark by landmark.

    Args:
        schema: the landmark set.
        kinds: the kinds it grades (their landmarks are its inputs, ``landmarks`` in schema order); empty: all.
        channels: widths of the stride-2 blocks.
        depth: convolutions per block (the first one downsamples).
        embed_dim: identity embedding width.
        hidden: hidden layer width.
        dropout: before the classifiers.
        planes: P input planes per landmark (its slice and parasagittal neighbours), the first conv's channels.
        pool: "avg" or "avgmax" (see above).
        context: "none", or "mean": the mean of the pooled features over the slice's graded landmarks (the whole
            spine on that slice: degeneration runs through a spine, so the other levels inform each one) enters every
            landmark's hidden layer through its own linear map, added before the activation. The map starts at zero,
            so a grader with context starts as the same function as one without, and a stage trained without it
            (``grade_stage.init``) loads whole.
    """

    def __init__(
        self,
        schema: Schema,
        kinds: Sequence[str] = (),
        channels: Sequence[int] = (16, 32, 64, 96),
        depth: int = 1,
        embed_dim: int = 16,
        hidden: int = 128,
        dropout: float = 0.1,
        planes: int = 1,
        pool: str = "avg",
        context: str = "none",
    ) -> None:
        super().__init__()
        self.landmarks = graded_landmarks(schema, kinds)
        self.planes = int(planes)
        layers: list[nn.Module] = []
        c_in = self.planes
        for c in (int(w) for w in channels):
            layers += [_conv(c_in, c, 2)] + [_conv(c, c, 1) for _ in range(max(1, depth) - 1)]
            c_in = c
        if pool not in POOLS:
            raise ValueError(f"CropGrader: pool must be one of {POOLS}, got {pool!r}")
        self.features = nn.Sequential(*layers)
        self.pool = pool
        width = c_in * (2 if pool == "avgmax" else 1)
        self.embedding = nn.Embedding(len(self.landmarks), embed_dim)
        self.mlp = nn.Sequential(nn.Linear(width + embed_dim, hidden), nn.GELU(), nn.Dropout(dropout))
        if context not in CONTEXTS:
            raise ValueError(f"CropGrader: context must be one of {CONTEXTS}, got {context!r}")
        self.context: nn.Linear | None = None
        if context == "mean":
            self.context = nn.Linear(width, hidden, bias=False)
            nn.init.zeros_(self.context.weight)
        graded_kinds = [schema.landmark_kinds[i] for i in self.landmarks]
        self.kind_names = [k.name for k in schema.kinds if k.name in graded_kinds]
        for i, kind in enumerate(self.kind_names):
            rows = [j for j, k in enumerate(graded_kinds) if k == kind]
            self.register_buffer(f"_index_{i}", torch.tensor(rows, dtype=torch.long), persistent=False)
        self.classifiers = nn.ModuleList(nn.Linear(hidden, len(schema.kind(k).grades)) for k in self.kind_names)

    def forward(self, crops: Tensor) -> dict[str, Tensor]:
        """Grade logits per graded kind.

        Args:
            crops: (B, L * P, S, S) normalized crops, P planes per graded landmark (``self.landmarks``, schema
                order; landmark-major, as :func:`spine_kp.grading.crops.slice_crops` lays them out).

        Returns:
            ``{kind: (B, K_kind, G_kind)}`` logits for the graded kinds, landmarks in schema order within each kind.
        """
        b, n, s, _ = crops.shape
        k, p = len(self.landmarks), self.planes
        if n != k * p:
            raise ValueError(f"CropGrader: expected {k} landmarks x {p} planes = {k * p} crops per slice, got {n}")
        maps = self.features(crops.reshape(b * k, p, s, s).float())  # (B * K, C, s', s')
        pooled = [maps.mean((2, 3))] + ([maps.amax((2, 3))] if self.pool == "avgmax" else [])
        feats = torch.cat(pooled, dim=1).reshape(b, k, -1)  # (B, K, C or 2C)
        ident = self.embedding.weight[None].expand(b, -1, -1)  # (B, K, E)
        pre = self.mlp[0](torch.cat([feats, ident], dim=-1))  # (B, K, hidden)
        if self.context is not None:
            pre = pre + self.context(feats.mean(dim=1, keepdim=True))  # the slice's levels, broadcast over K
        hidden = self.mlp[2](self.mlp[1](pre))
        out: dict[str, Tensor] = {}
        for i, (kind, clf) in enumerate(zip(self.kind_names, self.classifiers)):
            out[kind] = clf(hidden[:, getattr(self, f"_index_{i}")])
        return out


class PerKindCropGrader(nn.Module):
    """One :class:`CropGrader` per graded kind, behind the same interface (``landmarks``, ``kind_names``, forward).

    Vertebral bodies and discs look nothing alike; a network this small graded discs clearly worse when it also had
    to grade vertebrae (measured on phantoms), so by default each kind gets its own.

    Args:
        schema: the landmark set.
        kinds: the kinds graded; empty: all.
        grader_kwargs: the other arguments of each kind's :class:`CropGrader` (``channels``, ``depth``,
            ``embed_dim``, ``hidden``, ``dropout``, ``planes``, ``pool``, ``context``).
    """

    def __init__(self, schema: Schema, kinds: Sequence[str] = (), **grader_kwargs: Any) -> None:
        super().__init__()
        self.landmarks = graded_landmarks(schema, kinds)
        graded_kinds = [schema.landmark_kinds[i] for i in self.landmarks]
        self.kind_names = [k.name for k in schema.kinds if k.name in graded_kinds]
        self.graders = nn.ModuleDict({n: CropGrader(schema, (n,), **grader_kwargs) for n in self.kind_names})
        self.planes = next(iter(self.graders.values())).planes if self.graders else 1
        for i, kind in enumerate(self.kind_names):  # the crop rows of the kind's landmarks, all their planes
            rows = [j * self.planes + q for j, k in enumerate(graded_kinds) if k == kind for q in range(self.planes)]
            self.register_buffer(f"_rows_{i}", torch.tensor(rows, dtype=torch.long), persistent=False)

    def forward(self, crops: Tensor) -> dict[str, Tensor]:
        """Same contract as :meth:`CropGrader.forward`: (B, L * P, S, S) -> ``{kind: (B, K_kind, G_kind)}``."""
        if crops.shape[1] != len(self.landmarks) * self.planes:
            raise ValueError(
                f"CropGrader: expected {len(self.landmarks) * self.planes} crops per slice, got {crops.shape[1]}"
            )
        out: dict[str, Tensor] = {}
        for i, kind in enumerate(self.kind_names):
            out.update(self.graders[kind](crops[:, getattr(self, f"_rows_{i}")]))
        return out


class CropGraderEnsemble(nn.Module):
    """Several graders of the same architecture, each from its own initialisation; the logits are their mean.

    Training gives every member its own loss on the same batches (:meth:`member_logits`), so the members stay
    independent models and their mean reduces the variance one small network has on a few hundred real discs.

    Args:
        members: the graders (same ``landmarks``, ``kind_names`` and ``planes``).
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"CropGraderEnsemble: at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)
        first = self.members[0]
        self.landmarks, self.kind_names, self.planes = first.landmarks, first.kind_names, first.planes

    def member_logits(self, crops: Tensor) -> list[dict[str, Tensor]]:
        """Each member's ``{kind: (B, K_kind, G_kind)}`` logits."""
        return [m(crops) for m in self.members]

    def forward(self, crops: Tensor) -> dict[str, Tensor]:
        """Same contract as :meth:`CropGrader.forward`; the members' mean logits."""
        outs = self.member_logits(crops)
        return {k: torch.stack([o[k] for o in outs]).mean(dim=0) for k in outs[0]}


def create_crop_grader(cfg: GradeStageConfig, schema: Schema) -> CropGrader | PerKindCropGrader | CropGraderEnsemble:
    """The crop grader a ``grade_stage`` config describes (training and the predictor build it the same way)."""
    cls = PerKindCropGrader if cfg.per_kind else CropGrader
    kwargs = {"channels": cfg.channels, "depth": cfg.depth, "embed_dim": cfg.embed_dim, "hidden": cfg.hidden}

    def one() -> CropGrader | PerKindCropGrader:
        return cls(
            schema, cfg.kinds, dropout=cfg.dropout, planes=cfg.planes, pool=cfg.pool, context=cfg.context, **kwargs
        )

    return one() if cfg.members == 1 else CropGraderEnsemble([one() for _ in range(cfg.members)])


__all__ = ["CropGrader", "CropGraderEnsemble", "PerKindCropGrader", "create_crop_grader", "graded_landmarks"]
