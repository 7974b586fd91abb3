"""Imports flow one way: ``io`` reads and writes real data and imports nothing above it (in particular not the
phantom generator); ``synth`` draws and may use ``io`` but nothing of the training or prediction stack; the inference
core (``inference``) is shared by training, grading and export without any of them reaching into the batch runner
(``predict``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import spine_kp

ROOT = Path(spine_kp.__file__).parent
LEAVES = {"spine_kp.types", "spine_kp.schema", "spine_kp.errors", "spine_kp.config"}
TORCH_LEAVES = {"spine_kp.torch_files"}  # leaves that import torch: the one reader of torch files
ALLOWED = {
    "io": {"spine_kp.io"} | LEAVES,
    "synth": {"spine_kp.io", "spine_kp.synth"} | LEAVES,
    "evaluation": {"spine_kp.evaluation", "spine_kp.io", "spine_kp.calibration"} | LEAVES,  # scores any JSON
    # fit / apply / metrics of calibration: just above the leaves, so evaluation, inference and engine all import it
    "calibration": {"spine_kp.calibration"} | LEAVES,
    "review": {"spine_kp.review", "spine_kp.io", "spine_kp.evaluation"} | LEAVES,  # the browser review: no model stack
}
# packages that never import torch or Lightning, not even inside a function
TORCH_FREE = ("io", "evaluation", "review", "calibration")
# package -> packages none of its modules may import, at module level or inside a function
FORBIDDEN = {
    "engine": {"spine_kp.predict"},
    "grading": {"spine_kp.predict", "spine_kp.engine", "spine_kp.inference"},  # crops, crop model, config only
    "inference": {"spine_kp.predict", "spine_kp.engine"},
}


def _spine_kp_imports(path: Path, members: bool = False) -> set[str]:
    """Every spine_kp module a file imports anywhere in it (module level or inside a function); with ``members``
    also ``module.name`` for each ``from module import name``, so ``from spine_kp import predict`` counts as
    ``spine_kp.predict``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if members:
                names.update(f"{node.module}.{a.name}" for a in node.names)
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


@pytest.mark.parametrize("package", TORCH_FREE)
def test_package_never_imports_torch(package):
    bad = set()
    for m in sorted((ROOT / package).glob("*.py")):
        for node in ast.walk(ast.parse(m.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            bad |= {f"{m.name}: {n}" for n in names if n.split(".")[0] in {"torch", "pytorch_lightning", "lightning"}}
    assert not bad


def test_io_holds_no_phantom_drawing():
    names = {m.stem for m in (ROOT / "io").glob("*.py")}
    assert not {n for n in names if n.startswith(("synth", "phantom")) or n in {"dicom_write", "dicom_encode"}}


def test_checkpoints_are_read_without_the_training_code():
    """``spine_kp.checkpoint`` is the one reader for training, prediction and export; prediction never imports the
    training recipe to use it."""
    allowed = LEAVES | TORCH_LEAVES | {"spine_kp.codec.heatmap", "spine_kp.io.atomic"}
    assert _spine_kp_imports(ROOT / "checkpoint.py") <= allowed
    assert _spine_kp_imports(ROOT / "torch_files.py") <= {"spine_kp.errors"}
    for module in ("inference/predictor.py", "predict/sr.py", "export/onnx.py"):
        assert not {n for n in _spine_kp_imports(ROOT / module) if n.startswith("spine_kp.engine")}, module


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_inference_core_is_shared_without_the_batch_runner(package):
    """Training, the crop grading stage and the inference core use one another's models, never ``spine_kp.predict``
    (the batch runner sits above them); the inference core does not import the training recipe either."""
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules
    bad = {
        f"{m.relative_to(ROOT)}: {name}"
        for m in modules
        for name in _spine_kp_imports(m, members=True)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package])
    }
    assert not bad


def test_inference_core_loads_neither_training_nor_batch_runner():
    """Transitively too: importing every inference module in a fresh interpreter loads no module of ``engine`` or
    ``predict`` (and fails on an import cycle)."""
    modules = sorted(f"spine_kp.inference.{m.stem}" for m in (ROOT / "inference").glob("*.py") if m.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(n for n in sys.modules if n.startswith(('spine_kp.engine', 'spine_kp.predict'))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def _names_used(path: Path) -> set[str]:
    """Every name and attribute a module refers to (``np.hypot`` -> {"np", "hypot"})."""
    tree = ast.parse(path.read_text())
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
    }


def test_one_home_for_the_8mm_test_the_optimiser_and_the_calibration_fits():
    """Training (``engine``) and ``calibration`` never measure a distance in mm themselves: the 8 mm test is
    ``evaluation.matching.within_radius``. Only ``engine/optim.py`` builds an optimiser or a schedule, which every
    training stage shares; only ``calibration/fit.py`` fits a temperature or a Platt map (scipy's search, Newton)."""
    own = {"optim.py": {"AdamW", "LambdaLR"}, "fit.py": {"minimize_scalar"}}
    bad = set()
    for m in sorted([*(ROOT / "engine").glob("*.py"), *(ROOT / "calibration").glob("*.py")]):
        used = _names_used(m)
        bad |= {f"{m.relative_to(ROOT)}: hypot" for n in used if n == "hypot"}
        for home, names in own.items():
            bad |= {f"{m.relative_to(ROOT)}: {n}" for n in used & names if m.name != home}
    assert not bad


def test_calibration_is_imported_without_a_cycle_and_without_torch():
    """``calibration`` sits just above the leaves: evaluation (ECE), inference (score maps) and engine (fits) import it;
    importing all of it in a fresh interpreter loads no other spine_kp package, and no torch."""
    modules = sorted(f"spine_kp.calibration.{m.stem}" for m in (ROOT / "calibration").glob("*.py"))
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted({n.split('.')[1] for n in sys.modules if n.startswith('spine_kp.')} | "
        "({'torch'} & set(sys.modules))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "torch" not in proc.stdout
    loaded = set(ast.literal_eval(proc.stdout.strip()))
    assert "calibration" in loaded and loaded <= {"calibration", "yaml_files"} | {n.split(".")[1] for n in LEAVES}
