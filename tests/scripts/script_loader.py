"""Benchmarks under ``scripts/`` are not a package: ``load_script(name)`` imports ``scripts/<name>.py`` as a module."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` (registered in ``sys.modules`` so its dataclasses resolve)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def tiny_cv(synth_root: Path, out: Path) -> Path:
    """A 2-fold ``bench_real.py`` folder of the tiny demo_cpu model on the suite's phantoms (no crop stage): what the
    ``--cv`` modes of the other benchmarks read."""
    tiny = ["--data.input_size", "[64, 64]", "--data.batch_size", "2", "--model.decoder_channels", "8",
            "--trainer.max_epochs", "1", "--data.val_fraction", "0.34", "--grade_stage.enabled", "false"]  # fmt: skip
    argv = ["--data", str(synth_root / "studies"), "--annotations", str(synth_root / "annotations.json"),
            "--out", str(out), "--config", "demo_cpu", "--folds", "2", "--device", "cpu", *tiny]  # fmt: skip
    assert load_script("bench_real").main(argv) == 0
    return out
