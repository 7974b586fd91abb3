"""Shared fixtures of the io tests; the study builders themselves live in dicom_studies.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from dicom_studies import StudyBuilder


@pytest.fixture
def study(tmp_path: Path) -> StudyBuilder:
    """A builder writing one study under ``tmp_path / 'study'``."""
    return StudyBuilder(tmp_path / "study")
