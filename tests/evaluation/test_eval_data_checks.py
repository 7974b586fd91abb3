"""``spine-kp evaluate --data``: points outside their image, zIndex beyond the series and images not under the root
are counted warnings on stderr and in metrics.json / report.md, for the ground truth and the predictions alike."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from eval_fixtures import SCHEMA

from spine_kp.cli.main import main
from spine_kp.io.annotations import read_annotations, write_annotations
from spine_kp.synth import make_dataset
from spine_kp.types import StudyRecord

SIZE = 64  # rows of the phantom's sagittal images


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One phantom study written as DICOM (``studies/``) with its own annotations (``annotations.json``)."""
    root = tmp_path_factory.mktemp("phantom")
    make_dataset(root, n_studies=1, seed=3, size=SIZE, axial=False)
    return root


def _records(phantom: Path) -> list[StudyRecord]:
    return read_annotations(phantom / "annotations.json", SCHEMA)


def _edit_point(records: list[StudyRecord], index: int, **changes: object) -> list[StudyRecord]:
    """The records with point ``index`` of the first image of the first study changed."""
    rec = records[0]
    image = rec.images[0]
    points = tuple(dataclasses.replace(p, **changes) if i == index else p for i, p in enumerate(image.points))
    images = (dataclasses.replace(image, points=points), *rec.images[1:])
    return [dataclasses.replace(rec, images=images), *records[1:]]


def _evaluate(phantom: Path, tmp_path: Path, gt: list[StudyRecord], pred: list[StudyRecord], capsys) -> tuple:
    """Run the CLI with --data and --report; returns (data warning lines, metrics.json, report.md)."""
    gt_path = write_annotations(tmp_path / "gt.json", gt)
    pred_path = write_annotations(tmp_path / "pred.json", pred)
    report = tmp_path / "report"
    capsys.readouterr()
    argv = ["evaluate", "--annotations", str(gt_path), "--predictions", str(pred_path)]
    assert main([*argv, "--data", str(phantom / "studies"), "--report", str(report)]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    metrics = json.loads((report / "metrics.json").read_text())
    return warnings, metrics, (report / "report.md").read_text()


def test_an_annotation_point_outside_its_image_is_a_counted_warning(phantom, tmp_path, capsys):
    records = _records(phantom)
    name = records[0].images[0].points[0].identification
    gt = _edit_point(records, 0, coord=(-40.0, 5.0))
    warnings, metrics, md = _evaluate(phantom, tmp_path, gt, records, capsys)

    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"warning: 1 point(s) lie outside their image ({tmp_path / 'gt.json'}: ")
    assert f"study {records[0].study_uid}: {name} at (-40, 5) outside" in warnings[0]
    checks = metrics["data_checks"]
    assert checks["annotations"]["outside_image"] == 1 and len(checks["annotations"]["problems"]) == 1
    assert name in checks["annotations"]["problems"][0]
    assert checks["predictions"] == {"outside_image": 0, "z_beyond_series": 0, "image_not_in_data": 0, "problems": []}
    assert "## Checks against the data root (counted, no score changed): 1 finding(s)" in md
    assert "| annotations | 1 | 0 | 0 |" in md and f"- study {records[0].study_uid}: {name} at (-40, 5) outside" in md


def test_the_phantom_as_annotated_passes_every_check(phantom, tmp_path, capsys):
    records = _records(phantom)
    warnings, metrics, md = _evaluate(phantom, tmp_path, records, records, capsys)
    assert warnings == []
    for side in ("annotations", "predictions"):
        assert metrics["data_checks"][side] == {
            "outside_image": 0,
            "z_beyond_series": 0,
            "image_not_in_data": 0,
            "problems": [],
        }
    assert "0 finding(s)" in md


def test_predictions_are_checked_too_and_every_kind_is_counted(phantom, tmp_path, capsys):
    records = _records(phantom)
    # far outside the image, within the plausibility limit (|x|, |y| <= 1e5 px; beyond it is an error)
    pred = _edit_point(_edit_point(records, 0, coord=(5.0, 5e4)), 1, z_index=999)
    ghost = StudyRecord("9.9.9.404", records[0].images)  # a predicted study that is not under the data root
    warnings, metrics, _ = _evaluate(phantom, tmp_path, records, [*pred, ghost], capsys)

    checks = metrics["data_checks"]["predictions"]
    assert (checks["outside_image"], checks["z_beyond_series"], checks["image_not_in_data"]) == (1, 1, 1)
    pred_name = str(tmp_path / "pred.json")
    data_warnings = [w for w in warnings if f"({pred_name}: " in w]
    assert [w.split(" (")[0] for w in data_warnings] == [
        "warning: 1 point(s) lie outside their image",
        "warning: 1 zIndex value(s) lie beyond their series",
        "warning: 1 image(s) with points are not under the data root; their points were not checked",
    ]
    assert "zIndex 999" in data_warnings[1] and "9.9.9.404" in data_warnings[2]
    assert metrics["data_checks"]["annotations"]["problems"] == []


def test_without_data_nothing_is_checked(phantom, tmp_path, capsys):
    records = _records(phantom)
    gt = [dataclasses.replace(r, images=tuple(dataclasses.replace(im, pixel_spacing=(1.0, 1.0)) for im in r.images))
          for r in _edit_point(records, 0, coord=(-40.0, 5.0))]  # fmt: skip
    write_annotations(tmp_path / "gt.json", gt)
    write_annotations(tmp_path / "pred.json", records)
    argv = ["evaluate", "--annotations", str(tmp_path / "gt.json"), "--predictions", str(tmp_path / "pred.json")]
    assert main([*argv, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["data_checks"] is None and "outside their image" not in err
