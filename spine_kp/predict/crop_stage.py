"""The crop grading stage at predict time: crops at the decoded points, crop grader, combination with the head.

Built from the ``"grade_stage"`` entry of a checkpoint (see :mod:`spine_kp.grading.stage`); a checkpoint without
it predicts with the grade head alone, exactly as before the stage existed.

Shapes: B slices, K landmarks (schema order), S crop side, K_kind landmarks of a kind, G grades of that kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from spine_kp.config import from_dict
from spine_kp.grading.config import GradeStageConfig
from spine_kp.grading.crops import extract_crops, spine_axis_angles
from spine_kp.grading.model import CropGrader, PerKindCropGrader, create_crop_grader
from spine_kp.predict.infer import TrainedLabels, masked_grade_probabilities
from spine_kp.schema import Schema
from spine_kp.types import Slice


class CropStage:
    """A trained crop grader with its crop geometry and combination mode.

    Args:
        model: the crop grader (eval mode is set here).
        config: its stage config (crop geometry, ``combine``).
        schema: landmark set.
        trained: landmarks and grades the checkpoint was trained on (untrained grades stay at probability 0).
    """

    def __init__(
        self,
        model: CropGrader | PerKindCropGrader,
        config: GradeStageConfig,
        schema: Schema,
        trained: TrainedLabels,
        temperatures: dict[str, float] | None = None,
    ) -> None:
        self.model = model.eval()
        self.config = config
        self.schema = schema
        self.trained = trained
        self.temperatures = dict(temperatures or {})  # kind -> T fitted on the stage's validation crops

    @classmethod
    def from_payload(
        cls, payload: dict[str, Any], schema: Schema, trained: TrainedLabels, source: str = "checkpoint"
    ) -> CropStage:
        """Rebuild from a checkpoint's ``"grade_stage"`` entry.

        Raises:
            KeyError, TypeError, RuntimeError, ConfigError: the entry is malformed (the caller names the file).
        """
        config = from_dict(GradeStageConfig, payload["config"], source=f"{source} grade_stage")
        model = create_crop_grader(config, schema)
        model.load_state_dict(payload["state_dict"])
        return cls(model, config, schema, trained, payload.get("temperatures"))

    def with_combine(self, combine: str) -> CropStage:
        """The same grader combined another way with the head ("replace" or "average")."""
        config = dataclasses.replace(self.config, combine=combine)
        return CropStage(self.model, config, self.schema, self.trained, self.temperatures)

    def crops(self, slc: Slice, points: np.ndarray) -> np.ndarray:
        """(L, S, S) crops of one slice at the graded landmarks (``model.landmarks``) of ``points`` ((K, 2) original
        pixels, schema order; non-finite rows: missing). Every landmark orients its neighbours' crops."""
        c = self.config
        angles = spine_axis_angles(points, slc.spacing) if c.align else np.zeros(len(points))
        sel = list(self.model.landmarks)
        return extract_crops(slc.pixels, points[sel], slc.spacing, c.size_px, c.window_mm, angles[sel])

    @torch.no_grad()
    def grade(
        self, slices: Sequence[Slice], points: Sequence[np.ndarray], device: torch.device | str = "cpu"
    ) -> list[dict[str, np.ndarray]]:
        """Grade probabilities of the crop grader, one dict per slice.

        Args:
            slices: decoded slices (native pixels and spacing).
            points: per slice (K, 2) xy in original pixels; non-finite rows for landmarks not found (their crop is
                blank and they are left out of the neighbours that orient the other crops).
            device: where the grader runs.

        Returns:
            Per slice ``{kind: (K_kind, G)}`` probabilities of the graded kinds; untrained grades are 0.
        """
        if not slices:
            return []
        batch = torch.from_numpy(np.stack([self.crops(s, p) for s, p in zip(slices, points)]))  # (B, K, S, S)
        model = self.model.to(device)
        probs = masked_grade_probabilities(model(batch.to(device)), self.schema, self.trained, self.temperatures)
        host = {k: v.cpu().numpy() for k, v in probs.items()}
        return [{k: v[i] for k, v in host.items()} for i in range(len(slices))]

    def combine(self, head: dict[str, np.ndarray], crop: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per kind: the crop grader's probabilities ("replace") or the mean of both ("average"); a kind the stage
        does not grade keeps the head's."""
        if self.config.combine == "replace":
            return {k: crop[k].astype(np.float32) if k in crop else head[k] for k in head}
        return {k: (0.5 * (head[k] + crop[k])).astype(np.float32) if k in crop else head[k] for k in head}


__all__ = ["CropStage"]
