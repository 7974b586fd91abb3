"""Decoded slices -> predictions, for any backend: preprocessing, network views, decoding, competition records.

:class:`SlicePredictor` holds what a trained model needs around its network (its model card:
:mod:`spine_kp.inference.card`) and runs the whole path; a backend
subclass only supplies :attr:`SlicePredictor.network` (PyTorch: :class:`spine_kp.inference.torch_predictor.Predictor`;
ONNX Runtime: :class:`spine_kp.inference.onnx_predictor.OnnxPredictor`). Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spine_kp.calibration.apply import ScoreMaps
from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.codec.level_order import LevelOrderConfig
from spine_kp.data.preprocess import Geometry, prepare_image
from spine_kp.inference.card import ModelCard
from spine_kp.inference.count_warning import count_warning
from spine_kp.inference.crop_stage_base import StageBase
from spine_kp.inference.junction_check import JunctionCheckBase
from spine_kp.inference.network_outputs import Network, infer_views
from spine_kp.inference.records import landmarks_to_record
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.schema import Schema
from spine_kp.types import Slice, StudyRecord


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


class SlicePredictor:
    """A trained model's settings around its network, and the path from slices to predictions.

    Every setting is read from the model card (:class:`~spine_kp.inference.card.ModelCard`: schema, codec, trained
    labels, preprocessing, decoding, calibration), so a backend built from a card needs nothing else; the attributes
    below are read-only views of it, and :meth:`with_card` gives the same network with another card.

    Args:
        card: the model's card.
        grade_stage: the crop grading stage (torch or ONNX Runtime), None to grade with the head alone.
        junction: the check of the level count at the lumbosacral junction (torch or ONNX Runtime), None for none.
    """

    def __init__(
        self, card: ModelCard, grade_stage: StageBase | None = None, junction: JunctionCheckBase | None = None
    ) -> None:
        self.card = card
        self.grade_stage = grade_stage
        self.junction = junction

    @property
    def schema(self) -> Schema:
        return self.card.schema

    @property
    def codec(self) -> HeatmapCodec:
        return self.card.codec

    @property
    def trained(self) -> TrainedLabels:
        return self.card.trained

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) network input."""
        return self.card.input_size

    @property
    def neighbours(self) -> int:
        """k extra slices per side as channels."""
        return self.card.preprocessing.neighbours

    @property
    def percentiles(self) -> tuple[float, float]:
        """Intensity clip percentiles."""
        return self.card.preprocessing.percentiles

    @property
    def target_spacing(self) -> float | None:
        """mm per input pixel, as trained (None: each image fitted to ``input_size``)."""
        return self.card.preprocessing.target_spacing

    @property
    def decode(self) -> LevelOrderConfig:
        """Level-order decoding settings."""
        return self.card.decoding

    @property
    def temperatures(self) -> dict[str, float]:
        """kind -> T dividing that kind's grade logits (a kind not named: T = 1)."""
        return self.card.calibration.temperatures

    @property
    def score_calibration(self) -> dict[str, dict[str, tuple[float, float]]]:
        """``{"localization": {kind: (a, b)}, "scores": {kind: (a, b)}}``, the Platt maps fitted at the end of
        training (:mod:`spine_kp.engine.score_map_fit`); empty: the raw ``peak x p``."""
        return self.card.calibration.score_maps

    def slices_needed(self, fuse_neighbours: bool = False) -> int:
        """Neighbouring slices per side to decode with each image: the network's input channels, the crop stage's
        planes and, with ``fuse_neighbours``, one."""
        stage = self.grade_stage.config.neighbours if self.grade_stage is not None else 0
        return max(self.neighbours, stage, 1 if fuse_neighbours else 0)

    @property
    def network(self) -> Network:
        """The backend's network (subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} has no network")

    def with_card(self, card: ModelCard) -> SlicePredictor:
        """The same network with another card (e.g. other decoding settings or calibration)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.card = card
        return clone

    def with_junction(self, junction: JunctionCheckBase | None) -> SlicePredictor:
        """The same model with another junction check, or none (shares the network)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.junction = junction
        return clone

    def with_decode(self, decode: LevelOrderConfig) -> SlicePredictor:
        """The same model with other decoding settings (shares the network)."""
        return self.with_card(dataclasses.replace(self.card, decoding=decode))

    def regrade(
        self,
        slices: Sequence[Slice],
        coords: Sequence[np.ndarray],
        peaks: np.ndarray,
        probs: list[dict[str, np.ndarray]],
        timings: dict[str, float] | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """The grades after a second look: with a crop grading stage, crops of each slice's native pixels at the
        decoded points, graded and combined with the head's (the main view, also under flip-TTA); without one, the
        head's.

        Args:
            coords: per slice (K, 2) xy in original pixels; peaks: (B, K), 0 for landmarks not found;
            probs: per slice ``{kind: (K_kind, G)}`` of the grade head.
        """
        if self.grade_stage is None:
            return probs
        return self.grade_stage.regrade(slices, coords, peaks, probs, timings)

    def _junction_check(self, slices: Sequence[Slice], geoms: Sequence[Geometry]) -> Any:
        """The junction check of this batch as :func:`~spine_kp.inference.network_outputs.infer_views` calls it (None:
        the model has none)."""
        junction = self.junction
        if junction is None:
            return None

        def check(coords: np.ndarray, peaks: np.ndarray, heatmaps: np.ndarray) -> Any:
            stride = self.codec.stride
            return junction.check(slices, geoms, coords, peaks, heatmaps, stride, self.trained.landmarks)

        return check

    def prepare(self, slices: Sequence[Slice], offset: int = 0) -> tuple[np.ndarray, list[Geometry]]:
        """(B, C, H, W) float32 inputs and their geometries; ``offset`` != 0 takes the neighbour ``offset`` slices
        away as the image."""
        images, geoms = [], []
        for s in slices:
            src = s
            if offset:
                centre = s.stack.shape[0] // 2
                src = dataclasses.replace(s, pixels=s.stack[centre + offset], stack=None)
            neighbours = self.neighbours if not offset else 0
            image, g = prepare_image(src, self.input_size, neighbours, self.percentiles, self.target_spacing)
            images.append(image)
            geoms.append(g)
        return np.stack(images), geoms

    def predict(
        self,
        slices: Sequence[Slice],
        flip_tta: bool | None = None,
        fuse_neighbours: bool = False,
        top_k_grades: int | None = None,
        timings: dict[str, float] | None = None,
    ) -> list[SlicePrediction]:
        """Predict a batch of slices (all fitted to the same input size).

        Args:
            slices: decoded slices (with ``stack`` when the model uses neighbours or ``fuse_neighbours`` is set).
            flip_tta: average with the anterior-posterior mirrored input (None: the card's ``decoding.flip_tta``).
            fuse_neighbours: average the heatmaps of the neighbouring slices too (single-channel models only).
            top_k_grades: write at least this many grades per landmark (see :mod:`spine_kp.inference.records`; None:
                the card's ``decoding.top_k_grades``).
            timings: seconds are added under "preprocess", "model" and "decode".
        """
        if not slices:
            return []
        t0 = time.perf_counter()
        images, geoms = self.prepare(slices)
        extra = []
        if (
            fuse_neighbours
            and self.neighbours == 0
            and all(s.stack is not None and s.stack.shape[0] >= 3 for s in slices)
        ):
            extra = [self.prepare(slices, offset)[0] for offset in (-1, 1)]
        if timings is not None:
            timings["preprocess"] = timings.get("preprocess", 0.0) + time.perf_counter() - t0
        pred = infer_views(
            self.network,
            images,
            self.codec,
            self.schema,
            self.trained,
            self.decode,
            flip_tta=self.decode.flip_tta if flip_tta is None else flip_tta,
            extra_images=extra,
            timings=timings,
            temperatures=self.temperatures,
            check=self._junction_check(slices, geoms),
        )
        coords_all = [g.to_original(pred.coords[i].astype(np.float64)) for i, g in enumerate(geoms)]
        probs_all = [{k: v[i] for k, v in pred.grade_probs.items()} for i in range(len(slices))]
        probs_all = self.regrade(slices, coords_all, pred.peaks, probs_all, timings)
        shifts = [None] * len(slices) if pred.view_coords is None else flip_shifts_mm(pred.view_coords, geoms, slices)
        out = []
        for i, s in enumerate(slices):
            record = self.record(s, coords_all[i], pred.peaks[i], probs_all[i], top_k_grades, flip_shift_mm=shifts[i])
            warning = count_warning(coords_all[i], pred.peaks[i], self.trained.landmarks, self.schema, s.pixels.shape)
            if warning is not None:
                record = dataclasses.replace(record, warnings=(*record.warnings, warning))
            out.append(SlicePrediction(s, record, coords_all[i], pred.peaks[i], probs_all[i]))
        return out

    def record(
        self,
        slc: Slice,
        coords: np.ndarray,
        peaks: np.ndarray,
        probs: dict[str, np.ndarray],
        top_k_grades: int | None = None,
        score_calibration: ScoreMaps | None = None,
        flip_shift_mm: np.ndarray | None = None,
    ) -> StudyRecord:
        """The competition record of one predicted slice (:func:`~spine_kp.inference.records.landmarks_to_record`),
        scored with this model's score calibration unless ``score_calibration`` is given, with the card's
        ``decoding.top_k_grades`` unless ``top_k_grades`` is given."""
        return landmarks_to_record(
            coords,
            peaks,
            probs,
            self.schema,
            self.trained,
            study_uid=slc.study_uid,
            series_uid=slc.series_uid,
            instance_uid=slc.instance_uid,
            z_index=slc.z_index,
            spacing=slc.spacing,
            top_k_grades=self.decode.top_k_grades if top_k_grades is None else top_k_grades,
            score_calibration=self.score_calibration if score_calibration is None else score_calibration,
            flip_shift_mm=flip_shift_mm,
        )


def flip_shifts_mm(view_coords: np.ndarray, geoms: Sequence[Geometry], slices: Sequence[Slice]) -> list[np.ndarray]:
    """Per slice, (K,) mm between each landmark as decoded on the plain and on the mirrored view (flip-TTA).

    Args:
        view_coords: (2, B, K, 2) xy in input pixels, plain view first.
    """
    out = []
    for i, (g, s) in enumerate(zip(geoms, slices)):
        plain, mirrored = (g.to_original(view_coords[v, i].astype(np.float64)) for v in (0, 1))
        dx, dy = (plain - mirrored).T
        out.append(np.hypot(dx * s.spacing[1], dy * s.spacing[0]))
    return out


__all__ = ["SlicePrediction", "SlicePredictor", "flip_shifts_mm"]
