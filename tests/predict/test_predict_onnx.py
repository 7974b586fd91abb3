"""``spine-kp predict --onnx``: the same predictions as ``--checkpoint``, without importing torch; bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from spine_kp.cli.main import main
from spine_kp.export.onnx import export_onnx
from spine_kp.inference.onnx_predictor import METADATA_KEY, OnnxPredictor
from spine_kp.inference.torch_predictor import Predictor

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

# Run in a fresh interpreter where importing torch (or anything built on it) fails.
NO_TORCH = textwrap.dedent(
    """
    import sys

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "timm", "pytorch_lightning", "lightning", "monai"):
                raise ImportError(f"{name} is blocked in this test")

    sys.meta_path.insert(0, NoTorch())
    from spine_kp.cli.main import main

    rc = main(sys.argv[1:])
    assert not [m for m in sys.modules if m.split(".")[0] == "torch"], "torch was imported"
    sys.exit(rc)
    """
)


@pytest.fixture(scope="module")
def onnx_model(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("onnx") / "tiny.onnx").path


@pytest.fixture(scope="module")
def both(synth_root: Path, tiny_checkpoint: Path, onnx_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Predictions of the same studies from the checkpoint and from its export (flip TTA: both halves of the graph
    run twice)."""
    out = tmp_path_factory.mktemp("both")
    for name, flag, model in (("torch", "--checkpoint", tiny_checkpoint), ("onnx", "--onnx", onnx_model)):
        args = ["predict", str(synth_root / "studies"), flag, str(model), "-o", str(out / f"{name}.json")]
        assert main([*args, "--flip-tta", "--quiet", "--device", "cpu", "--csv", str(out / f"{name}.csv")]) == 0
    return {name: json.loads((out / f"{name}.json").read_text()) for name in ("torch", "onnx")} | {"dir": out}


def _points(records: list[dict]) -> dict[tuple[str, str, str], dict]:
    """(study, identification, grades) -> point."""
    return {
        (r["studyUid"], p["tag"]["identification"], p["tag"].get("vertebra", p["tag"].get("disc"))): p
        for r in records
        for p in r["data"][0]["annotation"][0]["data"]["point"]
    }


def test_onnx_predictions_equal_checkpoint_predictions(both: dict) -> None:
    torch_pts, onnx_pts = _points(both["torch"]), _points(both["onnx"])
    assert len(both["onnx"]) == len(both["torch"]) == 5
    assert set(onnx_pts) == set(torch_pts) and torch_pts  # same studies, identifications and grades
    for key, p in torch_pts.items():
        q = onnx_pts[key]
        np.testing.assert_allclose(q["coord"], p["coord"], atol=0.02)  # pixels (records round to 0.01)
        assert abs(q["score"] - p["score"]) < 1e-3 and q["zIndex"] == p["zIndex"]


def test_predict_onnx_runs_without_torch(
    synth_root: Path, tiny_checkpoint: Path, onnx_model: Path, both: dict, tmp_path: Path
) -> None:
    import pydicom

    out = tmp_path / "pred.json"
    args = ["predict", str(synth_root / "studies"), "--onnx", str(onnx_model), "-o", str(out), "--flip-tta", "--quiet"]
    args += ["--dicom-sr", str(tmp_path / "sr_onnx")]
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(out.read_text()) == both["onnx"]
    # the DICOM SRs of the ONNX path name the same model (name, version = checkpoint digest) as the checkpoint's
    ref = ["predict", str(synth_root / "studies"), "--checkpoint", str(tiny_checkpoint), "-o", str(tmp_path / "r.json")]
    assert main([*ref, "--quiet", "--dicom-sr", str(tmp_path / "sr_ckpt")]) == 0
    onnx_files = sorted(p.name for p in (tmp_path / "sr_onnx").glob("*.dcm"))
    assert onnx_files and onnx_files == sorted(p.name for p in (tmp_path / "sr_ckpt").glob("*.dcm"))
    for name in onnx_files[:2]:
        a, b = (pydicom.dcmread(tmp_path / d / name) for d in ("sr_onnx", "sr_ckpt"))
        assert a.ManufacturerModelName == b.ManufacturerModelName and a.SoftwareVersions == b.SoftwareVersions
        assert len(a.ContentSequence) == len(b.ContentSequence)


def test_onnx_predictor_carries_the_checkpoint_settings(tiny_checkpoint: Path, onnx_model: Path) -> None:
    ref = Predictor.from_checkpoint(tiny_checkpoint, device="cpu")
    got = OnnxPredictor.from_onnx(onnx_model, device="cpu")
    assert got.schema.to_dict() == ref.schema.to_dict() and got.codec.to_dict() == ref.codec.to_dict()
    assert got.decode == ref.decode and got.input_size == ref.input_size and got.neighbours == ref.neighbours
    assert got.target_spacing == ref.target_spacing and got.temperatures == ref.temperatures
    np.testing.assert_array_equal(got.trained.landmarks, ref.trained.landmarks)
    for kind, mask in ref.trained.grades.items():
        np.testing.assert_array_equal(got.trained.grades[kind], mask)


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_checkpoint_and_onnx_exclude_each_other(synth_root: Path, tmp_path: Path, capsys) -> None:
    root, out = str(synth_root / "studies"), str(tmp_path / "p.json")
    assert main(["predict", root, "--checkpoint", "a.ckpt", "--onnx", "a.onnx", "-o", out]) == 2
    assert "not allowed with" in _error_line(capsys)
    assert main(["predict", root, "-o", out]) == 2
    assert "--checkpoint" in _error_line(capsys)


def test_a_file_that_is_not_a_spine_kp_export_is_one_error_line(
    synth_root: Path, onnx_model: Path, tmp_path: Path, capsys
) -> None:
    root, out = str(synth_root / "studies"), str(tmp_path / "p.json")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a protobuf\xff" * 10)
    stripped = onnx.load(str(onnx_model))
    keep = [p for p in stripped.metadata_props if p.key != METADATA_KEY]
    del stripped.metadata_props[:]
    stripped.metadata_props.extend(keep)
    foreign = tmp_path / "foreign.onnx"
    onnx.save(stripped, str(foreign))
    for path, message in (
        (tmp_path / "missing.onnx", "does not exist"),
        (garbage, "not an ONNX model"),
        (foreign, "not a spine_kp ONNX export"),
    ):
        assert main(["predict", root, "--onnx", str(path), "-o", out]) == 2
        line = _error_line(capsys)
        assert str(path) in line and message in line
    assert not Path(out).exists()


def test_options_that_need_a_checkpoint_are_refused_with_onnx(
    synth_root: Path, onnx_model: Path, tmp_path: Path, capsys
) -> None:
    base = ["predict", str(synth_root / "studies"), "--onnx", str(onnx_model), "-o", str(tmp_path / "p.json")]
    assert main([*base, "--devices", "2"]) == 2
    assert "need --checkpoint" in _error_line(capsys)
