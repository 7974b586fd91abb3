"""``spine-kp evaluate`` on careless or hostile input: nothing that would score wrongly passes with exit status 0.

The schema the predictions were made with (named in their records), schema mismatches, a study twice in a file,
swapped files, empty ground truth, implausible values without ``--data``, and UIDs no output can encode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from spine_kp.cli.main import main
from spine_kp.evaluation import evaluate_files
from spine_kp.io.annotation_parse import AnnotationError
from spine_kp.io.annotations import read_annotations, write_annotations
from spine_kp.io.text import escape_unencodable, write_escaped
from spine_kp.predict.outputs import write_outputs
from spine_kp.predict.runner import PredictRun
from spine_kp.schema import CONFIG_DIR, load_schema

DEFAULT = load_schema()
TIANCHI = load_schema("tianchi")


# ---- files written in code --------------------------------------------------------------------------------------


def point(ident: str, x: float, y: float, grades: str = "v1", score: float | None = None, z: int = 5) -> dict:
    """A point in competition JSON; the kind follows the name ("L1-L2" is a disc)."""
    kind = "disc" if "-" in ident else "vertebra"
    out: dict[str, Any] = {"coord": [x, y], "zIndex": z, "tag": {"identification": ident, kind: grades}}
    if score is not None:
        out["score"] = score
    return out


def record(uid: str, points: list[dict], spacing: Any = (0.7, 0.7), **extra: Any) -> dict:
    entry: dict[str, Any] = {"seriesUid": f"{uid}.1", "instanceUid": f"{uid}.1.5"}
    if spacing is not None:
        entry["pixelSpacing"] = list(spacing)
    entry["annotation"] = [{"annotator": 1, "data": {"point": points}}]
    return {"studyUid": uid, "version": "v0.1", **extra, "data": [entry]}


def scored(points: list[dict], score: float = 0.9) -> list[dict]:
    return [{**p, "score": score} for p in points]


def labelled(schema_name: str) -> list[dict]:
    """Every landmark of a packaged schema, 20 px apart, each with its kind's last grade."""
    schema = load_schema(schema_name)
    return [point(name, 100, 20 + 20 * i, schema.grades_of(name)[-1]) for i, name in enumerate(schema.landmarks)]


def write(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def evaluate(gt: Path, pred: Path, *extra: str) -> int:
    return main(["evaluate", "--annotations", str(gt), "--predictions", str(pred), *extra])


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The single stderr line of a failed run (asserted to be one ``error:`` line)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning: ")]


# ---- predictions carry their schema -----------------------------------------------------------------------------


def test_written_records_name_the_schema_and_reading_ignores_it(tmp_path: Path) -> None:
    records = read_annotations(write(tmp_path / "gt.json", [record("s1", labelled("tianchi"))]), TIANCHI)
    named = write_annotations(tmp_path / "named.json", records, schema="tianchi")
    assert [r["schema"] for r in json.loads(named.read_text())] == ["tianchi"]
    assert read_annotations(named, TIANCHI) == records
    assert "schema" not in json.loads(write_annotations(tmp_path / "plain.json", records).read_text())[0]


def test_predict_outputs_name_the_schema_of_the_model(tmp_path: Path) -> None:
    """The one place both backends write predictions (torch and ONNX): every record names the predictor's schema."""
    records = read_annotations(write(tmp_path / "p.json", [record("a", scored(labelled("tianchi")))]), TIANCHI)
    run = PredictRun(predictions=[SimpleNamespace(record=r) for r in records])  # type: ignore[list-item]
    written = write_outputs(run, TIANCHI, tmp_path / "out.json")
    assert [r["schema"] for r in json.loads(written["predictions"].read_text())] == ["tianchi"]


def test_torch_and_onnx_predictions_name_their_schema_and_evaluate_without_schema(
    synth_root: Path, train_tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    from spine_kp.export.onnx import export_onnx

    ckpt = train_tiny(tmp_path / "run").last_checkpoint
    model = export_onnx(ckpt, tmp_path / "tiny.onnx").path
    gt = synth_root / "annotations.json"
    for flag, path in (("--checkpoint", ckpt), ("--onnx", model)):
        out = tmp_path / f"pred{flag}.json"
        args = ["predict", str(synth_root / "studies"), flag, str(path), "-o", str(out), "--quiet", "--device", "cpu"]
        assert main(args) == 0
        names = {r["schema"] for r in json.loads(out.read_text())}
        assert names == {DEFAULT.name}, (flag, names)
        capsys.readouterr()
        assert evaluate(gt, out, "--json") == 0
        assert json.loads(capsys.readouterr().out)["schema"] == DEFAULT.name


# ---- which schema scores ----------------------------------------------------------------------------------------


def test_evaluate_uses_the_schema_the_predictions_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = labelled("tianchi")
    gt = write(tmp_path / "gt.json", [record("s1", truth)])
    pred = write(tmp_path / "pred.json", [record("s1", scored(truth), schema="tianchi")])
    assert evaluate(gt, pred, "--json") == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["schema"] == "tianchi" and result["map"] == 1.0
    assert [c["class"] for c in result["classes"]] == [f"{k}/{g}" for k, g in TIANCHI.classes]
    assert warnings(err) == []


def test_unnamed_predictions_whose_labels_fit_another_schema_get_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tianchi labels are a subset of the default schema's: scored with the default, but not silently."""
    truth = labelled("tianchi")
    gt = write(tmp_path / "gt.json", [record("s1", truth)])
    pred = write(tmp_path / "pred.json", [record("s1", scored(truth))])
    assert evaluate(gt, pred, "--json") == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["schema"] == DEFAULT.name
    (line,) = warnings(err)
    assert "neither file names its schema" in line and "'tianchi'" in line and "--schema" in line
    # the default's own labels (T12, disc v6) fit only the default: nothing to warn about
    capsys.readouterr()
    own = write(tmp_path / "own.json", [record("s1", labelled("default"))])
    assert evaluate(own, write(tmp_path / "own_pred.json", [record("s1", scored(labelled("default")))])) == 0
    assert warnings(capsys.readouterr().err) == []


def test_ground_truth_of_another_schema_than_the_predictions_name_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt = write(tmp_path / "gt.json", [record("s1", labelled("default"))])  # T12, disc v7: not in tianchi
    pred = write(tmp_path / "pred.json", [record("s1", scored(labelled("tianchi")), schema="tianchi")])
    assert evaluate(gt, pred) == 2
    line = one_error(capsys)
    assert f"{gt}: holds labels that schema 'tianchi' (named by {pred}) lacks" in line
    assert "T12 (1 point)" in line and "disc v7" in line and "pass --schema default" in line


def test_schema_given_by_the_user_wins_over_the_named_one_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt = write(tmp_path / "gt.json", [record("s1", labelled("default"))])
    pred = write(tmp_path / "pred.json", [record("s1", scored(labelled("tianchi")), schema="tianchi")])
    assert evaluate(gt, pred, "--schema", "default", "--json") == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["schema"] == DEFAULT.name
    assert f"warning: {pred} names schema 'tianchi', --schema gives '{DEFAULT.name}'" in err
    # the user's schema lacking labels of a file: those points are skipped and counted, not refused
    assert evaluate(gt, pred, "--schema", "tianchi", "--json") == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["schema"] == "tianchi"
    (line,) = [w for w in warnings(err) if w.startswith(f"warning: {gt}: ")]
    assert "7 label(s) that schema 'tianchi' lacks: disc v7 (6 points), T12 (1 point)" in line


def test_files_naming_different_schemas_are_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = write(tmp_path / "gt.json", [record("s1", labelled("tianchi"), schema=DEFAULT.name)])
    pred = write(tmp_path / "pred.json", [record("s1", scored(labelled("tianchi")), schema="tianchi")])
    assert evaluate(gt, pred) == 2
    line = one_error(capsys)
    assert f"{gt} names schema '{DEFAULT.name}' but {pred} names 'tianchi'" in line and "--schema" in line


def test_records_of_one_file_naming_different_schemas_are_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt = write(tmp_path / "gt.json", [record("s1", labelled("tianchi")), record("s2", labelled("tianchi"))])
    pred = write(
        tmp_path / "pred.json",
        [record("s1", scored(labelled("tianchi")), schema="tianchi"), record("s2", [], schema=DEFAULT.name)],
    )
    assert evaluate(gt, pred) == 2
    line = one_error(capsys)
    assert f"{pred}: record 1 names schema '{DEFAULT.name}' but record 0 names 'tianchi'" in line


@pytest.mark.parametrize("value", [5, "", None, ["tianchi"]])
def test_a_schema_field_that_is_not_a_name_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: Any
) -> None:
    gt = write(tmp_path / "gt.json", [record("s1", labelled("tianchi"))])
    pred = write(tmp_path / "pred.json", [record("s1", scored(labelled("tianchi")), schema=value)])
    assert evaluate(gt, pred) == 2
    assert f"{pred}: record 0: 'schema' must be a schema name" in one_error(capsys)


def test_a_schema_name_that_is_not_packaged_needs_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A name read from a file is never a path: ``"schema": "/etc/x.yaml"`` loads nothing."""
    own = tmp_path / "mine.yaml"
    own.write_text((CONFIG_DIR / "schema" / "tianchi.yaml").read_text().replace("name: tianchi", "name: mine"))
    gt = write(tmp_path / "gt.json", [record("s1", labelled("tianchi"))])
    for name in ("mine", str(own)):
        pred = write(tmp_path / "pred.json", [record("s1", scored(labelled("tianchi")), schema=name)])
        assert evaluate(gt, pred) == 2
        line = one_error(capsys)
        assert f"its records name schema {name!r}, which is not a packaged schema" in line and "--schema" in line
    pred = write(tmp_path / "pred.json", [record("s1", scored(labelled("tianchi")), schema="mine")])
    assert evaluate(gt, pred, "--schema", str(own), "--json") == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["schema"] == "mine" and warnings(err) == []


def test_labels_outside_the_default_schema_are_an_error_unless_the_user_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = [*labelled("default"), point("T11-T12", 100, 5, "v1")]
    truth[1] = point("T12-L1", 100, 40, "v2,v9")  # a grade the default schema lacks
    gt = write(tmp_path / "gt.json", [record("s1", truth)])
    pred = write(tmp_path / "pred.json", [record("s1", scored(labelled("default")))])
    assert evaluate(gt, pred) == 2
    line = one_error(capsys)
    assert f"{gt}: holds labels that schema '{DEFAULT.name}' (the default) lacks" in line
    assert "T11-T12 (1 point)" in line and "disc v9 (1 point)" in line and "pass --schema" in line
    assert evaluate(gt, pred, "--schema", "default") == 0
    assert any("2 label(s)" in w and "T11-T12" in w for w in warnings(capsys.readouterr().err))


def test_the_library_takes_a_schema_name_or_none(tmp_path: Path) -> None:
    truth = labelled("tianchi")
    gt = write(tmp_path / "gt.json", [record("s1", truth)])
    pred = write(tmp_path / "pred.json", [record("s1", scored(truth), schema="tianchi")])
    assert evaluate_files(gt, pred).schema == "tianchi"
    res = evaluate_files(gt, pred, "default")
    assert res.schema == DEFAULT.name and any("names schema 'tianchi'" in w for w in res.warnings)


# ---- duplicated, swapped and empty files ------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["gt", "pred"])
def test_the_same_study_twice_in_a_file_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str
) -> None:
    truth = labelled("default")
    gt_records = [record("1.2.3", truth), record("4.5.6", truth)]
    pred_records = [record("1.2.3", scored(truth)), record("4.5.6", scored(truth))]
    target = gt_records if which == "gt" else pred_records
    target.append(target[0])  # in the ground truth, perfect predictions would get recall 0.5 on that study
    gt, pred = write(tmp_path / "gt.json", gt_records), write(tmp_path / "pred.json", pred_records)
    assert evaluate(gt, pred) == 2
    named = gt if which == "gt" else pred
    assert f"{named}: record 2: study 1.2.3 appears again (first in record 0)" in one_error(capsys)


def test_swapped_files_are_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = labelled("default")
    gt = write(tmp_path / "gt.json", [record("s1", truth)])
    pred = write(tmp_path / "pred.json", [record("s1", scored(truth))])
    assert evaluate(pred, gt) == 2
    line = one_error(capsys)
    assert f"--annotations {pred} has points with a 'score' and --predictions {gt} has none" in line
    assert "look swapped" in line
    # predictions without scores are allowed (they rank as 1.0): only the swapped pattern is refused
    assert evaluate(gt, gt) == 0


@pytest.mark.parametrize("content", [[], [{"studyUid": "s1", "data": []}], [record("s1", [])]])
def test_ground_truth_without_points_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: list
) -> None:
    gt = write(tmp_path / "gt.json", content)
    pred = write(tmp_path / "pred.json", [record("s1", scored(labelled("default")))])
    assert evaluate(gt, pred) == 2
    assert f"{gt}: holds no annotated point ({len(content)} record(s))" in one_error(capsys)


# ---- plausibility limits, without --data ------------------------------------------------------------------------


def _with(raw: dict, field: str, value: Any, level: str) -> dict:
    entry = raw["data"][0]
    if level == "record":  # the record's spacing applies to images without their own
        return {**raw, field: value, "data": [{k: v for k, v in entry.items() if k != field}]}
    if level == "image":
        return {**raw, "data": [{**entry, field: value}]}
    points = entry["annotation"][0]["data"]["point"]
    points = [{**points[0], field: value}, *points[1:]]
    return {**raw, "data": [{**entry, "annotation": [{"annotator": 1, "data": {"point": points}}]}]}


BEYOND = [
    ("coord", [1e308, 5], "point", "beyond the plausible |x|, |y| <= 100000 pixels"),
    ("coord", [5, -100_001], "point", "beyond the plausible"),
    ("zIndex", 2**63, "point", "beyond the plausible 0-100000"),
    ("zIndex", 100_001, "point", "beyond the plausible 0-100000"),
    ("pixelSpacing", [0.01, 0.7], "image", "outside the plausible 0.05-20 mm"),
    ("pixelSpacing", [0.7, 25.0], "image", "outside the plausible 0.05-20 mm"),
    ("pixelSpacing", [1e-9, 1e-9], "record", "outside the plausible 0.05-20 mm"),
]


@pytest.mark.parametrize("which", ["gt", "pred"])
@pytest.mark.parametrize(("field", "value", "level", "says"), BEYOND)
def test_values_beyond_the_plausibility_limits_are_errors_naming_file_record_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str, field: str, value: Any, level: str, says: str
) -> None:
    truth = labelled("default")
    gt_records = [record("1.1", truth), record("7.7.7", truth)]
    pred_records = [record("1.1", scored(truth)), record("7.7.7", scored(truth))]
    target = gt_records if which == "gt" else pred_records
    target[1] = _with(target[1], field, value, level)
    gt, pred = write(tmp_path / "gt.json", gt_records), write(tmp_path / "pred.json", pred_records)
    assert evaluate(gt, pred) == 2
    line = one_error(capsys)
    named = gt if which == "gt" else pred
    assert line.startswith(f"error: {named}: record 1 (study 7.7.7)") and f"'{field}'" in line and says in line


def test_values_at_the_plausibility_limits_are_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = labelled("default")
    edge = [point("L1", 100_000, -100_000, "v1", z=100_000), *truth[1:]]
    gt = write(tmp_path / "gt.json", [record("s1", truth, spacing=(0.05, 20.0))])
    pred = write(tmp_path / "pred.json", [record("s1", scored(edge), spacing=(0.05, 20.0))])
    assert evaluate(gt, pred) == 0


def test_reading_for_training_applies_no_plausibility_limits(tmp_path: Path) -> None:
    """Training judges points against the images (masked and counted there), so the reader alone still accepts."""
    far = [point("L1", 5, 1e6, "v1", z=2**40)]
    (rec,) = read_annotations(write(tmp_path / "gt.json", [record("s1", far, spacing=(0.01, 0.01))]), DEFAULT)
    assert rec.points[0].coord == (5, 1e6) and rec.images[0].pixel_spacing == (0.01, 0.01)


# ---- text no output can encode ----------------------------------------------------------------------------------

LONE = "\ud800"  # a lone surrogate: valid in a JSON string, not encodable as UTF-8


@pytest.fixture
def surrogate_files(tmp_path: Path) -> tuple[Path, Path]:
    """A ground-truth study without predictions and a predicted study not in the ground truth, both UIDs with a
    lone surrogate (each one printed in a warning, a table and the report)."""
    truth = labelled("default")
    gt = write(tmp_path / "gt.json", [record("1.2", truth), record(f"9.9{LONE}", truth)])
    pred = write(tmp_path / "pred.json", [record("1.2", scored(truth)), record(f"7.7{LONE}", scored(truth))])
    return gt, pred


def test_a_lone_surrogate_in_a_study_uid_is_escaped_on_output(
    surrogate_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt, pred = surrogate_files
    report = tmp_path / "report"
    assert evaluate(gt, pred, "--report", str(report)) == 0
    out, err = capsys.readouterr()
    assert "7.7\\ud800" in out and "9.9\\ud800" in out
    assert f"warning: {pred}: study 7.7\\ud800 is not in {gt}; ignored" in err
    assert "warning: study 9.9\\ud800 has no prediction" in err
    assert "7.7\\ud800" in (report / "report.md").read_text(encoding="utf-8")
    assert json.loads((report / "metrics.json").read_text())["unknown_studies"] == [f"7.7{LONE}"]
    assert evaluate(gt, pred, "--json") == 0
    assert json.loads(capsys.readouterr().out)["missing_studies"] == [f"9.9{LONE}"]


def test_a_lone_surrogate_in_an_error_message_is_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = labelled("default")
    gt = write(tmp_path / "gt.json", [record(f"1{LONE}", truth), record(f"1{LONE}", truth)])
    pred = write(tmp_path / "pred.json", [record("1", scored(truth))])
    assert evaluate(gt, pred) == 2
    assert "study 1\\ud800 appears again" in one_error(capsys)
    gt = write(tmp_path / "gt.json", [record(f"2{LONE}", truth, spacing=None)])  # no spacing anywhere
    assert evaluate(gt, pred) == 2
    assert "study 2\\ud800: no pixel spacing" in one_error(capsys)


def test_a_lone_surrogate_reaches_a_pipe_as_an_escape_without_pythonioencoding(
    surrogate_files: tuple[Path, Path],
) -> None:
    gt, pred = surrogate_files
    env = {k: v for k, v in os.environ.items() if k != "PYTHONIOENCODING"}
    argv = [sys.executable, "-m", "spine_kp", "evaluate", "--annotations", str(gt), "--predictions", str(pred)]
    for extra in ([], ["--json"]):
        proc = subprocess.run([*argv, *extra], capture_output=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
        assert b"Traceback" not in proc.stderr
        assert b"7.7\\ud800" in proc.stdout and b"7.7\\ud800" in proc.stderr


def test_written_annotations_keep_a_lone_surrogate_as_a_json_escape(tmp_path: Path) -> None:
    records = read_annotations(write(tmp_path / "gt.json", [record(f"3{LONE}", labelled("default"))]), DEFAULT)
    out = write_annotations(tmp_path / "again.json", records)
    assert "3\\ud800" in out.read_text(encoding="utf-8")
    assert read_annotations(out, DEFAULT) == records


def test_escaping_leaves_encodable_text_alone_and_fits_the_stream(tmp_path: Path) -> None:
    assert escape_unencodable("L1-L2 é") == "L1-L2 é"
    assert escape_unencodable(f"a{LONE}é", "ascii") == "a\\ud800\\xe9"
    path = tmp_path / "ascii.txt"
    with open(path, "w", encoding="ascii") as stream:
        write_escaped(stream, f"uid 1{LONE}é\n")
    assert path.read_text(encoding="ascii") == "uid 1\\ud800\\xe9\n"


def test_annotation_errors_stay_annotation_errors(tmp_path: Path) -> None:
    """The new refusals are the reader's error class: ``except AnnotationError`` (and ``ValueError``) catch them."""
    truth = labelled("default")
    gt = write(tmp_path / "gt.json", [record("s1", truth), record("s1", truth)])
    with pytest.raises(AnnotationError, match="appears again"):
        evaluate_files(gt, write(tmp_path / "pred.json", [record("s1", scored(truth))]))
