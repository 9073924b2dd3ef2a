"""The durable-write floor: the rows a request stores, written with nothing else.

The rows are the ones ``SqliteStore.create_request`` writes (request, agent/action pair, numeric payload
values, the hash-chained events, the outbox row when a person must be told), built *before* timing; the
connection has the store's pragmas (``storage.sqlite_db``: WAL, synchronous=FULL) and the schema comes from
the same migrations. Per request: BEGIN IMMEDIATE, the INSERTs, COMMIT.

``RawWriter`` (the floor of figures 1 and 3) does that as the store does since its write path became one
round trip per transaction: one call of ``write_rows`` on a worker thread, on a plain ``sqlite3`` connection.
``AiosqliteRawWriter`` does it with one aiosqlite round trip per statement (7), the way the store wrote
before; ``probe_writes`` keeps it for comparison.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from signoff.storage import ApprovalRequest, Status
from signoff.storage.approvals import queries as q
from signoff.storage.audit import GENESIS_HASH, link
from signoff.storage.codec import agent_action, approved_values, event_row, request_row
from signoff.storage.migrations import migrate
from signoff.storage.sqlite_db import connect, connect_sync
from signoff.storage.timefmt import to_text
from signoff.tools.approvals.lifecycle import creation_events

Params = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class RowSet:
    """Everything one new request adds to the database."""

    request: Params
    agent_action: Params
    action_values: list[Params]
    events: list[Params]
    outbox: Params | None


def rowsets(
    requests: Iterable[ApprovalRequest], *, first_seq: int = 0, prev_hash: str = GENESIS_HASH
) -> Iterator[RowSet]:
    """Row sets for ``requests``, their events chained in order from ``(first_seq, prev_hash)``."""
    seq, chain = first_seq, prev_hash
    for request in requests:
        events = []
        for new in creation_events(request):
            event = link(new, seq, chain)
            events.append(event_row(event))
            seq, chain = event.seq, event.hash
        created = to_text(request.created_at)
        yield RowSet(
            request=request_row(request),
            agent_action=agent_action(request),
            action_values=approved_values(request) if request.status is Status.APPROVED else [],
            events=events,
            outbox=(request.id, created, created) if request.status is Status.PENDING else None,
        )


def write_rows(conn: sqlite3.Connection, batch: Sequence[RowSet]) -> None:
    """One transaction holding the rows of every request in ``batch``."""
    conn.execute("BEGIN IMMEDIATE")
    for rows in batch:
        conn.execute(q.INSERT_REQUEST, rows.request)
        conn.execute(q.INSERT_AGENT_ACTION, rows.agent_action)
        conn.executemany(q.INSERT_ACTION_VALUE, rows.action_values)
        conn.executemany(q.INSERT_EVENT, rows.events)
        if rows.outbox is not None:
            conn.execute(q.INSERT_OUTBOX, rows.outbox)
    conn.execute("COMMIT")


async def create_schema(path: Path) -> None:
    """The store's schema and pragmas at ``path``, through the migrations."""
    db = await connect(path)
    try:
        await migrate(db)
    finally:
        await db.close()


class RawWriter:
    """One request's rows per transaction, the transaction in one call on a worker thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._limiter = anyio.CapacityLimiter(1)

    @classmethod
    async def open(cls, path: Path) -> RawWriter:
        await create_schema(path)
        return cls(await anyio.to_thread.run_sync(connect_sync, path))

    async def write(self, rows: RowSet) -> None:
        await anyio.to_thread.run_sync(write_rows, self.conn, [rows], limiter=self._limiter)

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self.conn.close, limiter=self._limiter)


class AiosqliteRawWriter:
    """One request's rows per transaction, with one aiosqlite round trip per statement."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    @classmethod
    async def open(cls, path: Path) -> AiosqliteRawWriter:
        db = await connect(path)
        await migrate(db)
        return cls(db)

    async def write(self, rows: RowSet) -> None:
        db = self.db
        await db.execute("BEGIN IMMEDIATE")
        await db.execute(q.INSERT_REQUEST, rows.request)
        await db.execute(q.INSERT_AGENT_ACTION, rows.agent_action)
        if rows.action_values:
            await db.executemany(q.INSERT_ACTION_VALUE, rows.action_values)
        await db.executemany(q.INSERT_EVENT, rows.events)
        if rows.outbox is not None:
            await db.execute(q.INSERT_OUTBOX, rows.outbox)
        await db.commit()

    async def close(self) -> None:
        await self.db.close()
