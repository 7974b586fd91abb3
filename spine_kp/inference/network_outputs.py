"""Network outputs -> landmarks in the input frame, for any backend: level-order decoding, then grading there.

The network runs wherever it runs (PyTorch: :mod:`spine_kp.inference.torch_network`; ONNX Runtime:
:mod:`spine_kp.inference.onnx_predictor`) behind the small :class:`Network` interface; everything after it is numpy
and lives here once, so both backends decode, grade and score identically. Nothing here imports torch.

Shapes: B batch, C channels, H x W input, K landmarks (schema order), K_kind of one kind, G grades, h x w heatmaps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from spine_kp.codec.heatmap import HeatmapCodec, as_numpy
from spine_kp.codec.level_order import LevelOrderConfig, decode_batch
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.schema import Schema


@dataclass(frozen=True)
class BatchLandmarks:
    """Decoded landmarks of a batch, input frame.

    Attributes:
        coords: (B, K, 2) xy in input pixels.
        peaks: (B, K) heatmap peak values (localization confidence).
        grade_probs: kind -> (B, K_kind, G) probabilities (softmax for single-label kinds, sigmoid otherwise);
            untrained grades are 0.
        view_coords: under flip-TTA, (2, B, K, 2) xy decoded on the plain and on the mirrored view alone (input
            pixels), whose distance says how much the two views disagree; None otherwise.
    """

    coords: np.ndarray
    peaks: np.ndarray
    grade_probs: dict[str, np.ndarray]
    view_coords: np.ndarray | None = None


class Network(Protocol):
    """A landmark network on some backend, as decoding needs it."""

    def run(self, images: Any, mirrored: bool = False) -> tuple[np.ndarray, Any]:
        """Heatmaps and decoder features of a batch.

        Args:
            images: (B, C, H, W) preprocessed input in the backend's array type (ndarray or tensor).
            mirrored: run the left-right mirrored input instead.

        Returns:
            ``(heatmaps (B, K, h, w) float32 ndarray in the frame of the input that ran, features)``; the features
            stay in the backend's own type and only go back to :meth:`grade`.
        """
        ...

    def grade(self, features: Any, points: np.ndarray) -> dict[str, np.ndarray]:
        """Grade logits ``{kind: (B, K_kind, G) ndarray}`` read from ``features`` at (B, K, 2) input-pixel points."""
        ...


def grade_probabilities(
    logits: Mapping[str, Any],
    schema: Schema,
    trained: TrainedLabels,
    temperatures: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Grade logits -> probabilities (float32) with untrained grades impossible (probability 0).

    Softmax for single-label kinds, sigmoid for multi-label ones, as
    :func:`spine_kp.models.heads.grade_probabilities` (the training-side version on tensors).

    Args:
        logits: kind -> (B, K_kind, G) ndarray or tensor.
        temperatures: kind -> T, each kind's logits are divided by its T first (temperature scaling, fitted in
            training: :mod:`spine_kp.calibration.fit`); a kind not named keeps T = 1.
    """
    temps = temperatures or {}
    out = {}
    for kind, x in logits.items():
        z = as_numpy(x)[0] / np.float32(temps.get(kind, 1.0))
        keep = np.asarray(trained.grades[kind], dtype=bool)
        if schema.kind(kind).multi_label:
            p = np.where(keep, 0.5 * (1.0 + np.tanh(0.5 * z)), 0.0)  # the sigmoid, without overflow warnings
        else:
            z = np.where(keep, z, -np.inf)
            e = np.exp(z - z.max(axis=-1, keepdims=True))
            p = e / e.sum(axis=-1, keepdims=True)
        out[kind] = p.astype(np.float32)
    return out


def network_probabilities(
    network: Network,
    features: Any,
    points: np.ndarray,
    schema: Schema,
    trained: TrainedLabels,
    temperatures: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Grade probabilities ``{kind: (B, K_kind, G)}`` of ``network`` at (B, K, 2) input-pixel ``points``.

    A network that turns its logits into probabilities itself, with a ``grade_probabilities(features, points)``
    method, is asked for them: a fold ensemble (:class:`spine_kp.inference.ensemble.EnsembleNetwork`) averages its
    members' probabilities, each member with its own temperatures and trained grades, which no single set of logits
    could give. Any other network's logits go through :func:`grade_probabilities` with ``trained`` and
    ``temperatures``.
    """
    own = getattr(network, "grade_probabilities", None)
    if callable(own):
        return own(features, points)
    return grade_probabilities(network.grade(features, points), schema, trained, temperatures)


def decode_trained(heatmaps: Any, codec: HeatmapCodec, decode: LevelOrderConfig | None, landmarks: Any) -> tuple:
    """Level-order decoding of the trained channels only; untrained landmarks get (0, 0) and peak 0.

    An untrained channel (a landmark the training set never annotated, e.g. T12 in an L1-L5 data set) still
    outputs whatever its initial or pretrained weights say. Left in the chain it would pull its trained
    neighbours off their peaks, so the dynamic programme never sees it.

    Args:
        heatmaps: (B, K, h, w) in schema order, ndarray or tensor (a tensor gets tensors back on its device).
        landmarks: (K,) bool, the trained landmarks.

    Returns:
        ``(coords (B, K, 2) input pixels, peaks (B, K))``.
    """
    hm, back = as_numpy(heatmaps)
    keep = np.asarray(landmarks, dtype=bool)
    if keep.all():
        coords, peaks = decode_batch(hm, codec, decode)
        return back(coords), back(peaks)
    b, k = hm.shape[:2]
    coords = np.zeros((b, k, 2), dtype=np.float32)
    peaks = np.zeros((b, k), dtype=np.float32)
    if keep.any():
        coords[:, keep], peaks[:, keep] = decode_batch(hm[:, keep], codec, decode)
    return back(coords), back(peaks)


def _moved_views(view_coords: np.ndarray, coords: np.ndarray, shifts: Sequence[int]) -> np.ndarray:
    """(2, B, K, 2) per-view decodes moved ``shifts[i]`` schema indices along with chain i (``coords`` (B, K, 2) where
    a landmark has no per-view point)."""
    out = np.array(view_coords, copy=True)
    k = coords.shape[1]
    for i, s in enumerate(shifts):
        if not s:
            continue
        src = np.arange(k) - s
        ok = (src >= 0) & (src < k)
        moved = np.repeat(coords[None, i], 2, axis=0)
        moved[:, ok] = view_coords[:, i, src[ok]]
        out[:, i] = moved
    return out


def infer_views(
    network: Network,
    images: Any,
    codec: HeatmapCodec,
    schema: Schema,
    trained: TrainedLabels,
    decode: LevelOrderConfig | None = None,
    flip_tta: bool = False,
    extra_images: Sequence[Any] = (),
    timings: dict[str, float] | None = None,
    temperatures: Mapping[str, float] | None = None,
    check: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, list[int]]] | None = None,
) -> BatchLandmarks:
    """Run the network, decode landmarks with level-order DP, grade them at the decoded points.

    Args:
        images: (B, C, H, W) preprocessed input, in the network's array type.
        flip_tta: also run the anterior-posterior (left-right in the image) mirrored input and average the
            heatmaps (mirrored back) and the grade probabilities. It never swaps levels.
        extra_images: more (B, C, H, W) views of the same studies in the same frame (e.g. the neighbouring
            slices) whose heatmaps are averaged in; grading reads the main view.
        timings: if given, seconds spent are added under "model" (network) and "decode" (peaks, DP, grading).
        temperatures: kind -> T dividing that kind's grade logits (see :func:`grade_probabilities`).
        check: a second look at the decoded chains before grading, ``(coords, peaks, heatmaps) -> (coords, peaks,
            shifts)`` (input pixels; the junction check, :mod:`spine_kp.inference.junction_check`): a chain whose
            labels moved by ``shifts[i]`` schema indices has its per-view decodes (``view_coords``) moved with it,
            and a landmark that only the move placed gets the chain's point in both views.
    """
    t0 = time.perf_counter()
    heatmaps, features = network.run(images)
    views = [heatmaps]  # (B, K, h, w) each
    if flip_tta:
        heatmaps_f, features_f = network.run(images, mirrored=True)
        views.append(heatmaps_f[..., ::-1])
    views += [network.run(extra)[0] for extra in extra_images]
    heatmaps = np.stack(views).mean(axis=0, dtype=np.float32)
    t1 = time.perf_counter()
    coords, peaks = decode_trained(heatmaps, codec, decode, trained.landmarks)  # (B, K, 2), (B, K)
    view_coords = None
    if flip_tta:  # each view decoded alone: how far apart they put a landmark is a measure of doubt
        view_coords = np.stack([decode_trained(v, codec, decode, trained.landmarks)[0] for v in views[:2]])
    if check is not None:
        coords, peaks, shifts = check(np.asarray(coords), np.asarray(peaks), np.asarray(heatmaps))
        if view_coords is not None:
            view_coords = _moved_views(view_coords, coords, shifts)
    probs = network_probabilities(network, features, coords, schema, trained, temperatures)
    if flip_tta:
        width = images.shape[-1]
        mirrored = np.stack([width - 1 - coords[..., 0], coords[..., 1]], axis=-1)
        probs_f = network_probabilities(network, features_f, mirrored, schema, trained, temperatures)
        probs = {k: 0.5 * (probs[k] + probs_f[k]) for k in probs}
    peaks = np.clip(peaks, 0.0, 1.0) * np.asarray(trained.landmarks, dtype=np.float32)
    if timings is not None:
        timings["model"] = timings.get("model", 0.0) + t1 - t0
        timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - t1
    return BatchLandmarks(coords=coords, peaks=peaks, grade_probs=probs, view_coords=view_coords)


__all__ = [
    "BatchLandmarks",
    "Network",
    "decode_trained",
    "grade_probabilities",
    "infer_views",
    "network_probabilities",
]
