"""Figure 5's database: a year of history in the real schema, built once and cached by schema version.

Building a million requests with signoff's own code (about 200 us of Python each) takes minutes, so the
database is made from prototypes: 20,000 requests written by signoff's code (templates from
``ApprovalService``, decisions by the ``tools.lifecycle`` steps, rows by ``storage.codec``, events linked by
``storage.audit.link``) with everything the server stores for them (votes, events including ``notified``,
delivered outbox rows, anomaly history). Each of the million rows is a prototype's rows with a fresh id,
fresh timestamps (shifted to its place in the year), fresh sequence numbers and fresh hashes; so sizes,
indexes and value distributions are real, but the audit chain links without verifying. The schema comes
from the migrations; the planner gets no ANALYZE statistics, because signoff never runs ANALYZE.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import random
import sqlite3
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from bench import samples
from signoff.storage import ApprovalRequest, EventKind, NewEvent, Status, Transition, Verdict
from signoff.storage.approvals import queries as q
from signoff.storage.audit import GENESIS_HASH, link
from signoff.storage.canonical import payload_sha256
from signoff.storage.codec import agent_action, approved_values, event_row, request_row
from signoff.storage.migrations import available, migrate
from signoff.storage.sqlite_db import connect
from signoff.storage.timefmt import to_text
from signoff.tools.approvals import lifecycle
from signoff.tools.approvals.service import new_request_id

GENERATOR_VERSION = 4  #: bump when what this module writes changes, to rebuild cached databases
START = datetime(2025, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=365)
RECENT_PENDING = 100  #: the newest requests still wait for people; older ones were all decided
PROTOTYPES = 10_000
BATCH = 20_000  #: requests per chunk (generated in parallel) and per transaction

#: (action, weight in %): a few common actions and a long tail
ACTIONS = (
    ("payments.transfer", 28),
    ("email.send", 20),
    ("crm.update", 14),
    ("deploy.production", 10),
    ("db.migrate", 8),
    ("payments.refund", 6),
    ("files.delete", 5),
    ("users.grant_role", 4),
    ("Bash", 3),
    ("mcp__github__merge_pr", 1.5),
    ("db.drop_table", 0.5),
)
#: (what happens to a request, weight in %)
FATES = (
    ("policy-approved", 55),
    ("human-approved", 20),
    ("policy-rejected", 4),
    ("human-rejected", 8),
    ("expired", 10),
    ("cancelled", 3),
)
AGENTS = tuple(f"agent-{n}" for n in range(8))
INSERT_DELIVERED_OUTBOX = """
INSERT INTO outbox (request_id, created_at, attempts, next_attempt_at, delivered_at) VALUES (?, ?, 1, ?, ?)
"""
Params = tuple[Any, ...]


def schema_key() -> str:
    """Changes whenever a migration is added or edited, so a stale cached database is never reused."""
    migrations = available()
    digest = hashlib.sha256("".join(m.name + m.sql for m in migrations).encode()).hexdigest()[:10]
    return f"v{migrations[-1].version}-{digest}"


def cached_path(results_dir: Path, rows: int) -> Path:
    return results_dir / f"history-{schema_key()}-g{GENERATOR_VERSION}-{rows}.db"


@dataclass(slots=True)
class Rows:
    """What one request put in the database, or a batch of requests."""

    requests: list[Params] = field(default_factory=list)
    votes: list[Params] = field(default_factory=list)
    events: list[Params] = field(default_factory=list)
    outbox: list[Params] = field(default_factory=list)
    values: list[Params] = field(default_factory=list)
    agent_actions: set[tuple[str, str]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Prototype:
    rows: Rows
    request_id: str
    created: datetime
    times: dict[str, datetime]  #: every timestamp written, as text, and its moment
    event_fields: tuple[int, int, int]  #: where seq, prev_hash and hash sit in an event row
    spots: dict[str, list[list[tuple[int, str]]]]  #: per table and row: (column, value) of ids and timestamps

    @classmethod
    def of(
        cls, rows: Rows, request_id: str, created: datetime, moments: set[datetime], fields: tuple[int, int, int]
    ) -> Prototype:
        times = {to_text(m): m for m in moments}
        keys = set(times) | {request_id}
        spots = {
            table: [[(i, v) for i, v in enumerate(row) if isinstance(v, str) and v in keys] for row in table_rows]
            for table, table_rows in (
                ("requests", rows.requests),
                ("votes", rows.votes),
                ("outbox", rows.outbox),
                ("events", rows.events),
            )
        }
        return cls(rows, request_id, created, times, fields, spots)


class Author:
    """Writes prototype requests with signoff's own code."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seq, self.hash = 0, GENESIS_HASH

    async def templates(self) -> None:
        self.approved = (await samples.requests_as_built(1, samples.AUTO_APPROVED))[0]
        self.pending = (await samples.requests_as_built(1, samples.NEEDS_REVIEW))[0]

    def prototype(self, fate: str) -> Prototype:
        rng = self.rng
        action = rng.choices([a for a, _ in ACTIONS], [w for _, w in ACTIONS])[0]
        agent = rng.choice(AGENTS)
        created = START + timedelta(seconds=rng.uniform(0, SPAN.total_seconds()))
        payload = {"amount": round(rng.lognormvariate(5, 1.5), 2), "target": f"acct-{rng.randrange(5000)}"}
        request = replace(
            self.approved if fate.startswith("policy") else self.pending,
            id=new_request_id(),
            action=action,
            summary=f"{action} for {payload['target']}: {payload['amount']}",
            payload=payload,
            payload_sha256=payload_sha256(action, payload),
            agent_id=agent,
            created_at=created,
            expires_at=created + timedelta(hours=1),
            decided_at=created if fate.startswith("policy") else None,
        )
        if fate == "policy-rejected":
            request = replace(request, status=Status.REJECTED)
        rows = Rows()
        moments = {created, request.expires_at}
        for new in lifecycle.creation_events(request):
            self.append(rows, new)
        if request.status is Status.PENDING:
            moments |= self.notified(rows, request, created)
            request, decided = self.decide(rows, request, fate, created)
            moments |= decided
        rows.requests.append(request_row(request))
        rows.agent_actions.add(agent_action(request))
        if request.status is Status.APPROVED:  # only approved requests feed the anomaly history
            rows.values.extend(approved_values(request))
        last = link(NewEvent(kind=EventKind.CREATED, request_id=request.id, at=created), 0, GENESIS_HASH)
        sample = event_row(last)
        positions = (sample.index(last.seq), sample.index(last.prev_hash), sample.index(last.hash))
        return Prototype.of(rows, request.id, created, moments, positions)

    def append(self, rows: Rows, new: NewEvent) -> None:
        event = link(new, self.seq, self.hash)
        self.seq, self.hash = event.seq, event.hash
        rows.events.append(event_row(event))

    def decide(
        self, rows: Rows, request: ApprovalRequest, fate: str, created: datetime
    ) -> tuple[ApprovalRequest, set[datetime]]:
        at = created + timedelta(seconds=self.rng.uniform(30, 3000))
        change: Any
        match fate:
            case "human-approved":
                change = lifecycle.vote("alice", Verdict.APPROVE, "checked", at)
            case "human-rejected":
                change = lifecycle.vote("bob", Verdict.REJECT, "wrong account, see the ticket", at)
            case "expired":
                at = request.expires_at
                change = lifecycle.expire(at)
            case "cancelled":
                change = lifecycle.cancel("the plan changed", at)
            case _:
                return request, set()
        transition: Transition = change(request)
        for new in transition.events:
            self.append(rows, new)
        if transition.vote is not None:
            v = transition.vote
            # as SqliteStore.update writes a vote (the store has no codec function for it)
            ids = json.dumps(list(v.reviewer_ids))
            rows.votes.append((request.id, v.reviewer, v.verdict.value, v.comment, to_text(v.at), ids))
        moments = {at} | self.notified(rows, request, at)
        decided = replace(
            request,
            status=transition.status or request.status,
            decided_by=transition.decided_by,
            decided_at=transition.decided_at,
            note=transition.note,
            votes=(transition.vote,) if transition.vote else (),
        )
        return decided, moments

    def notified(self, rows: Rows, request: ApprovalRequest, at: datetime) -> set[datetime]:
        """The outbox row the change queued, delivered a second later, and its ``notified`` event."""
        delivered = at + timedelta(seconds=1)
        rows.outbox.append((request.id, to_text(at), to_text(at), to_text(delivered)))
        data = {"notifier": "slack", "status": request.status.value}
        self.append(rows, NewEvent(kind=EventKind.NOTIFIED, request_id=request.id, at=delivered, data=data))
        return {at, delivered}


async def prototypes(count: int, pending: int) -> tuple[list[Prototype], list[Prototype]]:
    author = Author(seed=5)
    await author.templates()
    fates, weights = [f for f, _ in FATES], [w for _, w in FATES]
    decided = [author.prototype(author.rng.choices(fates, weights)[0]) for _ in range(count)]
    return decided, [author.prototype("pending") for _ in range(pending)]


_pool: tuple[list[Prototype], list[Prototype]] = ([], [])


def _set_pool(decided: list[Prototype], pending: list[Prototype]) -> None:
    global _pool
    _pool = (decided, pending)


def _swap(rows: list[Params], spots: list[list[tuple[int, str]]], swap: dict[str, Any]) -> list[list[Any]]:
    out = []
    for row, places in zip(rows, spots, strict=True):
        copy = list(row)
        for column, value in places:
            copy[column] = swap[value]
        out.append(copy)
    return out


def clone_chunk(chunk: int, rows: int) -> Rows:
    """Requests ``chunk * BATCH`` up to the next chunk, cloned from the pool (runs in a worker process)."""
    decided, pending = _pool
    rng = random.Random(chunk)
    batch = Rows()
    seq = chunk * BATCH * 8  # room for 8 events a request: chunks never share a sequence number
    chain = hashlib.sha256(f"chunk {chunk}".encode()).hexdigest()
    for n in range(chunk * BATCH, min((chunk + 1) * BATCH, rows)):
        proto = pending[n % len(pending)] if n >= rows - RECENT_PENDING else decided[rng.randrange(len(decided))]
        created = START + SPAN * (n / rows) + timedelta(microseconds=rng.randrange(1000))
        shift = created - proto.created
        swap: dict[str, Any] = {text: to_text(moment + shift) for text, moment in proto.times.items()}
        swap[proto.request_id] = new_request_id()
        source, spots = proto.rows, proto.spots
        batch.requests.extend(map(tuple, _swap(source.requests, spots["requests"], swap)))
        batch.votes.extend(map(tuple, _swap(source.votes, spots["votes"], swap)))
        batch.outbox.extend(map(tuple, _swap(source.outbox, spots["outbox"], swap)))
        batch.values.extend(source.values)
        batch.agent_actions |= source.agent_actions
        at_seq, at_prev, at_hash = proto.event_fields
        for event in _swap(source.events, spots["events"], swap):
            seq += 1
            digest = hashlib.sha256(f"{chain}{seq}".encode()).hexdigest()
            event[at_seq], event[at_prev], event[at_hash] = seq, chain, digest
            batch.events.append(tuple(event))
            chain = digest
    return batch


async def build(path: Path, rows: int) -> None:
    """Write ``rows`` requests to a new database at ``path`` (via a temporary name, so a crash leaves nothing).

    Worker processes clone chunks of rows while this process inserts the previous ones.
    """
    building = path.with_suffix(".building")
    for stale in path.parent.glob(f"history-*-{rows}.*"):  # a crashed build, or an older schema or generator
        stale.unlink()
    decided, pending = await prototypes(PROTOTYPES, RECENT_PENDING)
    workers = os.cpu_count() or 2
    db = await connect(building)
    try:
        await migrate(db)
        # a bulk load of a file nobody else uses yet: no journal, no fsync; WAL is switched back on at the end
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -1000000"):
            await db.execute(f"PRAGMA {pragma}")
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, context, initializer=_set_pool, initargs=(decided, pending)) as pool:
            ahead: deque[Future[Rows]] = deque()
            for chunk in range(math.ceil(rows / BATCH)):
                ahead.append(pool.submit(clone_chunk, chunk, rows))
                if len(ahead) > workers:
                    await _insert(db, await anyio.to_thread.run_sync(ahead.popleft().result))
            while ahead:
                await _insert(db, await anyio.to_thread.run_sync(ahead.popleft().result))
        await db.execute("PRAGMA journal_mode = WAL")
    finally:
        await db.close()
    building.rename(path)


async def _insert(db: aiosqlite.Connection, batch: Rows) -> None:
    await db.execute("BEGIN IMMEDIATE")
    await db.executemany(q.INSERT_REQUEST, batch.requests)
    await db.executemany(q.INSERT_VOTE, batch.votes)
    await db.executemany(q.INSERT_EVENT, batch.events)
    await db.executemany(INSERT_DELIVERED_OUTBOX, batch.outbox)
    await db.executemany(q.INSERT_ACTION_VALUE, batch.values)
    await db.executemany(q.INSERT_AGENT_ACTION, sorted(batch.agent_actions))
    await db.commit()


def table_sizes(path: Path) -> dict[str, int]:
    """Bytes on disk per table, its indexes included (SQLite's dbstat)."""
    with sqlite3.connect(path) as conn:
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
        sizes: dict[str, int] = {}
        for name, size in conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)
            sizes[table] = sizes.get(table, 0) + size
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))
