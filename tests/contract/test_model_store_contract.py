"""The ModelStore contract: every backend (memory, SQLite; later PostgreSQL) must pass all of it."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from signoff.storage import (
    ChangeKind,
    ChangeStatus,
    Conflict,
    Inference,
    ModelChange,
    ModelState,
    ModelStore,
    ModelVersion,
    NewChange,
    NotFound,
    Serving,
    Settlement,
)
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.models.memory import MemoryModelStore
from signoff.storage.models.sampling import MAX_WINDOW_SAMPLES, PERIOD_MINUTES, RESERVOIR_SIZE
from signoff.storage.models.sqlite import SqliteModelStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SALT = "00" * 16


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def model_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ModelStore]:
    backend: ModelStore
    if request.param == "memory":
        backend = MemoryModelStore(seed=1)
    elif request.param == "sqlite":
        backend = await SqliteModelStore.open(tmp_path / "m.db", seed=1)
    else:
        from signoff.storage.models.postgres import PostgresModelStore  # psycopg: the optional `postgres` extra

        backend = await PostgresModelStore.open(request.getfixturevalue("pg_url"), seed=1)
    try:
        yield backend
    finally:
        await backend.close()


def version(name: str = "fraud", v: str = "v1", **overrides: object) -> ModelVersion:
    fields: dict[str, object] = {
        "model": name,
        "version": v,
        "endpoint": f"http://{name}/{v}",
        "metadata": {"framework": "onnx", "size": 3},
        "lineage": {"parent": None},
        "registered_at": T0,
        "registered_by": "bot",
    }
    fields.update(overrides)
    return ModelVersion(**fields)  # type: ignore[arg-type]


def change(kind: ChangeKind = ChangeKind.SET_TRAFFIC, **overrides: object) -> NewChange:
    fields: dict[str, object] = {"kind": kind, "at": T0, "requested_by": "bot", "reason": "why", "payload": {"a": 1}}
    fields.update(overrides)
    return NewChange(**fields)  # type: ignore[arg-type]


async def registered(store: ModelStore, *versions: str) -> ModelState:
    for v in versions:
        await store.register(version(v=v), SALT, change(ChangeKind.REGISTER, payload={"version": v}))
    state = await store.get_model("fraud")
    assert state is not None
    return state


def serve(weights: dict[str, int], production: str | None = "v1") -> Serving:
    return Serving(production=production, previous=None, weights=weights)


async def test_register_creates_the_model_and_keeps_versions_in_order(model_store: ModelStore) -> None:
    state = await registered(model_store, "v1", "v2", "v0")
    assert [v.version for v in state.versions] == ["v1", "v2", "v0"]
    assert state.versions[0] == version(v="v1")
    assert (state.salt, state.serving, state.created_at) == (SALT, Serving(), T0)
    history = await model_store.history("fraud")
    assert [(c.kind, c.status) for c in history] == [(ChangeKind.REGISTER, ChangeStatus.APPLIED)] * 3
    assert state.revision == history[-1].seq
    assert [s.name for s in await model_store.list_models()] == ["fraud"]


async def test_registering_an_existing_version_returns_it_and_writes_nothing(model_store: ModelStore) -> None:
    await registered(model_store, "v1")
    before = await model_store.history("fraud")
    existing, created = await model_store.register(version(endpoint="http://other"), "ff" * 16, change())
    assert (existing, created) == (version(), False)
    assert await model_store.history("fraud") == before
    assert (await model_store.get_model("fraud")).salt == SALT  # type: ignore[union-attr]


async def test_apply_now_changes_serving_and_history_together(model_store: ModelStore) -> None:
    await registered(model_store, "v1", "v2")
    applied = await model_store.apply_now("fraud", change(outcome="at once"), lambda s: serve({"v1": 10000}))
    assert (applied.status, applied.serving, applied.outcome, applied.settled_at) == (
        ChangeStatus.APPLIED,
        serve({"v1": 10000}),
        "at once",
        T0,
    )
    state = await model_store.get_model("fraud")
    assert state is not None and state.serving == serve({"v1": 10000}) and state.revision == applied.seq
    assert await model_store.get_change(applied.seq) == applied


async def test_guard_action_totals_count_the_guards_applied_changes_per_model(model_store: ModelStore) -> None:
    assert await model_store.guard_action_totals() == {}
    await registered(model_store, "v1", "v2")
    for _ in range(2):
        await model_store.apply_now("fraud", change(ChangeKind.GUARD), lambda s: serve({"v1": 10000}))
    await model_store.apply_now("fraud", change(ChangeKind.ROLLBACK), lambda s: serve({"v1": 10000}))  # a person's
    await model_store.add_pending("fraud", change(ChangeKind.GUARD, request_id="r-1"))  # not applied: not counted
    assert await model_store.guard_action_totals() == {"fraud": 2}


async def test_a_decision_that_raises_writes_nothing(model_store: ModelStore) -> None:
    state = await registered(model_store, "v1")
    before = await model_store.history("fraud")

    def refuse(current: ModelState) -> Serving:
        raise Conflict("no")

    with pytest.raises(Conflict):
        await model_store.apply_now("fraud", change(), refuse)
    assert await model_store.history("fraud") == before
    assert await model_store.get_model("fraud") == state


async def test_unknown_model_is_not_found(model_store: ModelStore) -> None:
    assert await model_store.get_model("nope") is None
    with pytest.raises(NotFound):
        await model_store.apply_now("nope", change(), lambda s: Serving())
    with pytest.raises(NotFound):
        await model_store.add_pending("nope", change(request_id="req_1"))
    assert await model_store.history("nope") == []


async def test_a_pending_change_settles_exactly_once(model_store: ModelStore) -> None:
    await registered(model_store, "v1", "v2")
    pending = await model_store.add_pending("fraud", change(request_id="req_1"))
    assert pending.status is ChangeStatus.PENDING and pending.serving is None and pending.settled_at is None
    assert await model_store.pending_changes() == [pending]
    assert await model_store.pending_changes("fraud") == [pending]
    assert await model_store.pending_changes("other") == []
    seen: list[ModelChange] = []

    def approve(state: ModelState, current: ModelChange) -> Settlement:
        seen.append(current)
        return Settlement(serving=serve({"v1": 9000, "v2": 1000}), outcome="approved by alice")

    later = T0 + timedelta(minutes=5)
    settled = await model_store.settle(pending.seq, later, approve)
    assert seen == [pending]
    assert (settled.status, settled.outcome, settled.settled_at) == (ChangeStatus.APPLIED, "approved by alice", later)
    assert (await model_store.get_model("fraud")).serving == serve({"v1": 9000, "v2": 1000})  # type: ignore[union-attr]
    assert (await model_store.get_model("fraud")).revision == pending.seq  # type: ignore[union-attr]
    with pytest.raises(Conflict):
        await model_store.settle(pending.seq, later, approve)
    assert len(seen) == 1 and await model_store.pending_changes() == []


async def test_a_dropped_change_leaves_serving_alone(model_store: ModelStore) -> None:
    state = await registered(model_store, "v1")
    pending = await model_store.add_pending("fraud", change(request_id="req_1"))
    dropped = await model_store.settle(pending.seq, T0, lambda s, c: Settlement(serving=None, outcome="rejected"))
    assert (dropped.status, dropped.serving, dropped.outcome) == (ChangeStatus.DROPPED, None, "rejected")
    assert await model_store.get_model("fraud") == state


async def test_an_approval_request_links_to_one_change(model_store: ModelStore) -> None:
    await registered(model_store, "v1")
    await model_store.add_pending("fraud", change(request_id="req_1"))
    with pytest.raises(Conflict):
        await model_store.add_pending("fraud", change(request_id="req_1"))
    assert len(await model_store.pending_changes()) == 1


async def test_state_version_moves_with_state_not_with_telemetry(model_store: ModelStore) -> None:
    first = await model_store.state_version()
    await registered(model_store, "v1")
    second = await model_store.state_version()
    assert second != first
    await model_store.record_inferences([inference()])
    assert await model_store.state_version() == second


async def test_wait_for_change_wakes_on_a_change(model_store: ModelStore) -> None:
    await registered(model_store, "v1")
    token = await model_store.change_token()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(model_store.wait_for_change, token, 30)
            await model_store.apply_now("fraud", change(), lambda s: serve({"v1": 10000}))


def inference(v: str = "v1", at: datetime = T0, latency: float = 10.0, ok: bool = True, **kw: object) -> Inference:
    return Inference(model="fraud", version=v, at=at, latency_ms=latency, ok=ok, **kw)  # type: ignore[arg-type]


async def test_telemetry_sums_are_exact_and_samples_bounded(model_store: ModelStore) -> None:
    await registered(model_store, "v1", "v2")
    batch = [inference(latency=float(i), ok=i % 10 != 0, confidence=0.5 if i % 2 else None) for i in range(1000)]
    batch += [inference("v2", latency=5.0, ok=False)] * 3
    await model_store.record_inferences(batch)  # 1,003 items in one call
    found = {t.version: t for t in await model_store.telemetry("fraud", T0, T0 + timedelta(minutes=1))}
    v1 = found["v1"]
    assert (v1.count, v1.errors, v1.latency_sum) == (1000, 100, float(sum(range(1000))))
    assert (v1.confidence_sum, v1.confidence_count) == (250.0, 500)
    assert len(v1.samples) == RESERVOIR_SIZE
    assert {p for _, p in v1.samples} == {RESERVOIR_SIZE / 1000}
    assert {lat for lat, _ in v1.samples} <= {float(i) for i in range(1000)}
    assert (found["v2"].count, found["v2"].errors, found["v2"].samples) == (3, 3, ((5.0, 1.0),) * 3)


async def test_telemetry_windows_are_whole_minutes(model_store: ModelStore) -> None:
    await registered(model_store, "v1")
    await model_store.record_inferences([inference(at=T0 + timedelta(minutes=m, seconds=30)) for m in range(30)])
    window = await model_store.telemetry("fraud", T0 + timedelta(minutes=10), T0 + timedelta(minutes=20))
    assert [(t.count, len(t.samples)) for t in window] == [(10, 10)]
    assert await model_store.telemetry("fraud", T0 - timedelta(hours=1), T0) == []
    assert await model_store.telemetry("other", T0, T0 + timedelta(hours=1)) == []


async def test_telemetry_accumulates_across_batches(model_store: ModelStore) -> None:
    await registered(model_store, "v1")
    for _ in range(3):
        await model_store.record_inferences([inference(ok=False)] * 400)
    (t,) = await model_store.telemetry("fraud", T0, T0 + timedelta(minutes=1))
    assert (t.count, t.errors, len(t.samples)) == (1200, 1200, RESERVOIR_SIZE)
    assert t.samples[0][1] == pytest.approx(RESERVOIR_SIZE / 1200)


async def test_sqlite_model_store_shares_the_approval_database(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    approvals = await SqliteStore.open(path)
    models = await SqliteModelStore.open(path)
    try:
        await registered(models, "v1")
        await models.record_inferences([inference()])
    finally:
        await models.close()
        await approvals.close()
    reopened = await SqliteModelStore.open(path)
    try:
        state = await reopened.get_model("fraud")
        assert state is not None and state.versions[0] == version()
    finally:
        await reopened.close()
    with sqlite3.connect(path) as db:
        names = [row[0] for row in db.execute("SELECT name FROM schema_migrations ORDER BY version")]
    assert "0002_models.sql" in names


async def test_old_latency_samples_age_out_and_minute_sums_stay(model_store: ModelStore) -> None:
    await registered(model_store, "v1")
    await model_store.record_inferences([inference()] * 10)
    later = T0 + timedelta(days=8)
    await model_store.record_inferences([inference(at=later)])  # the first of a new period prunes the old ones
    (old,) = await model_store.telemetry("fraud", T0, T0 + timedelta(minutes=1))
    assert (old.count, old.samples) == (10, ())
    (new,) = await model_store.telemetry("fraud", later, later + timedelta(minutes=1))
    assert (new.count, len(new.samples)) == (1, 1)


async def test_a_long_window_is_thinned_to_a_uniform_sample_of_bounded_size(model_store: ModelStore) -> None:
    await registered(model_store, "v1")
    periods, per_period = 30, 600  # 30 full reservoirs: 15,360 kept latencies in the window
    for k in range(periods):
        start = T0 + timedelta(minutes=PERIOD_MINUTES * k)
        # period k's latencies lie in [1000k, 1000k + 1000), rising with arrival order
        await model_store.record_inferences(
            [inference(at=start, latency=1000.0 * k + i * 1000 / per_period) for i in range(per_period)]
        )
    (t,) = await model_store.telemetry("fraud", T0, T0 + timedelta(minutes=PERIOD_MINUTES * periods))
    assert t.count == periods * per_period  # sums stay exact
    assert 0.9 * MAX_WINDOW_SAMPLES <= len(t.samples) <= 1.1 * MAX_WINDOW_SAMPLES
    per_band = [0] * periods
    offsets = []
    for latency, p in t.samples:
        per_band[int(latency // 1000)] += 1
        offsets.append(latency % 1000)
        assert p == pytest.approx(RESERVOIR_SIZE / per_period)  # weights are untouched by thinning
    expected = len(t.samples) / periods
    assert all(0.75 * expected <= n <= 1.25 * expected for n in per_band), per_band  # every period alike
    assert 450 <= sum(offsets) / len(offsets) <= 550  # early and late arrivals of each period alike


async def test_two_processes_settling_the_same_change_apply_it_once_without_errors(tmp_path: Path) -> None:
    """Each settle is a compare-and-set: the write lock is taken before the read (BEGIN IMMEDIATE). A deferred
    transaction would read 'pending' in both and fail one of them with 'database is locked' on its write."""
    path = tmp_path / "shared.db"
    first, second = await SqliteModelStore.open(path, seed=1), await SqliteModelStore.open(path, seed=2)
    try:
        await registered(first, "v1", "v2")
        for round_ in range(30):
            pending = await first.add_pending("fraud", change(request_id=f"req_{round_}"))
            outcomes: list[str] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(settle_into, outcomes, first, pending.seq)
                tg.start_soon(settle_into, outcomes, second, pending.seq)
            assert sorted(outcomes) == ["applied", "conflict"], round_
    finally:
        await first.close()
        await second.close()


async def settle_into(outcomes: list[str], store: ModelStore, seq: int) -> None:
    try:
        await store.settle(seq, T0, lambda s, c: Settlement(serving=serve({"v1": 10000}), outcome="ok"))
        outcomes.append("applied")
    except Conflict:
        outcomes.append("conflict")


async def test_a_model_name_with_a_nul_is_no_model_on_every_engine(model_store: ModelStore) -> None:
    await registered(model_store, "v1")
    assert await model_store.get_model("fraud\x00") is None  # PostgreSQL cannot be asked: unknown, as elsewhere
    assert await model_store.get_model("\x00") is None
