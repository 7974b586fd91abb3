"""A trained model ready to predict: rebuilt from a self-contained checkpoint, applied to decoded slices.

The checkpoint (written by the training recipe) holds the experiment config, the schema, the training label
statistics and the heatmap codec as hyper-parameters next to the weights (and, when trained with
``grade_stage.enabled``, the crop grading stage: :mod:`spine_kp.inference.crop_stage`), so nothing else is needed
here; it is read by :func:`spine_kp.checkpoint.load_checkpoint`, without importing the training code (a fold
ensemble file, by :func:`spine_kp.fold_ensemble.load_model_file`: :mod:`spine_kp.inference.ensemble`). Everything
after the network (preprocessing, decoding, records) is the backend-independent
:class:`spine_kp.inference.pipeline.SlicePredictor`, shared with the ONNX Runtime predictor.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from spine_kp.checkpoint import CheckpointError, SpineCheckpoint
from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.codec.level_order import LevelOrderConfig
from spine_kp.config import from_dict
from spine_kp.data.labels import LabelStats
from spine_kp.fold_ensemble import SpineEnsemble, load_model_file
from spine_kp.inference.crop_stage import CropStage
from spine_kp.inference.infer import TorchNetwork, TrainedLabels
from spine_kp.inference.pipeline import SlicePrediction, SlicePredictor  # noqa: F401 (SlicePrediction: re-exported)
from spine_kp.inference.records import ScoreMaps
from spine_kp.models.net import LandmarkNet, ModelConfig, create_model
from spine_kp.schema import Schema

__all__ = ["CheckpointError", "Predictor", "SlicePrediction", "resolve_device"]  # CheckpointError: re-exported


def resolve_device(device: str = "auto") -> torch.device:
    """ "auto" -> CUDA when available, else CPU; "cuda" without a GPU is an error that says so."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but no CUDA GPU is available (use --device auto or cpu)")
    return torch.device(device)


class Predictor(SlicePredictor):
    """Model + codec + preprocessing of one checkpoint, the network run by PyTorch.

    Args:
        model: the network (eval mode is set here).
        device: where it runs.
        schema, codec, trained, input_size, neighbours, decode, percentiles, target_spacing, temperatures: see
            :class:`~spine_kp.inference.pipeline.SlicePredictor`.
        grade_stage: the crop grading stage, None to grade with the head alone.
        score_calibration: the Platt maps of the scores (see the base class).
    """

    def __init__(
        self,
        model: LandmarkNet,
        schema: Schema,
        codec: HeatmapCodec,
        trained: TrainedLabels,
        input_size: tuple[int, int],
        neighbours: int = 0,
        decode: LevelOrderConfig | None = None,
        percentiles: tuple[float, float] | None = None,
        target_spacing: float | None = None,
        device: str | torch.device = "cpu",
        temperatures: dict[str, float] | None = None,
        grade_stage: CropStage | None = None,
        score_calibration: ScoreMaps | None = None,
    ) -> None:
        super().__init__(
            schema,
            codec,
            trained,
            input_size,
            neighbours,
            decode,
            percentiles,
            target_spacing,
            temperatures,
            grade_stage,
            score_calibration,
        )
        self.device = torch.device(device) if not isinstance(device, torch.device) else device
        self.model = model.to(self.device).eval()
        if grade_stage is not None:
            grade_stage.model.to(self.device)

    @property
    def network(self) -> TorchNetwork:
        return TorchNetwork(self.model, self.device)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path | SpineCheckpoint | SpineEnsemble, device: str = "auto", **overrides: Any
    ) -> Predictor:
        """Rebuild from a training checkpoint (``best.ckpt`` / ``last.ckpt``), or what ``load_checkpoint`` read.

        A fold ensemble file (``spine-kp ensemble``, :mod:`spine_kp.fold_ensemble`) gives an
        :class:`~spine_kp.inference.ensemble.EnsemblePredictor`, which predicts the mean of its members.

        Args:
            overrides: replace fields of the stored decode config, e.g. ``decode=LevelOrderConfig(enabled=False)``,
                or the stored grade temperatures (``checkpoint["calibration"]``; a checkpoint without them has
                T = 1), e.g. ``temperatures={}`` for the raw probabilities; ``grade_stage=None`` ignores a stored crop
                grading stage; ``score_calibration={}`` keeps the raw ``peak x p`` scores.

        Raises:
            CheckpointError: the file is missing, unreadable, not a spine_kp checkpoint, or its weights do not fit
                the model config stored beside them.
        """
        ckpt = path if isinstance(path, (SpineCheckpoint, SpineEnsemble)) else load_model_file(path)
        if isinstance(ckpt, SpineEnsemble):
            from spine_kp.inference.ensemble import EnsemblePredictor  # it builds on this class

            return EnsemblePredictor.from_ensemble(ckpt, device, **overrides)
        p, cfg, schema = ckpt.path, ckpt.config, ckpt.schema
        model = create_model(from_dict(ModelConfig, ckpt.model_config, source=f"{p} model"), schema)
        try:
            model.load_state_dict(ckpt.model_state)
        except RuntimeError as exc:  # weights that do not fit the model config stored beside them
            raise CheckpointError(f"{p}: damaged spine_kp checkpoint ({' '.join(str(exc).split())})") from None
        data = cfg["data"]
        stats = LabelStats.from_dict(ckpt.label_stats, schema) if ckpt.label_stats else None
        trained = TrainedLabels.from_stats(schema, stats)
        decode = from_dict(LevelOrderConfig, cfg.get("decode", {}), source=f"{p} decode")
        if ckpt.decode_fit:  # the settings the validation split chose (spine_kp.engine.decode_fit)
            keys = ("absent_score", "absent_score_caudal", "step_tolerance")
            fitted = {k: float(ckpt.decode_fit[k]) for k in keys if k in ckpt.decode_fit}
            try:
                decode = dataclasses.replace(decode, **fitted)
            except (TypeError, ValueError) as exc:
                raise CheckpointError(f"{p}: damaged decode_fit entry ({exc})") from None
        decode = overrides.pop("decode", decode)
        temperatures = overrides.pop("temperatures", ckpt.temperatures)
        stage = None
        if ckpt.grade_stage is not None:
            try:
                stage = CropStage.from_payload(ckpt.grade_stage, schema, trained, source=str(p))
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise CheckpointError(f"{p}: damaged grade_stage entry ({exc!r})") from None
        stage = overrides.pop("grade_stage", stage)
        score_calibration = overrides.pop("score_calibration", ckpt.score_calibration)
        return cls(
            model,
            schema,
            ckpt.heatmap_codec(),
            trained,
            input_size=tuple(data["input_size"]),
            neighbours=int(data.get("neighbours", 0)),
            target_spacing=data.get("target_spacing"),
            decode=decode,
            device=resolve_device(device),
            temperatures=temperatures,
            grade_stage=stage,
            score_calibration=score_calibration,
            **overrides,
        )

    def with_grade_stage(self, stage: CropStage | None) -> Predictor:
        """The same model with another crop grading stage, or none (grade head alone); shares the weights."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.grade_stage = stage
        return clone
