"""``spine-kp export --onnx``: ONNX Runtime reproduces PyTorch per backbone family; metadata; refusals; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spine_kp.cli.main import main
from spine_kp.export.onnx import ExportNet, export_onnx
from spine_kp.inference.onnx_predictor import METADATA_KEY, grade_output
from spine_kp.inference.torch_predictor import Predictor

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# one registered backbone per family: convolutional, MobileNet-style, hierarchical transformer (+ its decoder)
FAMILIES = {
    "ResNet": ("resnet18", "unet"),
    "MobileNet v3": ("mobilenetv3_large_100", "unet"),
    "PVT": ("pvt_v2_b0", "segformer"),
}
TOL = 1e-4


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture(scope="module")
def exported(make_checkpoint, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """family -> (checkpoint, ONNX file written by the library call); ResNet's through the CLI (``sub/model.onnx``)."""
    out = {}
    for family, (backbone, decoder) in FAMILIES.items():
        ckpt = make_checkpoint(backbone, decoder)
        folder = tmp_path_factory.mktemp("onnx")
        if family == "ResNet":
            path = folder / "sub" / "model.onnx"
            assert main(["export", str(ckpt), "--onnx", str(path)]) == 0
        else:
            result = export_onnx(ckpt, folder / "model.onnx")
            assert result.family == family and result.opset >= 17
            assert max(result.max_abs_diff.values()) <= TOL
            path = result.path
        out[family] = (ckpt, path)
    return out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_onnx_runtime_reproduces_pytorch(family: str, exported) -> None:
    ckpt, path = exported[family]
    # Independently of the exporter's own check: other batch sizes (dynamic axis), grades at chosen points.
    net = ExportNet(Predictor.from_checkpoint(ckpt, device="cpu").model).eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == ["heatmaps", "features", grade_output("vertebra"), grade_output("disc")]
    g = torch.Generator().manual_seed(5)
    for batch in (1, 4):
        images = torch.randn(batch, 1, 64, 64, generator=g)
        points = torch.rand(batch, 12, 2, generator=g) * 63
        with torch.no_grad():
            expected = [t.numpy() for t in net(images, points)]
        got = session.run(names, {"images": images.numpy(), "points": points.numpy()})
        for name, a, b in zip(names, got, expected):
            assert a.shape == b.shape, name
            assert np.abs(a - b).max() <= TOL * max(1.0, np.abs(b).max()), (family, name, np.abs(a - b).max())


def test_metadata_holds_what_predict_needs(exported) -> None:
    ckpt, out = exported["ResNet"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]  # atomic: no temporary file left
    model = onnx.load(str(out))
    assert model.opset_import[0].version >= 17
    meta = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    assert meta["schema"] == predictor.schema.to_dict()
    assert meta["codec"] == predictor.codec.to_dict()
    assert meta == predictor.card.to_dict()  # the checkpoint's model card, as it is
    assert meta["codec"]["input_size"] == [64, 64] and meta["preprocessing"]["neighbours"] == 0
    assert meta["trained"]["landmarks"] == [True] * 12
    assert meta["identity"]["name"] == "spine_kp resnet18+unet" and meta["identity"]["checkpoint"] == ckpt.name
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [1, 64, 64]


def test_a_family_that_does_not_match_is_refused(make_checkpoint, tmp_path: Path, capsys) -> None:
    # Tolerance 0: the float32 graph cannot match bit for bit, which stands in for an unfaithful family.
    out = tmp_path / "model.onnx"
    ckpt = make_checkpoint(*FAMILIES["MobileNet v3"])
    assert main(["export", str(ckpt), "--onnx", str(out), "--tolerance", "0"]) == 2
    line = _error_line(capsys)
    assert "backbone family MobileNet v3 is not supported" in line and "nothing written" in line
    assert not out.exists() and not list(tmp_path.iterdir())


def test_an_export_failure_names_the_family(make_checkpoint, tmp_path: Path, capsys, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::magic' to ONNX opset version 17 is not supported.\nmore")

    monkeypatch.setattr(torch.onnx, "export", fail)
    out = tmp_path / "model.onnx"
    assert main(["export", str(make_checkpoint("resnet18")), "--onnx", str(out)]) == 2
    line = _error_line(capsys)
    assert "backbone family ResNet cannot be exported to ONNX" in line and "aten::magic" in line
    assert not out.exists()


def test_bad_checkpoint_is_one_error_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "model.onnx"
    missing = tmp_path / "missing.ckpt"
    assert main(["export", str(missing), "--onnx", str(out)]) == 2
    assert str(missing) in _error_line(capsys)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    assert main(["export", str(garbage), "--onnx", str(out)]) == 2
    assert str(garbage) in _error_line(capsys)
    assert not out.exists()


def test_opset_below_17_is_refused(make_checkpoint, tmp_path: Path, capsys) -> None:
    assert main(["export", str(make_checkpoint("resnet18")), "--onnx", str(tmp_path / "m.onnx"), "--opset", "13"]) == 2
    assert "--opset must be at least 17" in _error_line(capsys)
