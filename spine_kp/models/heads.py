"""Prediction heads: landmark heatmaps and per-landmark grade logits (schema-driven), plus score helpers.

Coordinate frame: points are ``(x, y)`` in input pixels with pixel centres at integers; a feature map at stride
``s`` has cell ``(i, j)`` centred at input pixel ``((j + 0.5) s - 0.5, (i + 0.5) s - 0.5)`` (the codec's
convention, see ``spine_kp.codec.heatmap``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spine_kp.schema import Schema


class HeatmapHead(nn.Module):
    """1x1 conv -> one heatmap per schema landmark.

    Weights start tiny and the bias at 0 so the initial heatmaps are ~0 everywhere: the loss then first
    learns where peaks are instead of un-learning random blobs.

    Args:
        in_channels: decoder feature channels.
        num_landmarks: K, the schema's landmark count.
    """

    def __init__(self, in_channels: int, num_landmarks: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_landmarks, 1)
        nn.init.normal_(self.conv.weight, std=1e-3)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, K, h, w)
        return self.conv(x)


def sample_at_points(features: torch.Tensor, points: torch.Tensor, stride: int) -> torch.Tensor:
    """Bilinearly sample feature vectors at input-pixel points.

    Args:
        features: (B, C, h, w) at ``stride``.
        points: (B, K, 2) xy in input pixels; points outside the map read the nearest border value.
        stride: stride of ``features`` w.r.t. the input.

    Returns:
        (B, K, C).
    """
    h, w = features.shape[-2:]
    size = points.new_tensor([w * stride, h * stride])
    grid = (points + 0.5) / size * 2 - 1  # align_corners=False: -1/+1 are the outer edges of the image
    sampled = F.grid_sample(features, grid[:, :, None, :], mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[..., 0].transpose(1, 2)  # (B, C, K, 1) -> (B, K, C)


class GradeHead(nn.Module):
    """Per-landmark grade logits from decoder features sampled at the landmark and around it.

    For each landmark the head reads (1) the features at the point, (2) window-averaged features at a
    ``context_grid`` x ``context_grid`` lattice of offsets ``context_px`` apart (local context: the lattice tiles a
    window of about ``context_grid * context_px`` pixels), and (3) a learned embedding of the landmark's identity,
    so every identification has its own prior. A shared MLP maps these to a hidden vector and one linear layer per
    kind gives that kind's grade logits: softmax logits for single-label kinds, independent sigmoid logits for
    multi-label kinds (``KindSpec.multi_label``; the logits are the same, the loss and :func:`grade_probabilities`
    differ).

    Args:
        in_channels: decoder feature channels.
        schema: the landmark set.
        stride: stride of the features.
        hidden: MLP width.
        embed_dim: landmark-identity embedding width.
        context_px: spacing of the context lattice and size of its averaging window, in input pixels.
        context_grid: lattice size per axis (odd; 1 disables context sampling).
        dropout: dropout before the per-kind classifiers.
    """

    def __init__(
        self,
        in_channels: int,
        schema: Schema,
        stride: int,
        hidden: int = 128,
        embed_dim: int = 16,
        context_px: float = 12.0,
        context_grid: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if context_grid < 1 or context_grid % 2 == 0:
            raise ValueError(f"GradeHead: context_grid must be odd and >= 1, got {context_grid}")
        self.stride = stride
        self.kind_names = [k.name for k in schema.kinds]
        for i, kind in enumerate(self.kind_names):
            idx = [j for j, k in enumerate(schema.landmark_kinds) if k == kind]
            self.register_buffer(f"_index_{i}", torch.tensor(idx, dtype=torch.long), persistent=False)
        kernel = max(1, round(context_px / stride)) | 1  # odd, so average pooling keeps the map size
        self.pool = nn.AvgPool2d(kernel, stride=1, padding=kernel // 2, count_include_pad=False)
        half = context_grid // 2
        offsets = [(dx * context_px, dy * context_px) for dy in range(-half, half + 1) for dx in range(-half, half + 1)]
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.float32), persistent=False)  # (G2, 2)
        self.embedding = nn.Embedding(schema.num_landmarks, embed_dim)
        in_dim = in_channels * (1 + len(offsets)) + embed_dim
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(dropout))
        self.classifiers = nn.ModuleList(nn.Linear(hidden, len(k.grades)) for k in schema.kinds)

    def forward(self, features: torch.Tensor, points: torch.Tensor) -> dict[str, torch.Tensor]:
        """Grade logits per kind.

        Args:
            features: (B, C, h, w) decoder features at ``stride``.
            points: (B, K, 2) xy in input pixels, one per schema landmark (non-finite entries, e.g. missing
                ground truth, are read at the origin; mask them in the loss).

        Returns:
            ``{kind: (B, K_kind, G_kind)}`` logits, landmarks in schema order within each kind.
        """
        b, k, _ = points.shape
        # Sample in float32: under bf16/fp16 autocast a 512-pixel coordinate would be rounded to 2-4 pixels.
        features = features.float()
        points = torch.nan_to_num(points.float(), nan=0.0, posinf=0.0, neginf=0.0)
        centre = sample_at_points(features, points, self.stride)  # (B, K, C)
        around = points[:, :, None, :] + self.offsets.to(points.dtype)  # (B, K, G2, 2)
        context = sample_at_points(self.pool(features), around.reshape(b, -1, 2), self.stride)  # (B, K*G2, C)
        ident = self.embedding.weight[None].expand(b, -1, -1)  # (B, K, E)
        x = torch.cat([centre, context.reshape(b, k, -1), ident], dim=-1)
        hidden = self.mlp(x)  # (B, K, hidden)
        out: dict[str, torch.Tensor] = {}
        for i, (kind, clf) in enumerate(zip(self.kind_names, self.classifiers)):
            idx = getattr(self, f"_index_{i}")
            out[kind] = clf(hidden[:, idx])
        return out


def grade_probabilities(grade_logits: dict[str, torch.Tensor], schema: Schema) -> dict[str, torch.Tensor]:
    """Logits -> probabilities per kind: softmax for single-label kinds, sigmoid for multi-label ones.

    Args:
        grade_logits: ``{kind: (B, K_kind, G_kind)}``.
        schema: gives each kind's ``multi_label``.

    Returns:
        ``{kind: (B, K_kind, G_kind)}`` probabilities.
    """
    return {
        kind: logits.sigmoid() if schema.kind(kind).multi_label else logits.softmax(dim=-1)
        for kind, logits in grade_logits.items()
    }


def landmark_scores(peaks: torch.Tensor | np.ndarray, probs: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Score of each (landmark, grade) pair: heatmap peak (clipped to [0, 1]) x grade probability.

    Args:
        peaks: (..., K) heatmap peak values.
        probs: (..., K, G) grade probabilities.

    Returns:
        (..., K, G) scores in [0, 1], same array type as the inputs.
    """
    if isinstance(peaks, torch.Tensor):
        return peaks.clamp(0.0, 1.0)[..., None] * probs
    return np.clip(np.asarray(peaks), 0.0, 1.0)[..., None] * np.asarray(probs)


__all__ = ["GradeHead", "HeatmapHead", "grade_probabilities", "landmark_scores", "sample_at_points"]
