"""The crop grading stage at predict time: crops at the decoded points, crop grader, combination with the head.

Built from the ``"grade_stage"`` entry of a checkpoint (see :mod:`spine_kp.grading.stage`); a checkpoint without
it predicts with the grade head alone, exactly as before the stage existed.

Shapes: B slices, K landmarks (schema order), S crop side, K_kind landmarks of a kind, G grades of that kind.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from spine_kp.config import from_dict
from spine_kp.grading.config import GradeStageConfig
from spine_kp.grading.model import CropGrader, PerKindCropGrader, create_crop_grader
from spine_kp.inference.decoding import TrainedLabels
from spine_kp.inference.stage_common import StageBase
from spine_kp.schema import Schema

WRITTEN_BEFORE = {"pool": "avg"}
"""Architecture keys a stage written before they existed lacks, with the value it was trained with (a newer default
would rebuild another network than the stored weights)."""


class CropStage(StageBase):
    """A trained crop grader (PyTorch) with its crop geometry and combination mode.

    Crops, temperatures and the combination are :class:`~spine_kp.inference.stage_common.StageBase`'s (shared with the
    ONNX Runtime stage); this class runs the grader.

    Args:
        model: the crop grader (eval mode is set here).
        config: its stage config (crop geometry, ``combine``).
        schema: landmark set.
        trained: landmarks and grades the checkpoint was trained on (untrained grades stay at probability 0).
        temperatures: kind -> T fitted on the stage's validation crops.
    """

    def __init__(
        self,
        model: CropGrader | PerKindCropGrader,
        config: GradeStageConfig,
        schema: Schema,
        trained: TrainedLabels,
        temperatures: dict[str, float] | None = None,
    ) -> None:
        super().__init__(config, schema, trained, model.landmarks, temperatures)
        self.model = model.eval()

    @classmethod
    def from_payload(
        cls, payload: dict[str, Any], schema: Schema, trained: TrainedLabels, source: str = "checkpoint"
    ) -> CropStage:
        """Rebuild from a checkpoint's ``"grade_stage"`` entry.

        Raises:
            KeyError, TypeError, RuntimeError, ConfigError: the entry is malformed (the caller names the file).
        """
        raw = {**WRITTEN_BEFORE, **payload["config"]}
        config = from_dict(GradeStageConfig, raw, source=f"{source} grade_stage")
        model = create_crop_grader(config, schema)
        model.load_state_dict(payload["state_dict"])
        return cls(model, config, schema, trained, payload.get("temperatures"))

    def with_combine(self, combine: str) -> CropStage:
        """The same grader combined another way with the head ("replace" or "average")."""
        config = dataclasses.replace(self.config, combine=combine)
        return CropStage(self.model, config, self.schema, self.trained, self.temperatures)

    @torch.no_grad()
    def logits(self, batch: np.ndarray) -> dict[str, torch.Tensor]:
        """The crop grader on (B, L, S, S) crops, on the device its weights are on (the predictor's)."""
        device = next(self.model.parameters()).device
        return self.model(torch.from_numpy(batch).to(device))


__all__ = ["CropStage"]
