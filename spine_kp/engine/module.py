"""The LightningModule: the training recipe (losses, optimisation, validation by the real predictor + evaluator).

The architecture comes from the registry (:func:`spine_kp.models.net.create_model`) and the whole experiment
config, the schema, the training label statistics and the heatmap codec are saved as hyper-parameters, so a
checkpoint alone rebuilds the model for prediction (``LandmarkModule.load_from_checkpoint(path)``, or
:func:`spine_kp.checkpoint.load_checkpoint` without the training code).

The heatmap targets come with the batch: the data module's datasets encode them in the loader workers with this
module's codec (``SpineDataModule(..., codec=module.codec)``; :meth:`LandmarkModule.setup` refuses a data module
with another codec), so a training step does no per-sample work in Python.

Validation runs the real predictor and evaluator; under DDP every rank's outputs are gathered first
(:mod:`spine_kp.engine.gather`), so ``val/mAP`` and the localization metrics measure the whole validation split
and are the same on every rank.

Shapes: B batch, C channels, H x W input, K landmarks, h x w heatmaps, K_kind landmarks of a kind, G grades.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.warnings import PossibleUserWarning
from torch import Tensor

from spine_kp.calibration.fit import Calibration
from spine_kp.checkpoint import CALIBRATION_KEY, CODEC_KEY, build_codec
from spine_kp.config import from_dict, to_dict
from spine_kp.data.datamodule import SpineDataModule
from spine_kp.data.labels import LabelStats
from spine_kp.engine.config import ExperimentConfig
from spine_kp.engine.gather import gather_by_study
from spine_kp.engine.grade_logits import GradeLogits, stack_studies
from spine_kp.engine.losses import heatmap_loss, multi_label_loss, single_label_loss
from spine_kp.engine.optim import adamw_warmup_cosine
from spine_kp.evaluation.evaluate import evaluate_records
from spine_kp.evaluation.matching import DEFAULT_RADIUS_MM
from spine_kp.inference.network_outputs import infer_views
from spine_kp.inference.records import landmarks_to_record
from spine_kp.inference.torch_network import TorchNetwork
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.models.net import create_model
from spine_kp.schema import Schema
from spine_kp.types import StudyRecord

# Logged by every rank from the gathered validation split: one value everywhere, nothing for sync_dist to reduce.
_GATHERED_METRICS = r"(val/(mAP|median_mm|p95_mm|within_8mm|studies)|calib/T_\w+)"


class LandmarkModule(pl.LightningModule):
    """Heatmap landmark localisation + grading.

    Args:
        config: plain-data :class:`ExperimentConfig` (as from ``experiment_to_dict``).
        schema: plain-data schema (``Schema.to_dict()``).
        label_stats: plain-data :class:`LabelStats` of the training split (untrained landmarks/grades, weights).
        codec: ``HeatmapCodec.to_dict()`` of a checkpoint (None: built from ``config``); saved as a hyper-parameter
            either way, so prediction decodes with the codec the model was trained with.
    """

    def __init__(
        self,
        config: dict[str, Any],
        schema: dict[str, Any],
        label_stats: dict[str, Any] | None = None,
        codec: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.cfg = from_dict(ExperimentConfig, config, source="checkpoint config")
        self.schema = Schema.from_dict(schema)
        self.model = create_model(self.cfg.model, self.schema)
        self.codec = build_codec(to_dict(self.cfg), codec)
        self.hparams[CODEC_KEY] = self.codec.to_dict()
        self.stats = LabelStats.from_dict(label_stats, self.schema) if label_stats else None
        self.trained = TrainedLabels.from_stats(self.schema, self.stats)
        for kind in self.schema.kinds:
            mask = torch.as_tensor(self.trained.grades[kind.name], dtype=torch.float32)
            if self.stats is not None and self.cfg.loss.class_weights:
                weight = torch.as_tensor(
                    self.stats.pos_weight(kind.name) if kind.multi_label else self.stats.class_weights(kind.name),
                    dtype=torch.float32,
                )
            else:
                weight = torch.ones(len(kind.grades))
            self.register_buffer(f"grade_weight_{kind.name}", weight * (mask if not kind.multi_label else 1.0))
            self.register_buffer(f"grade_mask_{kind.name}", mask)
        self.register_buffer("landmark_mask", torch.as_tensor(self.trained.landmarks, dtype=torch.float32))
        self._val_records: dict[str, StudyRecord] = {}  # study UID -> prediction, this rank's share of the epoch
        self._val_logits = GradeLogits()
        # grade temperatures of the current weights (spine_kp.engine.grade_logits); None until fitted
        self.calibration: Calibration | None = None

    def setup(self, stage: str) -> None:
        self._check_data_codec()
        # Lightning recommends sync_dist=True for every epoch metric under DDP; the gathered ones need no reduction.
        warnings.filterwarnings(
            "ignore",
            message=rf"It is recommended to use `self\.log\('{_GATHERED_METRICS}'",
            category=PossibleUserWarning,
        )

    def _check_data_codec(self) -> None:
        """Refuse a SpineDataModule whose heatmap targets are not encoded with this module's codec."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if not isinstance(datamodule, SpineDataModule):
            return
        if datamodule.codec is None:
            raise ValueError(
                "SpineDataModule has no heatmap codec, so its batches carry no targets; build it with the model's "
                "codec: SpineDataModule(config, schema, codec=module.codec)"
            )
        theirs = datamodule.codec.to_dict()
        if theirs != self.codec.to_dict():
            raise ValueError(
                f"SpineDataModule encodes heatmap targets with {theirs} but the model decodes with "
                f"{self.codec.to_dict()}; build it with the model's codec: SpineDataModule(..., codec=module.codec)"
            )

    # ------------------------------------------------------------------ forward / losses
    def forward(self, images: Tensor, points: Tensor | None = None) -> dict[str, Any]:
        return self.model(images, points)

    def _heatmap_targets(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """(B, K, h, w) Gaussian targets and (B, K) weights, from the batch's ``heatmaps`` and ``heatmap_weight``.

        The data loaders encoded them with this module's codec (:mod:`spine_kp.data.dataset`). Unannotated and
        untrained landmarks weigh 0. A landmark the augmentation moved out of view is known to be absent: its target
        is an all-zero map weighted ``loss.absent_weight``, so a channel learns not to fire on a neighbouring level
        when its own is outside the field of view.

        Raises:
            KeyError: the batch has no heatmap targets (its dataset was built without the codec).
        """
        if "heatmaps" not in batch or "heatmap_weight" not in batch:
            raise KeyError(
                "the batch has no 'heatmaps'/'heatmap_weight' targets; build the SpineDataModule (or SpineDataset) "
                "with the model's codec: codec=module.codec"
            )
        target, weight = batch["heatmaps"], batch["heatmap_weight"]
        absent = batch.get("absent")
        if absent is not None and self.cfg.loss.absent_weight > 0:
            weight = torch.maximum(weight, absent.to(weight) * self.cfg.loss.absent_weight)
        return target, weight * self.landmark_mask

    def compute_losses(self, batch: dict[str, Any], out: dict[str, Any]) -> dict[str, Tensor]:
        lc = self.cfg.loss
        target, weight = self._heatmap_targets(batch)
        losses = {"heatmap": heatmap_loss(out["heatmaps"], target, weight, lc.heatmap)}
        aux = out.get("aux_heatmaps") or []
        if aux:
            losses["deep_supervision"] = sum(heatmap_loss(a, target, weight, lc.heatmap) for a in aux) / len(aux)
        grade_terms = []
        for kind in self.schema.kinds:
            logits = out["grade_logits"][kind.name]
            tgt, mask = batch["grades"][kind.name], batch["grade_mask"][kind.name]
            if kind.multi_label:
                grade_terms.append(
                    multi_label_loss(
                        logits,
                        tgt,
                        mask,
                        pos_weight=getattr(self, f"grade_weight_{kind.name}"),
                        grade_mask=getattr(self, f"grade_mask_{kind.name}"),
                        focal_gamma=lc.grade_focal_gamma,
                    )
                )
            else:
                grade_terms.append(single_label_loss(logits, tgt, mask, getattr(self, f"grade_weight_{kind.name}")))
        losses["grade"] = sum(grade_terms) / max(1, len(grade_terms))
        losses["total"] = (
            lc.heatmap_weight * losses["heatmap"]
            + lc.deep_supervision_weight * losses.get("deep_supervision", 0.0)
            + lc.grade_weight * losses["grade"]
        )
        return losses

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        points = batch["keypoints"] if self.cfg.loss.grade_on_gt_points else None
        losses = self.compute_losses(batch, self.model(batch["image"], points))
        bs = batch["image"].shape[0]
        for name, value in losses.items():  # sync_dist: under DDP the epoch value is the mean over every rank's batches
            self.log(
                f"train/{name}",
                value,
                prog_bar=name == "total",
                batch_size=bs,
                on_step=True,
                on_epoch=True,
                sync_dist=True,
            )
        return losses["total"]

    # ------------------------------------------------------------------ validation = predictor + evaluator
    def on_validation_epoch_start(self) -> None:
        self._val_records = {}
        self._val_logits.clear()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        images = batch["image"]
        out = self.model(images, batch["keypoints"])
        losses = self.compute_losses(batch, out)
        if self.cfg.calibration.enabled:  # grade logits at the ground-truth landmarks, for the temperature fit
            self._val_logits.add(out["grade_logits"], batch["grades"], batch["grade_mask"], batch["study_uid"])
        self.log("val/loss", losses["total"], batch_size=images.shape[0], sync_dist=True)
        pred = infer_views(TorchNetwork(self.model), images, self.codec, self.schema, self.trained, self.cfg.decode)
        for i, (geom, uid) in enumerate(zip(batch["geometry"], batch["study_uid"])):
            self._val_records[uid] = landmarks_to_record(
                geom.to_original(pred.coords[i]),
                pred.peaks[i],
                {k: v[i] for k, v in pred.grade_probs.items()},
                self.schema,
                self.trained,
                study_uid=uid,
                series_uid="",
                instance_uid=batch["instance_uid"][i],
                z_index=None,
                spacing=geom.spacing,
            )

    def on_validation_epoch_end(self) -> None:
        # Under DDP each rank validated its shard: gather every rank's predictions and grade logits (collective, so
        # on every rank), one copy of each study, so the metrics and temperatures are the whole split's everywhere.
        local = {uid: (record, self._val_logits.studies.get(uid, {})) for uid, record in self._val_records.items()}
        merged = gather_by_study(local)
        self._val_records = {}
        self._val_logits.clear()
        if self.cfg.calibration.enabled and not self.trainer.sanity_checking:
            self._fit_calibration({uid: logits for uid, (_, logits) in merged.items()})
        self._log_validation_metrics([record for record, _ in merged.values()])

    def _log_validation_metrics(self, records: list[StudyRecord]) -> None:
        """Score the validation split's predictions (all ranks') against its annotations with the 8 mm rules."""
        datamodule = getattr(self.trainer, "datamodule", None)
        gt = list(getattr(datamodule, "val_records", None) or [])  # every rank's datamodule holds the whole split
        if not records or not gt:
            return
        seen = {r.study_uid for r in records}
        spacing = {r.study_uid: r.primary.pixel_spacing for r in records}
        gt = [_with_spacing(r, spacing[r.study_uid]) for r in gt if r.study_uid in seen]
        result = evaluate_records(gt, records, self.schema, radius=DEFAULT_RADIUS_MM)
        overall = result.localization.overall
        metrics = {
            "val/mAP": result.map if result.map is not None else 0.0,
            "val/median_mm": _finite(overall.median),
            "val/p95_mm": _finite(overall.p95),
            "val/within_8mm": overall.within_radius if overall.within_radius is not None else 0.0,
        }
        self.log_dict(metrics, prog_bar=True, sync_dist=False)
        self.log("val/studies", float(len(records)), sync_dist=False)

    def _fit_calibration(self, studies: dict[str, Any]) -> None:
        """Fit the grade temperatures on this epoch's validation logits (study UID -> logits, all ranks')."""
        arrays = stack_studies(studies)
        min_points = self.cfg.calibration.min_points
        self.calibration = Calibration.fit(arrays, self.schema.kinds, self.trained.grades, min_points)
        self.log_dict({f"calib/T_{k}": t for k, t in self.calibration.temperatures.items()}, sync_dist=False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.cfg.calibration.enabled and self.calibration is not None:  # disabled: no stale temperatures either
            checkpoint[CALIBRATION_KEY] = self.calibration.to_checkpoint()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.calibration = Calibration.from_checkpoint(checkpoint.get(CALIBRATION_KEY))

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        oc = self.cfg.optim  # the one recipe of every stage: spine_kp.engine.optim
        return adamw_warmup_cosine(self.model, self.trainer, oc.lr, oc.weight_decay, oc.warmup_epochs, oc.min_lr_ratio)


def _finite(value: float | None) -> float:
    return float(value) if value is not None and np.isfinite(value) else float("inf")


def _with_spacing(record: StudyRecord, spacing: tuple[float, float] | None) -> StudyRecord:
    """Give every image of a ground-truth record a pixel spacing (the loaded image's one if the JSON has none)."""
    images = tuple(im if im.pixel_spacing else dataclasses.replace(im, pixel_spacing=spacing) for im in record.images)
    return dataclasses.replace(record, images=images)
