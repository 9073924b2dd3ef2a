"""``signoff db copy``: move a SQLite installation into an empty PostgreSQL database, in one transaction.

Both engines hold the same tables with the same columns and the same text (times, canonical JSON), so a copy is
row for row: the audit chain's hashes stay valid and ``signoff audit verify`` checks the copy as it checked the
original. The copy runs in one PostgreSQL transaction that creates (or upgrades) the schema, takes the writers'
lock, checks that the target holds no data, copies every table with ``COPY`` (parents before children), replaces
the derived tables (the metric counters, which the target's triggers also bumped while the rows went in; the model
plane's cache version) with the source's, and moves each identity column's sequence past the copied ids. Anything
refused or failing rolls all of it back: the target stays as it was. A copy that committed but does not verify
comes out again with ``discard``: exactly its rows (every one carries the copying transaction's id), or nothing
when anyone else wrote to them since.

Importing this module loads psycopg, which is an optional extra (``pip install "signoff[postgres]"``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from signoff.storage.errors import ConfigError, DatabaseUnavailable, InvalidInput
from signoff.storage.migrations import SchemaTooNew
from signoff.storage.migrations import available as sqlite_migrations
from signoff.storage.pg_db import WRITE_LOCK, Conn, migrate
from signoff.storage.pg_url import redacted

#: Every table whose rows are the installation's data, parents before the children that reference them.
TABLES = (
    "requests",
    "votes",
    "events",
    "agent_actions",
    "action_values",
    "outbox",
    "outbox_deliveries",
    "message_refs",
    "models",
    "model_versions",
    "model_changes",
    "model_minutes",
    "model_reservoirs",
    "model_samples",
    "alert_episodes",
    "alert_state",
    "alert_outbox",
)
#: Tables the target fills itself (triggers, a migration's seed row): emptied after the data went in, then copied.
DERIVED = ("metric_counts", "model_state")
#: Tables not copied, and why.
NOT_COPIED = {
    "schema_migrations": "the target's own migrations record its schema version",
    "resume_streams": "waiting calls' reconnection state, an hour at most: a copy is made with the servers stopped",
    "once_claims": "the signatures of Slack requests already received, ten minutes at most (replays are refused)",
}
#: SQLite's own tables with no PostgreSQL counterpart: its text index of the requests (migration 0016, an FTS5 table
#: and the tables FTS5 keeps it in), which PostgreSQL's trigram indexes replace; rebuilt from the rows, never copied.
SQLITE_ONLY = frozenset(
    (
        "requests_text",
        "requests_text_config",
        "requests_text_content",
        "requests_text_data",
        "requests_text_docsize",
        "requests_text_idx",
    )
)


@dataclass(frozen=True, slots=True)
class Copied:
    """What a copy moved: rows per table, in the order they were copied; and what ``discard`` needs to take exactly
    those rows out again."""

    rows: dict[str, int]
    #: the copying transaction's id as PostgreSQL's ``xmin`` shows it: every row the copy wrote carries it
    xid: int = 0
    #: the rows of the derived tables before the copy replaced them (the model plane's seed row)
    replaced: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def check_source(source: Path) -> None:
    """Refuse, as ``copy`` would, a source that is missing, not a signoff database, or of another schema version:
    what to check before reading the source any other way (its stores would migrate an older one)."""
    with closing(_open_source(source)) as src:
        _check_source(src, source)


async def copy(source: Path, target: str) -> Copied:
    """Copy the SQLite installation at ``source`` into the PostgreSQL database at ``target`` (see the module)."""
    with closing(_open_source(source)) as src:
        _check_source(src, source)
        async with _connected(target, "copy into") as conn:
            async with conn.transaction():
                return await _copy(src, conn, target)


async def discard(target: str, copied: Copied) -> None:
    """Take out of ``target`` exactly the rows ``copied`` put there, in one transaction under the writers' lock, and
    put back the derived rows it replaced: the database holds no signoff data again (its schema stays). Refused (an
    ``InvalidInput``, nothing changed) when anything else was written to those tables since the copy: a row added,
    changed or removed by someone else is theirs, not the copy's to take."""
    async with _connected(target, "empty") as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            everything = (*TABLES, *DERIVED)
            names = sql.SQL(", ").join(map(sql.Identifier, everything))
            await conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(names))  # no reader's write either
            changed = [t for t in everything if await _rows_not_copied(conn, t, copied)]
            if changed:
                raise InvalidInput(
                    f"the database {redacted(target)} was written to since the copy (in {', '.join(changed)}), so it"
                    " was not emptied: stop what writes to it, then drop its tables, or the database, before copying"
                    " again"
                )
            # TRUNCATE, not DELETE: the append-only triggers refuse a row's deletion, and rightly; these rows are
            # exactly the copy's, which never became an installation anyone used
            await conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(names))
            for table, rows in copied.replaced.items():
                for row in rows:
                    values = sql.SQL(", ").join(sql.Placeholder() * len(row))
                    await conn.execute(sql.SQL("INSERT INTO {} VALUES ({})").format(sql.Identifier(table), values), row)


async def _rows_not_copied(conn: Conn, table: str, copied: Copied) -> bool:
    """Whether ``table`` holds anything but the rows ``copied`` wrote: another number of rows, or a row another
    transaction wrote (added, or changed: an update makes a new row version with its own ``xmin``)."""
    cur = await conn.execute(
        sql.SQL("SELECT count(*), count(*) FILTER (WHERE xmin::text::bigint <> %s) FROM {}").format(
            sql.Identifier(table)
        ),
        (copied.xid,),
    )
    total, others = await cur.fetchone() or (0, 0)
    return bool(others) or total != copied.rows.get(table, 0)


@asynccontextmanager
async def _connected(target: str, doing: str) -> AsyncIterator[Conn]:
    """A connection to ``target`` (autocommit: each use opens its one transaction), its errors said in one line."""
    try:
        async with await psycopg.AsyncConnection.connect(target, autocommit=True) as conn:
            yield conn
    except SchemaTooNew as exc:
        raise SchemaTooNew(found=exc.found, known=exc.known, path=f"the database {redacted(target)}") from None
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot {doing} the PostgreSQL database {redacted(target)}: {' '.join(str(exc).split())}"
        ) from exc


def _open_source(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise ConfigError(f"no SQLite database at {path}; give the file `signoff serve` used (its SIGNOFF_DB)")
    # as_uri percent-encodes the path: a `#` or `?` in it must not cut `mode=ro` off (and open another file)
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    conn.execute("BEGIN")  # one read transaction: the rows of every table from the same moment
    return conn


def _check_source(src: sqlite3.Connection, path: Path) -> None:
    """Refuse a source that is not a signoff database, or whose schema is not the one this signoff writes."""
    latest = max(m.version for m in sqlite_migrations())
    try:
        found = src.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
        if found.fetchone() is None:
            raise ConfigError(f"{path} is not a signoff database (it has no schema_migrations table)")
        version = int(src.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{path} cannot be read as a SQLite database: {exc}") from None
    if version > latest:
        raise SchemaTooNew(found=version, known=latest, path=str(path))
    if version < latest:
        raise ConfigError(
            f"{path} has schema version {version}, and this signoff copies version {latest}: run"
            f" `signoff db upgrade --db {path}` on it first, then copy again"
        )
    tables = set(source_tables(src))
    unknown = tables - set(TABLES) - set(DERIVED) - set(NOT_COPIED) - SQLITE_ONLY
    if unknown:  # a table this signoff's migrations did not make: copying the rest would lose it
        raise ConfigError(f"{path} has tables signoff does not know, which a copy would leave out: {sorted(unknown)}")


def source_tables(src: sqlite3.Connection) -> list[str]:
    """The tables of a SQLite database, without SQLite's own."""
    rows = src.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1")
    return [row[0] for row in rows]


async def target_tables(conn: Conn) -> list[str]:
    """The tables of the PostgreSQL schema signoff uses."""
    cur = await conn.execute(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1"
    )
    return [row[0] for row in await cur.fetchall()]


async def _copy(src: sqlite3.Connection, conn: Conn, target: str) -> Copied:
    await migrate(conn)  # a savepoint inside this transaction: a refusal below undoes the schema too
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))  # no server writes meanwhile
    missing = (set(TABLES) | set(DERIVED)) - set(await target_tables(conn))
    if missing:
        raise ConfigError(f"the database {redacted(target)} lacks signoff's tables {sorted(missing)} after migrating")
    held = [t for t in (*TABLES, "metric_counts") if await _has_rows(conn, t)]
    if held:
        raise InvalidInput(
            f"the database {redacted(target)} already holds data (in {', '.join(held)}): copy into a new, empty"
            " database (createdb), or drop this one's tables first if you mean to replace them"
        )
    replaced = {table: await _all_rows(conn, table) for table in DERIVED}  # the seed rows, should it be undone
    rows = {table: await _copy_table(src, conn, table) for table in TABLES}
    for table in DERIVED:  # what the triggers counted while the rows went in, then the source's own numbers
        await conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        rows[table] = await _copy_table(src, conn, table)
    for table in TABLES:
        await _continue_identities(conn, table)
    cur = await conn.execute("SELECT txid_current() % 4294967296")  # as xmin shows it: without the epoch
    xid = int((await cur.fetchone() or (0,))[0])
    return Copied(rows=rows, xid=xid, replaced=replaced)


async def _all_rows(conn: Conn, table: str) -> list[tuple[Any, ...]]:
    cur = await conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
    return list(await cur.fetchall())


async def _has_rows(conn: Conn, table: str) -> bool:
    cur = await conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table)))
    return bool((await cur.fetchone() or (False,))[0])


async def _copy_table(src: sqlite3.Connection, conn: Conn, table: str) -> int:
    columns = [row[1] for row in src.execute(f"PRAGMA table_info({table})")]  # table: one of ours, not input
    cur = await conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = %s",
        (table,),
    )
    extra = set(columns) - {row[0] for row in await cur.fetchall()}
    if extra:
        raise ConfigError(f"table {table} has columns PostgreSQL's schema lacks: {sorted(extra)}")
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    select = f"SELECT {', '.join(_quoted(c) for c in columns)} FROM {table}"
    count = 0
    try:
        async with conn.cursor().copy(
            sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), names)
        ) as copying:
            for row in src.execute(select):
                await copying.write_row(row)
                count += 1
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        raise InvalidInput(f"a row of table {table} cannot be copied: {' '.join(str(exc).split())}") from None
    return count


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


async def _continue_identities(conn: Conn, table: str) -> None:
    """New rows get ids after the copied ones: each identity column's sequence moves past its largest value."""
    cur = await conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = %s AND is_identity = 'YES'",
        (table,),
    )
    for (column,) in await cur.fetchall():
        await conn.execute(
            sql.SQL("SELECT setval(pg_get_serial_sequence(%s, %s), coalesce(max({}), 0) + 1, false) FROM {}").format(
                sql.Identifier(column), sql.Identifier(table)
            ),
            (table, column),
        )


def summary(copied: Copied, order: Sequence[str] = TABLES) -> str:
    """``requests 12, votes 9, …``: the tables that had rows, in copy order."""
    return ", ".join(f"{t} {copied.rows[t]}" for t in (*order, *DERIVED) if copied.rows.get(t))
