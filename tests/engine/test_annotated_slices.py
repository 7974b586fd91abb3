"""The annotated slices the end-of-training fits predict: in record order, the unloadable ones skipped and named."""

from __future__ import annotations

import dataclasses
import logging

from spine_kp.engine.annotated_slices import load_annotated_slices
from spine_kp.io.annotations import read_annotations
from spine_kp.io.dicom import scan
from spine_kp.schema import load_schema


def test_each_record_gives_its_annotated_slice_and_a_broken_one_is_a_named_warning(synth_root, caplog):
    records = read_annotations(synth_root / "annotations.json", load_schema())
    studies = scan(synth_root / "studies").studies
    broken = dataclasses.replace(
        records[1], images=(dataclasses.replace(records[1].primary, instance_uid="1.2.3.404"),)
    )
    unknown = dataclasses.replace(records[2], study_uid="9.9.9")
    empty = dataclasses.replace(records[3], images=())
    with caplog.at_level(logging.WARNING, logger="spine_kp.engine.annotated_slices"):
        loaded = load_annotated_slices([records[0], broken, unknown, empty, records[4]], studies, 0, "decode fit")
    assert [rec.study_uid for rec, _ in loaded] == [records[0].study_uid, records[4].study_uid]
    for rec, slc in loaded:
        assert slc.study_uid == rec.study_uid and slc.instance_uid == rec.primary.instance_uid
    assert len(caplog.records) == 1 and caplog.records[0].getMessage().startswith("decode fit: ")
    assert loaded[0][1].stack is None
    (_, with_neighbours), *_ = load_annotated_slices(records[:1], studies, 1, "score calibration")
    assert with_neighbours.stack.shape[0] == 3  # the slice and one neighbour per side, as the predictor asks
