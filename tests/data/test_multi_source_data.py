"""Several data sources as one training set: union, per-source split, unique studies, and "unknown, not absent"."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from multi_source_phantoms import SCHEMA, Source, make_two_sources
from tiny_configs import cut_only

from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.config import ConfigError, to_dict
from spine_kp.data.datamodule import DataConfig, SpineDataModule
from spine_kp.data.labels import kind_indices
from spine_kp.data.sources import DataSource, DuplicateStudyError
from spine_kp.engine.config import ExperimentConfig, load_experiment

# Only the field-of-view cut (small windows): landmarks leave the view on most draws.
CUT = cut_only((0.3, 0.5))


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Source, Source]:
    return make_two_sources(tmp_path_factory.mktemp("two_sources"))


def _config(*sources: Source, **kw: object) -> DataConfig:
    return DataConfig(
        sources=tuple(DataSource(str(s.root), str(s.annotations)) for s in sources),
        input_size=(64, 64), batch_size=2, val_fraction=0.4, **kw,
    )  # fmt: skip


def _setup(*sources: Source, **kw: object) -> SpineDataModule:
    dm = SpineDataModule(_config(*sources, **kw), codec=HeatmapCodec((64, 64), stride=4))
    dm.setup("fit")
    return dm


def _annotated(name_set: frozenset[str]) -> np.ndarray:
    """(K,) bool: the landmarks a source annotates, schema order."""
    return np.array([n in name_set for n in SCHEMA.landmarks])


def _source_of(uid: str, sources: tuple[Source, Source]) -> Source:
    return next(s for s in sources if uid in s.study_uids)


def test_union_split_per_source_so_both_are_validated(two: tuple[Source, Source]) -> None:
    a, b = two
    dm = _setup(a, b)
    train = {r.study_uid for r in dm.train_records}
    val = {r.study_uid for r in dm.val_records}
    assert train | val == a.study_uids | b.study_uids and not train & val
    assert set(dm.studies) == a.study_uids | b.study_uids
    for s in two:  # 4 studies and val_fraction 0.4: two of each source validate, two train
        assert len(val & s.study_uids) == 2 and len(train & s.study_uids) == 2
    folds = [{r.study_uid for r in _setup(a, b, fold=f, num_folds=2).val_records} for f in range(2)]
    assert not folds[0] & folds[1] and folds[0] | folds[1] == a.study_uids | b.study_uids
    assert all(f & a.study_uids and f & b.study_uids for f in folds)


def test_one_source_splits_as_root_and_annotations_did(two: tuple[Source, Source]) -> None:
    a, _ = two
    plain = DataConfig(root=str(a.root), annotations=str(a.annotations), input_size=(64, 64), val_fraction=0.4)
    dm_plain, dm_one = SpineDataModule(plain), SpineDataModule(_config(a))
    dm_plain.setup()
    dm_one.setup()
    assert dm_plain.val_records == dm_one.val_records and dm_plain.train_records == dm_one.train_records


def test_unannotated_landmarks_weigh_nothing_and_empty_grades_are_masked(two: tuple[Source, Source]) -> None:
    """Without augmentation every annotated landmark has heatmap weight 1, every other 0; none is absent."""
    dm = _setup(*two)
    kinds = kind_indices(SCHEMA)
    seen = set()
    for ds in (dm.train_dataset, dm.val_dataset):
        for i in range(len(ds)):
            item = ds[i]
            src = _source_of(item["study_uid"], two)
            seen.add(src.annotations)
            annotated = _annotated(src.landmarks)
            np.testing.assert_array_equal(item["heatmap_weight"].numpy(), annotated.astype(np.float32))
            assert not item["absent"].any()
            for kind, idx in kinds.items():  # a: graded where annotated; b: every grade empty, so no grade loss
                expected = annotated[idx] if src.graded else np.zeros(len(idx), bool)
                np.testing.assert_array_equal(item["grade_mask"][kind].numpy(), expected)
    assert len(seen) == 2


def test_a_cut_field_of_view_makes_annotated_landmarks_absent_never_unannotated_ones(
    two: tuple[Source, Source],
) -> None:
    dm = _setup(*two, augment=CUT)
    ds = dm.train_dataset
    absent_seen = {s.annotations: np.zeros(SCHEMA.num_landmarks, bool) for s in two}
    for _ in range(8):
        for i in range(len(ds)):
            item = ds[i]
            src = _source_of(item["study_uid"], two)
            annotated = _annotated(src.landmarks)
            absent, weight = item["absent"].numpy(), item["heatmap_weight"].numpy()
            assert not (absent & ~annotated).any()  # (a) an unknown landmark is never trained as absent
            assert (weight[~annotated] == 0).all()  # ... nor towards its heatmap
            assert not (absent & (weight > 0)).any()  # absent ones get the empty target's weight (module), not 1
            assert (weight[annotated & ~absent] == 1).all()
            absent_seen[src.annotations] |= absent
    for s in two:  # (b) annotated landmarks cut out of view are absent, in both sources
        assert absent_seen[s.annotations].any()
        assert not absent_seen[s.annotations][~_annotated(s.landmarks)].any()


def test_label_stats_are_the_union_of_the_sources(two: tuple[Source, Source]) -> None:
    a, b = two
    dm = _setup(a, b)
    stats = dm.label_stats
    n_a = sum(r.study_uid in a.study_uids for r in dm.train_records)
    n_b = sum(r.study_uid in b.study_uids for r in dm.train_records)
    assert (n_a, n_b) == (2, 2) and stats.num_records == 4
    assert stats.untrained_landmarks == ("T12",)  # annotated by neither source
    assert stats.landmark_counts["T12-L1"] == stats.landmark_counts["L5-S1"] == n_a  # set a only
    assert stats.landmark_counts["L1"] == stats.landmark_counts["L4-L5"] == n_a + n_b  # both
    # only set a's grades count: 5 graded vertebrae (L1-L5) and 6 graded discs per study
    assert stats.graded_counts == {"vertebra": 5 * n_a, "disc": 6 * n_a}


def test_a_study_in_two_sources_is_one_error_naming_both_files(two: tuple[Source, Source], tmp_path: Path) -> None:
    a, b = two
    records = json.loads(a.annotations.read_text())
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps(records[:1]))
    cfg = replace(_config(a, b), sources=(*_config(a, b).sources, DataSource(str(b.root), str(dup))))
    with pytest.raises(DuplicateStudyError) as info:
        SpineDataModule(cfg).setup()
    message = str(info.value)
    assert "\n" not in message and records[0]["studyUid"] in message
    assert str(a.annotations) in message and str(dup) in message


def test_data_sources_in_the_config(two: tuple[Source, Source]) -> None:
    a, b = two
    pairs = [{"root": str(s.root), "annotations": str(s.annotations)} for s in two]
    cfg = load_experiment(None, {"data.sources": json.dumps(pairs)})
    assert cfg.data.sources == (
        DataSource(str(a.root), str(a.annotations)),
        DataSource(str(b.root), str(b.annotations)),
    )
    assert cfg.data.data_sources == cfg.data.sources
    stored = to_dict(cfg)  # what a checkpoint keeps, re-read by load_experiment(base=...) and from_dict
    assert load_experiment(None, base=stored) == cfg and stored["data"]["sources"] == pairs
    old = to_dict(ExperimentConfig())
    del old["data"]["sources"]  # a config written before data.sources existed still loads
    assert load_experiment(None, base=old).data.sources == ()
    with pytest.raises(ConfigError, match=r"'data\.sources' replaces data\.root and data\.annotations"):
        load_experiment(None, {"data.sources": json.dumps(pairs), "data.root": "elsewhere"})
    with pytest.raises(ConfigError, match=r"data\.sources: a data source needs both root and annotations"):
        load_experiment(None, {"data.sources": json.dumps([{"root": "r"}])})
    assert DataConfig(root="r", annotations="a.json").data_sources == (DataSource("r", "a.json"),)
    with pytest.raises(ValueError, match="must be set"):
        _ = DataConfig().data_sources
