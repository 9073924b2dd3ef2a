"""One SQLite database as signoff uses it: a writer and a reader connection, migrations, atomic writes.

Every store on the database (approvals, the model registry) writes through ``transaction``: SQLite's write
lock is taken up front (``BEGIN IMMEDIATE``), so reads inside it are current and a check-then-write is a
compare-and-set; the transaction is shielded from cancellation so its outcome is never unknown.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
import anyio

from storage.errors import ConfigError
from storage.migrations import migrate

BUSY_TIMEOUT_MS = 30_000


async def connect(path: str | Path) -> aiosqlite.Connection:
    """A connection with signoff's pragmas; transactions are managed explicitly."""
    db = await aiosqlite.connect(str(path), isolation_level=None)
    try:
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await _enable_wal(db)
        await db.execute("PRAGMA synchronous = FULL")
        await db.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        await db.close()
        raise
    return db


async def _enable_wal(db: aiosqlite.Connection) -> None:
    # Switching a new database to WAL can fail with "database is locked" at once, without the busy
    # handler, when several processes create it together; retry until one of them has switched it.
    deadline = anyio.current_time() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            await db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or anyio.current_time() > deadline:
                raise
        await anyio.sleep(delay)
        delay = min(delay * 2, 0.2)


class SqliteDatabase:
    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self.writer = writer
        self.reader = reader  #: single statements only: each sees the latest commit
        self._write_lock = anyio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> SqliteDatabase:
        """Open (creating and migrating as needed) the database at ``path``."""
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            writer = await connect(path)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(
                f"cannot open the database {path}: {exc}; choose another file with --db or SIGNOFF_DB"
            ) from exc
        try:
            await migrate(writer)
            reader = await connect(path)
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader)

    async def close(self) -> None:
        await self.reader.close()
        await self.writer.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        with anyio.CancelScope(shield=True):  # a cancelled caller must not leave the outcome of a commit unknown
            async with self._write_lock:
                await self.writer.execute("BEGIN IMMEDIATE")
                try:
                    yield self.writer
                except BaseException:
                    await self.writer.rollback()
                    raise
                await self.writer.commit()

    async def data_version(self) -> int:
        """Changes whenever another connection (this process or another) commits."""
        async with self.reader.execute("PRAGMA data_version") as cur:
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])
