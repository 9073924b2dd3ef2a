"""`signoff db upgrade` on SQLite and on PostgreSQL: migrates a new database, says when one is up to date, and
refuses one a newer signoff migrated, in one line."""

from __future__ import annotations

from signoff.storage.migrations import available
from tests.integration.conftest import add_future_migration
from tests.integration.support import signoff


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
