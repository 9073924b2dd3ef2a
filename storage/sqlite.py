"""The SQLite Store: durable (WAL, synchronous=FULL), shared safely by several processes.

One writer connection per process takes ``BEGIN IMMEDIATE`` for every write, so a decision is a
compare-and-set under SQLite's single write lock; a second connection serves reads and watches
``PRAGMA data_version`` to notice commits made by other processes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite

from storage import queries as q
from storage.audit import GENESIS_HASH, link
from storage.canonical import numeric_leaves
from storage.change_signal import ChangeSignal
from storage.codec import event_from_row, event_row, request_from_row, request_row
from storage.errors import Conflict, unknown_request
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
from storage.sqlite_db import SqliteDatabase
from storage.store import Change
from storage.timefmt import from_text, to_text

logger = logging.getLogger(__name__)


class SqliteStore:
    def __init__(self, db: SqliteDatabase, poll_interval: float) -> None:
        self._db = db
        self._writer = db.writer
        self._reader = db.reader
        self._poll_interval = poll_interval
        self._signal = ChangeSignal()

    @classmethod
    async def open(cls, path: str | Path, *, poll_interval: float = 0.02) -> SqliteStore:
        """Open (creating and migrating as needed) the database at ``path``."""
        return cls(await SqliteDatabase.open(path), poll_interval)

    async def close(self) -> None:
        await self._db.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._db.transaction() as db:
            yield db
        self._signal.notify()

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

    async def change_token(self) -> tuple[int, int]:
        return self._signal.generation, await self._db.data_version()

    async def wait_for_change(self, token: object, timeout: float, poll_interval: float | None = None) -> None:
        assert isinstance(token, tuple)
        generation, version = token

        async def changed_elsewhere() -> bool:
            return await self._db.data_version() != int(version)

        await self._signal.wait(
            generation, timeout, changed_elsewhere=changed_elsewhere, poll_interval=poll_interval or self._poll_interval
        )

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
