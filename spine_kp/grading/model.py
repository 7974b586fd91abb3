"""The crop grader: a small GroupNorm CNN over landmark-centred crops, plus a landmark-identity embedding.

Shapes: B slices, K landmarks (schema order), S crop side, K_kind landmarks of a kind, G grades of that kind.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from spine_kp.grading.config import GradeStageConfig
from spine_kp.models.norm import group_norm
from spine_kp.schema import Schema


def _conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), group_norm(c_out, 8), nn.GELU())


class CropGrader(nn.Module):
    """Grade logits per kind from one crop per landmark.

    A full-resolution stem (conv3x3-GN-GELU; the cue is a few pixels, so nothing is thrown away before the first
    features), then one block per entry of ``channels`` (a stride-2 conv3x3-GN-GELU and a conv3x3-GN-GELU), global
    average pooling, concatenation with a learned embedding of the landmark's identity (every level has its own
    prior), a hidden layer, and one linear classifier per kind: softmax logits for single-label kinds, independent
    sigmoid logits for multi-label kinds (the loss and ``grade_probabilities`` differ, the logits do not). The
    output matches :class:`spine_kp.models.heads.GradeHead`'s, so both can be combined landmark by landmark.

    Args:
        schema: the landmark set.
        channels: widths of the stride-2 blocks (the stem has the first width).
        embed_dim: identity embedding width.
        hidden: hidden layer width.
        dropout: before the classifiers.
    """

    def __init__(
        self,
        schema: Schema,
        channels: Sequence[int] = (16, 32, 64, 96),
        embed_dim: int = 16,
        hidden: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        widths = [int(c) for c in channels]
        layers: list[nn.Module] = [_conv(1, widths[0], 1)]
        c_in = widths[0]
        for c in widths:
            layers += [_conv(c_in, c, 2), _conv(c, c, 1)]
            c_in = c
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.embedding = nn.Embedding(schema.num_landmarks, embed_dim)
        self.mlp = nn.Sequential(nn.Linear(c_in + embed_dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.kind_names = [k.name for k in schema.kinds]
        for i, kind in enumerate(self.kind_names):
            idx = [j for j, k in enumerate(schema.landmark_kinds) if k == kind]
            self.register_buffer(f"_index_{i}", torch.tensor(idx, dtype=torch.long), persistent=False)
        self.classifiers = nn.ModuleList(nn.Linear(hidden, len(k.grades)) for k in schema.kinds)

    def forward(self, crops: Tensor) -> dict[str, Tensor]:
        """Grade logits per kind.

        Args:
            crops: (B, K, S, S) normalized crops, one per schema landmark in schema order.

        Returns:
            ``{kind: (B, K_kind, G_kind)}`` logits, landmarks in schema order within each kind.
        """
        b, k, s, _ = crops.shape
        if k != self.embedding.num_embeddings:
            raise ValueError(f"CropGrader: expected {self.embedding.num_embeddings} crops per slice, got {k}")
        feats = self.features(crops.reshape(b * k, 1, s, s).float()).reshape(b, k, -1)  # (B, K, C)
        ident = self.embedding.weight[None].expand(b, -1, -1)  # (B, K, E)
        hidden = self.mlp(torch.cat([feats, ident], dim=-1))  # (B, K, hidden)
        out: dict[str, Tensor] = {}
        for i, (kind, clf) in enumerate(zip(self.kind_names, self.classifiers)):
            out[kind] = clf(hidden[:, getattr(self, f"_index_{i}")])
        return out


def create_crop_grader(cfg: GradeStageConfig, schema: Schema) -> CropGrader:
    """The crop grader a ``grade_stage`` config describes (training and the predictor build it the same way)."""
    return CropGrader(schema, cfg.channels, embed_dim=cfg.embed_dim, hidden=cfg.hidden, dropout=cfg.dropout)


__all__ = ["CropGrader", "create_crop_grader"]
