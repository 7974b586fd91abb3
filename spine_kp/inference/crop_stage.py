"""The crop grading stage at predict time: crops at the decoded points, crop grader, combination with the head.

Built from the model card's ``grade_stage`` section (:class:`spine_kp.inference.card.StageCard`: config, graded
landmarks, temperatures) and the crop grader's weights in the checkpoint's ``"grade_stage"`` entry (see
:mod:`spine_kp.engine.grade_stage_train`); a checkpoint without it predicts with the grade head alone.

Shapes: B slices, K landmarks (schema order), S crop side, K_kind landmarks of a kind, G grades of that kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from spine_kp.grading.config import GradeStageConfig
from spine_kp.grading.model import CropGrader, CropGraderEnsemble, PerKindCropGrader, create_crop_grader
from spine_kp.inference.card import StageCard
from spine_kp.inference.checkpoint_card import stage_card
from spine_kp.inference.crop_stage_base import StageBase
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.schema import Schema


class CropStage(StageBase):
    """A trained crop grader (PyTorch) with its crop geometry and combination mode.

    Crops, temperatures and the combination are :class:`~spine_kp.inference.crop_stage_base.StageBase`'s (shared with
    the ONNX Runtime stage); this class runs the grader.

    Args:
        model: the crop grader (eval mode is set here).
        config: its stage config (crop geometry, ``combine``).
        schema: landmark set.
        trained: landmarks and grades the checkpoint was trained on (untrained grades stay at probability 0).
        temperatures: kind -> T fitted on the stage's validation crops.
    """

    def __init__(
        self,
        model: CropGrader | PerKindCropGrader | CropGraderEnsemble,
        config: GradeStageConfig,
        schema: Schema,
        trained: TrainedLabels,
        temperatures: dict[str, float] | None = None,
    ) -> None:
        super().__init__(config, schema, trained, model.landmarks, temperatures)
        self.model = model.eval()

    @classmethod
    def from_card(
        cls, stage: StageCard, schema: Schema, trained: TrainedLabels, state_dict: Mapping[str, Any]
    ) -> CropStage:
        """Rebuild from a model card's ``grade_stage`` section and the crop grader's weights.

        Raises:
            KeyError, TypeError, RuntimeError, ValueError: the weights do not fit the card (the caller names the file).
        """
        model = create_crop_grader(stage.config, schema)
        if tuple(model.landmarks) != stage.landmarks:
            raise ValueError(f"graded landmarks {list(model.landmarks)} differ from the card's {list(stage.landmarks)}")
        model.load_state_dict(state_dict)
        return cls(model, stage.config, schema, trained, stage.temperatures)

    @classmethod
    def from_payload(
        cls, payload: Mapping[str, Any], schema: Schema, trained: TrainedLabels, source: str = "checkpoint"
    ) -> CropStage:
        """Rebuild from a ``"grade_stage"`` checkpoint entry alone (its settings read as the model card reads them).

        Raises:
            CardError: the entry's settings break a rule. KeyError, TypeError, RuntimeError, ValueError: its weights
                do not fit them.
        """
        return cls.from_card(stage_card(payload, schema, source), schema, trained, payload["state_dict"])

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
