"""Where the ground-truth spacing comes from: the JSON, the data root (DICOM), the predictions; else an error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from eval_fixtures import SCHEMA, counts, pt, run, study

from spine_kp.evaluation import SpacingError, evaluate_files, fill_spacing
from spine_kp.io.annotation_parse import parse_records
from spine_kp.io.annotations import write_annotations

# 10 px to the right of the GT point: 5 mm with col spacing 0.5 (TP), 10 mm with 1.0 (FP + FN)
GT_POINTS = [pt("L1", 100, 100, "v2")]
PRED_POINTS = [pt("L1", 110, 100, "v2", 0.9)]


def _raw(with_spacing: bool, where: str = "entry") -> list[dict]:
    entry = {
        "seriesUid": "1.2.3.4",
        "instanceUid": "1.2.3.4.5",
        "annotation": [
            {
                "annotator": 1,
                "data": {"point": [{"coord": [100, 100], "tag": {"identification": "L1", "vertebra": "v2"}}]},
            }
        ],
    }
    rec = {"studyUid": "1.2.3", "data": [entry]}
    if with_spacing:
        (entry if where == "entry" else rec)["pixelSpacing"] = [1.0, 0.5]
    return [rec]


@pytest.mark.parametrize("where", ["entry", "record"])
def test_spacing_from_the_json_record(where):
    gt = parse_records(_raw(True, where), SCHEMA)
    pred = [study("1.2.3", PRED_POINTS, spacing=None)]
    assert counts(run(fill_spacing(gt), pred), "vertebra/v2") == (1, 0, 0, 0)


def test_spacing_changes_the_verdict_so_it_is_really_used():
    r = run([study("s", GT_POINTS, spacing=(1.0, 1.0))], [study("s", PRED_POINTS)])
    assert counts(r, "vertebra/v2") == (0, 1, 1, 0)


def test_no_spacing_is_an_error_naming_the_study():
    gt = parse_records(_raw(False), SCHEMA)
    with pytest.raises(SpacingError, match=r"study 1\.2\.3.*instance 1\.2\.3\.4\.5.*--data"):
        fill_spacing(gt)
    with pytest.raises(SpacingError, match=r"study 1\.2\.3"):
        run(gt, [])  # the library refuses too, rather than guessing 1 mm


def test_image_without_points_needs_no_spacing():
    gt = [study("s", [], spacing=None), study("t", GT_POINTS, spacing=(1.0, 0.5))]
    assert fill_spacing(gt) == gt


def test_spacing_from_a_prediction_of_the_same_series():
    gt = [study("s", GT_POINTS, spacing=None, series="ser.1")]
    same = [study("s", PRED_POINTS, spacing=(1.0, 0.5), series="ser.1", instance="middle")]
    assert counts(run(fill_spacing(gt, pred_records=same), same), "vertebra/v2") == (1, 0, 0, 0)
    other = [study("s", PRED_POINTS, spacing=(1.0, 0.5), series="ser.2")]
    with pytest.raises(SpacingError, match="study s"):
        fill_spacing(gt, pred_records=other)


def test_json_spacing_wins_over_other_sources():
    gt = [study("s", GT_POINTS, spacing=(1.0, 1.0), series="ser.1")]
    pred = [study("s", PRED_POINTS, spacing=(1.0, 0.5), series="ser.1")]
    filled = fill_spacing(gt, pred_records=pred)
    assert filled[0].images[0].pixel_spacing == (1.0, 1.0)


def _write_dicom_series(root: Path, study_uid: str, series_uid: str, spacing: tuple[float, float]) -> list[str]:
    from spine_kp.synth.dicom_write import SeriesGeometry, SeriesMeta, write_series

    n = 3
    positions = np.array([[-4.0 * i, 0.0, 0.0] for i in range(n)])  # along the sagittal normal (-x)
    meta = SeriesMeta(study_uid, series_uid, 1, "T2_TSE_SAG", None, 100.0, 3000.0)
    geometry = SeriesGeometry((0.0, 1.0, 0.0, 0.0, 0.0, -1.0), positions, spacing, 4.0)
    written = write_series(root / study_uid, np.zeros((n, 8, 10)), geometry, meta)
    return [uid for _, uid in written]


def test_spacing_from_the_data_root_through_the_ingest_scan(tmp_path):
    uids = _write_dicom_series(tmp_path / "data", "1.2.826.0.1.1", "1.2.826.0.1.1.1", (1.0, 0.5))
    annotated = uids[0]  # not the middle frame: the annotated instance is looked up
    gt = [study("1.2.826.0.1.1", GT_POINTS, spacing=None, series="1.2.826.0.1.1.1", instance=annotated)]
    pred = [study("1.2.826.0.1.1", PRED_POINTS, spacing=None, series="1.2.826.0.1.1.1", instance=uids[1])]
    write_annotations(tmp_path / "gt.json", gt)
    write_annotations(tmp_path / "pred.json", pred)
    res = evaluate_files(tmp_path / "gt.json", tmp_path / "pred.json", SCHEMA, data_root=tmp_path / "data")
    assert counts(res, "vertebra/v2") == (1, 0, 0, 0)
    assert json.loads((tmp_path / "gt.json").read_text())[0]["data"][0].get("pixelSpacing") is None
    filled = fill_spacing(gt, data_root=tmp_path / "data")
    assert filled[0].images[0].pixel_spacing == pytest.approx((1.0, 0.5))
    # a study that is not under the data root is still an error naming it
    lost = [study("9.9.9", GT_POINTS, spacing=None, series="9.9.9.1")]
    with pytest.raises(SpacingError, match=r"study 9\.9\.9.*not under the data root"):
        fill_spacing(lost, data_root=tmp_path / "data")


def test_bad_data_root_is_a_spacing_error(tmp_path):
    gt = [study("s", GT_POINTS, spacing=None)]
    with pytest.raises(SpacingError, match="nowhere"):
        fill_spacing(gt, data_root=tmp_path / "nowhere")
