"""The writers' lock on PostgreSQL cannot stall signoff without bound (review R6): a write waits for it a bounded time
and then fails "database unavailable" saying why, changing nothing; a replica frozen while it holds the lock has its
session ended by the server, so the other replicas' writes go on; and a decision that depends on time (a use of an
approval, a vote) is judged at the moment it is written, not before it waited for the lock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import anyio
import psycopg
import pytest

from signoff.storage import ApprovalRequest, Conflict, DecidedBy, RequestQuery, Status, Verdict, pg_db
from signoff.storage.approvals.postgres import PostgresStore
from signoff.storage.errors import DatabaseUnavailable
from signoff.storage.pg_db import WRITE_LOCK, PostgresDatabase
from signoff.tools.approvals.service import ApprovalService
from tests.factories import add
from tests.fakes.clock import FakeClock

BOUND = 60  #: generous: what the tests wait on happens in well under a second


async def waiting_for_the_lock(url: str) -> bool:
    """Whether a session is waiting for the writers' lock (PostgreSQL's own view; it sends no event for it)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = %s",
            (WRITE_LOCK & 0xFFFF_FFFF,),
        )
        row = await cur.fetchone()
    return bool(row and row[0])


async def until_waiting(url: str) -> None:
    while not await waiting_for_the_lock(url):
        await anyio.sleep(0.02)  # polls PostgreSQL's lock table: there is nothing to await


@pytest.fixture
async def holder(pg_url: str) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    """Another process's session, not signoff's pool (so no timeout of signoff's ends it): it takes the lock."""
    conn = await psycopg.AsyncConnection.connect(pg_url)
    try:
        yield conn
    finally:
        await conn.close()


async def outcome_within(
    bound: float, write: Callable[[], Awaitable[object]], unblock: Callable[[], Awaitable[None]]
) -> object:
    """What ``write`` returned or raised if it ended within ``bound`` seconds, else ``TimeoutError()``: a write is
    shielded from cancellation, so a write that waits without bound is let go on by ``unblock`` for the test to end."""
    done = anyio.Event()
    outcome: list[object] = []

    async def run() -> None:
        try:
            outcome.append(await write())
        except Exception as exc:
            outcome.append(exc)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.move_on_after(bound):
            await done.wait()
        late = not done.is_set()
        await unblock()
    return TimeoutError() if late else outcome[0]


async def test_a_write_that_cannot_get_the_lock_fails_saying_why_and_saves_nothing(
    pg_url: str, holder: psycopg.AsyncConnection[tuple[object, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_db, "LOCK_TIMEOUT_SECONDS", 0.3, raising=False)  # read when the pool connects
    store = await PostgresStore.open(pg_url, poll_interval=600)
    try:
        await holder.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        failed = await outcome_within(BOUND, lambda: add(store), holder.rollback)
        assert isinstance(failed, DatabaseUnavailable), failed
        assert "did not give this write its lock within 0.3 s" in failed.message
        assert "nothing was saved" in failed.message and "pg_locks" in failed.message
        assert (await store.list_requests(RequestQuery())).items == ()
        await add(store)  # the lock free again, writes work on the same pool
    finally:
        await store.close()


async def test_a_replica_frozen_holding_the_lock_is_cut_off_and_the_others_write_on(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await PostgresStore.open(pg_url, poll_interval=600)
    monkeypatch.setattr(pg_db, "IDLE_IN_TRANSACTION_SECONDS", 1.0, raising=False)  # a frozen second
    frozen = await PostgresDatabase.open(pg_url, max_size=1)  # another replica's pool
    monkeypatch.undo()
    holding, thawed = anyio.Event(), anyio.Event()
    failed: list[BaseException] = []

    async def frozen_replica() -> None:
        try:
            async with frozen.transaction() as conn:
                holding.set()  # it holds the writers' lock, and stops between two statements (SIGSTOP, a paused VM)
                await thawed.wait()
                await conn.execute("SELECT 1")
        except DatabaseUnavailable as exc:
            failed.append(exc)

    async def thaw() -> None:
        thawed.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(frozen_replica)
            with anyio.fail_after(BOUND):
                await holding.wait()
            written = await outcome_within(BOUND, lambda: add(store), thaw)  # waits until the server ends it
            thawed.set()
        assert isinstance(written, ApprovalRequest), written
        assert await store.get(written.id) == written
        assert len(failed) == 1, "the frozen replica's write must fail when it wakes: its session is gone"
        await add(store)
    finally:
        await frozen.close()
        await store.close()


@pytest.fixture
async def service(pg_url: str) -> AsyncIterator[tuple[ApprovalService, FakeClock]]:
    store = await PostgresStore.open(pg_url, poll_interval=600)
    clock = FakeClock()
    try:
        yield ApprovalService(store, clock=clock), clock
    finally:
        await store.close()


async def test_a_use_that_waited_for_the_lock_past_the_approvals_lapse_is_refused(
    pg_url: str,
    holder: psycopg.AsyncConnection[tuple[object, ...]],
    service: tuple[ApprovalService, FakeClock],
) -> None:
    approvals, clock = service
    now = clock.now()
    approved = await add(
        approvals.store,
        status=Status.APPROVED,
        decided_by=DecidedBy.HUMAN,
        decided_at=now,
        created_at=now,
        expires_at=now + timedelta(seconds=60),  # no receipt TTL: the approval lapses with the request
    )
    await holder.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
    refused: list[Conflict] = []

    async def use() -> None:  # what permission_prompt does before it answers "allow"
        with pytest.raises(Conflict) as caught:
            await approvals.consume(approved.id)
        refused.append(caught.value)

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(use)
            await until_waiting(pg_url)
            clock.advance(61)  # the approval lapses while the use waits for the lock
            await holder.rollback()
    assert "lapsed at" in refused[0].message
    stored = await approvals.store.get(approved.id)
    assert stored is not None and stored.consumed_at is None


async def test_a_vote_that_waited_for_the_lock_past_the_expiry_does_not_decide(
    pg_url: str,
    holder: psycopg.AsyncConnection[tuple[object, ...]],
    service: tuple[ApprovalService, FakeClock],
) -> None:
    approvals, clock = service
    now = clock.now()
    pending = await add(approvals.store, created_at=now, expires_at=now + timedelta(seconds=60))
    await holder.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
    refused: list[Conflict] = []

    async def vote() -> None:
        with pytest.raises(Conflict) as caught:
            await approvals.vote(pending.id, "alice", Verdict.APPROVE, "ok")
        refused.append(caught.value)

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(vote)
            await until_waiting(pg_url)
            clock.advance(61)  # the request expires while the vote waits for the lock
            await holder.rollback()
    assert "your vote was not recorded" in refused[0].message
    stored = await approvals.store.get(pending.id)
    assert stored is not None and stored.status is Status.EXPIRED and stored.votes == ()
