"""Imports flow one way: every spine_kp package and top-level module has a floor (:data:`FLOORS`) and imports only
modules of lower floors (or its own package); ``io`` reads and writes real data and imports nothing above it (in
particular not the phantom generator); ``synth`` draws and may use ``io`` but nothing of the training or prediction
stack; the inference core (``inference``) is shared by training, grading and export without any of them reaching into
the batch runner (``predict``); and a runtime reads a trained model's settings only through its model card."""

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
# The floor of every spine_kp package and top-level module ("__init__" is the package itself). A module imports, at
# module level or inside a function, only its own package and packages/modules of a LOWER floor: peers on one floor
# never import each other, so there is no cycle and the README's "Layout" order holds. A new package gets a floor here
# (test_every_package_has_a_floor fails until it does).
FLOORS = {
    # 0: leaves that import nothing of spine_kp
    "__init__": 0,
    "errors": 0,
    "types": 0,
    "yaml_files": 0,
    # 1: leaves that read the project's own files: the schema and the config (YAML), torch files (weights only)
    "schema": 1,
    "config": 1,
    "torch_files": 1,
    # 2: real data in and out (DICOM, annotations, atomic writes); calibration maths (numpy, no torch)
    "io": 2,
    "calibration": 2,
    # 3: what reads io: the phantom generator, the dataset, and evaluation (scores any JSON from any model)
    "synth": 3,
    "data": 3,
    "evaluation": 3,
    # 4: heatmap encode/decode and level-order decoding (numpy)
    "codec": 4,
    # 5: the networks, and the one reader of checkpoints (needs the codec)
    "models": 5,
    "checkpoint": 5,
    # 6: the crop grading stage's model/crops/config; the junction check's; fold ensembles of checkpoints
    "grading": 6,
    "junction": 6,
    "fold_ensemble": 6,
    # 7: the inference core (model card, predictors), shared by training, export and prediction
    "inference": 7,
    # 8: what uses the inference core: training recipes, ONNX export, the batch runner; the browser review
    "engine": 8,
    "export": 8,
    "predict": 8,
    "review": 8,
    # 9: the public API (load_predictor, predict_folder, evaluate)
    "api": 9,
    # 10: the multi-step jobs
    "demo": 10,
    "pretrain": 10,
    # 11: the thin command line; 12: ``python -m spine_kp``
    "cli": 11,
    "__main__": 12,
}


# package -> packages none of its modules may import, at module level or inside a function
FORBIDDEN = {
    "engine": {"spine_kp.predict"},
    "grading": {"spine_kp.predict", "spine_kp.engine", "spine_kp.inference"},  # crops, crop model, config only
    "junction": {"spine_kp.predict", "spine_kp.engine", "spine_kp.inference"},  # geometry, crop model, config only
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


def _unit(module: str) -> str:
    """The FLOORS key of a dotted module name (``spine_kp.io.dicom`` -> ``io``, ``spine_kp`` -> ``__init__``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _units() -> set[str]:
    """Every package and top-level module of spine_kp, as FLOORS names it."""
    return {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} | {p.stem for p in ROOT.glob("*.py")}


def test_every_package_has_a_floor():
    assert _units() == set(FLOORS)


def test_no_module_imports_a_higher_floor():
    """Module level and inside functions alike: a lazy import is still a dependency. ``from spine_kp import x`` counts
    as ``spine_kp.x``."""
    bad = set()
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        own = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for name in _spine_kp_imports(path, members=True):
            unit = _unit(name)
            if unit == own:
                continue
            if unit not in FLOORS or FLOORS[unit] >= FLOORS[own]:
                bad.add(f"{rel} (floor {FLOORS[own]}) imports {name} (floor {FLOORS.get(unit)})")
    assert not bad


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
    for module in ("inference/torch_predictor.py", "predict/sr.py", "export/onnx.py"):
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


# Where a runtime (the predictors, the batch runner, export, the API, the CLI) lives; it reads a trained model's
# settings only through its model card (spine_kp.inference.card), so a new setting is one edit in the card.
RUNTIME = ("inference", "predict", "export", "cli", "api.py", "fold_ensemble.py", "checkpoint.py")
# The card modules: the one place that turns a checkpoint's entries or an ONNX file's metadata (onnx_metadata.py: the
# format-1 upgrade and the checks against the graph) into a card.
CARD_MODULES = {
    "inference/card.py",
    "inference/card_checks.py",
    "inference/checkpoint_card.py",
    "inference/onnx_metadata.py",
}
# Names that hold a model file's raw settings: a checkpoint's config / hyper-parameters / fitted entries, an ONNX
# file's metadata document; a subscript or ``.get`` on one of them is a settings read.
SETTINGS_HOLDERS = {"config", "cfg", "hp", "hparams", "hyper_parameters", "meta", "metadata"}
SETTINGS_HOLDERS |= {"decode_fit", "label_stats"}  # a checkpoint's fitted entries
# Keys of a checkpoint's dict that hold settings, whatever the dict is called.
SETTINGS_KEYS = {"config", "hyper_parameters", "model_card"}
# SpineCheckpoint's views of its config (spine_kp.checkpoint).
SETTINGS_VIEWS = {"model_config", "heatmap_codec"}
# (file, enclosing function, class.method or module-level name) -> why it may read a setting itself. Each entry must
# still read one (test_settings_allow_list_is_not_stale), so the list shrinks when the code does.
SETTINGS_READERS = {
    # the one reader of a checkpoint file: splits it into its entries (the card is built from those)
    ("checkpoint.py", "checkpoint_from_data"): "parses the file into SpineCheckpoint",
    # training builds its codec from its own config (a checkpoint's stored codec wins, as the card's does)
    ("checkpoint.py", "build_codec"): "training's codec from its config",
    ("checkpoint.py", "SpineCheckpoint.model_config"): "the network section for warm starts (engine.init_weights)",
    # fold_ensemble sits below inference, so it compares its members' raw settings; they must agree before one card
    # stands for all of them
    ("fold_ensemble.py", "_data"): "member agreement check",
    ("fold_ensemble.py", "SHARED_FIELDS"): "member agreement check",
    # a model registry entry's own metadata (family, source), not a model file's settings
    ("export/onnx.py", "backbone_family"): "registry entry metadata",
    ("cli/models.py", "_row"): "registry entry metadata",
    ("cli/models.py", "run"): "registry entry metadata",
}


def _settings_reads(path: Path) -> list[tuple[str, int, str]]:
    """(enclosing scope, line, source) of each read of a model file's raw settings in a module."""
    found: list[tuple[str, int, str]] = []

    def holder(node: ast.AST) -> str | None:
        return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = f"{scope}.{child.name}" if scope else child.name
            elif not scope and isinstance(child, (ast.Assign, ast.AnnAssign)):
                targets = child.targets if isinstance(child, ast.Assign) else [child.target]
                inner = ",".join(t.id for t in targets if isinstance(t, ast.Name))
            hit = (
                isinstance(child, ast.Subscript)
                and isinstance(child.ctx, ast.Load)
                and (
                    holder(child.value) in SETTINGS_HOLDERS
                    or (isinstance(child.slice, ast.Constant) and child.slice.value in SETTINGS_KEYS)
                )
            )
            hit |= (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and child.func.attr == "get"
                and holder(child.func.value) in SETTINGS_HOLDERS
            )
            hit |= isinstance(child, ast.Attribute) and child.attr in SETTINGS_VIEWS
            if hit:
                found.append((inner, child.lineno, ast.unparse(child)))
            visit(child, inner)

    visit(ast.parse(path.read_text()), "")
    return found


def _runtime_modules() -> list[Path]:
    paths = [p for r in RUNTIME for p in ([ROOT / r] if r.endswith(".py") else sorted((ROOT / r).rglob("*.py")))]
    return [p for p in paths if p.relative_to(ROOT).as_posix() not in CARD_MODULES]


def test_runtime_settings_are_read_only_through_the_model_card():
    """No ``config["data"]``, ``hp["config"]``, ``meta[...]`` or ``ckpt.model_config`` outside the card modules,
    except where :data:`SETTINGS_READERS` says why."""
    bad = {
        f"{p.relative_to(ROOT)}:{line} in {scope or '<module>'}: {text}"
        for p in _runtime_modules()
        for scope, line, text in _settings_reads(p)
        if (p.relative_to(ROOT).as_posix(), scope) not in SETTINGS_READERS
    }
    assert not bad


def test_settings_allow_list_is_not_stale():
    reads = {(p.relative_to(ROOT).as_posix(), scope) for p in _runtime_modules() for scope, _, _ in _settings_reads(p)}
    assert set(SETTINGS_READERS) <= reads


def test_settings_reads_are_found(tmp_path):
    """The check above sees subscripts, ``.get`` and SpineCheckpoint's views, in functions, methods and module level."""
    module = tmp_path / "m.py"
    module.write_text(
        "SIZE = ckpt.config['data']['input_size']\n"
        "def f(meta):\n    return meta.get('neighbours')\n"
        "class P:\n    def g(self, data):\n        return data['hyper_parameters'], self.ckpt.model_config\n"
        "def ok(card):\n    return card.preprocessing.neighbours, {'a': 1}['a']\n"
    )
    assert {(scope, line) for scope, line, _ in _settings_reads(module)} == {
        ("SIZE", 1),
        ("f", 3),
        ("P.g", 6),
    }
