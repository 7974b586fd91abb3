"""A fold ensemble predicting as one model: the mean of its members, taken where averaging keeps the meaning.

* **Heatmaps** are averaged before decoding, so the level-order decoder sees one map per landmark (averaging decoded
  points instead could mix two members' different level assignments). A channel is averaged over the members that
  trained that landmark (all of them for folds of one data set), so an untrained channel never dilutes a trained one.
* **Grade probabilities** are averaged, each member's computed with its own temperatures and trained grades
  (:func:`spine_kp.inference.network_outputs.network_probabilities` asks :meth:`EnsembleNetwork.grade_probabilities`). A
  grade one member never trained counts as probability 0 in that member, so every kind's mean stays a distribution.
* **The junction check** (:mod:`spine_kp.inference.junction_check`) is the first member's, as the decoding settings.
* **The crop grading stage**: each member's stage regrades the landmarks at the ensemble's decoded points, combined
  with the ensemble's head probabilities as that member's stage combines them, and the members' results are
  averaged; a member without a stage contributes the head's probabilities. With every member's stage combining
  linearly ("replace", "average") this is the mean of the stage probabilities.
* **Decoding settings and score calibration** are the first member's: one decoding runs, and a record is scored
  once (the members' score maps were each fitted to their own model, none to the ensemble).

The file format and its checks (members agree on schema, codec, input size, preprocessing and neighbours) are
:mod:`spine_kp.fold_ensemble`. Shapes: M members, B batch, K landmarks (schema order), h x w heatmaps, G grades.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from spine_kp.fold_ensemble import SpineEnsemble
from spine_kp.inference.crop_stage_base import StageBase
from spine_kp.inference.network_outputs import Network, grade_probabilities
from spine_kp.inference.torch_network import TorchNetwork
from spine_kp.inference.torch_predictor import Predictor
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.schema import Schema
from spine_kp.types import Slice


@dataclass(frozen=True)
class EnsembleMember:
    """One member's network with what turns its logits into probabilities.

    Attributes:
        network: the member's network (any backend).
        trained: the landmarks and grades it was trained on.
        temperatures: kind -> T of its grade calibration (a kind not named: T = 1).
    """

    network: Network
    trained: TrainedLabels
    temperatures: Mapping[str, float]


def union_trained(trained: Sequence[TrainedLabels]) -> TrainedLabels:
    """The landmarks and grades at least one member was trained on."""
    return TrainedLabels(
        np.logical_or.reduce([np.asarray(t.landmarks, dtype=bool) for t in trained]),
        {k: np.logical_or.reduce([np.asarray(t.grades[k], dtype=bool) for t in trained]) for k in trained[0].grades},
    )


class EnsembleNetwork:
    """Several networks of one schema and input as one :class:`~spine_kp.inference.network_outputs.Network`.

    Args:
        members: the members (at least one), all on the same input.
        schema: their common schema.
    """

    def __init__(self, members: Sequence[EnsembleMember], schema: Schema) -> None:
        self.members = tuple(members)
        self.schema = schema
        masks = np.stack([np.asarray(m.trained.landmarks, dtype=np.float32) for m in self.members])  # (M, K)
        counts = masks.sum(axis=0)
        # weight of each member's channel; a landmark no member trained gets the plain mean (it is never decoded)
        self.weights = np.where(counts > 0, masks / np.maximum(counts, 1.0), 1.0 / len(self.members)).astype(np.float32)

    def run(self, images: Any, mirrored: bool = False) -> tuple[np.ndarray, tuple[Any, ...]]:
        """Mean heatmaps (B, K, h, w) of the members (see :attr:`weights`) and the tuple of their features."""
        outs = [m.network.run(images, mirrored) for m in self.members]
        heatmaps = sum(w[None, :, None, None] * h for w, (h, _) in zip(self.weights, outs))
        return np.asarray(heatmaps, dtype=np.float32), tuple(f for _, f in outs)

    def grade(self, features: Sequence[Any], points: np.ndarray) -> dict[str, np.ndarray]:
        """The members' mean grade logits (the Network interface; prediction reads :meth:`grade_probabilities`)."""
        logits = [m.network.grade(f, points) for m, f in zip(self.members, features)]
        return {k: np.mean([x[k] for x in logits], axis=0, dtype=np.float32) for k in logits[0]}

    def grade_probabilities(self, features: Sequence[Any], points: np.ndarray) -> dict[str, np.ndarray]:
        """Mean grade probabilities ``{kind: (B, K_kind, G)}`` at (B, K, 2) input-pixel points, each member's with its
        own temperatures and trained grades."""
        probs = [
            grade_probabilities(m.network.grade(f, points), self.schema, m.trained, m.temperatures)
            for m, f in zip(self.members, features)
        ]
        return {k: np.mean([p[k] for p in probs], axis=0, dtype=np.float32) for k in probs[0]}


class EnsembleStage(StageBase):
    """The members' crop grading stages as one (see the module docstring); it regrades, it has no crop grader itself.

    Args:
        stages: one per member, None for a member without a stage (at least one is a stage).
        schema: the common schema; trained: the union of the members' trained labels.

    Attributes:
        config: the first stage's config with the most parasagittal neighbours any stage reads (what
            :meth:`~spine_kp.inference.slice_predictor.SlicePredictor.slices_needed` asks for); each stage crops with
            its own.
        model: the stages' crop graders (an ``nn.ModuleList``, so moving it moves them all).
    """

    def __init__(self, stages: Sequence[StageBase | None], schema: Schema, trained: TrainedLabels) -> None:
        present = [s for s in stages if s is not None]
        if not present:
            raise ValueError("EnsembleStage needs at least one member stage")
        config = dataclasses.replace(present[0].config, neighbours=max(s.config.neighbours for s in present))
        super().__init__(config, schema, trained, present[0].landmarks)
        self.stages = tuple(stages)
        self.model = nn.ModuleList([s.model for s in present if isinstance(getattr(s, "model", None), nn.Module)])

    def regrade(
        self,
        slices: Sequence[Slice],
        coords: Sequence[np.ndarray],
        peaks: np.ndarray,
        probs: list[dict[str, np.ndarray]],
        timings: dict[str, float] | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """Each member's stage regrades (a member without one keeps ``probs``); the results are averaged per slice."""
        outs = [s.regrade(slices, coords, peaks, probs, timings) if s is not None else probs for s in self.stages]
        return [
            {k: np.mean([o[i][k] for o in outs], axis=0, dtype=np.float32) for k in probs[i]} for i in range(len(probs))
        ]


class EnsemblePredictor(Predictor):
    """A fold ensemble run by PyTorch: the members' networks averaged (see the module docstring).

    Everything around the networks (schema, codec, input size, preprocessing, neighbours) is the members' common
    setting; decoding and the score calibration are the first member's. ``model`` is an ``nn.ModuleList`` of the
    members' networks and ``grade_stage.model`` one of their crop graders, so whoever moves them (the predictor, or
    Lightning in distributed prediction) moves every member. ``temperatures`` is empty: each member's own are applied
    to its logits (:attr:`members`).

    Args:
        members: one :class:`Predictor` per member (at least two), from :meth:`from_ensemble`.
    """

    def __init__(self, members: Sequence[Predictor]) -> None:
        first = members[0]
        self.members = tuple(members)
        trained = union_trained([m.trained for m in self.members])
        stages = [m.grade_stage for m in self.members]
        stage = EnsembleStage(stages, first.schema, trained) if any(s is not None for s in stages) else None
        # The first member's card, for the members' union of trained labels; no temperatures: each member's own
        # are applied to its logits (EnsembleNetwork.grade_probabilities).
        card = dataclasses.replace(
            first.card, trained=trained, calibration=dataclasses.replace(first.card.calibration, temperatures={})
        )
        models = nn.ModuleList([m.model for m in self.members])  # the members' LandmarkNets
        # the junction check is the first member's, as its card's junction section (decoding settings are too)
        junction = first.junction
        card = dataclasses.replace(card, junction=card.junction if junction is not None else None)
        super().__init__(models, card, device=first.device, grade_stage=stage, junction=junction)  # type: ignore[arg-type]

    @property
    def network(self) -> EnsembleNetwork:  # type: ignore[override]
        members = [EnsembleMember(TorchNetwork(m.model, self.device), m.trained, m.temperatures) for m in self.members]
        return EnsembleNetwork(members, self.schema)

    @classmethod
    def from_ensemble(cls, ensemble: SpineEnsemble, device: str = "auto", **overrides: Any) -> EnsemblePredictor:
        """Rebuild every member (:meth:`Predictor.from_checkpoint`) and join them.

        Args:
            overrides: as :meth:`Predictor.from_checkpoint`: ``temperatures`` replaces every member's (``{}``: raw
                probabilities), ``grade_stage`` replaces the members' stages with one (None: the grade heads alone),
                ``decode`` and ``score_calibration`` replace the first member's; ``junction=None`` drops the first
                member's junction check.

        Raises:
            CheckpointError: a member's weights do not fit the model config stored beside them (naming the member).
        """
        member_overrides = {"temperatures": overrides.pop("temperatures")} if "temperatures" in overrides else {}
        replace_stage = "grade_stage" in overrides
        stage = overrides.pop("grade_stage", None)
        if replace_stage:
            member_overrides["grade_stage"] = None
        if "junction" in overrides:
            member_overrides["junction"] = overrides.pop("junction")
        members = [Predictor.from_checkpoint(m, device=device, **member_overrides) for m in ensemble.members]
        predictor = cls(members)
        if "decode" in overrides:
            predictor = predictor.with_decode(overrides.pop("decode"))
        if "score_calibration" in overrides:
            predictor = predictor.with_card(
                predictor.card.overridden(score_calibration=overrides.pop("score_calibration"))
            )
        if overrides:
            raise TypeError(f"unknown overrides for a fold ensemble: {sorted(overrides)}")
        return predictor.with_grade_stage(stage) if replace_stage else predictor


__all__ = ["EnsembleMember", "EnsembleNetwork", "EnsemblePredictor", "EnsembleStage", "union_trained"]
