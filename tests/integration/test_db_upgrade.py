"""`signoff db upgrade` on SQLite and on PostgreSQL: migrates a new database, says when one is up to date, and
refuses one a newer signoff migrated, in one line."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from signoff.storage.migrations import available
from tests.integration.support import signoff


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(request.getfixturevalue("pg_url")) if request.param == "postgresql" else str(tmp_path / "signoff.db")


def add_future_migration(database: str) -> None:
    insert = "INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_from_the_future.sql')"
    if database.startswith("postgresql://"):
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(insert)
    else:
        with closing(sqlite3.connect(database)) as conn, conn:
            conn.execute(insert)


async def test_db_upgrade_migrates_then_is_up_to_date_and_refuses_a_newer_schema(
    env: dict[str, str], database: str
) -> None:
    latest = max(m.version for m in available())
    env = {**env, "SIGNOFF_DB": database}
    first = await signoff(env, "db", "upgrade")
    assert first.returncode == 0, first
    assert first.stdout.strip().endswith(f"schema version 0 -> {latest}"), first
    again = await signoff(env, "db", "upgrade")
    assert again.returncode == 0 and again.stdout.strip().endswith(f"schema version {latest}, up to date"), again

    add_future_migration(database)
    refused = await signoff(env, "db", "upgrade")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused
    assert "schema version 9999" in refused.stderr, refused
