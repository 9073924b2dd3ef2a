"""The anomaly history is per action and field whatever their case (review R7): every store keeps and reads the
numbers and the actions known per agent under the rules' folds (``storage/folding.py``), and migration 0018 folds
the rows an older signoff wrote under the exact strings, merging variants without losing a number. The
out-of-distribution profile reads the approved requests of an action in any case the same way (migration 0020 indexes
them so)."""

from __future__ import annotations

import dataclasses
import sqlite3
from contextlib import closing
from pathlib import Path

import psycopg

from signoff.storage import DecidedBy, RequestQuery, Status, Store, Verdict
from signoff.storage.approvals import queries as q
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.pg_url import is_postgres_url
from signoff.tools.approvals import lifecycle
from signoff.tools.approvals.policy_config import Anomaly
from signoff.tools.approvals.streams import Windows
from tests.factories import T0, add


async def approved(store: Store, action: str, payload: dict[str, object], agent_id: str = "bot") -> str:
    made = await add(
        store, action=action, payload=payload, agent_id=agent_id, status=Status.APPROVED, decided_by=DecidedBy.POLICY
    )
    return made.id


async def test_every_store_keeps_and_reads_the_history_whatever_the_case_of_the_action_and_its_keys(
    store: Store,
) -> None:
    first = await approved(store, "Refunds.Issue", {"Amount": 10, "Refund": {"Fee": 1}})
    await approved(store, "refunds.issue", {"amount": 20, "refund": {"fee": 2}})
    await approved(store, "REFUNDS.ISSUE", {"\uff21mount\u200b": 30, "Maß": 5})  # full-width A, a zero-width space
    history = await store.action_history("rEFUNDS.issue", "bot", ["amount", "AMOUNT", "refund.FEE", "MASS", "none"])
    assert history.seen_from_agent
    assert history.values == {
        "amount": (30.0, 20.0, 10.0),  # newest first, across every variant
        "AMOUNT": (30.0, 20.0, 10.0),  # answered under the name asked for
        "refund.FEE": (2.0, 1.0),  # nested keys fold one by one
        "MASS": (5.0,),  # Unicode case folding, not just lower(): ß is ss
        "none": (),
    }
    assert (await store.get(first)).action == "Refunds.Issue"  # the request itself keeps what the agent wrote
    assert not (await store.action_history("refunds.issue", "BOT", [])).seen_from_agent  # agents are not folded
    assert (await store.action_history("refunds.issue", "other", ["amount"])).values == {"amount": (30.0, 20.0, 10.0)}


async def test_a_request_people_approve_joins_the_folded_history(store: Store) -> None:
    pending = await add(store, action="Payments.Transfer", payload={"Amount": 700}, agent_id="bot")
    assert not (await store.action_history("payments.transfer", "bot", [])).seen_from_agent
    await store.update(pending.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0))
    history = await store.action_history("PAYMENTS.TRANSFER", "bot", ["amount"])
    assert history.seen_from_agent and history.values == {"amount": (700.0,)}


ROWS = [  # (action, field, value) in the order they were approved, as signoff before migration 0018 kept them
    ("Refunds.Issue", "Amount", 10.0),
    ("refunds.issue", "amount", 20.0),
    ("REFUNDS.ISSUE", "Refund.Fee", 1.0),
    ("refunds.issue", "\uff21mount", 30.0),
    ("refunds.issue", "Maß", 5.0),
    ("payments.transfer", "amount", 99.0),
]
KNOWN = [("bot", "Refunds.Issue"), ("bot", "refunds.issue"), ("other", "REFUNDS.issue"), ("bot", "payments.transfer")]


async def test_migration_0018_folds_an_existing_history_and_it_still_answers(database: str) -> None:
    store = await opened(database)
    await store.close()
    behind_signoffs_back(  # a database from before 0018, with mixed-case history rows
        database,
        ["DELETE FROM schema_migrations WHERE version = 18"],
        [("INSERT INTO action_values (action, field, value) VALUES ({0}, {0}, {0})", row) for row in ROWS]
        + [("INSERT INTO agent_actions (agent_id, action) VALUES ({0}, {0})", row) for row in KNOWN],
    )
    store = await opened(database)  # migrates 0018
    try:
        history = await store.action_history("refunds.issue", "bot", ["Amount", "refund.fee", "MASS"])
        assert history.seen_from_agent
        assert history.values == {"Amount": (30.0, 20.0, 10.0), "refund.fee": (1.0,), "MASS": (5.0,)}
        assert (await store.action_history("Refunds.ISSUE", "other", [])).seen_from_agent
        assert (await store.action_history("payments.transfer", "bot", ["amount"])).values == {"amount": (99.0,)}
        await approved(store, "REFUNDS.Issue", {"AMOUNT": 40})  # written folded: joins the migrated rows
        history = await store.action_history("refunds.issue", "bot", ["amount"])
        assert history.values == {"amount": (40.0, 30.0, 20.0, 10.0)}
    finally:
        await store.close()
    values, known = read_rows(database)
    assert values == [  # nothing lost, each in its place, every name folded
        ("refunds.issue", "amount", 10.0),
        ("refunds.issue", "amount", 20.0),
        ("refunds.issue", "refund.fee", 1.0),
        ("refunds.issue", "amount", 30.0),
        ("refunds.issue", "mass", 5.0),
        ("payments.transfer", "amount", 99.0),
        ("refunds.issue", "amount", 40.0),
    ]
    assert known == [("bot", "payments.transfer"), ("bot", "refunds.issue"), ("other", "refunds.issue")]


async def opened(database: str) -> Store:
    if is_postgres_url(database):
        from signoff.storage.approvals.postgres import PostgresStore

        return await PostgresStore.open(database)
    return await SqliteStore.open(Path(database))


def behind_signoffs_back(database: str, statements: list[str], inserts: list[tuple[str, tuple[object, ...]]]) -> None:
    """Run ``statements``, then each insert (``{0}`` stands for a placeholder), as the database's owner."""
    if is_postgres_url(database):
        with psycopg.connect(database, autocommit=True) as conn, conn.transaction():
            for statement in statements:
                conn.execute(statement.encode())
            for template, params in inserts:
                conn.execute(template.format("%s"), params)
        return
    with closing(sqlite3.connect(database)) as conn, conn:
        for statement in statements:
            conn.execute(statement)
        for template, params in inserts:
            conn.execute(template.format("?"), params)


def read_rows(database: str) -> tuple[list[tuple[str, str, float]], list[tuple[str, str]]]:
    """The history tables as they are: the numbers in the order they were approved, the known actions sorted."""
    values_sql = "SELECT action, field, value FROM action_values ORDER BY seq"
    known_sql = "SELECT agent_id, action FROM agent_actions ORDER BY agent_id, action"
    if is_postgres_url(database):
        with psycopg.connect(database, autocommit=True) as conn:
            return (
                [tuple(row) for row in conn.execute(values_sql).fetchall()],
                [tuple(row) for row in conn.execute(known_sql).fetchall()],
            )
    with closing(sqlite3.connect(database)) as conn:
        return conn.execute(values_sql).fetchall(), conn.execute(known_sql).fetchall()


SPELLINGS = ["refunds.issue", "Refunds.Issue", "REFUNDS.ISSUE", "rEFUNDS.iSSUE"]


async def test_every_store_finds_the_approved_requests_of_every_spelling_of_an_action(store: Store) -> None:
    """What the out-of-distribution profile learns from: the approved requests of the action whatever its case
    (``RequestQuery.folded_action``), as the anomaly history; an exact ``action`` filter stays exact."""
    variants = [await approved(store, action, {"currency": "EUR"}) for action in SPELLINGS]
    await approved(store, "refunds.issued", {"currency": "EUR"})
    await add(store, action="Refunds.Issue", payload={"currency": "XAU"})  # pending: teaches nothing
    query = RequestQuery(folded_action="rEFUNDS.issue", status=Status.APPROVED, limit=10)
    assert [r.id for r in (await store.list_requests(query)).items] == variants[::-1]  # newest first
    first = await store.list_requests(dataclasses.replace(query, limit=3))
    rest = await store.list_requests(dataclasses.replace(query, limit=3, before=first.next_cursor))
    assert [r.id for r in (*first.items, *rest.items)] == variants[::-1]
    exact = await store.list_requests(RequestQuery(action="Refunds.Issue", status=Status.APPROVED))
    assert [r.id for r in exact.items] == [variants[1]]
    profile = await Windows(store).recent_profile("REFUNDS.issue", Anomaly(warmup=1))
    assert profile.count == len(SPELLINGS)


async def test_the_approved_requests_of_an_action_in_any_case_are_read_by_an_index(database: str) -> None:
    """Migration 0020 indexes the expression each engine compares (``FOLDED_ACTION``), so the profile's read is a
    walk of one index range, not of every request."""
    store = await opened(database)
    await store.close()
    where = " WHERE r.status = {0} AND {1} ORDER BY r.created_at DESC, r.id DESC LIMIT 50"
    if is_postgres_url(database):
        from signoff.storage.approvals import pg_queries

        sql = pg_queries.SELECT_REQUESTS + where.format("%s", pg_queries.FOLDED_ACTION)
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("SET enable_seqscan = off")  # an empty table: the planner would read it whole otherwise
            plan = " ".join(row[0] for row in conn.execute(f"EXPLAIN {sql}".encode(), ("approved", "refunds.issue")))
    else:
        sql = q.SELECT_REQUESTS + where.format("?", q.FOLDED_ACTION)
        with closing(sqlite3.connect(database)) as conn:
            rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", ("approved", "refunds.issue")).fetchall()
        plan = " ".join(row[3] for row in rows)
    assert "requests_status_folded_created" in plan, plan
    assert "SORT" not in plan.upper(), plan  # the index gives them newest first
