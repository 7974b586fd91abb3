"""spine_kp.api: the README's example runs as written, and each entry point does what its docstring says."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

import spine_kp
from spine_kp import api
from spine_kp.errors import UserError
from spine_kp.evaluation.evaluate import evaluate_files
from spine_kp.io.annotations import read_annotations
from spine_kp.predict.runner import PredictOptions
from spine_kp.predict.runner import predict_folder as runner_predict_folder


def _example() -> str:
    """The example of the api module docstring (the README shows the same lines)."""
    doc = api.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n``spine-kp predict``", 1)[0]
    return "\n".join(line[4:] for line in block.splitlines())


@pytest.fixture(scope="module")
def run_dir(tiny_checkpoint: Path) -> Path:
    """The tiny training run folder (it has checkpoints/best.ckpt)."""
    run = tiny_checkpoint.parent.parent
    assert (run / "checkpoints" / "best.ckpt").is_file()
    return run


def test_the_readme_example_runs_as_written(run_dir: Path, synth_root: Path, tmp_path, monkeypatch) -> None:
    example = _example()
    assert len(example.strip().splitlines()) <= 10
    (tmp_path / "spine_kp_demo").mkdir()
    (tmp_path / "spine_kp_demo" / "run").symlink_to(run_dir)
    (tmp_path / "spine_kp_demo" / "test").symlink_to(synth_root)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example, "README example", "exec"), {})
    lines = out.getvalue().splitlines()
    gt = json.loads((synth_root / "annotations.json").read_text())
    assert len(lines) == len(gt) + 1 and all(line.endswith(" points") for line in lines[:-1])
    assert re.fullmatch(r"mAP \d\.\d{3}, \d+% within 8 mm", lines[-1])
    written = json.loads((tmp_path / "predictions.json").read_text())
    assert sorted(r["studyUid"] for r in written) == sorted(r["studyUid"] for r in gt)
    assert (tmp_path / "predictions.errors.json").is_file() and (tmp_path / "predictions.csv").is_file()


def test_a_run_folder_a_checkpoint_and_the_runner_give_the_same_predictions(
    run_dir: Path, synth_root: Path, tmp_path: Path
) -> None:
    from spine_kp.inference.torch_predictor import Predictor

    by_folder = api.predict_folder(synth_root / "studies", api.load_predictor(run_dir, device="cpu"))
    assert not any(tmp_path.iterdir())  # nothing written without output=
    best = run_dir / "checkpoints" / "best.ckpt"
    direct = runner_predict_folder(
        synth_root / "studies", Predictor.from_checkpoint(best, device="cpu"), PredictOptions(progress=False)
    )
    assert by_folder.records == direct.records and by_folder.records


def test_writing_is_asked_for_with_output(tiny_checkpoint: Path, synth_root: Path, tmp_path: Path) -> None:
    predictor = api.load_predictor(tiny_checkpoint, device="cpu")
    with pytest.raises(ValueError, match="output="):
        api.predict_folder(synth_root / "studies", predictor, csv=tmp_path / "p.csv")
    run = api.predict_folder(synth_root / "studies", predictor, output=tmp_path / "p.json", dicom_sr=tmp_path / "sr")
    back = read_annotations(tmp_path / "p.json", predictor.schema)  # the JSON rounds the coordinates
    assert [[p.identification for p in r.points] for r in back] == [
        [p.identification for p in r.points] for r in run.records
    ]
    reports = sorted((tmp_path / "sr").glob("*.dcm"))
    assert len(reports) == len(run.records)
    from spine_kp.predict.sr import algorithm_from_checkpoint

    named = pydicom.dcmread(reports[0]).to_json()  # the model is named as from the checkpoint file
    assert algorithm_from_checkpoint(tiny_checkpoint).version in named


def test_load_predictor_options_and_errors(tiny_checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    assert not api.load_predictor(tiny_checkpoint, device="cpu", level_order=False).decode.enabled
    assert api.load_predictor(tiny_checkpoint, device="cpu", grade_stage=None).grade_stage is None
    with pytest.raises(UserError, match="does not exist"):
        api.load_predictor(tmp_path / "missing.ckpt", device="cpu")
    with pytest.raises(ValueError, match="backend"):
        api.load_predictor(tiny_checkpoint, backend="tensorflow")
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA GPU"):
        api.load_predictor(tiny_checkpoint, device="cuda")


def test_an_onnx_file_goes_to_onnx_runtime(tmp_path: Path, monkeypatch) -> None:
    from spine_kp.inference.onnx_predictor import OnnxPredictor

    calls = []
    monkeypatch.setattr(OnnxPredictor, "from_onnx", classmethod(lambda cls, p, **kw: calls.append((p, kw)) or "x"))
    assert api.load_predictor(tmp_path / "m.onnx", device="cpu") == "x"
    assert api.load_predictor(tmp_path / "m.bin", backend="onnx", threads=1) == "x"
    assert calls == [(tmp_path / "m.onnx", {"device": "cpu"}), (tmp_path / "m.bin", {"device": "auto", "threads": 1})]


def test_a_folder_without_studies_is_one_user_error(tiny_checkpoint: Path, tmp_path: Path) -> None:
    predictor = api.load_predictor(tiny_checkpoint, device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty"):
        api.predict_folder(tmp_path / "empty", predictor)
    with pytest.raises(UserError, match="not a folder"):
        api.predict_folder(tmp_path / "missing", predictor)


def test_evaluate_takes_runs_records_or_files(tiny_checkpoint: Path, synth_root: Path, tmp_path: Path) -> None:
    predictor = api.load_predictor(tiny_checkpoint, device="cpu")
    run = api.predict_folder(synth_root / "studies", predictor, output=tmp_path / "p.json")
    gt_path = synth_root / "annotations.json"
    files = evaluate_files(gt_path, tmp_path / "p.json")
    written = read_annotations(tmp_path / "p.json", predictor.schema)  # what the file holds (rounded coordinates)
    for result in (
        api.evaluate(tmp_path / "p.json", gt_path),
        api.evaluate(written, gt_path, schema=predictor.schema),
        api.evaluate(written, read_annotations(gt_path, predictor.schema), schema=predictor.schema),
    ):
        assert result.map == files.map and result.localization.overall == files.localization.overall
    from_run = api.evaluate(run, gt_path, schema=predictor.schema)  # a run is scored by its records
    assert from_run.map == api.evaluate(run.records, gt_path).map and from_run.n_studies == files.n_studies
    assert api.evaluate(run, gt_path, radius=0.001).localization.overall.within_radius == 0.0


def test_nothing_below_the_cli_imports_the_api_and_it_needs_no_torch() -> None:
    """The api sits on top of the library: only cli/ and the demo use it; importing it loads no torch (ONNX path)."""
    root = Path(spine_kp.__file__).parent
    users = set()
    for m in root.rglob("*.py"):
        for node in ast.walk(ast.parse(m.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if "spine_kp.api" in names:
                users.add(str(m.relative_to(root)))
    assert users and all(u.startswith("cli/") or u == "demo.py" for u in users), users
    code = "import sys, spine_kp.api; print(sorted(n for n in sys.modules if n.split('.')[0] == 'torch'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr[-2000:]
