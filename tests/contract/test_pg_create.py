"""The PostgreSQL create in one message (``storage.approvals.pg_create``): it chains after the head its process
remembers only when the database still has exactly that head, and what it binds on the client arrives unchanged.

Two ``PostgresStore``s on one database stand for two servers on two hosts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from signoff.storage import ApprovalRequest, DecidedBy, Status
from signoff.storage.approvals import pg_create
from signoff.storage.approvals.postgres import PostgresStore
from signoff.storage.audit import verify_store
from signoff.tools.approvals.lifecycle import creation_events
from tests.factories import make_request

APPROVED = {"status": Status.APPROVED, "decided_by": DecidedBy.POLICY}  #: by the policy, when it was made
PENDING = {"status": Status.PENDING}


async def add(store: PostgresStore, **overrides: Any) -> ApprovalRequest:
    request = make_request(**overrides)
    if request.status is Status.APPROVED:
        request = dataclasses.replace(request, decided_at=request.created_at)
    stored, created = await store.create_request(
        request, creation_events(request), notify=request.status is Status.PENDING
    )
    assert created
    return stored


@pytest.fixture
async def hosts(pg_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    a = await PostgresStore.open(pg_url, poll_interval=600)
    b = await PostgresStore.open(pg_url, poll_interval=600)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def sql(url: str, *statements: str) -> None:
    """Run statements as the database's owner, behind signoff's back (triggers off: as a restore would)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        for statement in statements:
            conn.execute(statement.encode())


async def test_hosts_taking_turns_keep_one_chain(hosts: tuple[PostgresStore, PostgresStore]) -> None:
    """Each host's remembered head is stale at every turn (the other wrote since): each create is written again
    after the head it reads, so nothing forks and nothing is lost."""
    made = [await add(hosts[i % 2], **(APPROVED if i % 3 else PENDING)) for i in range(12)]
    for request in made:
        assert await hosts[0].get(request.id) == request
        assert (await hosts[1].request_events(request.id))[0].kind.value == "created"
    report = await verify_store(hosts[0])
    assert report.ok, report
    assert report.events_checked == sum([len(await hosts[0].request_events(r.id)) for r in made])


async def test_a_head_that_went_back_is_not_chained_after(pg_url: str) -> None:
    """A failover to a standby that missed the newest commits: the head this process remembers is gone, so the
    next create must chain after the head the database has, not leave a gap."""
    store = await PostgresStore.open(pg_url)
    try:
        await add(store)
        lost = await add(store)
        sql(
            pg_url, f"DELETE FROM events WHERE request_id = '{lost.id}'", f"DELETE FROM requests WHERE id = '{lost.id}'"
        )
        assert (await verify_store(store)).ok  # the database as the standby has it: consistent, one request shorter
        after = await add(store, **APPROVED)
        report = await verify_store(store)
        assert report.ok, report
        assert await store.get(after.id) == after
    finally:
        await store.close()


HOSTILE = [
    "it's; COMMIT; DROP TABLE requests; --",
    "back\\slash \\' and E'\\x41' and $$ and $signoff$ and %s %(x)s {}",
    "bidi \u202e\u2066 zero width \u200b emoji \U0001f4b8 combining e\u0301",
    "control \x01\x1b[31m\r\n\t",
    "x" * 1_000_000,
]


@pytest.mark.parametrize("text", HOSTILE, ids=["quotes", "escapes", "unicode", "control", "1MB"])
async def test_what_is_bound_on_the_client_is_stored_as_sent(pg_url: str, text: str) -> None:
    store = await PostgresStore.open(pg_url)
    try:
        made = [
            await add(
                store,
                summary=text,
                agent_id=text[:200],
                **status,
                flags=(text[:100],),
                payload={text[:100]: text, "amount": 12.5, "nested": {"k'ey": [text[:50], None, True]}},
            )
            for status in (APPROVED, PENDING, APPROVED)  # the first one reads the head
        ]
        made.append(await add(store, summary=text, idempotency_key=text[:200]))  # a key: looked up under the lock
        for request in made:
            assert await store.get(request.id) == request
            assert (await store.request_events(request.id))[0].data["summary"] == text
        report = await verify_store(store)
        assert report.ok, report
    finally:
        await store.close()


async def test_a_create_that_fails_leaves_nothing_and_the_next_one_works(pg_url: str) -> None:
    store = await PostgresStore.open(pg_url)
    try:
        first = await add(store)
        await add(store)  # the head is remembered now: the next create takes the one-message way
        with pytest.raises(psycopg.errors.UniqueViolation):
            await add(store, id=first.id)
        report = await verify_store(store)
        assert report.ok
        after = await add(store)
        assert await store.get(after.id) == after
        assert (await verify_store(store)).events_checked == report.events_checked + len(
            await store.request_events(after.id)
        )
    finally:
        await store.close()


async def test_the_head_check_reads_the_end_of_the_log_not_all_of_it(pg_url: str) -> None:
    """Every create checks the log's head. Planned from statistics, "no event after n" became a scan of the whole
    log whenever the statistics lagged behind its growth (a new database, a bulk copy): each create then read every
    event. The check must find the newest event through the primary key, with or without statistics."""
    store = await PostgresStore.open(pg_url)
    try:
        await add(store, **APPROVED)
        last = (await store.request_events((await add(store, **APPROVED)).id))[-1]
    finally:
        await store.close()
    filler = (  # a long log the planner has no statistics for (pg_class says the table is empty)
        "INSERT INTO events (seq, kind, request_id, at, data, prev_hash, hash)"
        f" SELECT {last.seq} + n, 'created', 'req_filler', '2026-01-01T00:00:00.000000Z', '{{}}', md5(n::text),"
        " md5(n::text) || md5(n::text) FROM generate_series(1, 20000) AS n"
    )
    sql(pg_url, filler, "UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE relname = 'events'")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows = conn.execute(f"EXPLAIN {pg_create._head_check(last.seq, last.hash)}".encode()).fetchall()
    plan = "\n".join(row[0] for row in rows)
    assert "Seq Scan" not in plan, plan


async def test_the_asked_again_check_runs_in_the_one_message_and_probes_its_index(pg_url: str) -> None:
    """A confident approval is checked against the agent's requests people did not approve inside the one message
    (``_asked_check``): the statement is valid SQL that passes when there is none (else every approval would fall
    back to two messages, unnoticed), fails naming the request when there is one, and finds it through migration
    0022's index, not a scan of every request."""
    store = await PostgresStore.open(pg_url)
    try:
        approved = await add(store, **APPROVED)
        pending = await add(store, **PENDING)
    finally:
        await store.close()
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        cur = psycopg.AsyncClientCursor(conn)
        await cur.execute(pg_create._asked_check(cur, ("billing-bot", approved.payload_sha256)))
        assert await cur.fetchall() == [(0,)]
        with pytest.raises(psycopg.errors.InvalidTextRepresentation, match=f"asked before: {pending.id}"):
            await cur.execute(pg_create._asked_check(cur, ("billing-bot", pending.payload_sha256)))
        await cur.execute("SET enable_seqscan = off")  # a table this small is read whole otherwise
        await cur.execute(f"EXPLAIN {pg_create._asked_check(cur, ('billing-bot', pending.payload_sha256))}")
        plan = "\n".join(row[0] for row in await cur.fetchall())
    assert "requests_asked_of_people" in plan, plan
