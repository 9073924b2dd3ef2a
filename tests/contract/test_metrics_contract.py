"""The shared metrics (``Store.metrics``, ``ModelStore.inference_totals``): the same numbers from every backend."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from signoff.storage import (
    DecidedBy,
    DeliveryMark,
    DeliveryState,
    EventKind,
    Inference,
    ModelStore,
    NewEvent,
    Priority,
    Status,
    Store,
    Trigger,
    TriggerKind,
    Verdict,
    metrics_queries,
)
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.migrations import available, statements
from signoff.storage.models.memory import MemoryModelStore
from signoff.storage.models.sqlite import SqliteModelStore
from signoff.tools.approvals import lifecycle
from tests.factories import T0, add


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def model_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ModelStore]:
    backend: ModelStore
    if request.param == "memory":
        backend = MemoryModelStore(seed=1)
    elif request.param == "sqlite":
        backend = await SqliteModelStore.open(tmp_path / "m.db")
    else:
        from signoff.storage.models.postgres import PostgresModelStore  # psycopg: the optional `postgres` extra

        backend = await PostgresModelStore.open(request.getfixturevalue("pg_url"))
    try:
        yield backend
    finally:
        await backend.close()


async def test_an_empty_store_counts_nothing(store: Store) -> None:
    metrics = await store.metrics()
    assert (metrics.requests, metrics.pending, metrics.oldest_pending) == ({}, {}, None)
    assert metrics.decision_seconds.count == 0 and metrics.decision_seconds.buckets[-1] == (math.inf, 0)
    assert (metrics.triggers, metrics.votes, metrics.escalations) == ({}, {}, 0)
    notifications = metrics.notifications
    assert (dict(notifications.counts), dict(notifications.retrying), dict(notifications.dead)) == ({}, {}, {})


async def test_every_state_change_moves_the_counts(store: Store) -> None:
    rule = Trigger(kind=TriggerKind.RULE, detail="amount over 10000")
    approved = await add(store, triggers=(rule, rule))
    rejected = await add(store, priority=Priority.HIGH)
    expired = await add(store, action="db.drop")
    cancelled = await add(store)
    waiting = await add(store, priority=Priority.URGENT, escalate_at=T0)
    await add(store, status=Status.APPROVED, decided_by=DecidedBy.POLICY, decided_at=T0, triggers=())

    await store.update(
        approved.id, lifecycle.vote("alice", Verdict.APPROVE, None, approved.created_at + timedelta(minutes=40))
    )
    at = rejected.created_at + timedelta(seconds=20)
    await store.update(rejected.id, lifecycle.vote("bob", Verdict.REJECT, "no", at, reviewer_ids=("U0BOB",)))
    await store.update(expired.id, lifecycle.expire(expired.expires_at))
    await store.update(cancelled.id, lifecycle.cancel("changed plan", T0 + timedelta(minutes=5)))
    await store.update(waiting.id, lifecycle.escalate(T0 + timedelta(minutes=1)))

    metrics = await store.metrics()
    assert metrics.requests == {
        ("payments.transfer", "approved", "human"): 1,
        ("payments.transfer", "rejected", "human"): 1,
        ("db.drop", "expired", ""): 1,
        ("payments.transfer", "cancelled", ""): 1,
        ("payments.transfer", "pending", ""): 1,
        ("payments.transfer", "approved", "policy"): 1,
    }
    assert metrics.pending == {"urgent": 1}
    assert metrics.oldest_pending == waiting.created_at
    assert metrics.triggers == {"rule": 2, "confidence": 4}
    assert metrics.escalations == 1
    assert metrics.votes == {("approve", "cli_or_api"): 1, ("reject", "slack"): 1}
    # 20 seconds and 40 minutes (cumulative buckets)
    buckets = dict(metrics.decision_seconds.buckets)
    assert (buckets[10.0], buckets[30.0], buckets[1800.0], buckets[3600.0], buckets[math.inf]) == (0, 1, 1, 2, 2)
    assert metrics.decision_seconds.sum == pytest.approx(2420)


async def test_the_pending_count_of_an_action_falls_when_it_is_decided(store: Store) -> None:
    request = await add(store)
    assert (await store.metrics()).requests == {("payments.transfer", "pending", ""): 1}
    await store.update(request.id, lifecycle.expire(request.expires_at))
    assert (await store.metrics()).requests == {("payments.transfer", "expired", ""): 1}


async def test_notifications_count_deliveries_and_give_ups_per_notifier_and_show_what_is_stuck(store: Store) -> None:
    await add(store)
    await add(store)
    now = T0 + timedelta(hours=1)
    items = await store.claim_outbox(now)
    one, two = sorted(items, key=lambda i: i.request_id)
    names = ["console", "slack", "webhook"]
    ok = [DeliveryMark(notifier="console", state=DeliveryState.DELIVERED, at=now)]
    shown = NewEvent(kind=EventKind.NOTIFIED, request_id=one.request_id, at=now, data={"notifier": "console"})
    retry = DeliveryMark(
        notifier="slack", state=DeliveryState.PENDING, attempts=2, next_attempt_at=now, first_failed_at=now
    )
    dead = DeliveryMark(notifier="webhook", state=DeliveryState.DEAD, attempts=1, last_error="410 Gone", at=now)
    gave_up = NewEvent(kind=EventKind.NOTIFY_FAILED, request_id=one.request_id, at=now, data={"notifier": "webhook"})
    await store.record_deliveries(
        one, [*ok, retry, dead], notifiers=names, now=now, next_attempt_at=now, events=[shown, gave_up]
    )
    shown_two = NewEvent(kind=EventKind.NOTIFIED, request_id=two.request_id, at=now, data={"notifier": "console"})
    everyone = [DeliveryMark(notifier=n, state=DeliveryState.DELIVERED, at=now) for n in names]
    await store.record_deliveries(two, everyone, notifiers=names, now=now, next_attempt_at=now, events=[shown_two])
    notifications = (await store.metrics()).notifications
    assert dict(notifications.counts) == {("console", "delivered"): 2, ("webhook", "dead"): 1}
    assert (dict(notifications.retrying), dict(notifications.dead)) == ({"slack": 1}, {"webhook": 1})
    await store.requeue_dead(None, now)
    notifications = (await store.metrics()).notifications
    assert dict(notifications.dead) == {} and dict(notifications.counts)[("webhook", "dead")] == 1  # a counter


async def test_inference_totals_are_exact_per_version(model_store: ModelStore) -> None:
    batch = [
        Inference(model="fraud", version=v, at=T0 + timedelta(minutes=i % 3), latency_ms=float(i), ok=i % 5 != 0)
        for i in range(100)
        for v in ("v1", "v2")
        if v == "v1" or i < 10
    ]
    await model_store.record_inferences(batch[:50])
    await model_store.record_inferences(batch[50:])  # the same minutes again: rows grow
    totals = {(t.model, t.version): t for t in await model_store.inference_totals()}
    assert set(totals) == {("fraud", "v1"), ("fraud", "v2")}
    assert (totals[("fraud", "v1")].inferences, totals[("fraud", "v1")].errors) == (100, 20)
    assert totals[("fraud", "v1")].latency_seconds_sum == pytest.approx(sum(range(100)) / 1000)
    assert (totals[("fraud", "v2")].inferences, totals[("fraud", "v2")].errors) == (10, 2)


async def test_the_migration_counts_what_was_there_before_it(tmp_path: Path) -> None:
    """A database written before 0011 gets its counters from its rows, the same as if they had been kept."""
    path = tmp_path / "signoff.db"
    store = await SqliteStore.open(path)
    try:
        request = await add(store)
        await store.update(request.id, lifecycle.vote("alice", Verdict.APPROVE, None, request.created_at))
        await add(store)
        kept = await store.metrics()
    finally:
        await store.close()
    sql = next(m.sql for m in available() if m.name.startswith("0011_"))
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DELETE FROM metric_counts")
    for statement in statements(sql):  # the backfill statements only: skip the schema it already has
        if "\n".join(ln for ln in statement.splitlines() if not ln.startswith("--")).startswith("INSERT"):
            db.execute(statement)
    db.close()
    store = await SqliteStore.open(path)
    try:
        assert await store.metrics() == kept
    finally:
        await store.close()


@pytest.mark.parametrize(
    "name", ["APPROVAL_COUNTS", "MODEL_COUNTS", "PENDING_BY_PRIORITY", "OLDEST_PENDING", "DELIVERIES_STUCK"]
)
async def test_every_metrics_query_reads_an_index_not_the_history(name: str, tmp_path: Path) -> None:
    await (await SqliteStore.open(tmp_path / "signoff.db")).close()
    db = sqlite3.connect(tmp_path / "signoff.db")
    plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + getattr(metrics_queries, name))]
    db.close()
    assert all("INDEX" in step or "PRIMARY KEY" in step for step in plan if step.startswith(("SCAN", "SEARCH"))), plan
