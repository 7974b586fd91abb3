"""Suite-wide fixtures and settings.

* one torch thread per test process (pytest-xdist runs one process per core);
* ``one_thread``: one intra-op thread for a module of tiny convolutions, also outside xdist (more only thrash on a
  shared 2-core machine);
* ``synth_root``: one small phantom data set per test session (per xdist worker), shared by the data, engine and
  predict tests: ``root/studies`` (DICOM folders, with the tricky files) and ``root/annotations.json``;
* ``train_tiny``: one epoch of a tiny demo_cpu model on ``synth_root``, with extra config overrides.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tiny_configs import TINY_TRAIN  # noqa: F401  (also imported from here by older tests)

os.environ.setdefault("MPLBACKEND", "Agg")

N_STUDIES = 5


def pytest_configure(config):
    try:
        import torch
    except ImportError:  # the evaluation and io tests do not need torch
        return
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five 128-row phantom studies (no axial series, to keep it quick)."""
    from spine_kp.synth import make_dataset

    root = tmp_path_factory.mktemp("synth")
    make_dataset(root, n_studies=N_STUDIES, seed=2, size=128, axial=False)
    return root


@pytest.fixture(scope="session")
def train_tiny(synth_root: Path) -> Callable[..., object]:
    """``train_tiny(run_dir, {"key": "value"})``: train the tiny model on ``synth_root``; returns the TrainResult."""

    def run(run_dir: Path, overrides: dict[str, str] | None = None):
        from spine_kp.engine.config import load_experiment
        from spine_kp.engine.train import replace_data_paths, train

        cfg = load_experiment("demo_cpu", {**TINY_TRAIN, **(overrides or {})})
        return train(replace_data_paths(cfg, synth_root / "studies", synth_root / "annotations.json"), run_dir)

    return run
