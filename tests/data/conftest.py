"""Shared fixtures of the data tests: one small phantom data set per test session (per xdist worker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spine_kp.io.synth import make_dataset

N_STUDIES = 5


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/studies`` (DICOM folders, with the tricky cases) and ``root/annotations.json``; 128-row images."""
    root = tmp_path_factory.mktemp("synth")
    make_dataset(root, n_studies=N_STUDIES, seed=2, size=128, axial=False)
    return root
