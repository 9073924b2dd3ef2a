"""The SQLite Store: durable (WAL, synchronous=FULL), shared safely by several processes.

One writer connection per process takes ``BEGIN IMMEDIATE`` for every write, so a decision is a
compare-and-set under SQLite's single write lock; a second connection serves reads and watches
``PRAGMA data_version`` to notice commits made by other processes.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from storage import queries as q
from storage.audit import GENESIS_HASH, link
from storage.canonical import numeric_leaves
from storage.codec import event_from_row, event_row, request_from_row, request_row
from storage.errors import ConfigError, Conflict, unknown_request
from storage.migrations import migrate
from storage.records import (
    ActionHistory,
    ApprovalRequest,
    Event,
    MessageRef,
    NewEvent,
    OutboxItem,
    Page,
    RequestQuery,
    Status,
)
from storage.store import Change
from storage.timefmt import from_text, to_text

logger = logging.getLogger(__name__)

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


class SqliteStore:
    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, poll_interval: float) -> None:
        self._writer = writer
        self._reader = reader
        self._poll_interval = poll_interval
        self._write_lock = anyio.Lock()
        self._generation = 0
        self._changed: anyio.Event | None = None

    @classmethod
    async def open(cls, path: str | Path, *, poll_interval: float = 0.02) -> SqliteStore:
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
        return cls(writer, reader, poll_interval)

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        # Shielded: a cancelled caller must not leave the outcome of a commit unknown.
        with anyio.CancelScope(shield=True):
            async with self._write_lock:
                await self._writer.execute("BEGIN IMMEDIATE")
                try:
                    yield self._writer
                except BaseException:
                    await self._writer.rollback()
                    raise
                await self._writer.commit()
        self._signal_change()

    # -- requests --------------------------------------------------------------------------------

    async def create_request(
        self, request: ApprovalRequest, events: Sequence[NewEvent], *, notify: bool
    ) -> tuple[ApprovalRequest, bool]:
        async with self._transaction() as db:
            if request.idempotency_key is not None:
                async with db.execute(
                    q.SELECT_BY_IDEMPOTENCY_KEY, (request.agent_id or "", request.idempotency_key)
                ) as cur:
                    row = await cur.fetchone()
                if row is not None:
                    return request_from_row(row), False
            await db.execute(q.INSERT_REQUEST, request_row(request))
            await db.execute(q.INSERT_AGENT_ACTION, (request.agent_id or "", request.action))
            if request.status is not Status.REJECTED:
                values = numeric_leaves(request.payload)
                await db.executemany(q.INSERT_ACTION_VALUE, [(request.action, k, v) for k, v in values.items()])
            await self._append_events(db, events)
            if notify:
                await db.execute(
                    q.INSERT_OUTBOX, (request.id, to_text(request.created_at), to_text(request.created_at))
                )
        return request, True

    async def get(self, request_id: str) -> ApprovalRequest | None:
        async with self._reader.execute(q.SELECT_REQUEST, (request_id,)) as cur:
            row = await cur.fetchone()
        return request_from_row(row) if row else None

    async def update(self, request_id: str, change: Change) -> ApprovalRequest:
        async with self._transaction() as db:
            current = await _fetch_request(db, request_id)
            transition = change(current)
            if transition.vote is not None:
                v = transition.vote
                ids = json.dumps(list(v.reviewer_ids))
                await db.execute(
                    q.INSERT_VOTE, (request_id, v.reviewer, v.verdict.value, v.comment, to_text(v.at), ids)
                )
            if transition.status is not None:
                cur = await db.execute(
                    q.UPDATE_REQUEST_STATE,
                    (
                        transition.status.value,
                        transition.decided_by.value if transition.decided_by else None,
                        to_text(transition.decided_at) if transition.decided_at else None,
                        transition.note,
                        request_id,
                    ),
                )
                if cur.rowcount != 1:  # the lifecycle saw 'pending' under this same lock; defence in depth
                    raise Conflict(f"request {request_id} is no longer pending")
            if transition.escalated_at is not None:
                cur = await db.execute(q.ESCALATE_REQUEST, (to_text(transition.escalated_at), request_id))
                if cur.rowcount != 1:
                    raise Conflict(f"request {request_id} is not a pending request waiting to be escalated")
            if transition.consumed_at is not None:
                cur = await db.execute(q.CONSUME_REQUEST, (to_text(transition.consumed_at), request_id))
                if cur.rowcount != 1:
                    raise Conflict(f"request {request_id} is not an unused approval")
            await self._append_events(db, transition.events)
            if transition.notify:
                now = to_text(transition.decided_at or transition.events[0].at)
                await db.execute(q.INSERT_OUTBOX, (request_id, now, now))
            return await _fetch_request(db, request_id)

    async def list_requests(self, query: RequestQuery) -> Page:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("status", query.status),
            ("action", query.action),
            ("agent_id", query.agent_id),
        ):
            if value is not None:
                clauses.append(f"r.{column} = ?")
                params.append(str(value))
        if query.since is not None:
            clauses.append("r.created_at >= ?")
            params.append(to_text(query.since))
        if query.until is not None:
            clauses.append("r.created_at < ?")
            params.append(to_text(query.until))
        if query.before is not None:
            clauses.append("(r.created_at, r.id) < (?, ?)")
            params.extend((to_text(query.before[0]), query.before[1]))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"{q.SELECT_REQUESTS}{where} ORDER BY r.created_at DESC, r.id DESC LIMIT ?"
        async with self._reader.execute(sql, (*params, query.limit + 1)) as cur:
            rows = list(await cur.fetchall())
        items = tuple(request_from_row(row) for row in rows[: query.limit])
        more = len(rows) > query.limit
        return Page(items=items, next_cursor=(items[-1].created_at, items[-1].id) if more else None)

    async def pending_due(self, now: datetime, limit: int = 100) -> list[str]:
        async with self._reader.execute(q.PENDING_DUE, (to_text(now), limit)) as cur:
            return [row[0] for row in await cur.fetchall()]

    async def escalations_due(self, now: datetime, limit: int = 100) -> list[str]:
        async with self._reader.execute(q.ESCALATIONS_DUE, (to_text(now), limit)) as cur:
            return [row[0] for row in await cur.fetchall()]

    async def action_history(
        self, action: str, agent_id: str | None, fields: Sequence[str], limit: int = 200
    ) -> ActionHistory:
        async with self._reader.execute(q.SEEN_AGENT_ACTION, (agent_id or "", action)) as cur:
            seen = await cur.fetchone() is not None
        values: dict[str, tuple[float, ...]] = {}
        for name in fields:
            async with self._reader.execute(q.RECENT_ACTION_VALUES, (action, name, limit)) as cur:
                values[name] = tuple(row[0] for row in await cur.fetchall())
        return ActionHistory(seen_from_agent=seen, values=values)

    # -- audit log -------------------------------------------------------------------------------

    async def _append_events(self, db: aiosqlite.Connection, events: Sequence[NewEvent]) -> None:
        if not events:
            return
        async with db.execute(q.LAST_EVENT) as cur:
            last = await cur.fetchone()
        prev_seq, prev_hash = (last[0], last[1]) if last else (0, GENESIS_HASH)
        rows = []
        for new in events:
            event = link(new, prev_seq, prev_hash)
            rows.append(event_row(event))
            prev_seq, prev_hash = event.seq, event.hash
        await db.executemany(q.INSERT_EVENT, rows)

    async def events(self, after_seq: int = 0) -> AsyncIterator[Event]:
        while True:
            async with self._reader.execute(q.SELECT_EVENTS_AFTER, (after_seq, 1000)) as cur:
                rows = list(await cur.fetchall())
            if not rows:
                return
            for row in rows:
                yield event_from_row(row)
            after_seq = rows[-1][0]

    async def request_events(self, request_id: str) -> list[Event]:
        async with self._reader.execute(q.SELECT_REQUEST_EVENTS, (request_id,)) as cur:
            return [event_from_row(row) for row in await cur.fetchall()]

    # -- change notification ---------------------------------------------------------------------

    def _signal_change(self) -> None:
        self._generation += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def change_token(self) -> tuple[int, int]:
        return self._generation, await self._data_version()

    async def wait_for_change(self, token: object, timeout: float, poll_interval: float | None = None) -> None:
        assert isinstance(token, tuple)
        generation, version = token
        poll_interval = poll_interval or self._poll_interval
        with anyio.move_on_after(timeout):
            while self._generation == generation:
                if self._changed is None:
                    self._changed = anyio.Event()
                with anyio.move_on_after(poll_interval):
                    await self._changed.wait()
                    return
                if await self._data_version() != version:
                    return

    async def _data_version(self) -> int:
        async with self._reader.execute(q.DATA_VERSION) as cur:
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    # -- outbox ----------------------------------------------------------------------------------

    async def claim_outbox(self, now: datetime, lease_seconds: float = 120.0, limit: int = 10) -> list[OutboxItem]:
        async with self._reader.execute(q.DUE_OUTBOX, (to_text(now), limit)) as cur:
            if not await cur.fetchall():
                return []  # the common case: nothing due, and no write lock taken
        lease_until = to_text(now + timedelta(seconds=lease_seconds))
        async with self._transaction() as db:
            async with db.execute(q.DUE_OUTBOX, (to_text(now), limit)) as cur:
                rows = list(await cur.fetchall())
            await db.executemany(q.LEASE_OUTBOX, [(lease_until, r[0]) for r in rows])
        return [
            OutboxItem(id=r[0], request_id=r[1], attempts=r[2], created_at=from_text(r[3]), upto=r[4]) for r in rows
        ]

    async def complete_outbox(self, item: OutboxItem, event: NewEvent) -> None:
        async with self._transaction() as db:
            async with db.execute(q.OUTBOX_REQUEST, (item.id,)) as cur:
                if await cur.fetchone() is None:
                    return  # another process delivered it first
            await db.execute(q.COMPLETE_OUTBOX, (to_text(event.at), item.request_id, max(item.id, item.upto)))
            await self._append_events(db, [event])

    async def retry_outbox(self, item_id: int, next_attempt_at: datetime, error: str) -> None:
        async with self._transaction() as db:
            await db.execute(q.RETRY_OUTBOX, (to_text(next_attempt_at), error[:500], item_id))

    # -- message references ----------------------------------------------------------------------

    async def message_ref(self, request_id: str, notifier: str) -> MessageRef | None:
        async with self._reader.execute(q.SELECT_MESSAGE_REF, (request_id, notifier)) as cur:
            row = await cur.fetchone()
        return (
            MessageRef(request_id=row[0], notifier=row[1], channel=row[2], ts=row[3], votes_posted=row[4])
            if row
            else None
        )

    async def save_message_ref(self, ref: MessageRef) -> None:
        async with self._transaction() as db:
            await db.execute(
                q.UPSERT_MESSAGE_REF, (ref.request_id, ref.notifier, ref.channel, ref.ts, ref.votes_posted)
            )


async def _fetch_request(db: aiosqlite.Connection, request_id: str) -> ApprovalRequest:
    async with db.execute(q.SELECT_REQUEST, (request_id,)) as cur:
        row = await cur.fetchone()
    if row is None:
        raise unknown_request(request_id)
    return request_from_row(row)
