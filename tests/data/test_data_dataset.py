"""SpineDataset over a phantom data root: annotated instance, targets, cache, missing data, batch format."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_lightning.utilities import move_data_to_device
from torch.utils.data import DataLoader

import spine_kp.data.dataset as dataset_module
from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.data.dataset import MissingDataError, SpineDataset, collate_samples
from spine_kp.data.preprocess import prepare_slice, to_original
from spine_kp.data.transforms import AugmentConfig
from spine_kp.io.annotations import read_annotations
from spine_kp.io.dicom import StudyIndex, load_instance, load_middle_slice, scan
from spine_kp.schema import load_schema
from spine_kp.types import ImageAnnotation, Slice, StudyRecord

SCHEMA = load_schema()
SIZE = (96, 96)


@pytest.fixture(scope="module")
def data(synth_root: Path) -> tuple[list[StudyRecord], dict]:
    records = read_annotations(synth_root / "annotations.json", SCHEMA)
    return records, scan(synth_root / "studies").studies


def test_items_are_the_annotated_instance(data: tuple[list[StudyRecord], dict]) -> None:
    records, studies = data
    # point the first record at a slice that is not the middle one: the dataset must load exactly that one
    study = studies[records[0].study_uid]
    middle = load_middle_slice(study)
    series = next(s for s in study.series if s.series_uid == middle.series_uid)
    other = series.instances[0].sop_instance_uid
    assert other != middle.instance_uid
    ann = records[0].primary
    moved = replace(records[0], images=(replace(ann, instance_uid=other),))
    ds = SpineDataset([moved, *records[1:]], studies, SCHEMA, input_size=SIZE)
    assert len(ds) == len(records)
    for i, rec in enumerate(ds.records):
        item = ds[i]
        expected, geom = prepare_slice(load_instance(studies[rec.study_uid], rec.primary.instance_uid), SIZE)
        assert item["instance_uid"] == rec.primary.instance_uid and item["study_uid"] == rec.study_uid
        assert torch.equal(item["image"], expected)
        assert item["geometry"] == geom
    first, _ = prepare_slice(middle, SIZE)
    assert not torch.equal(ds[0]["image"], first)


def test_keypoints_map_back_to_the_annotation(data: tuple[list[StudyRecord], dict]) -> None:
    records, studies = data
    # drop two landmarks from one record: they must be masked, not background
    ann = records[1].primary
    kept = tuple(p for p in ann.points if p.identification not in ("L2", "L3-L4"))
    recs = [records[0], replace(records[1], images=(replace(ann, points=kept),))]
    ds = SpineDataset(recs, studies, SCHEMA, input_size=SIZE)
    batch = collate_samples([ds[0], ds[1]])
    back = to_original(batch["keypoints"], batch["geometry"])
    for b, rec in enumerate(recs):
        for p in rec.primary.points:
            k = SCHEMA.index(p.identification)
            assert batch["visible"][b, k]
            np.testing.assert_allclose(back[b, k].numpy(), p.coord, atol=1e-3)
    assert not batch["visible"][1, SCHEMA.index("L2")] and not batch["visible"][1, SCHEMA.index("L3-L4")]
    discs = SCHEMA.landmarks_of_kind("disc")
    assert not batch["grade_mask"]["disc"][1, discs.index("L3-L4")]
    assert batch["visible"][0].all()  # the phantom annotates every landmark


def test_batch_format_through_a_dataloader(data: tuple[list[StudyRecord], dict]) -> None:
    records, studies = data
    ds = SpineDataset(records, studies, SCHEMA, input_size=SIZE, neighbours=1, augment=AugmentConfig(), seed=3)
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_samples)))
    k = SCHEMA.num_landmarks
    assert batch["image"].shape == (3, 3, *SIZE) and batch["image"].dtype == torch.float32
    assert batch["keypoints"].shape == (3, k, 2) and batch["keypoints"].dtype == torch.float32
    assert batch["visible"].shape == (3, k) and batch["visible"].dtype == torch.bool
    assert set(batch["grades"]) == {kd.name for kd in SCHEMA.kinds} == set(batch["grade_mask"])
    for kind in SCHEMA.kinds:
        n = len(SCHEMA.landmarks_of_kind(kind.name))
        assert batch["grades"][kind.name].shape == (3, n, len(kind.grades))
        assert batch["grades"][kind.name].dtype == torch.float32
        assert batch["grade_mask"][kind.name].shape == (3, n) and batch["grade_mask"][kind.name].dtype == torch.bool
        idx = [SCHEMA.index(name) for name in SCHEMA.landmarks_of_kind(kind.name)]
        assert not (batch["grade_mask"][kind.name] & ~batch["visible"][:, idx]).any()  # graded only where visible
    assert len(batch["geometry"]) == 3 and batch["study_uid"] == [r.study_uid for r in records[:3]]
    assert batch["instance_uid"] == [r.primary.instance_uid for r in records[:3]]
    # Lightning moves batches with apply_to_collection, which cannot rebuild frozen dataclasses field by field
    moved = move_data_to_device(batch, torch.device("cpu"))
    assert moved["geometry"] == batch["geometry"] and torch.equal(moved["image"], batch["image"])


def _assert_targets_encode_the_points(batch: dict, codec: HeatmapCodec) -> None:
    """Each sample's heatmaps and weights are exactly ``codec.encode`` of its own (augmented) keypoints."""
    for i in range(len(batch["study_uid"])):
        maps, weight = codec.encode(batch["keypoints"][i].numpy(), batch["visible"][i].numpy())
        assert torch.equal(batch["heatmaps"][i], torch.from_numpy(maps))
        assert torch.equal(batch["heatmap_weight"][i], torch.from_numpy(weight))


def test_heatmap_targets_are_the_codecs_encoding_of_the_augmented_points(
    data: tuple[list[StudyRecord], dict],
) -> None:
    records, studies = data
    k = SCHEMA.num_landmarks
    codec = HeatmapCodec(SIZE, stride=4, sigma=1.5)
    ds = SpineDataset(records[:2], studies, SCHEMA, augment=AugmentConfig(), seed=5, codec=codec)
    first, again = ds[0], ds[0]
    assert first["heatmaps"].shape == (k, 24, 24) and first["heatmaps"].dtype == torch.float32
    assert first["heatmap_weight"].shape == (k,) and first["heatmap_weight"].dtype == torch.float32
    assert first["heatmap_weight"].sum() > 0
    batch = collate_samples([first, again, ds[1]])
    assert batch["heatmaps"].shape == (3, k, 24, 24) and batch["heatmap_weight"].shape == (3, k)
    _assert_targets_encode_the_points(batch, codec)
    assert not torch.equal(first["heatmaps"], again["heatmaps"])  # re-encoded every epoch, never cached
    # the targets follow the codec they are given: another sigma or stride gives other maps
    for other in (HeatmapCodec(SIZE, stride=4, sigma=2.5), HeatmapCodec(SIZE, stride=2, sigma=1.5)):
        ds.codec = other
        item = ds[1]
        maps, _ = other.encode(item["keypoints"].numpy(), item["visible"].numpy())
        assert torch.equal(item["heatmaps"], torch.from_numpy(maps))
        assert not np.array_equal(maps, codec.encode(item["keypoints"].numpy(), item["visible"].numpy())[0])
    assert "heatmaps" not in SpineDataset(records[:1], studies, SCHEMA, input_size=SIZE)[0]  # no codec, no targets
    # the input size is the codec's: one value, so the images and their targets cannot disagree
    small = SpineDataset(records[:1], studies, SCHEMA, codec=HeatmapCodec((64, 64), stride=4))
    assert small.input_size == (64, 64) and small[0]["image"].shape[-2:] == (64, 64)
    assert small[0]["heatmaps"].shape[-2:] == (16, 16)
    with pytest.raises(TypeError, match="input_size only without a codec"):
        SpineDataset(records, studies, SCHEMA, input_size=SIZE, codec=HeatmapCodec((64, 64)))


def test_loader_workers_encode_the_heatmaps(data: tuple[list[StudyRecord], dict]) -> None:
    records, studies = data
    codec = HeatmapCodec(SIZE, stride=4, sigma=2.0)
    ds = SpineDataset(records, studies, SCHEMA, augment=AugmentConfig(), seed=2, codec=codec)
    batches = list(DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_samples))
    assert sum(len(b["study_uid"]) for b in batches) == len(records)
    for batch in batches:
        assert batch["heatmaps"].shape == (len(batch["study_uid"]), SCHEMA.num_landmarks, 24, 24)
        _assert_targets_encode_the_points(batch, codec)


def test_augmented_items_change_every_epoch(data: tuple[list[StudyRecord], dict]) -> None:
    records, studies = data
    plain = SpineDataset(records[:1], studies, SCHEMA, input_size=SIZE)
    aug = SpineDataset(records[:1], studies, SCHEMA, input_size=SIZE, augment=AugmentConfig(), seed=1)
    a, b = aug[0], aug[0]
    assert not torch.equal(a["image"], b["image"])
    assert not torch.allclose(a["keypoints"], plain[0]["keypoints"])
    same_seed = SpineDataset(records[:1], studies, SCHEMA, input_size=SIZE, augment=AugmentConfig(), seed=1)
    assert torch.equal(same_seed[0]["image"], a["image"])  # reproducible for a seed
    off = SpineDataset(records[:1], studies, SCHEMA, input_size=SIZE, augment=replace(AugmentConfig(), enabled=False))
    assert torch.equal(off[0]["image"], plain[0]["image"])


def test_missing_study_or_instance(data: tuple[list[StudyRecord], dict], caplog: pytest.LogCaptureFixture) -> None:
    records, studies = data
    ghost = StudyRecord(study_uid="9.9.9", images=(ImageAnnotation("1.1", "1.1.1", points=()),))
    ann = records[0].primary
    bad_instance = replace(records[1], images=(replace(records[1].primary, instance_uid="7.7.7"),))
    with pytest.raises(MissingDataError, match=r"study 9\.9\.9: not found") as err:
        SpineDataset([*records, ghost, bad_instance], studies, SCHEMA, input_size=SIZE)
    assert "7.7.7" in str(err.value) and "skip_missing" in str(err.value)
    with caplog.at_level(logging.WARNING):
        ds = SpineDataset([*records, ghost, bad_instance], studies, SCHEMA, input_size=SIZE, skip_missing=True)
    assert len(ds) == len(records) and len(ds.skipped) == 2
    assert "9.9.9" in caplog.text and "7.7.7" in caplog.text
    assert ds.records[0].primary is ann


def test_slices_are_decoded_once(
    data: tuple[list[StudyRecord], dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, studies = data
    calls: list[str] = []

    def counting(study: StudyIndex, instance_uid: str, neighbours: int = 0) -> Slice:
        calls.append(instance_uid)
        return load_instance(study, instance_uid, neighbours=neighbours)

    monkeypatch.setattr(dataset_module, "load_instance", counting)
    ds = SpineDataset(records[:2], studies, SCHEMA, input_size=SIZE, cache_dir=tmp_path / "cache")
    first = [ds[0]["image"], ds[1]["image"]]
    again = [ds[0]["image"], ds[1]["image"]]
    assert len(calls) == 2 and all(torch.equal(a, b) for a, b in zip(first, again))
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    # a new dataset (another run, or another worker) reads the disk cache instead of the DICOM files
    fresh = SpineDataset(records[:2], studies, SCHEMA, input_size=SIZE, cache=False, cache_dir=tmp_path / "cache")
    item = fresh[1]
    assert len(calls) == 2 and torch.equal(item["image"], first[1]) and item["geometry"] == ds[1]["geometry"]
    # without any cache every access decodes again
    nocache = SpineDataset(records[:1], studies, SCHEMA, input_size=SIZE, cache=False)
    for _ in range(2):
        nocache[0]
    assert len(calls) == 4
