"""Landmarks moved out of view by augmentation are trained as absent (``loss.absent_weight``)."""

from __future__ import annotations

import numpy as np
import torch
from tiny_configs import TINY_HOURGLASS, cut_only

from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.data.dataset import SpineDataset, collate_samples
from spine_kp.engine.config import experiment_to_dict, load_experiment
from spine_kp.engine.module import LandmarkModule
from spine_kp.io.annotations import read_annotations
from spine_kp.io.dicom import scan
from spine_kp.schema import load_schema

HOURGLASS = TINY_HOURGLASS
CUT_ONLY = cut_only((0.4, 0.5))


def _batch(synth_root, n: int = 4, codec: HeatmapCodec | None = None) -> dict:
    schema = load_schema()
    ds = SpineDataset(
        read_annotations(synth_root / "annotations.json", schema), scan(synth_root / "studies").studies, schema,
        augment=CUT_ONLY, skip_missing=True, codec=codec, input_size=None if codec is not None else (64, 64),
    )  # fmt: skip
    return collate_samples([ds[i] for i in range(min(n, len(ds)))])


def test_cut_landmarks_are_flagged_absent(synth_root) -> None:
    batch = _batch(synth_root)
    absent, visible = batch["absent"].numpy(), batch["visible"].numpy()
    assert absent.any() and visible.any()
    assert not (absent & visible).any()


def test_absent_landmarks_get_an_empty_target_with_weight(synth_root) -> None:
    for weight_value, expected in ((0.0, 0.0), (1.0, 1.0)):
        cfg = load_experiment("demo_cpu", {**HOURGLASS, "loss.absent_weight": str(weight_value)})
        module = LandmarkModule(experiment_to_dict(cfg), load_schema().to_dict())
        batch = _batch(synth_root, codec=module.codec)
        absent = batch["absent"]
        target, weight = module._heatmap_targets(batch)
        assert torch.all(weight[batch["visible"]] == 1.0)
        assert torch.all(weight[absent] == expected)
        assert torch.all(target[absent] == 0.0)  # the channel must be empty everywhere
        assert np.isclose(float(target[batch["visible"]].amax(dim=(-1, -2)).min()), 1.0, atol=0.2)
