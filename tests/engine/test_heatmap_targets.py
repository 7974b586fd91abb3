"""Heatmap targets come with the batch, encoded by the data loaders with the module's own codec."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.data.datamodule import SpineDataModule
from spine_kp.data.dataset import SpineDataset, collate_samples
from spine_kp.data.labels import label_stats
from spine_kp.data.transforms import AugmentConfig
from spine_kp.engine.config import experiment_to_dict, load_experiment
from spine_kp.engine.losses import heatmap_loss
from spine_kp.engine.module import LandmarkModule
from spine_kp.engine.train import replace_data_paths, train
from spine_kp.io.annotations import read_annotations
from spine_kp.io.dicom import scan
from spine_kp.schema import load_schema
from spine_kp.types import StudyRecord

SCHEMA = load_schema()
TINY = {
    "model.backbone": "none",
    "model.decoder": "hourglass",
    "model.output_stride": "4",
    "model.decoder_channels": "8",
    "model.decoder_kwargs": "{num_stacks: 2, depth: 2}",  # two stacks: the deep-supervision term uses targets too
    "data.input_size": "[64, 64]",
    "data.batch_size": "2",
    "data.val_fraction": "0.4",
    "codec.sigma": "1.5",  # not the default: the loaders must get it from the run's codec
    "loss.absent_weight": "0.5",
    "trainer.progress_bar": "false",
}
FOV_CUT = replace(AugmentConfig(), fov_cut_prob=1.0, fov_cut_frac=(0.4, 0.5))  # some landmarks leave the image


def _cfg(synth_root, **overrides: str):
    cfg = load_experiment("demo_cpu", {**TINY, **overrides})
    return replace_data_paths(cfg, synth_root / "studies", synth_root / "annotations.json")


def _without(records: list[StudyRecord], name: str) -> list[StudyRecord]:
    """The records with landmark ``name`` unannotated everywhere (so it is untrained: landmark_mask 0)."""
    return [
        replace(r, images=(replace(r.primary, points=tuple(p for p in r.primary.points if p.identification != name)),))
        for r in records
    ]


def _in_step_targets(module: LandmarkModule, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The targets as ``training_step`` encoded them before the loaders did: per sample, from the batch's points."""
    kps, vis = batch["keypoints"].numpy(), batch["visible"].numpy()
    maps, weights = zip(*(module.codec.encode(kps[i], vis[i]) for i in range(len(kps))))
    target, weight = torch.from_numpy(np.stack(maps)), torch.from_numpy(np.stack(weights))
    weight = torch.maximum(weight, batch["absent"].to(weight) * module.cfg.loss.absent_weight)
    return target, weight * module.landmark_mask


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # a step called outside a Trainer
def test_training_step_loss_equals_the_in_step_encoding(synth_root) -> None:
    cfg = _cfg(synth_root)
    records = read_annotations(synth_root / "annotations.json", SCHEMA)
    stats = label_stats(_without(records, "T12"), SCHEMA)
    module = LandmarkModule(experiment_to_dict(cfg), SCHEMA.to_dict(), stats.to_dict()).eval()
    assert module.landmark_mask[SCHEMA.index("T12")] == 0
    ds = SpineDataset(
        records, scan(synth_root / "studies").studies, SCHEMA, augment=FOV_CUT,
        seed=1, codec=module.codec,
    )  # fmt: skip
    batch = collate_samples([ds[i] for i in range(4)])
    assert batch["absent"].any()  # the absent weight is exercised

    loss = module.training_step(batch, 0)

    target, weight = _in_step_targets(module, batch)
    out = module.model(batch["image"], batch["keypoints"])
    lc = module.cfg.loss
    assert len(out["aux_heatmaps"]) == 1
    old = (
        lc.heatmap_weight * heatmap_loss(out["heatmaps"], target, weight, lc.heatmap)
        + lc.deep_supervision_weight * heatmap_loss(out["aux_heatmaps"][0], target, weight, lc.heatmap)
        + lc.grade_weight * module.compute_losses(batch, out)["grade"]  # the grade terms use no heatmap targets
    )
    assert torch.equal(loss, old)
    assert torch.equal(module._heatmap_targets(batch)[0], target)
    assert torch.equal(module._heatmap_targets(batch)[1], weight)

    del batch["heatmaps"]
    with pytest.raises(KeyError, match="codec=module.codec"):
        module.training_step(batch, 0)


class _CheckTargets(pl.Callback):
    """Asserts that every batch a step gets carries ``pl_module.codec.encode`` of its own keypoints."""

    def __init__(self) -> None:
        self.batches = 0

    def _check(self, pl_module: LandmarkModule, batch: dict[str, Any]) -> None:
        kps, vis = batch["keypoints"].cpu().numpy(), batch["visible"].cpu().numpy()
        for i in range(len(kps)):
            maps, weight = pl_module.codec.encode(kps[i], vis[i])
            assert torch.equal(batch["heatmaps"][i].cpu(), torch.from_numpy(maps))
            assert torch.equal(batch["heatmap_weight"][i].cpu(), torch.from_numpy(weight))
        self.batches += 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._check(pl_module, batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._check(pl_module, batch)


def test_training_gets_the_targets_of_the_models_codec_from_loader_workers(synth_root, tmp_path) -> None:
    check = _CheckTargets()
    train(_cfg(synth_root, **{"data.num_workers": "2"}), tmp_path / "run", fast_dev_run=True, callbacks=[check])
    assert check.batches == 2  # one training and one validation batch


def test_a_data_module_with_another_codec_or_none_is_refused(synth_root) -> None:
    cfg = _cfg(synth_root)
    module = LandmarkModule(experiment_to_dict(cfg), SCHEMA.to_dict())
    other = HeatmapCodec(cfg.data.input_size, stride=module.codec.stride, sigma=module.codec.sigma + 1)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    for codec, message in ((other, "encodes heatmap targets with"), (None, "has no heatmap codec")):
        with pytest.raises(ValueError, match=message):
            trainer.validate(module, datamodule=SpineDataModule(cfg.data, SCHEMA, codec=codec), verbose=False)
    trainer.validate(module, datamodule=SpineDataModule(cfg.data, SCHEMA, codec=module.codec), verbose=False)
