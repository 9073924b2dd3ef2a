"""What only the PostgreSQL store promises: several hosts on one database (one chain, the first decision wins, the
outbox claimed once, NOTIFY wakes waiters elsewhere), migrations, the database's own guards, and clear errors.

The behaviour every store shares is proven by the contract suites (tests/conftest.py's ``store`` fixture runs them on
PostgreSQL too). Two ``PostgresStore``s on one database stand for two servers on two hosts: they share nothing but
the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import anyio
import psycopg
import pytest

from signoff.storage import Conflict, Status, Verdict
from signoff.storage.approvals.postgres import PostgresStore
from signoff.storage.audit import verify_store
from signoff.storage.errors import DatabaseUnavailable
from signoff.storage.migrations import SchemaTooNew
from signoff.storage.pg_db import available
from signoff.storage.pg_url import is_postgres_url, redacted
from signoff.tools.approvals import lifecycle
from tests.factories import T0, add


@pytest.fixture
async def hosts(pg_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one database, as two servers on two hosts; their safety-net poll is slower than any test, so
    only NOTIFY can wake one for the other's change."""
    a = await PostgresStore.open(pg_url, poll_interval=600)
    b = await PostgresStore.open(pg_url, poll_interval=600)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def sql(url: str, *statements: str) -> None:
    """Run statements as the database's owner, behind signoff's back."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


async def test_data_survives_reopening(pg_url: str) -> None:
    store = await PostgresStore.open(pg_url)
    request = await add(store)
    await store.close()
    reopened = await PostgresStore.open(pg_url)
    try:
        assert await reopened.get(request.id) == request
    finally:
        await reopened.close()


async def test_migrations_run_once_when_several_servers_start_at_once(pg_url: str) -> None:
    async def open_and_close() -> None:
        await (await PostgresStore.open(pg_url)).close()

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(open_and_close)
    with psycopg.connect(pg_url) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [m.version for m in available()]


async def test_a_database_migrated_by_a_newer_signoff_is_refused(pg_url: str) -> None:
    await (await PostgresStore.open(pg_url)).close()
    sql(pg_url, "INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future.sql')")
    with pytest.raises(SchemaTooNew, match="schema version 9999") as caught:
        await PostgresStore.open(pg_url.replace("signoff@", "signoff:s3cret@"))
    assert "s3cret" not in str(caught.value)


async def test_an_unreachable_database_is_one_clear_error_without_the_password() -> None:
    url = "postgresql://signoff:s3cret@127.0.0.1:1/signoff?connect_timeout=5"
    with pytest.raises(DatabaseUnavailable, match=r"cannot open the PostgreSQL database postgresql://signoff:\*\*\*@"):
        await PostgresStore.open(url)
    try:
        await PostgresStore.open(url)
    except DatabaseUnavailable as exc:
        assert "s3cret" not in str(exc)


def test_urls_are_told_from_paths_and_passwords_are_hidden() -> None:
    assert is_postgres_url("postgresql://u@h/db") and is_postgres_url("postgres://u@h/db")
    assert not is_postgres_url("/var/lib/signoff/signoff.db") and not is_postgres_url("sqlite:///x.db")
    assert redacted("postgresql://u:p%40ss@db.example:5432/signoff") == "postgresql://u:***@db.example:5432/signoff"
    assert redacted("postgresql://u@h/db") == "postgresql://u@h/db"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE requests SET status = 'approved' WHERE status = 'rejected'",
        "UPDATE requests SET payload = '{}'",
        "DELETE FROM requests",
        "UPDATE votes SET verdict = 'approve'",
        "DELETE FROM votes",
        "UPDATE events SET data = '{}'",
        "DELETE FROM events",
        "INSERT INTO events (seq, kind, request_id, at, data, prev_hash, hash) "
        "VALUES (0, 'voted', 'x', 'x', '{}', 'x', 'x')",
    ],
)
async def test_decided_requests_votes_and_events_refuse_changes(pg_url: str, statement: str) -> None:
    store = await PostgresStore.open(pg_url)
    try:
        rejected = await add(store)
        await store.update(rejected.id, lifecycle.vote("bob", Verdict.REJECT, "no", T0))
        with pytest.raises(psycopg.errors.RaiseException, match=r"cannot|start at 1"):
            sql(pg_url, statement)
        assert (await verify_store(store)).ok
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("statements", "reason"),
    [
        (
            ["ALTER TABLE events DISABLE TRIGGER USER", "UPDATE events SET data = '{\"x\": 1}' WHERE seq = 4"],
            "its contents do not match its hash",
        ),
        (
            [
                "ALTER TABLE requests DISABLE TRIGGER USER",
                "UPDATE requests SET status = 'approved', decided_by = 'human' WHERE status = 'rejected'",
            ],
            "row says approved but its events say rejected",
        ),
        (["ALTER TABLE votes DISABLE TRIGGER USER", "DELETE FROM votes WHERE reviewer = 'alice'"], "votes differ"),
    ],
)
async def test_audit_verify_names_an_edit_made_behind_signoffs_back(
    pg_url: str, statements: list[str], reason: str
) -> None:
    store = await PostgresStore.open(pg_url)
    try:
        approved, rejected = await add(store), await add(store)
        await store.update(approved.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0))
        await store.update(rejected.id, lifecycle.vote("bob", Verdict.REJECT, "no", T0))
        assert (await verify_store(store)).ok
        sql(pg_url, *statements)
        report = await verify_store(store)
        assert not report.ok and reason in (report.reason or "")
    finally:
        await store.close()


async def test_a_vote_on_one_host_wakes_an_agent_waiting_on_another(hosts: tuple[PostgresStore, PostgresStore]) -> None:
    waiting_host, voting_host = hosts
    request = await add(waiting_host)
    token = await waiting_host.change_token()
    woke = anyio.Event()

    async def agent() -> None:
        await waiting_host.wait_for_change(token, timeout=60)
        woke.set()

    with anyio.fail_after(10):  # the waiter's poll is 600 s: only NOTIFY wakes it in time
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent)
            await voting_host.update(request.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0))
            await woke.wait()
    assert (await waiting_host.get(request.id)).status is Status.APPROVED  # type: ignore[union-attr]


async def test_concurrent_votes_on_two_hosts_only_the_first_wins_and_the_chain_stays_one(
    hosts: tuple[PostgresStore, PostgresStore],
) -> None:
    requests = [await add(hosts[i % 2]) for i in range(6)]
    outcomes: list[str] = []

    async def vote(host: PostgresStore, request_id: str, name: str, verdict: Verdict) -> None:
        try:
            await host.update(request_id, lifecycle.vote(name, verdict, "my call", T0))
            outcomes.append(f"{request_id} {name}")
        except Conflict:
            pass

    async with anyio.create_task_group() as tg:
        for request in requests:
            tg.start_soon(vote, hosts[0], request.id, "alice", Verdict.APPROVE)
            tg.start_soon(vote, hosts[1], request.id, "bob", Verdict.REJECT)
            tg.start_soon(add, hosts[0])  # new requests append to the chain meanwhile, from both hosts
            tg.start_soon(add, hosts[1])
    for request in requests:
        decided = await hosts[1].get(request.id)
        assert decided is not None and decided.status in (Status.APPROVED, Status.REJECTED)
        assert len(decided.votes) == 1 and sum(o.startswith(request.id) for o in outcomes) == 1
    report = await verify_store(hosts[0])
    assert report.ok, report


async def test_two_hosts_never_claim_the_same_notification(hosts: tuple[PostgresStore, PostgresStore]) -> None:
    for _ in range(12):
        await add(hosts[0])
    later = T0 + timedelta(days=1)
    claims: list[list[int]] = [[], []]

    async def claim(i: int) -> None:
        for _ in range(6):
            claims[i] += [item.id for item in await hosts[i].claim_outbox(later, limit=2)]

    async with anyio.create_task_group() as tg:
        tg.start_soon(claim, 0)
        tg.start_soon(claim, 1)
    assert not set(claims[0]) & set(claims[1])
    assert len(claims[0]) + len(claims[1]) == 12


async def test_a_waiter_is_woken_after_its_listener_lost_its_connection(
    pg_url: str, hosts: tuple[PostgresStore, PostgresStore]
) -> None:
    waiting_host, voting_host = hosts
    request = await add(waiting_host)
    sql(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN signoff_changes'")
    token = await waiting_host.change_token()
    woke = anyio.Event()

    async def agent() -> None:
        await waiting_host.wait_for_change(token, timeout=60)
        woke.set()

    with anyio.fail_after(20):  # the listener reconnects (1 s) and wakes its waiters to look again
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent)
            await voting_host.update(request.id, lifecycle.cancel("changed plan", T0))
            await woke.wait()


async def test_the_model_plane_shares_the_database_and_the_one_chain_that_audit_verify_checks(pg_url: str) -> None:
    from signoff.storage.models.postgres import PostgresModelStore
    from tests.contract.test_model_store_contract import registered

    approvals = await PostgresStore.open(pg_url)
    models = await PostgresModelStore.open(pg_url)
    try:
        await add(approvals)
        await registered(models, "v1", "v2")
        await add(approvals)
        report = await verify_store(approvals, models=models)
        assert report.ok and report.events_checked == 6, report  # 2 requests (2 events each), 2 registrations
        sql(pg_url, "UPDATE model_versions SET endpoint = 'http://evil/v2' WHERE version = 'v2'")
        report = await verify_store(approvals, models=models)
        assert not report.ok and report.column == "endpoint", report
    finally:
        await models.close()
        await approvals.close()
