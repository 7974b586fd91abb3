"""A tiny trained checkpoint (one epoch at 64 x 64) shared by the prediction tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(train_tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = train_tiny(tmp_path_factory.mktemp("tiny_run"))
    assert result.last_checkpoint is not None
    return result.last_checkpoint
