"""Imports flow one way: ``io`` reads and writes real data and imports nothing above it (in particular not the
phantom generator); ``synth`` draws and may use ``io`` but nothing of the training or prediction stack."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import spine_kp

ROOT = Path(spine_kp.__file__).parent
LEAVES = {"spine_kp.types", "spine_kp.schema", "spine_kp.errors", "spine_kp.config"}
ALLOWED = {
    "io": {"spine_kp.io"} | LEAVES,
    "synth": {"spine_kp.io", "spine_kp.synth"} | LEAVES,
}


def _spine_kp_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n == "spine_kp" or n.startswith("spine_kp.")}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package):
    modules = sorted((ROOT / package).glob("*.py"))
    assert modules
    bad = {
        f"{m.name}: {name}"
        for m in modules
        for name in _spine_kp_imports(m)
        if not any(name == a or name.startswith(a + ".") for a in ALLOWED[package])
    }
    assert not bad


def test_io_holds_no_phantom_drawing():
    names = {m.stem for m in (ROOT / "io").glob("*.py")}
    assert not {n for n in names if n.startswith(("synth", "phantom")) or n in {"dicom_write", "dicom_encode"}}


def test_checkpoints_are_read_without_the_training_code():
    """``spine_kp.checkpoint`` is the one reader for training, prediction and export; prediction never imports the
    training recipe to use it."""
    assert _spine_kp_imports(ROOT / "checkpoint.py") <= LEAVES | {"spine_kp.codec.heatmap", "spine_kp.io.atomic"}
    for module in ("predict/predictor.py", "predict/sr.py", "export/onnx.py"):
        assert not {n for n in _spine_kp_imports(ROOT / module) if n.startswith("spine_kp.engine")}, module
