"""Network outputs -> landmarks in the input frame: level-order decoding, then grading at the chosen points.

Shapes: B batch, C channels, H x W input, K landmarks (schema order), K_kind of one kind, G grades.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.codec.level_order import LevelOrderConfig, decode_batch
from spine_kp.data.labels import LabelStats
from spine_kp.models.heads import grade_probabilities
from spine_kp.schema import Schema


@dataclass(frozen=True)
class TrainedLabels:
    """Which landmarks and grades the model was trained on; the others are never predicted.

    Attributes:
        landmarks: (K,) bool in schema order.
        grades: kind -> (G,) bool.
    """

    landmarks: np.ndarray
    grades: dict[str, np.ndarray]

    @classmethod
    def all(cls, schema: Schema) -> TrainedLabels:
        return cls(
            np.ones(schema.num_landmarks, dtype=bool),
            {k.name: np.ones(len(k.grades), dtype=bool) for k in schema.kinds},
        )

    @classmethod
    def from_stats(cls, schema: Schema, stats: LabelStats | None) -> TrainedLabels:
        """What the training label statistics say was trained (everything when there are none)."""
        if stats is None:
            return cls.all(schema)
        return cls(stats.landmark_mask(), {k.name: stats.grade_mask(k.name) for k in schema.kinds})


@dataclass(frozen=True)
class BatchLandmarks:
    """Decoded landmarks of a batch, input frame.

    Attributes:
        coords: (B, K, 2) xy in input pixels.
        peaks: (B, K) heatmap peak values (localization confidence).
        grade_probs: kind -> (B, K_kind, G) probabilities (softmax for single-label kinds, sigmoid otherwise);
            untrained grades are 0.
    """

    coords: np.ndarray
    peaks: np.ndarray
    grade_probs: dict[str, np.ndarray]


def masked_grade_probabilities(logits: dict[str, Tensor], schema: Schema, trained: TrainedLabels) -> dict[str, Tensor]:
    """Grade logits -> probabilities with untrained grades impossible (probability 0).

    Args:
        logits: kind -> (B, K_kind, G).
    """
    masked = {
        kind: x.float().masked_fill(~torch.as_tensor(trained.grades[kind], device=x.device), float("-inf"))
        for kind, x in logits.items()
    }
    return grade_probabilities(masked, schema)


def decode_trained(
    heatmaps: Tensor, codec: HeatmapCodec, decode: LevelOrderConfig | None, landmarks: np.ndarray
) -> tuple[Tensor, Tensor]:
    """Level-order decoding of the trained channels only; untrained landmarks get (0, 0) and peak 0.

    An untrained channel (a landmark the training set never annotated, e.g. T12 in an L1-L5 data set) still
    outputs whatever its initial or pretrained weights say. Left in the chain it would pull its trained
    neighbours off their peaks, so the dynamic programme never sees it.

    Args:
        heatmaps: (B, K, h, w) in schema order.
        landmarks: (K,) bool, the trained landmarks.

    Returns:
        ``(coords (B, K, 2) input pixels, peaks (B, K))``.
    """
    keep = torch.as_tensor(np.asarray(landmarks, dtype=bool), device=heatmaps.device)
    if bool(keep.all()):
        return decode_batch(heatmaps, codec, decode)
    b, k = heatmaps.shape[:2]
    coords = heatmaps.new_zeros((b, k, 2))
    peaks = heatmaps.new_zeros((b, k))
    if bool(keep.any()):
        coords[:, keep], peaks[:, keep] = decode_batch(heatmaps[:, keep], codec, decode)
    return coords, peaks


@torch.no_grad()
def infer_batch(
    model: nn.Module,
    images: Tensor,
    codec: HeatmapCodec,
    schema: Schema,
    trained: TrainedLabels,
    decode: LevelOrderConfig | None = None,
    flip_tta: bool = False,
    extra_images: Sequence[Tensor] = (),
    timings: dict[str, float] | None = None,
) -> BatchLandmarks:
    """Run the network, decode landmarks with level-order DP, grade them at the decoded points.

    Args:
        model: a :class:`spine_kp.models.net.LandmarkNet` (``forward(x, points=None)`` and ``grade(features,
            points)``).
        images: (B, C, H, W) preprocessed input.
        flip_tta: also run the anterior-posterior (left-right in the image) mirrored input and average the
            heatmaps (mirrored back) and the grade probabilities. It never swaps levels.
        extra_images: more (B, C, H, W) views of the same studies in the same frame (e.g. the neighbouring
            slices) whose heatmaps are averaged in; grading reads the main view.
        timings: if given, seconds spent are added under "model" (network) and "decode" (peaks, DP, grading).
    """
    t0 = time.perf_counter()
    out = model(images)
    views = [out["heatmaps"].float()]  # (B, K, h, w) each
    if flip_tta:
        out_f = model(torch.flip(images, dims=[-1]))
        views.append(torch.flip(out_f["heatmaps"].float(), dims=[-1]))
    views += [model(extra)["heatmaps"].float() for extra in extra_images]
    heatmaps = torch.stack(views).mean(0)
    t1 = time.perf_counter()
    coords, peaks = decode_trained(heatmaps, codec, decode, trained.landmarks)  # (B, K, 2), (B, K)
    probs = masked_grade_probabilities(model.grade(out["features"], coords), schema, trained)
    if flip_tta:
        width = images.shape[-1]
        mirrored = torch.stack([width - 1 - coords[..., 0], coords[..., 1]], dim=-1)
        probs_f = masked_grade_probabilities(model.grade(out_f["features"], mirrored), schema, trained)
        probs = {k: 0.5 * (probs[k] + probs_f[k]) for k in probs}
    peaks = peaks.clamp(0.0, 1.0) * torch.as_tensor(trained.landmarks, device=peaks.device)
    result = BatchLandmarks(
        coords=coords.cpu().numpy(),
        peaks=peaks.cpu().numpy(),
        grade_probs={k: v.cpu().numpy() for k, v in probs.items()},
    )
    if timings is not None:
        timings["model"] = timings.get("model", 0.0) + t1 - t0
        timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - t1
    return result
