"""The SQLite Store: durable (WAL, synchronous=FULL), shared safely by several processes.

Every write is a synchronous transaction body (the functions at the end of this module, and the small ones
inside the methods) that ``SqliteDatabase.write`` runs on the writer connection's thread inside
``BEGIN IMMEDIATE``, so a decision is a compare-and-set under SQLite's single write lock, and the whole
transaction costs one round trip to that thread instead of one per statement; bodies waiting at the same
moment commit together. A second connection serves reads and watches ``PRAGMA data_version`` to notice
commits made by other processes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from signoff.storage import metrics_queries as mq
from signoff.storage.approvals import queries as q
from signoff.storage.approvals.deliveries import (
    claim_marks,
    is_settled,
    lease_token,
    mark_from_row,
    mark_row,
    message_ref_swap,
)
from signoff.storage.approvals.store import Change
from signoff.storage.audit import GENESIS_HASH, EncodedEvent, EventRow, is_request_id, standalone
from signoff.storage.canonical import canonical_json
from signoff.storage.change_signal import ChangeSignal, CommitWatch
from signoff.storage.codec import (
    agent_action,
    approved_values,
    event_from_row,
    queue_entry_from_row,
    recorded_from_row,
    request_from_row,
    request_row,
)
from signoff.storage.errors import AskedBefore, Conflict, unknown_request
from signoff.storage.file_watch import FileWatch
from signoff.storage.folding import fold_action, fold_path
from signoff.storage.group_commit import Body
from signoff.storage.migrations import available
from signoff.storage.records import (
    ActionHistory,
    ApprovalRequest,
    DeliveryMark,
    Event,
    HumanOutcomes,
    MessageRef,
    NewEvent,
    Order,
    OutboxEntry,
    OutboxItem,
    Page,
    QueueRead,
    RecordedRequest,
    RequestQuery,
    Status,
    ascii_lower,
    newest_key,
    priority_key,
)
from signoff.storage.sqlite_db import SqliteDatabase, open_read_only, storage_errors
from signoff.storage.timefmt import from_text, to_text

logger = logging.getLogger(__name__)

#: a history text search with at most this many candidates in the trigram index reads just those
RARE_TEXT_CANDIDATES = 2000

T = TypeVar("T")


class SqliteStore:
    def __init__(self, db: SqliteDatabase, poll_interval: float) -> None:
        self._db = db
        self._reader = db.reader
        self._poll_interval = poll_interval
        self._signal = ChangeSignal()
        self._log_watch = FileWatch.open(Path(f"{db.path}-wal")) if db.path not in (None, ":memory:") else None
        hurry = self._log_watch.changed if self._log_watch is not None else None
        #: other processes' commits: one poll for all waiters, hurried by writes to the write-ahead log
        self._commits = CommitWatch(self._signal, db.data_version, hurry)

    @classmethod
    async def open(cls, path: str | Path, *, poll_interval: float = 0.02) -> SqliteStore:
        """Open (creating and migrating as needed) the database at ``path``."""
        return cls(await SqliteDatabase.open(path), poll_interval)

    @classmethod
    async def open_read_only(cls, path: Path, *, poll_interval: float = 0.02) -> SqliteStore:
        """Open an existing database to read it only (``sqlite_db.open_read_only``): every write fails."""
        return cls(await open_read_only(path), poll_interval)

    async def close(self) -> None:
        if self._log_watch is not None:
            self._log_watch.close()
        await self._db.close()

    async def schema(self) -> tuple[int, int]:
        """(the database's schema version, the newest this signoff knows): ``/readyz`` wants them equal."""
        rows = await self._read("SELECT coalesce(max(version), 0) FROM schema_migrations")
        return int(rows[0][0]), max(m.version for m in available())

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of one query on the reader, in one round trip to its thread."""
        with storage_errors(self._db.path):
            return list(await self._reader.execute_fetchall(sql, params))

    async def _write(self, body: Body[T]) -> T:
        """Run ``body`` as (part of) one write transaction on the writer's thread; wake this process's waiters."""
        result = await self._db.write(body)
        self._signal.notify()
        return result

    # -- requests --------------------------------------------------------------------------------

    async def create_request(
        self,
        request: ApprovalRequest,
        events: Sequence[NewEvent],
        *,
        notify: bool,
        refuse_approval_if_asked_before: bool = False,
    ) -> tuple[ApprovalRequest, bool]:
        # Rows and events are encoded here, before the write lock; inside it only the chain's hashes are left.
        row, encoded = request_row(request), [EncodedEvent.of(e) for e in events]
        values = approved_values(request) if request.status is Status.APPROVED else []
        created = to_text(request.created_at)

        def body(db: sqlite3.Connection) -> tuple[ApprovalRequest, bool]:
            if request.idempotency_key is not None:
                key = (request.agent_id or "", request.idempotency_key)
                if (found := db.execute(q.SELECT_BY_IDEMPOTENCY_KEY, key).fetchone()) is not None:
                    return request_from_row(found), False
            if refuse_approval_if_asked_before and request.status is Status.APPROVED:
                asked = (request.agent_id or "", request.payload_sha256)
                if (found := db.execute(q.ASKED_BEFORE, asked).fetchone()) is not None:
                    if (last := request_from_row(found)).status is not Status.APPROVED:
                        raise AskedBefore(last)
            db.execute(q.INSERT_REQUEST, row)
            if request.status is Status.APPROVED:
                _record_approved(db, request, values)
            _append_encoded(db, encoded)
            if notify:
                db.execute(q.INSERT_OUTBOX, (request.id, created, created))
            return request, True

        return await self._write(body)

    async def get(self, request_id: str) -> ApprovalRequest | None:
        rows = await self._read(q.SELECT_REQUEST, (request_id,))
        return request_from_row(rows[0]) if rows else None

    async def update(self, request_id: str, change: Change) -> ApprovalRequest:
        return await self._write(partial(_update, request_id=request_id, change=change))

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
        if query.folded_action is not None:
            clauses.append(q.FOLDED_ACTION)
            params.append(ascii_lower(query.folded_action))
        if query.text is not None:
            clauses.append(q.TEXT_MATCHES)
            params.extend([query.text] * 3)
        if query.reviewer is not None:
            clauses.append(q.VOTED_BY)
            params.append(query.reviewer)
        if query.since is not None:
            clauses.append("r.created_at >= ?")
            params.append(to_text(query.since))
        if query.until is not None:
            clauses.append("r.created_at < ?")
            params.append(to_text(query.until))
        match query.before:
            case (int() as rank, datetime() as expires_at, str() as request_id):
                clauses.append(f"(-{q.PRIORITY_RANK}, r.expires_at, r.id) > (?, ?, ?)")
                params.extend((-rank, to_text(expires_at), request_id))
            case (datetime() as created_at, str() as request_id):
                clauses.append("(r.created_at, r.id) < (?, ?)")
                params.extend((to_text(created_at), request_id))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        priority = query.order is Order.PRIORITY
        order = q.ORDER_BY_PRIORITY if priority else "r.created_at DESC, r.id DESC"
        sql = f"{q.SELECT_REQUESTS}{where} ORDER BY {order} LIMIT ?"
        if query.text is not None and (candidates := await self._text_candidates(query.text)) is not None:
            # the page's ids among the few candidates, sorted narrow; then only their rows are read in full
            ids = f"SELECT r.id FROM {q.CANDIDATE_REQUESTS}{where} ORDER BY {order} LIMIT ?"
            sql, params = (
                f"{q.SELECT_REQUESTS} WHERE r.id IN ({ids}) ORDER BY {order}",
                [json.dumps(candidates), *params],
            )
        rows = await self._read(sql, (*params, query.limit + 1))
        items = tuple(request_from_row(row) for row in rows[: query.limit])
        more = len(rows) > query.limit
        cursor = (priority_key if priority else newest_key)(items[-1]) if more else None
        return Page(items=items, next_cursor=cursor)

    async def pending_queue(self, after_seq: int | None = None, limit: int = 500) -> QueueRead:
        # The log is read first: a change committed between the two reads is read again next time (its event comes
        # after ``head``), never lost. Writers append in seq order under the write lock, so no event below the
        # head can commit after it.
        if after_seq is not None:
            rows = await self._read(q.CHANGED_REQUESTS, (after_seq, limit + 1))
            if len(rows) <= limit and (rows or await self._head() == after_seq):
                changed = frozenset(row[1] for row in rows if is_request_id(row[1]))
                found = await self._read(q.SELECT_QUEUE_OF, (json.dumps(sorted(changed)),)) if changed else []
                head = rows[-1][0] if rows else after_seq
                return QueueRead(head=head, entries=tuple(map(queue_entry_from_row, found)), changed=changed)
        head = await self._head()
        rows = await self._read(q.SELECT_QUEUE)
        return QueueRead(head=head, entries=tuple(map(queue_entry_from_row, rows)))

    async def _head(self) -> int:
        return int((await self._read(q.HEAD_SEQ))[0][0])

    async def _text_candidates(self, text: str) -> list[str] | None:
        """The ids of the requests the trigram index says may hold ``text``, when it can say (3 characters or more)
        and they are few; else None. With many, walking the requests newest first fills a page soon, and sorting
        every candidate would not."""
        if len(text) < 3 or "\x00" in text:
            return None
        rows = await self._read(q.TEXT_CANDIDATES, (q.fts_phrase(text), RARE_TEXT_CANDIDATES + 1))
        return [row[0] for row in rows] if len(rows) <= RARE_TEXT_CANDIDATES else None

    async def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        # a range on the primary key: no LIKE, whose `_` and `%` an id prefix would have to escape
        return [row[0] for row in await self._read(q.IDS_WITH_PREFIX, (prefix, prefix + "\U0010ffff", limit))]

    async def pending_due(self, now: datetime, limit: int = 100) -> list[str]:
        return [row[0] for row in await self._read(q.PENDING_DUE, (to_text(now), limit))]

    async def escalations_due(self, now: datetime, limit: int = 100) -> list[str]:
        return [row[0] for row in await self._read(q.ESCALATIONS_DUE, (to_text(now), limit))]

    async def recorded_requests(
        self, since: datetime | None = None, batch: int = 1000
    ) -> AsyncIterator[list[RecordedRequest]]:
        after = (to_text(since) if since is not None else "", "")
        while True:
            rows = await self._read(q.RECORDED_REQUESTS, (*after, batch))
            if not rows:
                return
            yield [recorded_from_row(row) for row in rows]
            if len(rows) < batch:
                return
            after = (rows[-1][9], rows[-1][0])

    async def action_history(
        self, action: str, agent_id: str | None, fields: Sequence[str], limit: int = 200
    ) -> ActionHistory:
        action = fold_action(action)  # kept folded, as rules compare actions and keys (``folding``)
        seen = bool(await self._read(q.SEEN_AGENT_ACTION, (agent_id or "", action)))
        values: dict[str, tuple[float, ...]] = {}
        for name in fields:
            rows = await self._read(q.RECENT_ACTION_VALUES, (action, fold_path(name), limit))
            values[name] = tuple(row[0] for row in rows)
        return ActionHistory(seen_from_agent=seen, values=values)

    # -- audit log -------------------------------------------------------------------------------

    async def events(self, after_seq: int = 0) -> AsyncIterator[Event]:
        while True:
            rows = await self._read(q.SELECT_EVENTS_AFTER, (after_seq, 1000))
            if not rows:
                return
            for row in rows:
                yield event_from_row(row)
            after_seq = rows[-1][0]

    async def request_events(self, request_id: str) -> list[Event]:
        return [event_from_row(row) for row in await self._read(q.SELECT_REQUEST_EVENTS, (request_id,))]

    async def append_event(self, event: NewEvent) -> None:
        encoded = [EncodedEvent.of(standalone(event))]
        # no change signal: nothing a page or an agent waits on has changed
        await self._db.write(lambda db: _append_encoded(db, encoded))

    # -- change notification ---------------------------------------------------------------------

    async def change_token(self) -> tuple[int, int, int]:
        """(changes made in this process, other processes' changes seen by the shared poll, PRAGMA data_version)"""
        return self._signal.generation, self._signal.remote, await self._db.data_version()

    async def wait_for_change(self, token: object, timeout: float, poll_interval: float | None = None) -> None:
        assert isinstance(token, tuple)
        generation, remote, version = token
        await self._commits.wait(generation, remote, version, timeout, poll_interval or self._poll_interval)

    # -- outbox ----------------------------------------------------------------------------------

    async def claim_outbox(self, now: datetime, lease_seconds: float = 120.0, limit: int = 10) -> list[OutboxItem]:
        if not await self._read(q.DUE_OUTBOX, (to_text(now), limit)):
            return []  # the common case: nothing due, and no write lock taken
        lease_until, lease = to_text(now + timedelta(seconds=lease_seconds)), lease_token()

        def body(db: sqlite3.Connection) -> list[OutboxItem]:
            rows = db.execute(q.DUE_OUTBOX, (to_text(now), limit)).fetchall()
            db.executemany(q.LEASE_OUTBOX, [(lease_until, lease, r[0]) for r in rows])
            return [
                OutboxItem(
                    id=r[0],
                    request_id=r[1],
                    attempts=r[2],
                    created_at=from_text(r[3]),
                    upto=r[4],
                    marks=claim_marks(r[0], _covered(db, r[1], r[0], r[4])),
                    lease=lease,
                )
                for r in rows
            ]

        return await self._write(body)

    async def renew_outbox(self, item: OutboxItem, now: datetime, lease_seconds: float = 120.0) -> bool:
        params = (to_text(now + timedelta(seconds=lease_seconds)), item.id, item.lease)

        def body(db: sqlite3.Connection) -> bool:
            return db.execute(q.RENEW_OUTBOX, params).rowcount == 1

        return await self._write(body)

    async def complete_outbox(self, item: OutboxItem, event: NewEvent) -> None:
        def body(db: sqlite3.Connection) -> None:
            if db.execute(q.OUTBOX_REQUEST, (item.id,)).fetchone() is None:
                return  # another process delivered it first
            db.execute(q.COMPLETE_OUTBOX, (to_text(event.at), item.request_id, max(item.id, item.upto)))
            _append_events(db, [event])

        await self._write(body)

    async def retry_outbox(self, item_id: int, next_attempt_at: datetime, error: str) -> None:
        def body(db: sqlite3.Connection) -> None:
            db.execute(q.RETRY_OUTBOX, (to_text(next_attempt_at), error[:500], item_id))

        await self._write(body)

    async def record_deliveries(
        self,
        item: OutboxItem,
        marks: Sequence[DeliveryMark],
        *,
        notifiers: Sequence[str],
        now: datetime,
        next_attempt_at: datetime,
        events: Sequence[NewEvent],
    ) -> bool:
        encoded = [EncodedEvent.of(e) for e in events]

        def body(db: sqlite3.Connection) -> bool:
            if db.execute(q.OUTBOX_LEASED, (item.id, item.lease)).fetchone() is None:
                return False  # another process settled it first, or took it over when the lease ran out
            covered = [r[0] for r in db.execute(q.UNSETTLED_UPTO, (item.request_id, item.id, item.upto)).fetchall()]
            for mark in marks:
                rows = covered if mark.state.is_final else [item.id]
                db.executemany(q.UPSERT_MARK, [mark_row(row, mark) for row in rows])
            for row in covered:
                marks_now = [mark_from_row(r) for r in db.execute(q.SELECT_MARKS, (row,)).fetchall()]
                if is_settled(marks_now, notifiers):
                    db.execute(q.SETTLE_OUTBOX, (to_text(now), row))
            db.execute(q.LEASE_OUTBOX_IF_UNSETTLED, (to_text(next_attempt_at), item.id))
            _append_encoded(db, encoded)
            return True

        return await self._write(body)

    async def outbox_entries(self, limit: int = 1000) -> list[OutboxEntry]:
        rows = await self._read(q.OUTBOX_ENTRIES, (limit,))
        entries = []
        for r in rows:
            marks = tuple(mark_from_row(m) for m in await self._read(q.SELECT_MARKS, (r[0],)))
            entries.append(
                OutboxEntry(
                    id=r[0],
                    request_id=r[1],
                    created_at=from_text(r[2]),
                    next_attempt_at=from_text(r[3]),
                    settled=bool(r[4]),
                    marks=marks,
                )
            )
        return entries

    async def requeue_dead(self, outbox_id: int | None, now: datetime) -> list[int]:
        def body(db: sqlite3.Connection) -> list[int]:
            ids = [r[0] for r in db.execute(q.DEAD_OUTBOX_IDS).fetchall() if outbox_id in (None, r[0])]
            for row in ids:
                db.execute(q.DROP_DEAD_MARKS, (row,))
                db.execute(q.REQUEUE_OUTBOX, (to_text(now), row))
            return ids

        return await self._write(body)

    # -- metrics ---------------------------------------------------------------------------------

    async def human_outcomes(self, model: str, since: datetime, until: datetime) -> dict[str, HumanOutcomes]:
        rows = await self._read(q.HUMAN_OUTCOMES, (model, to_text(since), to_text(until)))
        names = ("version", "requests", "to_people", "decided_by_people", "rejected", "changed")
        return {row[0]: HumanOutcomes(**dict(zip(names, row, strict=True))) for row in rows}

    async def metrics(self) -> mq.ApprovalMetrics:
        counts = await self._read(mq.APPROVAL_COUNTS)
        pending = await self._read(mq.PENDING_BY_PRIORITY)
        oldest = (await self._read(mq.OLDEST_PENDING))[0][0]
        stuck = await self._read(mq.DELIVERIES_STUCK)
        return mq.approval_metrics(counts, pending, oldest, stuck)

    # -- message references ----------------------------------------------------------------------

    async def message_ref(self, request_id: str, notifier: str) -> MessageRef | None:
        rows = await self._read(q.SELECT_MESSAGE_REF, (request_id, notifier))
        if not rows:
            return None
        row = rows[0]
        return MessageRef(
            request_id=row[0],
            notifier=row[1],
            channel=row[2],
            ts=row[3],
            votes_posted=row[4],
            reserved_at=from_text(row[5]) if row[5] else None,
        )

    async def save_message_ref(self, ref: MessageRef) -> None:
        reserved = to_text(ref.reserved_at) if ref.reserved_at else None
        params = (ref.request_id, ref.notifier, ref.channel, ref.ts, ref.votes_posted, reserved)

        def body(db: sqlite3.Connection) -> None:
            db.execute(q.UPSERT_MESSAGE_REF, params)

        await self._write(body)

    async def swap_message_ref(self, expected: MessageRef | None, ref: MessageRef) -> bool:
        query, params = message_ref_swap(q.INSERT_MESSAGE_REF, q.SWAP_MESSAGE_REF, expected, ref)

        def body(db: sqlite3.Connection) -> bool:
            return db.execute(query, params).rowcount == 1

        return await self._write(body)

    # -- keys used once ---------------------------------------------------------------------------

    async def claim_once(self, key: str, now: datetime, forget_after: datetime) -> bool:
        def body(db: sqlite3.Connection) -> bool:
            db.execute(q.FORGET_CLAIMS, (to_text(now),))
            return db.execute(q.CLAIM_ONCE, (key, to_text(forget_after))).rowcount == 1

        return await self._db.write(body)  # not ``_write``: nothing a waiter watches changed


# -- transaction bodies: run on the writer's thread by SqliteDatabase.write, inside BEGIN IMMEDIATE -----------


def _update(db: sqlite3.Connection, *, request_id: str, change: Change) -> ApprovalRequest:
    current = _fetch_request(db, request_id)
    transition = change(current)
    if transition.vote is not None:
        v = transition.vote
        ids = json.dumps(list(v.reviewer_ids))
        db.execute(q.INSERT_VOTE, (request_id, v.reviewer, v.verdict.value, v.comment, to_text(v.at), ids))
    if transition.status is not None:
        cur = db.execute(
            q.UPDATE_REQUEST_STATE,
            (
                transition.status.value,
                transition.decided_by.value if transition.decided_by else None,
                to_text(transition.decided_at) if transition.decided_at else None,
                transition.note,
                canonical_json(transition.approved_payload) if transition.approved_payload is not None else None,
                request_id,
            ),
        )
        if cur.rowcount != 1:  # the lifecycle saw 'pending' under this same lock; defence in depth
            raise Conflict(f"request {request_id} is no longer pending")
        if transition.status is Status.APPROVED:
            approved = dataclasses.replace(current, approved_payload=transition.approved_payload)
            _record_approved(db, approved, approved_values(approved))
    if transition.claim is not None or transition.release:
        c = transition.claim
        claim = (c.by, to_text(c.at), to_text(c.until)) if c is not None else (None, None, None)
        if db.execute(q.CLAIM_REQUEST, (*claim, request_id)).rowcount != 1:
            raise Conflict(f"request {request_id} is no longer pending")
    if transition.escalated_at is not None:
        cur = db.execute(q.ESCALATE_REQUEST, (to_text(transition.escalated_at), request_id))
        if cur.rowcount != 1:
            raise Conflict(f"request {request_id} is not a pending request waiting to be escalated")
    if transition.consumed_at is not None:
        cur = db.execute(q.CONSUME_REQUEST, (to_text(transition.consumed_at), request_id))
        if cur.rowcount != 1:
            raise Conflict(f"request {request_id} is not an unused approval")
    _append_events(db, transition.events)
    if transition.notify:
        now = to_text(transition.decided_at or transition.events[0].at)
        db.execute(q.INSERT_OUTBOX, (request_id, now, now))
    return _fetch_request(db, request_id)


def _covered(db: sqlite3.Connection, request_id: str, item_id: int, upto: int) -> dict[int, list[DeliveryMark]]:
    """The marks of the request's unsettled rows from ``item_id`` up to ``upto``, by row."""
    rows = [r[0] for r in db.execute(q.UNSETTLED_UPTO, (request_id, item_id, max(item_id, upto))).fetchall()]
    return {row: [mark_from_row(m) for m in db.execute(q.SELECT_MARKS, (row,)).fetchall()] for row in rows}


def _record_approved(db: sqlite3.Connection, request: ApprovalRequest, values: list[tuple[str, str, float]]) -> None:
    """An approved request makes its action known for its agent (novelty) and adds its numbers to the history.
    A request people rejected, that expired or that the agent cancelled leaves both as they were, so asking again
    after a "no" is still novel. Both are kept under the folded action and fields (``codec.approved_values``)."""
    db.execute(q.INSERT_AGENT_ACTION, agent_action(request))
    db.executemany(q.INSERT_ACTION_VALUE, values)


def _append_events(db: sqlite3.Connection, events: Sequence[NewEvent]) -> None:
    _append_encoded(db, [EncodedEvent.of(e) for e in events])


def _append_encoded(db: sqlite3.Connection, events: Sequence[EncodedEvent]) -> list[EventRow]:
    """Chain ``events`` after the newest stored one; inside the write transaction, so the chain cannot fork. The
    rows written."""
    if not events:
        return []
    last = db.execute(q.LAST_EVENT).fetchone()
    seq, prev_hash = (last[0], last[1]) if last else (0, GENESIS_HASH)
    rows = []
    for event in events:
        seq += 1
        rows.append(row := event.row(seq, prev_hash))
        prev_hash = row[-1]
    db.executemany(q.INSERT_EVENT, rows)
    return rows


def _fetch_request(db: sqlite3.Connection, request_id: str) -> ApprovalRequest:
    row = db.execute(q.SELECT_REQUEST, (request_id,)).fetchone()
    if row is None:
        raise unknown_request(request_id)
    return request_from_row(row)
