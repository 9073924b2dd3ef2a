"""The PostgreSQL Store: the same contract as the SQLite one, for several servers on several hosts.

Every write is one transaction holding the writers' advisory lock (``storage.pg_db``): the audit chain is appended
by one writer at a time, so it never forks, and a decision reads the request ``FOR UPDATE`` and changes it only
``WHERE status = 'pending'``, so the first decision wins on any host and a later one sees who decided. The outbox is
claimed with ``FOR UPDATE SKIP LOCKED`` outside that lock, so workers on several hosts take different rows. Waiters
wake on this process's own writes at once, on other processes' through ``LISTEN``/``NOTIFY``, and on a slow poll
of the log's head if the listener's connection drops.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from signoff.storage import metrics_queries as mq
from signoff.storage.approvals import pg_create
from signoff.storage.approvals import pg_queries as q
from signoff.storage.approvals.deliveries import (
    claim_marks,
    is_settled,
    lease_token,
    mark_from_row,
    mark_row,
    message_ref_swap,
)
from signoff.storage.approvals.store import Change
from signoff.storage.audit import GENESIS_HASH, EncodedEvent, is_request_id, standalone
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
from signoff.storage.errors import Conflict, unknown_request
from signoff.storage.folding import fold_action, fold_path
from signoff.storage.pg_db import Conn, PostgresDatabase, available
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
from signoff.storage.timefmt import from_text, to_text

T = TypeVar("T")

#: The slowest a waiter polls the log's head for other hosts' changes: NOTIFY wakes it long before, normally.
SAFETY_POLL_SECONDS = 1.0


class PostgresStore:
    def __init__(self, db: PostgresDatabase, poll_interval: float) -> None:
        self._db = db
        self._poll_interval = poll_interval
        self._signal = ChangeSignal()
        self._commits = CommitWatch(self._signal, self._head)
        self._chain_head = pg_create.ChainHead()  #: the log's head as this process's last create left it: a guess

    @classmethod
    async def open(cls, url: str, *, poll_interval: float = SAFETY_POLL_SECONDS) -> PostgresStore:
        """Connect to the database at ``url`` (``postgresql://user:password@host:port/dbname``), migrating it as
        needed, and listen for other processes' changes. ``poll_interval``: the safety-net poll."""
        db = await PostgresDatabase.open(url)
        store = cls(db, poll_interval)
        try:
            await db.listen(store._signal.notify_remote)
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self._db.close()

    async def schema(self) -> tuple[int, int]:
        """(the database's schema version, the newest this signoff knows): ``/readyz`` wants them equal."""
        rows = await self._db.read("SELECT coalesce(max(version), 0) FROM schema_migrations")
        return int(rows[0][0]), max(m.version for m in available())

    async def _head(self) -> int:
        return int((await self._db.read(q.HEAD_SEQ))[0][0])

    async def _write(self, body: Callable[[Conn], Awaitable[T]], *, notify: str | None = "") -> T:
        result = await self._db.write(body, notify=notify)
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
        encoded = [EncodedEvent.of(e) for e in events]
        inserts: list[tuple[str, Sequence[object]]] = [(q.INSERT_REQUEST, request_row(request))]
        if request.status is Status.APPROVED:  # ``_record_approved``'s rows
            inserts.append((q.INSERT_AGENT_ACTION, agent_action(request)))
            inserts.extend((q.INSERT_ACTION_VALUE, value) for value in approved_values(request))
        if notify:
            created = to_text(request.created_at)
            inserts.append((q.INSERT_OUTBOX, (request.id, created, created)))
        async with self._chain_head.turn:
            stored, fresh = await self._db.scripted(
                lambda db: pg_create.create(
                    db, self._chain_head, request, inserts, encoded, refuse_approval_if_asked_before
                )
            )
        self._signal.notify()
        return stored, fresh

    async def get(self, request_id: str) -> ApprovalRequest | None:
        rows = await self._db.read(q.SELECT_REQUEST, (request_id,))
        return request_from_row(rows[0]) if rows else None

    async def update(self, request_id: str, change: Change) -> ApprovalRequest:
        async def body(db: Conn) -> ApprovalRequest:
            return await _update(db, request_id, change)

        result: ApprovalRequest = await self._write(body, notify=request_id)
        return result

    async def list_requests(self, query: RequestQuery) -> Page:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("status", query.status), ("action", query.action), ("agent_id", query.agent_id)):
            if value is not None:
                clauses.append(f"r.{column} = %s")
                params.append(str(value))
        if query.folded_action is not None:
            clauses.append(q.FOLDED_ACTION)
            params.append(ascii_lower(query.folded_action))
        if query.text is not None:
            clauses.append(q.TEXT_MATCHES)
            params.extend([q.text_pattern(query.text)] * 3)
        if query.reviewer is not None:
            clauses.append(q.VOTED_BY)
            params.append(query.reviewer)
        if query.since is not None:
            clauses.append("r.created_at >= %s")
            params.append(to_text(query.since))
        if query.until is not None:
            clauses.append("r.created_at < %s")
            params.append(to_text(query.until))
        match query.before:
            case (int() as rank, datetime() as expires_at, str() as request_id):
                clauses.append(f"(-{q.PRIORITY_RANK}, r.expires_at, r.id) > (%s, %s, %s)")
                params.extend((-rank, to_text(expires_at), request_id))
            case (datetime() as created_at, str() as request_id):
                clauses.append("(r.created_at, r.id) < (%s, %s)")
                params.extend((to_text(created_at), request_id))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        priority = query.order is Order.PRIORITY
        order = q.ORDER_BY_PRIORITY if priority else "r.created_at DESC, r.id DESC"
        sql = f"{q.SELECT_REQUESTS}{where} ORDER BY {order} LIMIT %s"
        rows = await self._db.read(sql, (*params, query.limit + 1))
        items = tuple(request_from_row(row) for row in rows[: query.limit])
        more = len(rows) > query.limit
        cursor = (priority_key if priority else newest_key)(items[-1]) if more else None
        return Page(items=items, next_cursor=cursor)

    async def pending_queue(self, after_seq: int | None = None, limit: int = 500) -> QueueRead:
        # The log is read first: a change committed between the two reads is read again next time (its event comes
        # after ``head``), never lost. Writers append under the writers' lock, held to their commit, so an event
        # below the head is visible whenever the head is.
        if after_seq is not None:
            rows = await self._db.read(q.CHANGED_REQUESTS, (after_seq, limit + 1))
            if len(rows) <= limit and (rows or await self._head() == after_seq):
                changed = frozenset(row[1] for row in rows if is_request_id(row[1]))
                found = await self._db.read(q.SELECT_QUEUE_OF, (sorted(changed),)) if changed else []
                head = rows[-1][0] if rows else after_seq
                return QueueRead(head=head, entries=tuple(map(queue_entry_from_row, found)), changed=changed)
        head = await self._head()
        rows = await self._db.read(q.SELECT_QUEUE)
        return QueueRead(head=head, entries=tuple(map(queue_entry_from_row, rows)))

    async def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        # a range on the primary key (C collation: byte order), no LIKE whose `_` and `%` would need escaping
        return [row[0] for row in await self._db.read(q.IDS_WITH_PREFIX, (prefix, prefix + "\U0010ffff", limit))]

    async def pending_due(self, now: datetime, limit: int = 100) -> list[str]:
        return [row[0] for row in await self._db.read(q.PENDING_DUE, (to_text(now), limit))]

    async def escalations_due(self, now: datetime, limit: int = 100) -> list[str]:
        return [row[0] for row in await self._db.read(q.ESCALATIONS_DUE, (to_text(now), limit))]

    async def recorded_requests(
        self, since: datetime | None = None, batch: int = 1000
    ) -> AsyncIterator[list[RecordedRequest]]:
        after = (to_text(since) if since is not None else "", "")
        while True:
            rows = await self._db.read(q.RECORDED_REQUESTS, (*after, batch))
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
        seen = bool(await self._db.read(q.SEEN_AGENT_ACTION, (agent_id or "", action)))
        values: dict[str, tuple[float, ...]] = {}
        for name in fields:
            rows = await self._db.read(q.RECENT_ACTION_VALUES, (action, fold_path(name), limit))
            values[name] = tuple(row[0] for row in rows)
        return ActionHistory(seen_from_agent=seen, values=values)

    # -- audit log -------------------------------------------------------------------------------

    async def events(self, after_seq: int = 0) -> AsyncIterator[Event]:
        while True:
            rows = await self._db.read(q.SELECT_EVENTS_AFTER, (after_seq, 1000))
            if not rows:
                return
            for row in rows:
                yield event_from_row(row)
            after_seq = rows[-1][0]

    async def request_events(self, request_id: str) -> list[Event]:
        return [event_from_row(row) for row in await self._db.read(q.SELECT_REQUEST_EVENTS, (request_id,))]

    async def append_event(self, event: NewEvent) -> None:
        encoded = [EncodedEvent.of(standalone(event))]
        # no NOTIFY: nothing a page or an agent waits on has changed
        await self._db.write(lambda db: _append_encoded(db, encoded), notify=None)

    # -- change notification ---------------------------------------------------------------------

    async def change_token(self) -> tuple[int, int, int]:
        """(changes made in this process, other processes' changes heard or polled, the log's head)"""
        return self._signal.generation, self._signal.remote, await self._head()

    async def wait_for_change(self, token: object, timeout: float, poll_interval: float | None = None) -> None:
        assert isinstance(token, tuple)
        generation, remote, head = token
        # NOTIFY wakes waiters at once; the poll is only the safety net, so it never runs faster than the store's.
        interval = max(poll_interval or 0.0, self._poll_interval)
        await self._commits.wait(generation, remote, head, timeout, interval)

    # -- outbox ----------------------------------------------------------------------------------

    async def claim_outbox(self, now: datetime, lease_seconds: float = 120.0, limit: int = 10) -> list[OutboxItem]:
        if not await self._db.read(q.DUE_OUTBOX, (to_text(now), limit)):
            return []  # the common case: nothing due, and no row locked
        lease_until, lease = to_text(now + timedelta(seconds=lease_seconds)), lease_token()

        async def body(db: Conn) -> list[OutboxItem]:
            rows = await (await db.execute(q.CLAIM_OUTBOX, (to_text(now), limit))).fetchall()
            items = []
            for r in rows:
                await db.execute(q.LEASE_OUTBOX, (lease_until, lease, r[0]))
                covered = await _covered(db, r[1], r[0], r[4])
                items.append(
                    OutboxItem(
                        id=r[0],
                        request_id=r[1],
                        attempts=r[2],
                        created_at=from_text(r[3]),
                        upto=r[4],
                        marks=claim_marks(r[0], covered),
                        lease=lease,
                    )
                )
            return items

        return await self._db.unlocked(body)

    async def renew_outbox(self, item: OutboxItem, now: datetime, lease_seconds: float = 120.0) -> bool:
        params = (to_text(now + timedelta(seconds=lease_seconds)), item.id, item.lease)

        async def body(db: Conn) -> bool:
            return (await db.execute(q.RENEW_OUTBOX, params)).rowcount == 1

        renewed: bool = await self._db.unlocked(body)
        return renewed

    async def complete_outbox(self, item: OutboxItem, event: NewEvent) -> None:
        async def body(db: Conn) -> None:
            if await (await db.execute(q.OUTBOX_REQUEST, (item.id,))).fetchone() is None:
                return  # another process delivered it first
            await db.execute(q.COMPLETE_OUTBOX, (to_text(event.at), item.request_id, max(item.id, item.upto)))
            await _append_encoded(db, [EncodedEvent.of(event)])

        await self._write(body, notify=item.request_id)

    async def retry_outbox(self, item_id: int, next_attempt_at: datetime, error: str) -> None:
        params = (to_text(next_attempt_at), error[:500], item_id)
        await self._db.unlocked(lambda db: db.execute(q.RETRY_OUTBOX, params))

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

        async def body(db: Conn) -> bool:
            if await (await db.execute(q.OUTBOX_LEASED, (item.id, item.lease))).fetchone() is None:
                return False  # another process settled it first, or took it over when the lease ran out
            unsettled = await (await db.execute(q.UNSETTLED_UPTO, (item.request_id, item.id, item.upto))).fetchall()
            covered = [r[0] for r in unsettled]
            for mark in marks:
                for row in covered if mark.state.is_final else [item.id]:
                    await db.execute(q.UPSERT_MARK, mark_row(row, mark))
            for row in covered:
                marks_now = [mark_from_row(r) for r in await (await db.execute(q.SELECT_MARKS, (row,))).fetchall()]
                if is_settled(marks_now, notifiers):
                    await db.execute(q.SETTLE_OUTBOX, (to_text(now), row))
            await db.execute(q.LEASE_OUTBOX_IF_UNSETTLED, (to_text(next_attempt_at), item.id))
            await _append_encoded(db, encoded)
            return True

        recorded: bool = await self._write(body, notify=item.request_id)
        return recorded

    async def outbox_entries(self, limit: int = 1000) -> list[OutboxEntry]:
        entries = []
        for r in await self._db.read(q.OUTBOX_ENTRIES, (limit,)):
            marks = tuple(mark_from_row(m) for m in await self._db.read(q.SELECT_MARKS, (r[0],)))
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
        async def body(db: Conn) -> list[int]:
            dead = await (await db.execute(q.DEAD_OUTBOX_IDS)).fetchall()
            ids = [r[0] for r in dead if outbox_id in (None, r[0])]
            for row in ids:
                await db.execute(q.DROP_DEAD_MARKS, (row,))
                await db.execute(q.REQUEUE_OUTBOX, (to_text(now), row))
            return ids

        result: list[int] = await self._write(body)
        return result

    # -- metrics ---------------------------------------------------------------------------------

    async def human_outcomes(self, model: str, since: datetime, until: datetime) -> dict[str, HumanOutcomes]:
        rows = await self._db.read(q.HUMAN_OUTCOMES, (model, to_text(since), to_text(until)))
        names = ("version", "requests", "to_people", "decided_by_people", "rejected", "changed")
        return {row[0]: HumanOutcomes(**dict(zip(names, row, strict=True))) for row in rows}

    async def metrics(self) -> mq.ApprovalMetrics:
        counts = await self._db.read(q.APPROVAL_COUNTS)
        pending = await self._db.read(q.PENDING_BY_PRIORITY)
        oldest = (await self._db.read(q.OLDEST_PENDING))[0][0]
        stuck = await self._db.read(q.DELIVERIES_STUCK)
        return mq.approval_metrics(counts, pending, oldest, stuck)

    # -- message references ----------------------------------------------------------------------

    async def message_ref(self, request_id: str, notifier: str) -> MessageRef | None:
        rows = await self._db.read(q.SELECT_MESSAGE_REF, (request_id, notifier))
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
        await self._db.unlocked(lambda db: db.execute(q.UPSERT_MESSAGE_REF, params))

    async def swap_message_ref(self, expected: MessageRef | None, ref: MessageRef) -> bool:
        query, params = message_ref_swap(q.INSERT_MESSAGE_REF, q.SWAP_MESSAGE_REF, expected, ref)

        async def body(db: Conn) -> bool:
            return (await db.execute(query, params)).rowcount == 1

        swapped: bool = await self._db.unlocked(body)
        return swapped

    # -- keys used once ---------------------------------------------------------------------------

    async def claim_once(self, key: str, now: datetime, forget_after: datetime) -> bool:
        """Without the writers' lock: the key's unique index decides a race (a second insert waits for the first
        to commit, then does nothing)."""

        async def body(db: Conn) -> bool:
            await db.execute(q.FORGET_CLAIMS, (to_text(now),))
            return (await db.execute(q.CLAIM_ONCE, (key, to_text(forget_after)))).rowcount == 1

        claimed: bool = await self._db.unlocked(body)
        return claimed


# -- transaction bodies: run by PostgresDatabase.write, inside a transaction holding the writers' lock -------------


async def _update(db: Conn, request_id: str, change: Change) -> ApprovalRequest:
    await db.execute(q.LOCK_REQUEST, (request_id,))
    current = await _fetch_request(db, request_id)
    transition = change(current)
    if transition.vote is not None:
        v = transition.vote
        ids = json.dumps(list(v.reviewer_ids))
        await db.execute(q.INSERT_VOTE, (request_id, v.reviewer, v.verdict.value, v.comment, to_text(v.at), ids))
    if transition.status is not None:
        cur = await db.execute(
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
        if cur.rowcount != 1:  # the lifecycle saw 'pending' under this same row lock; defence in depth
            raise Conflict(f"request {request_id} is no longer pending")
        if transition.status is Status.APPROVED:
            approved = dataclasses.replace(current, approved_payload=transition.approved_payload)
            await _record_approved(db, approved, approved_values(approved))
    if transition.claim is not None or transition.release:
        c = transition.claim
        claim = (c.by, to_text(c.at), to_text(c.until)) if c is not None else (None, None, None)
        if (await db.execute(q.CLAIM_REQUEST, (*claim, request_id))).rowcount != 1:
            raise Conflict(f"request {request_id} is no longer pending")
    if transition.escalated_at is not None:
        cur = await db.execute(q.ESCALATE_REQUEST, (to_text(transition.escalated_at), request_id))
        if cur.rowcount != 1:
            raise Conflict(f"request {request_id} is not a pending request waiting to be escalated")
    if transition.consumed_at is not None:
        cur = await db.execute(q.CONSUME_REQUEST, (to_text(transition.consumed_at), request_id))
        if cur.rowcount != 1:
            raise Conflict(f"request {request_id} is not an unused approval")
    await _append_encoded(db, [EncodedEvent.of(e) for e in transition.events])
    if transition.notify:
        now = to_text(transition.decided_at or transition.events[0].at)
        await db.execute(q.INSERT_OUTBOX, (request_id, now, now))
    return await _fetch_request(db, request_id)


async def _covered(db: Conn, request_id: str, item_id: int, upto: int) -> dict[int, list[DeliveryMark]]:
    """The marks of the request's unsettled rows from ``item_id`` up to ``upto``, by row."""
    rows = await (await db.execute(q.UNSETTLED_UPTO, (request_id, item_id, max(item_id, upto)))).fetchall()
    covered: dict[int, list[DeliveryMark]] = {}
    for (row,) in rows:
        covered[row] = [mark_from_row(m) for m in await (await db.execute(q.SELECT_MARKS, (row,))).fetchall()]
    return covered


async def _record_approved(db: Conn, request: ApprovalRequest, values: list[tuple[str, str, float]]) -> None:
    """An approved request makes its action known for its agent and adds its numbers to the history
    (``sqlite._record_approved`` says why only approved ones), under the folded action and fields."""
    await db.execute(q.INSERT_AGENT_ACTION, agent_action(request))
    if values:
        async with db.cursor() as cur:
            await cur.executemany(q.INSERT_ACTION_VALUE, values)


async def _append_encoded(db: Conn, events: Sequence[EncodedEvent]) -> None:
    """Chain ``events`` after the newest stored one; the writers' lock is held, so the chain cannot fork."""
    if not events:
        return
    last = await (await db.execute(q.LAST_EVENT)).fetchone()
    seq, prev_hash = (last[0], last[1]) if last else (0, GENESIS_HASH)
    rows = []
    for event in events:
        seq += 1
        rows.append(row := event.row(seq, prev_hash))
        prev_hash = row[-1]
    async with db.cursor() as cur:
        await cur.executemany(q.INSERT_EVENT, rows)


async def _fetch_request(db: Conn, request_id: str) -> ApprovalRequest:
    row = await (await db.execute(q.SELECT_REQUEST, (request_id,))).fetchone()
    if row is None:
        raise unknown_request(request_id)
    return request_from_row(row)
