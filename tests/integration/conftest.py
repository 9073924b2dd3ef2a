"""Fixtures for the integration tests. MCP clients are opened in the test bodies, never in async fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.support import base_env


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A fresh SQLite file for this test; every process in the test shares it."""
    return tmp_path / "signoff.db"


@pytest.fixture
def env(db: Path) -> dict[str, str]:
    """The environment of every signoff process in the test: SIGNOFF_DB=db, progress every 0.2 s."""
    return base_env(db)
