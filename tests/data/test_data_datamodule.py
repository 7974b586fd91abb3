"""SpineDataModule: split by study (fraction or k-fold), loaders with workers, typed config."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.config import ConfigError, from_dict
from spine_kp.data.datamodule import DataConfig, SpineDataModule, split_studies
from spine_kp.data.dataset import MissingDataError
from spine_kp.data.transforms import AugmentConfig
from spine_kp.io.annotations import read_annotations, write_annotations
from spine_kp.schema import load_schema
from spine_kp.types import ImageAnnotation, StudyRecord

UIDS = [f"1.2.{i}" for i in range(23)]


def test_split_is_deterministic_disjoint_and_order_free() -> None:
    train, val = split_studies(UIDS, val_fraction=0.2, seed=4)
    assert len(val) == round(23 * 0.2) and set(train) | set(val) == set(UIDS) and not set(train) & set(val)
    assert (train, val) == split_studies(list(reversed(UIDS)), 0.2, 4)
    assert split_studies(UIDS, 0.2, 5)[1] != val
    assert split_studies(UIDS[:2], 0.1, 0)[1] != []  # a positive fraction holds out at least one study
    assert split_studies(UIDS, 0.0, 0) == (sorted(UIDS), [])


def test_kfold_partitions_the_studies() -> None:
    folds = [split_studies(UIDS, 0.2, seed=1, fold=f, num_folds=4)[1] for f in range(4)]
    assert sorted(u for f in folds for u in f) == sorted(UIDS)
    assert all(5 <= len(f) <= 6 for f in folds)
    assert folds == [split_studies(UIDS, 0.5, seed=1, fold=f, num_folds=4)[1] for f in range(4)]


def test_data_config_from_yaml_data() -> None:
    cfg = from_dict(DataConfig, {"root": "r", "annotations": "a.json", "input_size": [64, 32], "fold": 1,
                                 "augment": {"flip_prob": 0.0, "scale_range": [0.9, 1.1]}})  # fmt: skip
    assert cfg.input_size == (64, 32) and cfg.augment.scale_range == (0.9, 1.1) and cfg.augment.flip_prob == 0.0
    with pytest.raises(ConfigError, match="augment.flip"):
        from_dict(DataConfig, {"augment": {"flip": 0.5}})
    with pytest.raises(ValueError, match="fold"):
        DataConfig(fold=5, num_folds=5)


def make_config(root: Path, **kw: object) -> DataConfig:
    base = DataConfig(root=str(root / "studies"), annotations=str(root / "annotations.json"), input_size=(64, 64),
                      batch_size=2, val_fraction=0.4, seed=0)  # fmt: skip
    return replace(base, **kw)


def test_datamodule_splits_by_study_and_serves_batches(synth_root: Path) -> None:
    codec = HeatmapCodec((64, 64), stride=4)
    dm = SpineDataModule(make_config(synth_root, num_workers=2, augment=AugmentConfig()), codec=codec)
    dm.setup("fit")
    train, val = dm.train_records, dm.val_records
    all_uids = {r.study_uid for r in read_annotations(synth_root / "annotations.json", dm.schema)}
    assert {r.study_uid for r in train} | {r.study_uid for r in val} == all_uids
    assert not {r.study_uid for r in train} & {r.study_uid for r in val}
    assert len(val) == 2 and set(dm.studies) == all_uids
    assert dm.train_dataset.augmenter is not None and dm.val_dataset.augmenter is None
    batches = list(dm.train_dataloader())  # two worker processes: the dataset must pickle
    assert sum(len(b["study_uid"]) for b in batches) == len(train)
    assert batches[0]["image"].shape[1:] == (1, 64, 64)
    k = dm.schema.num_landmarks
    v1, v2 = list(dm.val_dataloader()), list(dm.val_dataloader())
    for b in [*batches, *v1]:  # both loaders carry the targets of the codec they were given
        assert b["heatmaps"].shape == (len(b["study_uid"]), k, 16, 16) and b["heatmap_weight"].shape[1:] == (k,)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(v1, v2))  # validation is not augmented
    stats = dm.label_stats
    assert stats.num_records == len(train) and "T12" not in stats.untrained_landmarks
    dm.setup("validate")  # idempotent
    assert dm.val_records == val


def test_datamodule_fold_and_missing(synth_root: Path, tmp_path: Path) -> None:
    folds = []
    for f in range(2):
        dm = SpineDataModule(make_config(synth_root, fold=f, num_folds=2))
        dm.setup()
        folds.append({r.study_uid for r in dm.val_records})
    assert not folds[0] & folds[1] and len(folds[0] | folds[1]) == 5
    schema = load_schema()
    records = read_annotations(synth_root / "annotations.json", schema)
    extra = StudyRecord(study_uid="3.3.3", images=(ImageAnnotation("1", "2", points=()),))
    ann = write_annotations(tmp_path / "ann.json", [*records, extra])
    with pytest.raises(MissingDataError, match=r"3\.3\.3"):
        SpineDataModule(make_config(synth_root, annotations=str(ann))).setup()
    dm = SpineDataModule(make_config(synth_root, annotations=str(ann), skip_missing=True))
    dm.setup()
    assert len(dm.train_records) + len(dm.val_records) == 5 and dm.skipped and "3.3.3" in dm.skipped[0]
    with pytest.raises(RuntimeError, match="setup"):
        SpineDataModule(make_config(synth_root)).train_dataloader()


def test_datamodule_counts_points_outside_their_image_and_z_beyond_the_series(
    synth_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What only the images can refute is one counted warning at setup, not a silent mask per item."""
    schema = load_schema()
    records = read_annotations(synth_root / "annotations.json", schema)
    first = records[0].images[0]
    moved = [replace(p, coord=(-40.0, 5.0)) if i == 0 else replace(p, z_index=999) if i == 1 else p
             for i, p in enumerate(first.points)]  # fmt: skip
    records[0] = replace(records[0], images=(replace(first, points=tuple(moved)), *records[0].images[1:]))
    ann = write_annotations(tmp_path / "ann.json", records)
    dm = SpineDataModule(make_config(synth_root, annotations=str(ann)))
    with caplog.at_level("WARNING", logger="spine_kp.io.data_checks"):
        dm.setup()
    assert len(dm.data_warnings) == 2 and all(records[0].study_uid in w for w in dm.data_warnings)
    assert "1 annotated point(s) lie outside their image" in caplog.text
    assert "1 zIndex value(s) lie beyond their series" in caplog.text
