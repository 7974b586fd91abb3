"""Outputs never collide, never replace an input, never run in a spreadsheet, and fail early and in one line.

Covers issue 19 items 4-6: injective per-study file names, CSV formula cells, overwrite guards (``predict``,
``export``, ``synth``), the reused-folder warning, an unwritable ``-o`` found before the batch is predicted, and a
full disk (ENOSPC) while writing, which is one ``error:`` line.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import shutil
from pathlib import Path

import pydicom
import pytest

from spine_kp.cli.main import main
from spine_kp.io.csv_cells import safe_cell
from spine_kp.io.names import study_file_stem, study_file_stems
from spine_kp.io.output_guard import OutputClashError, files_from_before, refuse_same_paths

# the hostile UIDs are not valid DICOM UIs, and pydicom says so each time it reads one: that is the point
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")

COLLIDING = ["1.2.3/4", "1.2.3_4", "1.2.3 4"]
FORMULA = '=HYPERLINK("http://x","y")'


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread: None) -> None:
    """Tiny models: one intra-op thread."""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64 x 64 checkpoint with random weights, as training writes it (no training: the outputs are the point)."""
    import torch

    from spine_kp.engine.config import experiment_to_dict, load_experiment
    from spine_kp.engine.module import LandmarkModule
    from spine_kp.schema import load_schema

    cfg = load_experiment("demo_cpu", {"data.input_size": "[64, 64]", "model.decoder_channels": "16"})
    torch.manual_seed(0)
    module = LandmarkModule(experiment_to_dict(cfg), load_schema(cfg.schema).to_dict())
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def hostile_root(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four of the phantom studies, their StudyInstanceUIDs rewritten to three colliding UIDs and a formula."""
    root = tmp_path_factory.mktemp("hostile") / "studies"
    folders = sorted(p for p in (synth_root / "studies").iterdir() if p.is_dir())[:4]
    for uid, folder in zip([*COLLIDING, FORMULA], folders):
        shutil.copytree(folder, root / folder.name)
        for f in (root / folder.name).rglob("*"):
            if f.is_file():
                ds = pydicom.dcmread(f, force=True)
                if "StudyInstanceUID" in ds:
                    ds.StudyInstanceUID = uid
                    ds.save_as(f)
    return root


@pytest.fixture(scope="module")
def hostile_run(hostile_root: Path, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One ``predict`` of the hostile studies with every output, into folders that hold files of an earlier run."""
    out = tmp_path_factory.mktemp("hostile_out")
    for folder, stale in (("ov", ["old_a.png", "old_b.png"]), ("sr", ["old.dcm"])):
        (out / folder).mkdir()
        for name in stale:
            (out / folder / name).write_bytes(b"from an earlier run")
    args = ["predict", str(hostile_root), "--checkpoint", str(checkpoint), "-o", str(out / "pred.json")]
    args += ["--csv", str(out / "pred.csv"), "--overlays", str(out / "ov"), "--dicom-sr", str(out / "sr"), "--quiet"]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(args)
    return {"rc": rc, "out": out, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


# ---------------------------------------------------------------- item 4: injective names


def test_sanitised_uids_get_a_hash_and_safe_uids_stay_as_they_are() -> None:
    assert study_file_stem("1.2.840.10008.1") == "1.2.840.10008.1"
    stems = study_file_stems([*COLLIDING, "1.2.3_4-cc81865a", "ABC", "abc", "", "..", "x" * 300])
    assert len(set(stems.values())) == len(stems)  # injective
    assert len({s.lower() for s in stems.values()}) == len(stems)  # also on a case-insensitive file system
    assert stems["1.2.3_4"] == "1.2.3_4"  # unchanged by sanitising: no hash
    assert stems["1.2.3/4"].startswith("1.2.3_4-") and stems["1.2.3 4"].startswith("1.2.3_4-")
    assert all(len(s) <= 120 and not s.startswith(".") and "/" not in s for s in stems.values())


def test_colliding_study_uids_get_distinct_overlays_and_reports(hostile_run: dict) -> None:
    assert hostile_run["rc"] == 0, hostile_run["stderr"]
    out = hostile_run["out"]
    stems = study_file_stems([*COLLIDING, FORMULA])
    pngs = {p.name for p in (out / "ov").glob("*.png")} - {"old_a.png", "old_b.png"}
    reports = {p.name for p in (out / "sr").glob("*.dcm")} - {"old.dcm"}
    assert pngs == {f"{s}.png" for s in stems.values()}
    assert reports == {f"{s}.dcm" for s in stems.values()}
    # every report is the one of its own study
    by_name = {pydicom.dcmread(out / "sr" / f"{stems[u]}.dcm").StudyInstanceUID: u for u in stems}
    assert set(by_name) == set(stems)
    # the summary counts the files on disk
    assert "(4 images)" in hostile_run["stdout"] and "(4 reports)" in hostile_run["stdout"]


# ---------------------------------------------------------------- item 5: CSV formula cells


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (FORMULA, "'" + FORMULA),
        ("+1+1", "'+1+1"),
        ("-cmd", "'-cmd"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-1.50", "-1.50"),  # a negative coordinate stays a number
        ("+3", "+3"),
        ("1e-3", "1e-3"),
        ("1.2.3", "1.2.3"),
    ],
)
def test_csv_cells_a_spreadsheet_would_run_get_a_quote(cell: str, expected: str) -> None:
    assert safe_cell(cell) == expected


def test_formula_study_uid_is_neutralised_in_the_predictions_csv(hostile_run: dict) -> None:
    rows = list(csv.reader((hostile_run["out"] / "pred.csv").open(newline="")))
    studies = {r[0] for r in rows[1:]}
    assert "'" + FORMULA in studies and FORMULA not in studies
    assert all(not c.startswith(("=", "+", "@")) for r in rows for c in r)
    x_col = rows[0].index("x")
    assert all(float(r[x_col]) == float(r[x_col]) for r in rows[1:])  # coordinates stay plain numbers


# ---------------------------------------------------------------- item 6: reused folders


def test_a_reused_output_folder_is_counted(hostile_run: dict) -> None:
    out = hostile_run["out"]
    err = hostile_run["stderr"]
    assert f"warning: {out / 'ov'} holds 2 files from before (not written by this run)" in err
    assert f"warning: {out / 'sr'} holds 1 files from before (not written by this run)" in err
    assert (out / "ov" / "old_a.png").read_bytes() == b"from an earlier run"  # counted, not deleted


def test_files_from_before_counts_only_what_the_run_will_not_replace(tmp_path: Path) -> None:
    assert files_from_before(tmp_path / "missing", {"a.png"}) == 0
    for name in ("a.png", "b.png", "c.dcm"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    assert files_from_before(tmp_path, {"a.png"}) == 2


# ---------------------------------------------------------------- item 6: outputs that would replace inputs


def _predict(root: Path, ckpt: Path, *extra: str) -> list[str]:
    return ["predict", str(root), "--checkpoint", str(ckpt), "--quiet", *extra]


def _fails_before_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guards must run before the model is loaded or a study is read."""
    import spine_kp.inference.torch_predictor as predictor
    import spine_kp.predict.runner as runner

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("work started before the output check")

    monkeypatch.setattr(runner, "predict_folder", boom)
    monkeypatch.setattr(predictor.Predictor, "from_checkpoint", boom)


def test_output_aimed_at_the_checkpoint_is_refused(tmp_path, monkeypatch, capsys) -> None:
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"weights")
    (tmp_path / "data").mkdir()
    _fails_before_work(monkeypatch)
    for flag in ("-o", "--csv"):
        extra = ["-o", str(tmp_path / "p.json")] if flag == "--csv" else []
        assert main(_predict(tmp_path / "data", ckpt, *extra, flag, str(ckpt))) == 2
        lines = _error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and flag in lines[0] and "--checkpoint" in lines[0]
    assert ckpt.read_bytes() == b"weights"


@pytest.mark.parametrize(
    ("csv_name", "named"),
    [("p.json", "--csv"), ("./p.json", "--csv"), ("p.errors.json", "the errors file of -o")],
)
def test_two_outputs_on_one_path_are_refused(tmp_path, monkeypatch, capsys, csv_name, named) -> None:
    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"")
    (tmp_path / "data").mkdir()
    _fails_before_work(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert main(_predict(tmp_path / "data", ckpt, "-o", "p.json", "--csv", csv_name)) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and named in lines[0] and "--csv" in lines[0]
    assert not (tmp_path / "p.json").exists()


def test_output_aimed_at_ground_truth_or_a_dicom_file_is_refused(synth_root, tmp_path, monkeypatch, capsys) -> None:
    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"")
    gt = tmp_path / "annotations.json"
    shutil.copy(synth_root / "annotations.json", gt)
    dicom = next(p for p in (synth_root / "studies").rglob("*.dcm"))
    slice_copy = tmp_path / "slice.dcm"
    shutil.copy(dicom, slice_copy)
    before = {p: p.read_bytes() for p in (gt, slice_copy)}
    _fails_before_work(monkeypatch)
    for target, why in ((gt, "without a score"), (slice_copy, "DICOM")):
        assert main(_predict(synth_root / "studies", ckpt, "-o", str(target))) == 2
        lines = _error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and str(target) in lines[0] and why in lines[0]
    assert {p: p.read_bytes() for p in before} == before


def test_an_earlier_predictions_file_may_be_replaced(tmp_path) -> None:
    from spine_kp.predict.output_checks import check_predict_outputs

    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([{"studyUid": "1", "data": [{"annotation": [{"data": {"point": [
        {"coord": [1, 2], "zIndex": 0, "tag": {"identification": "L1"}, "score": 0.5}]}}]}]}]))  # fmt: skip
    (tmp_path / "data").mkdir()
    check_predict_outputs(tmp_path / "data", ("--checkpoint", tmp_path / "m.ckpt"), pred, tmp_path / "e.json")
    pred.write_text(pred.read_text().replace(', "score": 0.5', ""))  # the same file without scores: GT
    with pytest.raises(OutputClashError, match="1 point"):
        check_predict_outputs(tmp_path / "data", ("--checkpoint", tmp_path / "m.ckpt"), pred, tmp_path / "e.json")


def test_refuse_same_paths_sees_links_and_names_both_flags(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    a.write_text("[]")
    (tmp_path / "link.json").symlink_to(a)
    os.link(a, tmp_path / "hard.json")
    for other in (tmp_path / "link.json", tmp_path / "hard.json", tmp_path / "." / "a.json"):
        with pytest.raises(OutputClashError, match="--report") as info:
            refuse_same_paths({"--report": other}, {"--annotations": a})
        assert "--annotations" in str(info.value)
        with pytest.raises(OutputClashError, match="-o and --csv"):
            refuse_same_paths({"-o": a, "--csv": other}, {})
    refuse_same_paths({"-o": tmp_path / "b.json", "--csv": None}, {"--annotations": a})  # distinct: no error


# ---------------------------------------------------------------- items 7/9: unwritable output, full disk


def test_unwritable_output_fails_before_the_batch_is_predicted(tmp_path, monkeypatch, capsys) -> None:
    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"")
    (tmp_path / "data").mkdir()
    _fails_before_work(monkeypatch)
    # /proc accepts no new folder, also for root (os.access says yes to root there)
    assert main(_predict(tmp_path / "data", ckpt, "-o", "/proc/spine_kp_out/pred.json")) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "/proc" in lines[0]  # root: "cannot be written"; others: "permission denied"


def test_check_writable_probe_leaves_nothing_and_reports_a_read_only_mount(tmp_path, monkeypatch) -> None:
    import tempfile

    from spine_kp.io.atomic import OutputNotWritableError, check_writable

    check_writable(tmp_path / "a" / "b" / "out.json")
    assert list(tmp_path.iterdir()) == []

    def read_only(*a: object, **k: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OutputNotWritableError, match="Read-only file system"):
        check_writable(tmp_path / "new" / "out.json")
    assert list(tmp_path.iterdir()) == []  # the folders the probe made are gone again


def _enospc(*a: object, **k: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_while_writing_overlays_is_one_error_line(hostile_root, checkpoint, tmp_path, monkeypatch, capsys):
    import matplotlib.figure

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _enospc)
    out = tmp_path / "ov"
    args = _predict(hostile_root, checkpoint, "-o", str(tmp_path / "pred.json"), "--overlays", str(out))
    assert main(args) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and str(out) in lines[0] and "No space left on device" in lines[0]
    assert list(out.iterdir()) == []  # no temporary file left behind


def test_full_disk_while_writing_reports_is_one_error_line(hostile_root, checkpoint, tmp_path, monkeypatch, capsys):
    import spine_kp.io.dicom_sr as dicom_sr

    monkeypatch.setattr(dicom_sr, "dcmwrite", _enospc)
    out = tmp_path / "sr"
    args = _predict(hostile_root, checkpoint, "-o", str(tmp_path / "pred.json"), "--dicom-sr", str(out))
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = _error_lines(err)
    assert len(lines) == 1 and str(out) in lines[0] and "No space left on device" in lines[0]
    assert "failed: study" not in err  # the disk, not one failure per study
    assert list(out.iterdir()) == []


def test_full_disk_while_exporting_is_one_error_line(checkpoint, tmp_path, monkeypatch, capsys) -> None:
    import spine_kp.io.atomic as atomic

    monkeypatch.setattr(atomic.os, "fsync", _enospc)  # the disk fills while the file is flushed
    out = tmp_path / "m.onnx"
    assert main(["export", str(checkpoint), "--onnx", str(out)]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and str(out) in lines[0] and "No space left on device" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_to_write_over_its_checkpoint(checkpoint, tmp_path, capsys) -> None:
    ckpt = tmp_path / "m.ckpt"
    shutil.copy(checkpoint, ckpt)
    before = ckpt.read_bytes()
    assert main(["export", str(ckpt), "--onnx", str(ckpt)]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "--onnx" in lines[0] and "checkpoint" in lines[0]
    assert ckpt.read_bytes() == before


# ---------------------------------------------------------------- synth


def _synth(out: Path, *extra: str) -> list[str]:
    return ["synth", str(out), "--studies", "1", "--seed", "0", "--size", "48", "--no-axial", "--no-tricky", *extra]


def test_synth_refuses_existing_annotations_without_overwrite(tmp_path, capsys) -> None:
    gt = tmp_path / "annotations.json"
    gt.write_text("[]")  # someone's annotations, no studies/ yet
    assert main(_synth(tmp_path)) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and str(gt) in lines[0] and "--overwrite" in lines[0]
    assert gt.read_text() == "[]" and not (tmp_path / "studies").exists()
    assert main(_synth(tmp_path, "--overwrite")) == 0
    assert gt.read_text() != "[]"


def test_synth_overwrite_never_deletes_through_a_symlinked_studies_folder(tmp_path, capsys) -> None:
    target = tmp_path / "precious"
    target.mkdir()
    (target / "keep.dcm").write_bytes(b"data")
    out = tmp_path / "out"
    out.mkdir()
    (out / "studies").symlink_to(target, target_is_directory=True)
    assert main(_synth(out, "--overwrite")) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "symbolic link" in lines[0] and str(out / "studies") in lines[0]
    assert (target / "keep.dcm").read_bytes() == b"data"
