"""The crop grading stage at predict time, without the network: crops, probabilities, combination (no torch).

Shared by the PyTorch stage (:class:`spine_kp.inference.crop_stage.CropStage`) and the ONNX Runtime one
(:class:`spine_kp.inference.onnx_predictor.OnnxCropStage`); a subclass only supplies :meth:`StageBase.logits`, the crop
grader run on a (B, L * P, S, S) batch.

Shapes: B slices, K landmarks (schema order), L graded landmarks, P planes per landmark, S crop side, K_kind landmarks
of a kind, G grades of that kind.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from spine_kp.grading.config import GradeStageConfig
from spine_kp.grading.crops import slice_crops
from spine_kp.inference.network_outputs import grade_probabilities
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.schema import Schema
from spine_kp.types import Slice


def found_points(coords: Sequence[np.ndarray], peaks: np.ndarray, trained: TrainedLabels) -> list[np.ndarray]:
    """Per slice (K, 2) points of the landmarks found (peak > 0) and trained; NaN rows for the others."""
    found = [(peaks[i] > 0) & trained.landmarks for i in range(len(coords))]
    return [np.where(f[:, None], c, np.nan) for f, c in zip(found, coords)]


class StageBase:
    """A crop grader with its crop geometry, temperatures and combination mode; the grader itself is abstract.

    Args:
        config: the stage config (crop geometry, ``align``, ``combine``).
        schema: landmark set.
        trained: landmarks and grades the checkpoint was trained on (untrained grades stay at probability 0).
        landmarks: schema indices of the graded landmarks (the grader's inputs, schema order).
        temperatures: kind -> T fitted on the stage's validation crops (a kind not named keeps T = 1).
    """

    def __init__(
        self,
        config: GradeStageConfig,
        schema: Schema,
        trained: TrainedLabels,
        landmarks: Sequence[int],
        temperatures: Mapping[str, float] | None = None,
    ) -> None:
        self.config = config
        self.schema = schema
        self.trained = trained
        self.landmarks = tuple(int(i) for i in landmarks)
        self.temperatures = dict(temperatures or {})

    def logits(self, batch: np.ndarray) -> Mapping[str, Any]:
        """The crop grader on (B, L * P, S, S) float32 crops: ``{kind: (B, K_kind, G)}`` logits (ndarray or tensor)."""
        raise NotImplementedError

    def crops(self, slc: Slice, points: np.ndarray) -> np.ndarray:
        """(L * P, S, S) crops of one slice at the graded landmarks of ``points`` ((K, 2) original pixels, schema
        order; non-finite rows: missing), P planes each (:func:`spine_kp.grading.crops.slice_crops`). Every landmark
        orients its neighbours' crops."""
        c = self.config
        return slice_crops(slc, points, self.landmarks, c.size_px, c.window_mm, c.align, c.neighbours)

    def crop_batch(self, slices: Sequence[Slice], points: Sequence[np.ndarray]) -> np.ndarray:
        """(B, L * P, S, S) float32 crops of every slice."""
        return np.ascontiguousarray(np.stack([self.crops(s, p) for s, p in zip(slices, points)]), dtype=np.float32)

    def grade(self, slices: Sequence[Slice], points: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Grade probabilities of the crop grader, one dict per slice.

        Args:
            slices: decoded slices (native pixels and spacing).
            points: per slice (K, 2) xy in original pixels; non-finite rows for landmarks not found (their crop is
                blank and they are left out of the neighbours that orient the other crops).

        Returns:
            Per slice ``{kind: (K_kind, G)}`` probabilities of the graded kinds; untrained grades are 0.
        """
        if not slices:
            return []
        logits = self.logits(self.crop_batch(slices, points))
        probs = grade_probabilities(logits, self.schema, self.trained, self.temperatures)
        return [{k: v[i] for k, v in probs.items()} for i in range(len(slices))]

    def combine(self, head: dict[str, np.ndarray], crop: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per kind: the crop grader's probabilities ("replace") or the mean of both ("average"); a kind the stage
        does not grade keeps the head's."""
        if self.config.combine == "replace":
            return {k: crop[k].astype(np.float32) if k in crop else head[k] for k in head}
        return {k: (0.5 * (head[k] + crop[k])).astype(np.float32) if k in crop else head[k] for k in head}

    def regrade(
        self,
        slices: Sequence[Slice],
        coords: Sequence[np.ndarray],
        peaks: np.ndarray,
        probs: list[dict[str, np.ndarray]],
        timings: dict[str, float] | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """:meth:`spine_kp.inference.slice_predictor.SlicePredictor.regrade` with this stage: grade crops of each
        slice's native pixels at the decoded points of the landmarks found and trained, and combine with the head's
        grades."""
        t0 = time.perf_counter()
        crop_probs = self.grade(slices, found_points(coords, peaks, self.trained))
        out = [self.combine(h, c) for h, c in zip(probs, crop_probs)]
        if timings is not None:
            timings["grade_stage"] = timings.get("grade_stage", 0.0) + time.perf_counter() - t0
        return out


__all__ = ["StageBase", "found_points"]
