"""``signoff db upgrade``: apply the database's migrations explicitly, on SQLite or PostgreSQL; ``signoff db copy``:
move a SQLite installation into PostgreSQL (``storage.pg_copy``) and verify the copy's audit log.

Servers still migrate the database they open (so the SQLite quick start stays one command); ``db upgrade`` lets an
operator do it first, as its own step of a deployment (before replacing replicas one by one), and says which
version the database had and has. Either way a database that a newer signoff migrated is refused: a replica of the
older version does not start on it, and the running ones answer 503 on ``/readyz``.
"""

from __future__ import annotations

import sqlite3
import sys
from contextlib import closing
from dataclasses import replace
from pathlib import Path

from signoff.server import audit_cli
from signoff.server.config import Settings
from signoff.server.health import Versioned
from signoff.server.stores import NO_DRIVER, database_name, open_alert_store, open_model_store, open_store
from signoff.storage import ConfigError, InvalidInput
from signoff.storage.alerts import AlertStore
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.audit import ChainReport
from signoff.storage.migrations import available
from signoff.storage.models.sqlite import SqliteModelStore
from signoff.storage.pg_url import redacted
from signoff.storage.sqlite_db import open_read_only


async def upgrade(settings: Settings) -> int:
    """Bring the database's schema to the newest this signoff knows; print the versions before and after."""
    before = await schema_version(settings)
    store = await open_store(settings)  # migrates, under the engine's lock; refuses a newer schema
    try:
        after = (await store.schema())[0] if isinstance(store, Versioned) else max(m.version for m in available())
    finally:
        await store.close()
    name = database_name(settings)
    if before == after:
        print(f"database {name}: schema version {after}, up to date")
    else:
        print(f"database {name}: schema version {before} -> {after}")
    return 0


async def copy(source: Path, target: str, settings: Settings) -> int:
    """Copy the SQLite installation at ``source`` into the empty PostgreSQL database at ``target``, then verify the
    copy's audit log as ``signoff audit verify`` does: 0 when it verifies, 1 when it does not.

    A copy is only as good as its source: a source whose audit log does not verify is refused before anything is
    written. A copy that does not verify (the source changed meanwhile, or an engine read a row differently) is
    emptied again, so no server opens a half-trusted installation; the schema its migrations made stays."""
    try:
        from signoff.storage import pg_copy  # psycopg: the optional `postgres` extra
    except ImportError as exc:
        raise ConfigError(NO_DRIVER.format(exc)) from None
    pg_copy.check_source(source)  # before its stores read it: the refusals (an older schema: upgrade it) say more
    if not (found := await _check_source_log(source)).ok:
        audit_cli.show(found)
        print(
            f"refused: the audit log of {source} does not verify (above), so nothing was copied and"
            f" {redacted(target)} is as it was; run `signoff audit verify --db {source}` to see where, and copy a"
            " backup of it that verifies",
            file=sys.stderr,
        )
        return 1
    copied = await pg_copy.copy(source, target)
    print(f"copied {copied.total} rows from {source} to {redacted(target)}: {pg_copy.summary(copied) or 'no rows'}")
    settings = replace(settings, db_url=target)
    store = await open_store(settings)
    models = alerts = None
    try:
        models = await open_model_store(settings.db_path, target)
        alerts = await open_alert_store(settings.db_path, target)
        code = await audit_cli.verify(store, models, alerts, {})
    finally:
        for opened in (alerts, models, store):
            if opened is not None:
                await opened.close()
    if code != 0:
        try:
            await pg_copy.discard(target, copied)
        except InvalidInput as exc:
            print(f"the copy does not verify (above); {exc.message}", file=sys.stderr)
            return code
        print(
            f"the copy in {redacted(target)} does not verify (above), so its rows were taken out again: the database"
            f" holds no signoff data (its schema stays). Run `signoff audit verify --db {source}` on the original to"
            " see whether it still verifies, then copy again",
            file=sys.stderr,
        )
    return code


async def _check_source_log(source: Path) -> ChainReport:
    """The source's audit log and every row it explains, checked as ``signoff audit verify --db SOURCE`` checks
    them, on connections that only read the file."""
    store = await SqliteStore.open_read_only(source)
    try:
        models = SqliteModelStore(await open_read_only(source), poll_interval=1.0, seed=None)
        alerts = AlertStore(await open_read_only(source))
        return await audit_cli.check(store, models, alerts, {})
    finally:
        await store.close()


async def schema_version(settings: Settings) -> int:
    """The schema version of the database the settings name, 0 for a new (empty or missing) one."""
    if settings.db_url is not None:
        from signoff.storage.pg_db import schema_version as pg_version  # psycopg: the optional `postgres` extra

        return await pg_version(settings.db_url)
    try:
        return _sqlite_version(settings.db_path)
    except sqlite3.Error:  # not a database, damaged, unreadable: opening it below says which, in one line
        return 0


def _sqlite_version(path: Path) -> int:
    if not path.exists():
        return 0
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
        if found.fetchone() is None:
            return 0
        return int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0])
