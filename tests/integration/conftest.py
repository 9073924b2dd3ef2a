"""Fixtures for the integration tests. MCP clients are opened in the test bodies, never in async fixtures."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import psycopg
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


def add_future_migration(database: str) -> None:
    """Mark the database as migrated by a newer signoff than this one (schema version 9999)."""
    insert = "INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_from_the_future.sql')"
    if database.startswith("postgresql://"):
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(insert)
    else:
        with closing(sqlite3.connect(database)) as conn, conn:
            conn.execute(insert)
