"""A trained model ready to predict: rebuilt from a self-contained checkpoint, applied to decoded slices.

The checkpoint (written by the training recipe) holds the weights and the model card (or, when written before the
card existed, the entries it is built from: :func:`spine_kp.inference.checkpoint_card.card_from_checkpoint`), and,
when trained with ``grade_stage.enabled``, the crop grader's weights (:mod:`spine_kp.inference.crop_stage`), so
nothing else is needed here; it is read by :func:`spine_kp.checkpoint.load_checkpoint`, without importing the
training code (a fold ensemble file, by :func:`spine_kp.fold_ensemble.load_model_file`:
:mod:`spine_kp.inference.ensemble`). Everything after the network (preprocessing, decoding, records) is the
backend-independent :class:`spine_kp.inference.slice_predictor.SlicePredictor`, shared with the ONNX Runtime
predictor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from spine_kp.checkpoint import CheckpointError, SpineCheckpoint
from spine_kp.config import from_dict
from spine_kp.fold_ensemble import SpineEnsemble, load_model_file
from spine_kp.inference.card import ModelCard
from spine_kp.inference.checkpoint_card import card_from_checkpoint
from spine_kp.inference.crop_stage import CropStage
from spine_kp.inference.junction_torch import JunctionCheck
from spine_kp.inference.slice_predictor import SlicePredictor
from spine_kp.inference.torch_network import TorchNetwork
from spine_kp.models.net import LandmarkNet, ModelConfig, create_model

__all__ = ["Predictor", "resolve_device"]


def resolve_device(device: str = "auto") -> torch.device:
    """ "auto" -> CUDA when available, else CPU; "cuda" without a GPU is an error that says so."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but no CUDA GPU is available (use --device auto or cpu)")
    return torch.device(device)


class Predictor(SlicePredictor):
    """Model + model card of one checkpoint, the network run by PyTorch.

    Args:
        model: the network (eval mode is set here).
        card: its settings (:class:`~spine_kp.inference.card.ModelCard`).
        device: where it runs.
        grade_stage: the crop grading stage, None to grade with the head alone.
        junction: the junction check, None for none.
    """

    def __init__(
        self,
        model: LandmarkNet,
        card: ModelCard,
        device: str | torch.device = "cpu",
        grade_stage: CropStage | None = None,
        junction: JunctionCheck | None = None,
    ) -> None:
        super().__init__(card, grade_stage, junction)
        self.device = torch.device(device) if not isinstance(device, torch.device) else device
        self.model = model.to(self.device).eval()
        if grade_stage is not None:
            grade_stage.model.to(self.device)
        if junction is not None:
            junction.model.to(self.device)

    @property
    def network(self) -> TorchNetwork:
        return TorchNetwork(self.model, self.device)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path | SpineCheckpoint | SpineEnsemble, device: str = "auto", **overrides: Any
    ) -> Predictor:
        """Rebuild from a training checkpoint (``best.ckpt`` / ``last.ckpt``), or what ``load_checkpoint`` read.

        The settings are the checkpoint's model card
        (:func:`~spine_kp.inference.checkpoint_card.card_from_checkpoint`), the weights its ``state_dict`` (and its
        crop grader's). A fold ensemble file (``spine-kp ensemble``,
        :mod:`spine_kp.fold_ensemble`) gives an :class:`~spine_kp.inference.ensemble.EnsemblePredictor`, which
        predicts the mean of its members.

        Args:
            overrides: replace settings of the card (:meth:`~spine_kp.inference.card.ModelCard.overridden`), e.g.
                ``decode=LevelOrderConfig(enabled=False)``, ``temperatures={}`` for the raw probabilities,
                ``score_calibration={}`` for the raw ``peak x p`` scores; ``grade_stage=None`` ignores a stored crop
                grading stage; ``junction=None`` a stored junction check.

        Raises:
            CheckpointError: the file is missing, unreadable, not a spine_kp checkpoint, or its weights do not fit
                the model config stored beside them. CardError: its model card breaks a rule.
        """
        ckpt = path if isinstance(path, (SpineCheckpoint, SpineEnsemble)) else load_model_file(path)
        if isinstance(ckpt, SpineEnsemble):
            from spine_kp.inference.ensemble import EnsemblePredictor  # it builds on this class

            return EnsemblePredictor.from_ensemble(ckpt, device, **overrides)
        stage_override = {"grade_stage": overrides.pop("grade_stage")} if "grade_stage" in overrides else {}
        junction_override = {"junction": overrides.pop("junction")} if "junction" in overrides else {}
        card = card_from_checkpoint(ckpt).overridden(**overrides)
        p = ckpt.path
        model = create_model(from_dict(ModelConfig, dict(card.network), source=f"{p} model"), card.schema)
        try:
            model.load_state_dict(ckpt.model_state)
        except RuntimeError as exc:  # weights that do not fit the model config stored beside them
            raise CheckpointError(f"{p}: damaged spine_kp checkpoint ({' '.join(str(exc).split())})") from None
        stage = None
        if card.grade_stage is not None:
            try:
                weights = ckpt.grade_stage["state_dict"]  # type: ignore[index]  # the card's section comes from it
                stage = CropStage.from_card(card.grade_stage, card.schema, card.trained, weights)
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise CheckpointError(f"{p}: damaged grade_stage entry ({exc!r})") from None
        stage = stage_override.get("grade_stage", stage)
        junction = None
        if card.junction is not None:
            try:
                weights = ckpt.junction["state_dict"]  # type: ignore[index]  # the card's section comes from it
                junction = JunctionCheck.from_weights(card.junction.config, card.schema, weights)
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise CheckpointError(f"{p}: damaged junction entry ({exc!r})") from None
        junction = junction_override.get("junction", junction)
        return cls(model, card, device=resolve_device(device), grade_stage=stage, junction=junction)

    def with_grade_stage(self, stage: CropStage | None) -> Predictor:
        """The same model with another crop grading stage, or none (grade head alone); shares the weights."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.grade_stage = stage
        return clone
