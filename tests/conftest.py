from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signoff.storage import Store
from signoff.storage.approvals.memory import MemoryStore
from signoff.storage.approvals.sqlite import SqliteStore


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Every Store implementation; the contract suite runs once per backend."""
    backend: Store = MemoryStore() if request.param == "memory" else await SqliteStore.open(tmp_path / "signoff.db")
    try:
        yield backend
    finally:
        await backend.close()
