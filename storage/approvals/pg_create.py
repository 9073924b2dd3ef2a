"""The PostgreSQL create transaction in one round trip, or two when another writer moved the audit log's head.

A request writes several rows (the request; for an approved one, its agent/action pair and its numbers; its chained
events; a pending one's outbox row). Sent one statement at a time each is a round trip; psycopg's pipeline mode
saves the waits but still pays the driver's work per statement. Here the statements are bound on the client
(``psycopg.AsyncClientCursor.mogrify``: libpq's quoting, for this connection's encoding and settings) and sent as
one simple-protocol message (the writers' lock, the inserts, ``NOTIFY``), which PostgreSQL runs as one implicit
transaction and answers once: it commits at the end of the message, or at the first error rolls back at once (so the
writers' lock is not held while the error travels to the client) and skips the rest. Nothing of it is kept then.

The events' hashes chain from the log's head, which only the writers' lock makes stable. The store remembers the
head its own last create left (``ChainHead``); the one-message create checks, under the lock and before it inserts
anything, that the head is still exactly that event (another process may have written since, or a failover to a
standby may have lost the newest commits), and fails otherwise. Then it is written again the certain way: the
head read in a transaction holding the lock (one message), then the inserts and the commit (a second). So the
remembered head is a guess checked where it matters, never trusted; a request with an ``idempotency_key`` (whose
first use must be looked up under the lock) always goes the certain way. An approval that must not follow a request
people did not approve (``refuse_approval_if_asked_before``) is checked in the one message too (``_asked_check``),
failing it when there is one; the certain way then reads that request under the lock, to name it. The creates of
one process take turns (``ChainHead.turn``), so each chains after the one before it instead of failing the check
against it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import anyio
import psycopg
from psycopg import AsyncClientCursor
from psycopg.pq import TransactionStatus

from signoff.storage.approvals import pg_queries as q
from signoff.storage.audit import GENESIS_HASH, EncodedEvent, EventRow
from signoff.storage.codec import request_from_row
from signoff.storage.errors import AskedBefore
from signoff.storage.pg_db import CHANNEL, WRITE_LOCK, Conn
from signoff.storage.records import ApprovalRequest, Status

_HASH = re.compile(r"[0-9a-f]{64}")
_LOCK = f"SELECT pg_advisory_xact_lock({WRITE_LOCK})"


class ChainHead:
    """The (seq, hash) of the newest event this process's creates wrote or read under the writers' lock: a guess at
    the log's head, which the next create checks under the lock before it chains after it."""

    def __init__(self) -> None:
        self._head: tuple[int, str] | None = None
        #: held by a create from taking the guess to its commit (taken before a pooled connection, so waiting for a
        #: turn holds none): two creates of this process never chain after the same guess
        self.turn = anyio.Lock()

    def get(self) -> tuple[int, str] | None:
        return self._head

    def set(self, seq: int, digest: str) -> None:
        # only a well-formed head is remembered: it is written into the text of the check (``_head_check``)
        self._head = (seq, digest) if isinstance(seq, int) and _HASH.fullmatch(digest) else None

    def forget(self) -> None:
        self._head = None


def chain(encoded: Sequence[EncodedEvent], seq: int, prev_hash: str) -> list[EventRow]:
    """The ``events`` rows of ``encoded`` after the event ``(seq, prev_hash)``."""
    rows = []
    for event in encoded:
        seq += 1
        rows.append(row := event.row(seq, prev_hash))
        prev_hash = row[-1]
    return rows


def _head_check(seq: int, digest: str) -> str:
    """A statement that fails unless event ``seq`` with hash ``digest`` is the log's newest. Plain SQL has no
    ``RAISE`` (a PL/pgSQL block would, at twice the cost: it is compiled on every run), so when the head moved the
    statement casts a sentence to an integer, which fails saying where the head is; the cast is of a subquery, so it
    is evaluated only then, not folded at planning. ``ChainHead.set`` lets in only an int and 64 hex digits.

    The newest is found as ``max(seq)``, which PostgreSQL reads from the end of the primary key whatever its
    statistics say; ``NOT EXISTS (… seq > n)`` was planned as a scan of the whole log once the statistics lagged
    behind the log's growth (every create then read every event)."""
    return (
        f"SELECT CASE WHEN (SELECT max(seq) FROM events) = {seq:d}"
        f" AND EXISTS (SELECT 1 FROM events WHERE seq = {seq:d} AND hash = '{digest}') THEN 0"
        f" ELSE (SELECT 'the audit log head moved on from event {seq:d} to ' || max(seq) FROM events)::int END"
    )


def _asked_check(cur: AsyncClientCursor[tuple[Any, ...]], asked: tuple[str, str]) -> str:
    """A statement that fails when the newest of the agent's requests with this payload digest that went to people
    (``q.ASKED_BEFORE``) was not approved, as ``_head_check`` fails: the cast of a sentence (a subquery's, naming the
    request) to an integer."""
    newest = f"FROM requests AS r WHERE {q.ASKED_BEFORE_WHERE} {q.ASKED_BEFORE_ORDER}"
    return cur.mogrify(
        f"SELECT CASE WHEN coalesce((SELECT r.status {newest}), 'approved') = 'approved' THEN 0"
        f" ELSE (SELECT 'asked before: ' || r.id {newest})::int END",
        (*asked, *asked),
    )


def _event_inserts(cur: AsyncClientCursor[tuple[Any, ...]], rows: Sequence[EventRow]) -> list[str]:
    if not rows:
        return []
    values = ", ".join(cur.mogrify("(%s, %s, %s, %s, %s, %s, %s)", row) for row in rows)
    return [f"INSERT INTO events (seq, kind, request_id, at, data, prev_hash, hash) VALUES {values}"]


async def _results(cur: AsyncClientCursor[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
    """The rows of every statement of the message just run that returns rows, in order."""
    found = []
    while True:
        if cur.description is not None:
            found.append(await cur.fetchall())
        if not cur.nextset():
            return found


async def create(
    conn: Conn,
    head: ChainHead,
    request: ApprovalRequest,
    inserts: Sequence[tuple[str, Sequence[object]]],
    encoded: Sequence[EncodedEvent],
    refuse_approval_if_asked_before: bool = False,
) -> tuple[ApprovalRequest, bool]:
    """Write the request's rows (``inserts``: statements and their parameters) and chain its events, with ``NOTIFY``
    of its id, in one transaction holding the writers' lock; (the request, True), or (the first request, False)
    when its agent used its ``idempotency_key`` already. With ``refuse_approval_if_asked_before``, an approved
    request whose agent's newest request with its payload that went to people was not approved by them writes
    nothing and raises ``AskedBefore`` (``Store.create_request``). ``conn`` is in autocommit
    mode; on any error the transaction is rolled back before the error propagates. The caller holds ``head.turn``."""
    cur = AsyncClientCursor(conn)
    statements = [cur.mogrify(sql, params) for sql, params in inserts]
    statements.append(cur.mogrify("SELECT pg_notify(%s, %s)", (CHANNEL, request.id)))
    asked = (request.agent_id or "", request.payload_sha256)
    check_asked = refuse_approval_if_asked_before and request.status is Status.APPROVED
    try:
        guess = head.get()
        if guess is not None and request.idempotency_key is None:
            rows = chain(encoded, *guess)
            checks = [_head_check(*guess), *([_asked_check(cur, asked)] if check_asked else [])]
            try:  # one implicit transaction: no BEGIN, no COMMIT
                await cur.execute(";".join([_LOCK, *checks, *statements, *_event_inserts(cur, rows)]))
            except psycopg.OperationalError:
                raise  # the connection, not the guess: nothing to learn by writing again
            except psycopg.Error:
                pass  # the head moved on (or an insert failed), and it was all rolled back: the certain way says which
            else:
                _remember(head, rows)
                return request, True
        # the certain way: the head (and a first use of the idempotency key, and an earlier request people did not
        # approve) read under the lock, then the writes
        first = ["BEGIN", _LOCK]
        if request.idempotency_key is not None:
            key = (request.agent_id or "", request.idempotency_key)
            first.append(cur.mogrify(q.SELECT_BY_IDEMPOTENCY_KEY, key))
        if check_asked:
            first.append(cur.mogrify(q.ASKED_BEFORE, asked))
        await cur.execute(";".join([*first, q.LAST_EVENT]))
        results = await _results(cur)
        newest = results.pop()
        last = newest[0] if newest else None
        earlier = results.pop() if check_asked else []
        if request.idempotency_key is not None and results[-1]:
            await cur.execute("ROLLBACK")
            return request_from_row(results[-1][0]), False
        if earlier and (last_asked := request_from_row(earlier[0])).status is not Status.APPROVED:
            await cur.execute("ROLLBACK")
            raise AskedBefore(last_asked)
        rows = chain(encoded, *((int(last[0]), str(last[1])) if last else (0, GENESIS_HASH)))
        await cur.execute(";".join([*statements, *_event_inserts(cur, rows), "COMMIT"]))
        _remember(head, rows)
        return request, True
    except BaseException:
        head.forget()
        if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
            try:
                await conn.execute("ROLLBACK")
            except psycopg.Error:
                pass  # a broken connection: the pool discards it, and the server rolls back when it closes
        raise


def _remember(head: ChainHead, rows: Sequence[EventRow]) -> None:
    if rows:
        head.set(rows[-1][0], rows[-1][-1])
