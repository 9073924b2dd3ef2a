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
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiosqlite
import anyio

from signoff.storage import tracing
from signoff.storage.errors import (
    ConfigError,
    DatabaseBusy,
    DatabaseCorrupt,
    DatabaseFull,
    DatabaseReadOnly,
    DatabaseUnavailable,
    StorageError,
)
from signoff.storage.group_commit import Body, GroupCommitter
from signoff.storage.migrations import SchemaTooNew, available, migrate

T = TypeVar("T")

COMMIT_SPAN = "signoff.store.commit"
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


def _zero_header(path: Path) -> bool:
    """Whether the file starts with zeros where SQLite's header belongs: a database truncated (and perhaps written
    to again by a server that still had it open), not some other file. SQLite never writes a zero header.
    (Reading the file drops this process's POSIX locks on it: call this only where no connection needs them.)"""
    try:
        with path.open("rb") as file:
            head = file.read(100)
    except OSError:
        return False
    return len(head) == 100 and not any(head)


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
    # A file SQLite cannot open fails here, on a plain connection: aiosqlite's failed connect leaves its worker
    # thread to report to an event loop that may be closed by then ("Event loop is closed" after the error).
    await anyio.to_thread.run_sync(_try_open, str(path))
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


def _try_open(path: str) -> None:
    sqlite3.connect(path).close()


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
        except SchemaTooNew as exc:
            await writer.close()
            raise SchemaTooNew(found=exc.found, known=exc.known, path=f"the database {path}") from None
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
        with storage_errors(self.path), tracing.span(COMMIT_SPAN, attributes=_commit_attributes(body), child_only=True):
            return await self._committer.run(body)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        with (
            anyio.CancelScope(shield=True),  # a cancelled caller must not leave the outcome of a commit unknown
            storage_errors(self.path),
            tracing.span(COMMIT_SPAN, attributes={"db.system.name": "sqlite"}, child_only=True),
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


class NotASignoffDatabase(ConfigError):
    """The file is not a signoff database."""


class SchemaTooOld(ConfigError):
    """The database needs migrating before this signoff can read it."""


def _commit_attributes(body: Body[Any]) -> dict[str, str]:
    """The span attributes of a write: the database, and the store method that wrote (``create_request``)."""
    function = getattr(body, "func", body)  # a functools.partial's function
    name = getattr(function, "__qualname__", "write").split(".<locals>")[0].rsplit(".", 1)[-1].lstrip("_")
    return {"db.system.name": "sqlite", "signoff.operation": name}


async def open_read_only(path: Path) -> SqliteDatabase:
    """Open an existing database for reading only (SQLite ``mode=ro``): what a reviewer or an auditor without write
    access to the file may do while a server writes to it. Nothing is created or migrated; any write through it
    fails as read-only. A file that is not a signoff database, or whose schema is older or newer than this signoff's,
    is a ``ConfigError`` naming the path.

    In WAL mode a reader needs the ``-shm`` file: SQLite creates it if the folder is writable, and it exists while
    any process has the database open. Only when neither is true (no ``-wal`` file either: no process has it open,
    and every commit is in the database file) is the file opened ``immutable=1``, which reads it without locks."""
    if _damaged(path):  # truncated under a running server: say so, not "not a signoff database"
        raise DatabaseCorrupt(f"cannot read the database {path}: {DatabaseCorrupt().message}")
    uri = "file:" + quote(str(path.absolute())) + "?mode=ro"
    try:
        version = await anyio.to_thread.run_sync(_schema_version, uri, path)
    except sqlite3.OperationalError as exc:
        wal = path.with_name(path.name + "-wal")
        if getattr(exc, "sqlite_errorname", "") not in ("SQLITE_READONLY_DIRECTORY", "SQLITE_CANTOPEN") or wal.exists():
            raise
        uri += "&immutable=1"
        version = await anyio.to_thread.run_sync(_schema_version, uri, path)
    known = max(m.version for m in available())
    if version > known:
        raise SchemaTooNew(found=version, known=known, path=f"the database {path}")
    if version < known:
        raise SchemaTooOld(
            f"the database {path} has schema version {version} and this signoff reads version {known}: a server of"
            f" this version migrates it when it starts, or run `signoff init --db {path}` as a user who may write it"
        )
    connections: list[aiosqlite.Connection] = []
    try:
        for _ in range(2):
            connections.append(await aiosqlite.connect(uri, uri=True, isolation_level=None))
            await connections[-1].execute(PRAGMAS[0])
        sync = await anyio.to_thread.run_sync(partial(sqlite3.connect, uri, uri=True, check_same_thread=False))
    except BaseException:
        for connection in connections:
            await connection.close()
        raise
    return SqliteDatabase(connections[0], connections[1], sync, path)


def _schema_version(uri: str, path: Path) -> int:
    """The newest migration applied to the database at ``uri``, read on a plain connection."""
    conn = sqlite3.connect(uri, uri=True)
    try:
        conn.execute(PRAGMAS[0])
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        if not has_table:
            raise NotASignoffDatabase(f"{path} is not a signoff database: it has no signoff tables")
        return int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        overwritten = _zero_header(path) or any(path.with_name(path.name + s).exists() for s in ("-wal", "-shm"))
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_CORRUPT" or overwritten:
            raise DatabaseCorrupt(f"cannot read the database {path}: {DatabaseCorrupt().message}") from exc
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB":
            raise NotASignoffDatabase(f"{path} is not a signoff database: {exc}") from exc
        raise
    finally:
        conn.close()
