"""One SQLite database as signoff uses it: writer and reader connections, migrations, atomic writes.

Every write takes SQLite's write lock up front (``BEGIN IMMEDIATE``), so reads inside it are current and a
check-then-write is a compare-and-set; every write is shielded from cancellation so its outcome is never
unknown; a caller is answered only after its COMMIT returned (WAL, ``synchronous=FULL``). Two ways in:

- ``write(body)``: ``body`` is a synchronous function of a plain ``sqlite3.Connection``. It runs on a worker
  thread in one call, with no round trip to the event loop between statements, and the bodies waiting at
  the same moment share one transaction and one fsync (``storage.group_commit``). The approval store uses it.
- ``transaction()``: an async context manager yielding the aiosqlite writer, one round trip per statement.

Both hold the same lock, so their transactions never contend for SQLite's write lock inside one process.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TypeVar

import aiosqlite
import anyio
from signoff.storage.errors import (
    DatabaseBusy,
    DatabaseCorrupt,
    DatabaseFull,
    DatabaseReadOnly,
    DatabaseUnavailable,
    StorageError,
)
from signoff.storage.group_commit import Body, GroupCommitter
from signoff.storage.migrations import migrate

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
PRAGMAS = (f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}", "PRAGMA synchronous = FULL", "PRAGMA foreign_keys = ON")
#: ``write`` runs each transaction body in a savepoint. SQLite keeps the pages a savepoint changes in a
#: sub-journal, by default a temporary file: that made every INSERT 1.5-4x slower (a request's writes 0.35 ms
#: more). In memory it costs a few pages per transaction.
WRITER_PRAGMAS = (*PRAGMAS, "PRAGMA temp_store = MEMORY")


#: SQLite's primary result codes (the low byte of an extended code) that say the storage itself failed, and the
#: sentence for each. Anything else (a constraint, a missing table) is a bug and propagates as it is.
_BY_CODE: dict[int, type[StorageError]] = {
    13: DatabaseFull,  # SQLITE_FULL "database or disk is full"
    8: DatabaseReadOnly,  # SQLITE_READONLY "attempt to write a readonly database"
    3: DatabaseReadOnly,  # SQLITE_PERM
    11: DatabaseCorrupt,  # SQLITE_CORRUPT "database disk image is malformed"
    26: DatabaseCorrupt,  # SQLITE_NOTADB "file is not a database"
    5: DatabaseBusy,  # SQLITE_BUSY "database is locked"
    6: DatabaseBusy,  # SQLITE_LOCKED
    14: DatabaseUnavailable,  # SQLITE_CANTOPEN "unable to open database file"
}
_BY_MESSAGE: tuple[tuple[str, type[StorageError]], ...] = (
    ("database or disk is full", DatabaseFull),
    ("readonly database", DatabaseReadOnly),
    ("malformed", DatabaseCorrupt),
    ("not a database", DatabaseCorrupt),
    ("database is locked", DatabaseBusy),
    ("database table is locked", DatabaseBusy),
    ("unable to open database", DatabaseUnavailable),
)


def storage_error(exc: sqlite3.Error, path: str | Path | None = None) -> StorageError | None:
    """The clear sentence for a failure of the database itself (full, read-only, damaged, locked, unopenable), or
    None for other errors. A "locked" or I/O error on a database file truncated to nothing under a running server is
    reported as damaged."""
    code = getattr(exc, "sqlite_errorcode", None)
    kind = _BY_CODE.get(code & 0xFF) if isinstance(code, int) else None
    if kind is None:
        text = str(exc).lower()
        kind = next((k for needle, k in _BY_MESSAGE if needle in text), None)
    if kind is None and isinstance(code, int) and code & 0xFF == 10:  # SQLITE_IOERR
        kind = StorageError
    if kind is None:
        return None
    if kind is not DatabaseCorrupt and path is not None and _damaged(Path(path)):
        kind = DatabaseCorrupt
    return kind()


def _damaged(path: Path) -> bool:
    """Whether the file is empty beside a write-ahead log with commits in it: SQLite writes the database's header
    before the log exists, so the file was truncated (and SQLite would start an empty database over the log).

    Only ``stat``: opening and closing the file here would drop the POSIX locks this process's SQLite connections
    hold on it, and another process could then recover the log from under them."""
    try:
        return path.stat().st_size == 0 and path.with_name(path.name + "-wal").stat().st_size > 0
    except OSError:
        return False


@contextmanager
def storage_errors(path: str | Path | None = None) -> Iterator[None]:
    """Turn a failure of the database itself into its ``StorageError`` (one sentence for agents and the CLI)."""
    try:
        yield
    except sqlite3.Error as exc:
        mapped = storage_error(exc, path)
        if mapped is None:
            raise
        raise mapped from exc


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only (0600), before SQLite does (it would make it 0644):
    SQLite gives the ``-wal`` and ``-shm`` files the database file's permissions. An existing file is left as
    it is."""
    if str(path) == ":memory:":
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


async def connect(path: str | Path) -> aiosqlite.Connection:
    """A connection with signoff's pragmas; transactions are managed explicitly."""
    db = await aiosqlite.connect(str(path), isolation_level=None)
    try:
        await db.execute(PRAGMAS[0])
        await _enable_wal(db)
        for pragma in PRAGMAS[1:]:
            await db.execute(pragma)
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


def connect_sync(path: str | Path) -> sqlite3.Connection:
    """A plain connection with signoff's pragmas, for ``write``; the database must already be in WAL mode."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        for pragma in WRITER_PRAGMAS:
            conn.execute(pragma)
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            raise sqlite3.OperationalError(f"the database is in {mode} mode, not WAL")
    except BaseException:
        conn.close()
        raise
    return conn


class SqliteDatabase:
    def __init__(
        self,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        sync_writer: sqlite3.Connection,
        path: str | Path | None = None,
    ) -> None:
        self.path = path  #: named in errors, and read to tell a damaged file from a locked one
        self.writer = writer  #: for ``transaction()``
        self.reader = reader  #: single statements only: each sees the latest commit
        self._write_lock = anyio.Lock(fast_acquire=True)  #: no extra trip round the event loop when free
        self._committer = GroupCommitter(sync_writer, self._write_lock)

    @classmethod
    async def open(cls, path: str | Path) -> SqliteDatabase:
        """Open (creating and migrating as needed) the database at ``path``."""
        with storage_errors(path):
            return await cls._open(path)

    @classmethod
    async def _open(cls, path: str | Path) -> SqliteDatabase:
        if str(path) != ":memory:" and _damaged(Path(path)):  # SQLite would start an empty database over the log
            raise DatabaseCorrupt(f"cannot open the database {path}: {DatabaseCorrupt().message}")
        try:
            _create_private(Path(path))
            writer = await connect(path)
        except (sqlite3.Error, OSError) as exc:
            mapped = storage_error(exc, path) if isinstance(exc, sqlite3.Error) else None
            reason = mapped.message if mapped else f"{exc}; choose another file with --db or SIGNOFF_DB"
            raise (type(mapped) if mapped else DatabaseUnavailable)(
                f"cannot open the database {path}: {reason}"
            ) from exc
        try:
            await migrate(writer)
            sync_writer = await anyio.to_thread.run_sync(connect_sync, path)
        except BaseException:
            await writer.close()
            raise
        try:
            reader = await connect(path)
        except BaseException:
            sync_writer.close()
            await writer.close()
            raise
        return cls(writer, reader, sync_writer, path)

    async def close(self) -> None:
        await self._committer.aclose()
        await self.reader.close()
        await self.writer.close()

    async def write(self, body: Body[T]) -> T:
        """Run ``body`` in a write transaction (``BEGIN IMMEDIATE``, possibly shared with other waiting
        writes, each in its own savepoint); return its result once committed. If it raises, nothing it
        wrote is kept and the exception propagates."""
        with storage_errors(self.path):
            return await self._committer.run(body)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        with (
            anyio.CancelScope(shield=True),  # a cancelled caller must not leave the outcome of a commit unknown
            storage_errors(self.path),
        ):
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
        with storage_errors(self.path):
            rows = list(await self.reader.execute_fetchall("PRAGMA data_version"))
        return int(rows[0][0])
