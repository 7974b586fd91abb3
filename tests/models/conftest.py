"""Model tests run tiny convolutions: one intra-op thread (the suite-wide ``one_thread`` fixture)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread: None) -> None:
    """Every module of this folder runs single-threaded."""
