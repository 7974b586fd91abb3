"""Training losses: masked heatmap regression and imbalance-aware grading.

Shapes: B batch, K landmarks, h x w heatmap, K_kind landmarks of one kind, G grades of that kind.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def heatmap_loss(pred: Tensor, target: Tensor, weight: Tensor, kind: str = "mse", alpha: float = 2.0) -> Tensor:
    """Per-landmark masked heatmap loss.

    Args:
        pred: (B, K, h, w) raw network output (treated as heatmap values; no activation).
        target: (B, K, h, w) Gaussian targets, peak 1.
        weight: (B, K) 1 for landmarks present in the annotation, 0 for missing ones (never background).
        kind: "mse" (mmpose KeypointMSELoss) or "focal" (MSE re-weighted towards the foreground and the hard
            pixels, like an adaptive-wing/focal-L2: ``(target * alpha + 1) * |pred - target|^2 * |pred - target|``).

    Returns:
        Scalar: mean over present landmarks of their mean pixel loss (0 when none is present).
    """
    diff = pred.float() - target
    if kind == "mse":
        per_pixel = diff.pow(2)
    elif kind == "focal":
        per_pixel = (target * alpha + 1.0) * diff.pow(2) * (diff.abs() + 0.1)
    else:
        raise ValueError(f"unknown heatmap loss {kind!r}; valid: mse, focal")
    per_landmark = per_pixel.mean(dim=(2, 3))  # (B, K)
    w = weight.float()
    # Scale so the loss does not shrink with the heatmap area (pixels far from peaks dominate the mean).
    return (per_landmark * w).sum() / w.sum().clamp(min=1.0) * 1000.0


def single_label_loss(logits: Tensor, target: Tensor, mask: Tensor, class_weight: Tensor | None = None) -> Tensor:
    """Cross-entropy for one-of-G grades (e.g. vertebra normal / degenerative).

    Args:
        logits: (B, K_kind, G).
        target: (B, K_kind, G) one-hot (multi-hot rows use their first label).
        mask: (B, K_kind) bool, False where the grade is empty/missing.
        class_weight: (G,) optional weights against imbalance; untrained grades get weight 0.
    """
    if not bool(mask.any()):
        return logits.sum() * 0.0
    idx = target.argmax(dim=-1)  # (B, K_kind)
    return F.cross_entropy(logits[mask].float(), idx[mask], weight=class_weight)


def multi_label_loss(
    logits: Tensor,
    target: Tensor,
    mask: Tensor,
    pos_weight: Tensor | None = None,
    grade_mask: Tensor | None = None,
    focal_gamma: float = 0.0,
    negative_weight: Tensor | None = None,
) -> Tensor:
    """Binary cross-entropy over G independent grades (discs may be e.g. v2 and v5 at once).

    Args:
        logits: (B, K_kind, G).
        target: (B, K_kind, G) multi-hot.
        mask: (B, K_kind) bool, False where the grade is empty/missing.
        pos_weight: (G,) weight of positives against imbalance.
        grade_mask: (G,) 1 for trained grades, 0 for grades that never occur in training (not learned).
        focal_gamma: > 0 turns the BCE into a focal loss (RetinaNet) that focuses on hard examples.
        negative_weight: (B, K_kind, G) weight of each negative term (:func:`ordinal_negative_weights`); None: 1.
    """
    if not bool(mask.any()):
        return logits.sum() * 0.0
    x, y = logits[mask].float(), target[mask].float()  # (N, G)
    loss = F.binary_cross_entropy_with_logits(x, y, pos_weight=pos_weight, reduction="none")
    if negative_weight is not None:  # the negative term is (1 - y) * softplus(x); scale it alone
        loss = loss - (1 - y) * (1 - negative_weight[mask].float()) * F.softplus(x)
    if focal_gamma > 0:
        p = torch.sigmoid(x)
        p_t = p * y + (1 - p) * (1 - y)
        loss = loss * (1 - p_t).pow(focal_gamma)
    if grade_mask is not None:
        loss = loss * grade_mask
        return loss.sum() / (grade_mask.sum().clamp(min=1.0) * x.shape[0])
    return loss.mean()


def ordinal_negative_weights(target: Tensor, chain: Tensor, smoothing: float) -> Tensor:
    """Weights of the negative BCE term that spare a positive grade's neighbours on an ordinal chain of grades.

    A positive grade at chain position i leaves the chain's grade at position j (a negative) with weight
    ``1 - smoothing ** |i - j|`` instead of 1 (the largest spare over the positives), so a protrusion scored as a
    little bulge costs less than one scored as a normal disc: soft ordinal labels (Diaz & Marathe, 2019) applied to
    the negatives alone, so the positive weights against class imbalance do not multiply a soft target.

    Args:
        target: (..., G) multi-hot.
        chain: (C,) long, the grade indices of the chain in order (e.g. normal, bulge, protrusion, extrusion).
        smoothing: in [0, 1); 0 gives all ones.
    """
    weight = torch.ones_like(target, dtype=torch.float32)
    if smoothing <= 0 or chain.numel() < 2:
        return weight
    pos = torch.arange(chain.numel(), device=target.device, dtype=torch.float32)
    spread = smoothing ** (pos[:, None] - pos[None, :]).abs()  # (C, C), 1 on the diagonal
    on_chain = target[..., chain].float()  # (..., C)
    spare = (on_chain[..., :, None] * spread).amax(dim=-2)  # (..., C): the largest spare from any positive
    weight[..., chain] = 1.0 - spare
    return weight
