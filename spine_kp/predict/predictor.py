"""A trained model ready to predict: rebuilt from a self-contained checkpoint, applied to decoded slices.

The checkpoint (written by the training recipe) holds the experiment config, the schema and the training label
statistics as hyper-parameters next to the weights, so nothing else is needed here; this module reads the
sections it needs without importing the training code. A checkpoint trained with ``grade_stage.enabled`` also holds
the crop grading stage (key ``"grade_stage"``): its grades are then combined with the grade head's
(:mod:`spine_kp.predict.crop_stage`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.codec.level_order import LevelOrderConfig
from spine_kp.config import from_dict
from spine_kp.data.labels import LabelStats
from spine_kp.data.preprocess import Geometry, prepare_slice
from spine_kp.models.net import LandmarkNet, ModelConfig, create_model
from spine_kp.predict.crop_stage import CropStage
from spine_kp.predict.infer import TrainedLabels, infer_batch
from spine_kp.predict.records import landmarks_to_record
from spine_kp.schema import Schema
from spine_kp.types import Slice, StudyRecord


class CheckpointError(ValueError):
    """A checkpoint that is not a spine_kp checkpoint (or is damaged); the message names the file."""


@dataclass(frozen=True)
class SlicePrediction:
    """Everything predicted on one slice.

    Attributes:
        slice: the decoded input slice (identity, spacing).
        record: competition-format record (original pixel coordinates, scores).
        coords: (K, 2) xy in original pixels, schema order.
        peaks: (K,) heatmap peak values.
        grade_probs: kind -> (K_kind, G) grade probabilities.
    """

    slice: Slice
    record: StudyRecord
    coords: np.ndarray
    peaks: np.ndarray
    grade_probs: dict[str, np.ndarray]


def resolve_device(device: str = "auto") -> torch.device:
    """ "auto" -> CUDA when available, else CPU; "cuda" without a GPU is an error that says so."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but no CUDA GPU is available (use --device auto or cpu)")
    return torch.device(device)


class Predictor:
    """Model + codec + preprocessing of one checkpoint.

    Args:
        model: the network (eval mode is set here).
        schema, codec, trained: from the checkpoint.
        input_size: (H, W) network input; neighbours: k extra slices per side as channels.
        decode: level-order decoding settings.
        percentiles: intensity clip percentiles (None: the default); target_spacing: mm per input pixel, as
            trained (None: each image fitted to ``input_size``).
        grade_stage: the crop grading stage, None to grade with the head alone.
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
        grade_stage: CropStage | None = None,
    ) -> None:
        self.device = torch.device(device) if not isinstance(device, torch.device) else device
        self.model = model.to(self.device).eval()
        self.schema = schema
        self.codec = codec
        self.trained = trained
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.neighbours = int(neighbours)
        self.decode = decode or LevelOrderConfig()
        self.percentiles = percentiles
        self.target_spacing = target_spacing
        self.grade_stage = grade_stage

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", **overrides: Any) -> Predictor:
        """Rebuild from a training checkpoint (``best.ckpt`` / ``last.ckpt``).

        Args:
            overrides: replace fields of the stored decode config, e.g. ``decode=LevelOrderConfig(enabled=False)``;
                ``grade_stage=None`` ignores a stored crop grading stage.
        """
        p = Path(path)
        if not p.is_file():
            raise CheckpointError(f"checkpoint {p} does not exist")
        try:
            ckpt = torch.load(p, map_location="cpu", weights_only=False)
            hp = ckpt["hyper_parameters"]
            cfg, schema_dict, stats_dict = hp["config"], hp["schema"], hp.get("label_stats")
            state = ckpt["state_dict"]
        except (KeyError, TypeError, RuntimeError, EOFError, OSError) as exc:
            raise CheckpointError(f"{p}: not a spine_kp checkpoint ({exc!r})") from None
        schema = Schema.from_dict(schema_dict)
        model = create_model(from_dict(ModelConfig, cfg["model"], source=f"{p} model"), schema)
        weights = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
        model.load_state_dict(weights)
        data = cfg["data"]
        codec_cfg = cfg["codec"]
        codec = HeatmapCodec(
            tuple(data["input_size"]),
            stride=cfg["model"]["output_stride"],
            sigma=codec_cfg["sigma"],
            refine=codec_cfg["refine"],
        )
        stats = LabelStats.from_dict(stats_dict, schema) if stats_dict else None
        trained = TrainedLabels.from_stats(schema, stats)
        decode = from_dict(LevelOrderConfig, cfg.get("decode", {}), source=f"{p} decode")
        decode = overrides.pop("decode", decode)
        stage = None
        if ckpt.get("grade_stage") is not None:
            try:
                stage = CropStage.from_payload(ckpt["grade_stage"], schema, trained, source=str(p))
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise CheckpointError(f"{p}: damaged grade_stage entry ({exc!r})") from None
        stage = overrides.pop("grade_stage", stage)
        return cls(
            model,
            schema,
            codec,
            trained,
            input_size=tuple(data["input_size"]),
            neighbours=int(data.get("neighbours", 0)),
            target_spacing=data.get("target_spacing"),
            decode=decode,
            device=resolve_device(device),
            grade_stage=stage,
            **overrides,
        )

    def with_decode(self, decode: LevelOrderConfig) -> Predictor:
        """The same model with other decoding settings (shares the weights)."""
        clone = object.__new__(Predictor)
        clone.__dict__.update(self.__dict__)
        clone.decode = decode
        return clone

    def with_grade_stage(self, stage: CropStage | None) -> Predictor:
        """The same model with another crop grading stage, or none (grade head alone); shares the weights."""
        clone = object.__new__(Predictor)
        clone.__dict__.update(self.__dict__)
        clone.grade_stage = stage
        return clone

    def _prepare(self, slices: Sequence[Slice], offset: int = 0) -> tuple[torch.Tensor, list[Geometry]]:
        """(B, C, H, W) inputs; ``offset`` != 0 takes the neighbour ``offset`` slices away as the image."""
        tensors, geoms = [], []
        for s in slices:
            src = s
            if offset:
                centre = s.stack.shape[0] // 2
                src = dataclasses.replace(s, pixels=s.stack[centre + offset], stack=None)
            kwargs = {"percentiles": self.percentiles} if self.percentiles else {}
            t, g = prepare_slice(
                src, self.input_size, self.neighbours if not offset else 0, target_spacing=self.target_spacing, **kwargs
            )
            tensors.append(t)
            geoms.append(g)
        return torch.stack(tensors).to(self.device), geoms

    def predict(
        self,
        slices: Sequence[Slice],
        flip_tta: bool = False,
        fuse_neighbours: bool = False,
        top_k_grades: int = 0,
        timings: dict[str, float] | None = None,
    ) -> list[SlicePrediction]:
        """Predict a batch of slices (all fitted to the same input size).

        Args:
            slices: decoded slices (with ``stack`` when the model uses neighbours or ``fuse_neighbours`` is set).
            flip_tta: average with the anterior-posterior mirrored input.
            fuse_neighbours: average the heatmaps of the neighbouring slices too (single-channel models only).
            top_k_grades: extra alternative grades per landmark (see :mod:`spine_kp.predict.records`).
            timings: seconds are added under "preprocess", "model" and "decode" (and "grade_stage").

        With a crop grading stage, every slice's landmarks are also graded on crops of its native pixels at the
        decoded points (the main view only, also with ``flip_tta``), combined with the head's grades.
        """
        if not slices:
            return []
        t0 = time.perf_counter()
        images, geoms = self._prepare(slices)
        extra = []
        if (
            fuse_neighbours
            and self.neighbours == 0
            and all(s.stack is not None and s.stack.shape[0] >= 3 for s in slices)
        ):
            extra = [self._prepare(slices, offset)[0] for offset in (-1, 1)]
        if timings is not None:
            timings["preprocess"] = timings.get("preprocess", 0.0) + time.perf_counter() - t0
        pred = infer_batch(
            self.model,
            images,
            self.codec,
            self.schema,
            self.trained,
            self.decode,
            flip_tta=flip_tta,
            extra_images=extra,
            timings=timings,
        )
        coords_all = [g.to_original(pred.coords[i].astype(np.float64)) for i, g in enumerate(geoms)]
        probs_all = [{k: v[i] for k, v in pred.grade_probs.items()} for i in range(len(slices))]
        if self.grade_stage is not None:
            t1 = time.perf_counter()
            found = [(pred.peaks[i] > 0) & self.trained.landmarks for i in range(len(slices))]
            points = [np.where(f[:, None], c, np.nan) for f, c in zip(found, coords_all)]
            crop_probs = self.grade_stage.grade(slices, points, self.device)
            probs_all = [self.grade_stage.combine(h, c) for h, c in zip(probs_all, crop_probs)]
            if timings is not None:
                timings["grade_stage"] = timings.get("grade_stage", 0.0) + time.perf_counter() - t1
        out = []
        for i, s in enumerate(slices):
            coords, probs = coords_all[i], probs_all[i]
            record = landmarks_to_record(
                coords,
                pred.peaks[i],
                probs,
                self.schema,
                self.trained,
                study_uid=s.study_uid,
                series_uid=s.series_uid,
                instance_uid=s.instance_uid,
                z_index=s.z_index,
                spacing=s.spacing,
                top_k_grades=top_k_grades,
            )
            out.append(SlicePrediction(s, record, coords, pred.peaks[i], probs))
        return out
