"""A PostgreSQL database for signoff's stores: a connection pool, migrations, the writers' lock, and wake-ups.

- Writes run in one transaction each (``write``), after taking a transaction-scoped advisory lock that every
  signoff process on the database shares: writes are serialised as SQLite serialises them, so the audit chain has
  one head and never forks, and a decision is a compare-and-set (the request row is read ``FOR UPDATE`` and
  updated ``WHERE status = 'pending'``), on one host or many. Reads take no lock.
- Every write that matters sends ``NOTIFY signoff_changes`` (with the request id) in its transaction; a listener
  connection per process turns those into wake-ups of its waiters. A slow poll of the log's head covers a
  listener that lost its connection.
- Migrations are ``sql_pg/NNNN_name.sql``, numbered as the SQLite migrations they stand for (0011 is SQLite's
  0001-0011 in one), applied in order under another advisory lock so
  that several servers starting at once apply each one once.

Importing this module loads psycopg, which is an optional extra (``pip install "signoff[postgres]"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import anyio
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from signoff.storage.errors import DatabaseUnavailable, InvalidInput
from signoff.storage.folding import history_folds
from signoff.storage.migrations import SchemaTooNew
from signoff.storage.pg_url import redacted

logger = logging.getLogger(__name__)

T = TypeVar("T")
Conn = psycopg.AsyncConnection[tuple[Any, ...]]

CHANNEL = "signoff_changes"  #: the NOTIFY channel every write that matters signals on
WRITE_LOCK = 0x5167_6E6F_6666_0001  #: pg_advisory_xact_lock key: one writer at a time, across hosts
MIGRATE_LOCK = 0x5167_6E6F_6666_0002  #: pg_advisory_xact_lock key: one migrator at a time
LISTEN_RETRY_SECONDS = 1.0  #: how soon a listener that lost its connection tries again
#: how long a call waits for a pooled connection before it fails "database unavailable" (psycopg_pool's default, 30 s,
#: would hold every call that long while the database is down or failing over)
CONNECT_TIMEOUT_SECONDS = 5.0
#: How long PostgreSQL lets a session of the pool sit inside a transaction without sending a statement before it
#: ends the session (rolling back, releasing the writers' lock). A write holds the lock for milliseconds between its
#: statements; this long idle inside one means its process is frozen (SIGSTOP, a paused VM) or cut off by a
#: partition, which PostgreSQL would otherwise notice only from TCP keepalive, hours later, while every write of
#: every replica waits. Generous for a loaded host's event loop; short next to a tool call's patience.
IDLE_IN_TRANSACTION_SECONDS = 10.0
#: How long a statement waits for a lock (the writers' lock, a row) before it fails ``DatabaseUnavailable``
#: (nothing saved). Longer than IDLE_IN_TRANSACTION_SECONDS, so a write queued behind a frozen holder outlives it:
#: the holder's session is ended and the queued writes go on; only a holder that keeps working (one statement
#: running that long, or a queue of writes that long) makes the writes behind it fail instead of hang.
LOCK_TIMEOUT_SECONDS = 15.0


def connection_lost(exc: psycopg.OperationalError) -> bool:
    """Whether the error is a connection the server dropped or lost (a restart, a failover), not one a statement
    caused: libpq's own errors carry no SQLSTATE; class 08 is a connection exception, 57P01-57P03 a shutdown."""
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def _one_line(exc: Exception) -> str:
    """libpq's message, whose lines (a hint after a tab) become one."""
    return " ".join(str(exc).split())


async def _bounded_waits(conn: Conn) -> None:
    """Every pooled connection's session settings: a bounded lock wait and a bounded idle time in a transaction
    (set once per connection; the URL's own ``options`` stay as they are)."""
    await conn.execute(
        "SELECT set_config('lock_timeout', %s, false), set_config('idle_in_transaction_session_timeout', %s, false)",
        (f"{round(LOCK_TIMEOUT_SECONDS * 1000)}ms", f"{round(IDLE_IN_TRANSACTION_SECONDS * 1000)}ms"),
    )


@dataclass(frozen=True, slots=True)
class PgMigration:
    version: int
    name: str
    sql: str


def available() -> list[PgMigration]:
    found = []
    for entry in resources.files(__package__).joinpath("sql_pg").iterdir():
        if entry.name.endswith(".sql") and entry.name[:4].isdigit():
            found.append(PgMigration(int(entry.name[:4]), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


async def migrate(conn: Conn) -> int:
    """Bring the schema to the latest version; safe when several processes start at once."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL)"
        )
        cur = await conn.execute("SELECT version FROM schema_migrations")
        applied = {row[0] for row in await cur.fetchall()}
        latest = max(applied, default=0)
        known = available()
        newest_known = max((m.version for m in known), default=0)
        if latest > newest_known:
            raise SchemaTooNew(found=latest, known=newest_known)
        for migration in known:
            if migration.version in applied:
                continue
            logger.info("applying PostgreSQL migration %s", migration.name)
            if (before := _BEFORE.get(migration.version)) is not None:
                await before(conn)
            await conn.execute(migration.sql.encode())  # bytes: no placeholders in a script
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (migration.version, migration.name)
            )
            latest = migration.version
    return latest


async def _history_folds(conn: Conn) -> None:
    """Every action and field name in the anomaly history whose fold (``folding``, which SQL cannot spell)
    differs, in the temporary table 0018_folded_history.sql reads (as ``migrations._history_folds`` on SQLite)."""
    await conn.execute(
        "CREATE TEMP TABLE history_folds"
        " (kind ctext NOT NULL, raw ctext NOT NULL, folded ctext NOT NULL, PRIMARY KEY (kind, raw))"
    )
    cur = await conn.execute("SELECT action FROM agent_actions UNION SELECT action FROM action_values")
    actions = [row[0] for row in await cur.fetchall()]
    cur = await conn.execute("SELECT DISTINCT field FROM action_values")
    folds = history_folds(actions, (row[0] for row in await cur.fetchall()))
    if folds:
        async with conn.cursor() as insert:
            await insert.executemany("INSERT INTO history_folds (kind, raw, folded) VALUES (%s, %s, %s)", folds)


#: Steps that need Python, run right before a migration's script, in the same transaction (as on SQLite).
_BEFORE: dict[int, Callable[[Conn], Awaitable[None]]] = {18: _history_folds}


async def schema_version(url: str) -> int:
    """The database's schema version without migrating it: 0 for a database signoff has not used yet."""
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
            if not (await cur.fetchone() or (False,))[0]:
                return 0
            cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
            return int((await cur.fetchone() or (0,))[0])
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot open the PostgreSQL database {redacted(url)}: {_one_line(exc)}") from exc


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database, and this process's listener for its changes."""

    def __init__(self, url: str, pool: AsyncConnectionPool[Conn]) -> None:
        self.url = url
        self.pool = pool
        self._listener: asyncio.Task[None] | None = None
        self._listen_conn: Conn | None = None

    @classmethod
    async def open(cls, url: str, *, max_size: int = 10) -> PostgresDatabase:
        """Connect, migrate, and return the database; a database that cannot be reached is ``DatabaseUnavailable``
        with the reason (the URL is named without its password)."""
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await migrate(conn)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"cannot open the PostgreSQL database {redacted(url)}: {_one_line(exc)}") from exc
        except SchemaTooNew as exc:
            raise SchemaTooNew(found=exc.found, known=exc.known, path=f"the database {redacted(url)}") from None
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            kwargs={"autocommit": True},
            open=False,
            name="signoff",
            timeout=CONNECT_TIMEOUT_SECONDS,
            configure=_bounded_waits,
        )
        await pool.open(wait=True)
        return cls(url, pool)

    async def close(self) -> None:
        await self.stop_listening()
        await self.pool.close()

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        try:
            yield
        except psycopg.errors.LockNotAvailable as exc:
            raise DatabaseUnavailable(
                f"the PostgreSQL database {redacted(self.url)} did not give this write its lock within"
                f" {LOCK_TIMEOUT_SECONDS:g} s: another session holds it (a signoff process frozen or cut off mid-write,"
                " or a long transaction); nothing was saved and nothing was approved: try again, and if it goes on,"
                " find the holder in pg_locks and pg_stat_activity"
            ) from exc
        except psycopg.errors.IdleInTransactionSessionTimeout as exc:
            raise DatabaseUnavailable(
                f"the PostgreSQL database {redacted(self.url)} ended this process's session: it sat idle inside a"
                f" write for over {IDLE_IN_TRANSACTION_SECONDS:g} s (the process was frozen or cut off); nothing was"
                " saved"
            ) from exc
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"the PostgreSQL database {redacted(self.url)} failed: {_one_line(exc)}") from exc
        except psycopg.DataError as exc:  # a value PostgreSQL cannot hold (a NUL character in text): the caller's
            raise InvalidInput(
                f"the PostgreSQL database refused a value ({_one_line(exc)}); nothing was changed: check the ids,"
                " names and values sent (a NUL character, \\x00, cannot be stored)"
            ) from exc

    async def read(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Every row of one query, on a pooled connection (``reading``)."""

        async def rows(conn: Conn) -> list[tuple[Any, ...]]:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

        return await self.reading(rows)

    async def reading(self, body: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``body``, which only reads, on a pooled connection (autocommit). A connection the server dropped (a
        restart, a failover) fails the first try; the pool's other idle connections are checked (the broken ones
        replaced) and ``body`` is run once more: a read changes nothing, so trying it again is safe."""
        async with self._errors():
            try:
                return await self._on_connection(body)
            except PoolTimeout:
                raise  # no connection came at all: the database is down, and a second try would wait as long again
            except psycopg.OperationalError as exc:
                if not connection_lost(exc):
                    raise  # a statement timeout, a lock, an overload: running it again would add to the trouble
                await self._drop_broken_connections()
            return await self._on_connection(body)

    async def _on_connection(self, body: Callable[[Conn], Awaitable[T]]) -> T:
        async with self.pool.connection() as conn:
            return await body(conn)

    async def _drop_broken_connections(self) -> None:
        """Check the pool's idle connections, replacing the broken ones; bounded, so a silent network never holds
        the caller (a shielded write, a shutdown) longer than a connection wait."""
        with contextlib.suppress(psycopg.Error), anyio.move_on_after(CONNECT_TIMEOUT_SECONDS):
            await self.pool.check()

    async def write(self, body: Callable[[Conn], Awaitable[T]], *, notify: str | None = None) -> T:
        """Run ``body`` in a transaction holding the writers' lock; ``notify`` (a request id, or '') signals the
        change to every listening process when it commits. If ``body`` raises, nothing is kept. (A request's
        creation, the hot path, is sent as one message instead: ``scripted``.)"""
        with anyio.CancelScope(shield=True):  # a cancelled caller must not leave the outcome of a commit unknown
            try:
                async with self._errors(), self.pool.connection() as conn:
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                        result = await body(conn)
                        if notify is not None:
                            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, notify))
            except DatabaseUnavailable:
                # not tried again (the commit's outcome may be unknown); the next call gets a working connection
                await self._drop_broken_connections()
                raise
        return result

    async def scripted(self, body: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``body`` on a pooled connection (autocommit) that takes the writers' lock itself, in a transaction it
        ends itself (a write bound on the client and sent as one message: ``approvals.pg_create``), shielded from
        cancellation as ``write`` is; ``body`` rolls back what it leaves open when it fails."""
        with anyio.CancelScope(shield=True):
            try:
                async with self._errors(), self.pool.connection() as conn:
                    result = await body(conn)
            except DatabaseUnavailable:
                await self._drop_broken_connections()
                raise
        return result

    @asynccontextmanager
    async def transaction(self, *, notify: str | None = "") -> AsyncIterator[Conn]:
        """``write`` as a context manager: the connection, in a transaction holding the writers' lock; as with
        ``write``, a failed database has its broken connections dropped, so the next call gets a working one."""
        with anyio.CancelScope(shield=True):
            try:
                async with self._errors(), self.pool.connection() as conn, conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                    yield conn
                    if notify is not None:
                        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, notify))
            except DatabaseUnavailable:
                await self._drop_broken_connections()
                raise

    async def unlocked(self, body: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``body`` in a transaction without the writers' lock (claiming outbox rows: ``SKIP LOCKED``)."""
        with anyio.CancelScope(shield=True):
            async with self._errors(), self.pool.connection() as conn, conn.transaction():
                result = await body(conn)
        return result

    async def listen(self, on_change: Callable[[], None]) -> None:
        """Call ``on_change`` for every change any process commits, from now until ``close``."""
        self._listen_conn = await self._listen_connection()
        self._listener = asyncio.get_running_loop().create_task(self._listen(on_change))

    async def _listen_connection(self) -> Conn:
        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        try:
            await conn.execute(f"LISTEN {CHANNEL}")
        except BaseException:
            with anyio.CancelScope(shield=True):  # a cancelled close would leave the connection open
                await conn.close()
            raise
        return conn

    async def _listen(self, on_change: Callable[[], None]) -> None:
        while True:
            try:
                if self._listen_conn is None:
                    self._listen_conn = await self._listen_connection()
                    on_change()  # changes made while no one listened: waiters look again
                async for _ in self._listen_conn.notifies():
                    on_change()
            except psycopg.OperationalError as exc:
                logger.warning("the PostgreSQL listener lost its connection (%s); waiters poll until it is back", exc)
                await self._close_listen_connection()
            await anyio.sleep(LISTEN_RETRY_SECONDS)

    async def _close_listen_connection(self) -> None:
        conn, self._listen_conn = self._listen_conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def stop_listening(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await self._close_listen_connection()
