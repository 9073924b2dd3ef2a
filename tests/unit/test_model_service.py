"""ModelService without MCP: promotion and traffic through the approval lifecycle, rollback, the guard, bad input."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from signoff.storage import (
    ChangeKind,
    ChangeStatus,
    Conflict,
    InvalidInput,
    NotFound,
    RequestQuery,
    Serving,
    SignoffError,
    Status,
    Verdict,
)
from signoff.storage.approvals.memory import MemoryStore
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.models.memory import MemoryModelStore
from signoff.storage.models.sqlite import SqliteModelStore
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService
from signoff.tools.models import rollout
from signoff.tools.models.canary import CanaryVerdict
from signoff.tools.models.service import ModelService, ModelSettings
from signoff.tools.models.telemetry import Report
from tests.fakes.clock import FakeClock


@dataclass
class Plane:
    clock: FakeClock
    approvals: ApprovalService
    models: ModelService

    async def serving(self) -> Serving:
        return (await self.models.overview("fraud")).state.serving

    async def approve(self, request_id: str | None, reviewer: str = "alice", comment: str | None = "ok") -> None:
        """A reviewer approves, and the change applies as the server's worker would apply it."""
        assert request_id is not None
        await self.approvals.vote(request_id, reviewer, Verdict.APPROVE, comment)
        await self.models.settle()

    async def snapshot(self) -> tuple[Any, ...]:
        """Everything a failed call must leave alone: models, their history, approval requests."""
        store = self.models.store
        states = await store.list_models()
        histories = [await store.history(s.name) for s in states]
        requests = await self.approvals.list_requests(RequestQuery(limit=1000))
        return states, histories, requests.items


def make_plane(policy: Policy | None = None, **settings: Any) -> Plane:
    clock = FakeClock()
    approvals = ApprovalService(MemoryStore(), policy, clock)
    models = ModelService(MemoryModelStore(seed=1), approvals, settings=ModelSettings(**settings), seed=2)
    return Plane(clock=clock, approvals=approvals, models=models)


async def with_production(plane: Plane, *versions: str) -> None:
    """Register ``versions`` of 'fraud' and make the first production (approved by alice)."""
    for v in versions:
        await plane.models.register("fraud", v, f"http://fraud/{v}", agent_id="bot")
    outcome = await plane.models.promote("fraud", versions[0], "first production", agent_id="bot")
    await plane.approve(outcome.change.request_id)


async def with_canary(plane: Plane, percent: float = 10) -> None:
    await with_production(plane, "v1", "v2")
    outcome = await plane.models.set_traffic("fraud", {"v1": 100 - percent, "v2": percent}, "try v2", agent_id="bot")
    await plane.approve(outcome.change.request_id)


async def test_a_promotion_waits_for_a_human_and_applies_once_approved() -> None:
    plane = make_plane()
    for v in ("v1", "v2"):
        await plane.models.register("fraud", v, f"http://fraud/{v}", agent_id="bot")
    asked = await plane.models.promote("fraud", "v1", "first production", agent_id="bot")
    request = asked.request
    assert asked.change.status is ChangeStatus.PENDING and request is not None
    assert (request.action, request.status, request.agent_id, request.confidence) == (
        "models.promote",
        Status.PENDING,
        "bot",
        None,
    )
    assert (request.payload["version"], request.payload["endpoint"]) == ("v1", "http://fraud/v1")
    assert "Evidence" in request.summary
    assert await plane.serving() == Serving()  # nothing changed yet
    await plane.approve(request.id, comment="looks good")
    assert await plane.serving() == Serving(production="v1", weights={"v1": 10000})
    history = await plane.models.history("fraud")
    promote = history.changes[-1]
    assert (promote.kind, promote.status, promote.outcome) == (
        ChangeKind.PROMOTE,
        ChangeStatus.APPLIED,
        "approved by alice (looks good)",
    )
    assert await plane.models.settle() == []  # applied exactly once


async def test_the_requester_cannot_approve_its_own_promotion() -> None:
    plane = make_plane()
    await plane.models.register("fraud", "v1", "http://v1", agent_id="bot")
    asked = await plane.models.promote("fraud", "v1", "go", agent_id="bot")
    with pytest.raises(SignoffError, match="cannot vote"):
        await plane.approve(asked.change.request_id, reviewer="bot")


@pytest.mark.parametrize("ending", ["reject", "expire", "cancel"])
async def test_a_promotion_that_is_not_approved_changes_nothing(ending: str) -> None:
    plane = make_plane()
    await with_production(plane, "v1", "v2")
    before = await plane.serving()
    asked = await plane.models.promote("fraud", "v2", "v2 is better", agent_id="bot")
    request_id = asked.change.request_id
    assert request_id is not None
    if ending == "reject":
        await plane.approvals.vote(request_id, "alice", Verdict.REJECT, "not yet")
        expected = "rejected by alice (not yet)"
    elif ending == "expire":
        plane.clock.advance(3601)
        expected = "expired without a decision"
    else:
        await plane.approvals.cancel(request_id, "changed my mind")
        expected = "cancelled: changed my mind"
    assert await plane.serving() == before
    dropped = (await plane.models.history("fraud")).changes[-1]
    assert dropped.status is ChangeStatus.DROPPED and dropped.outcome is not None
    assert dropped.outcome.startswith(expected) and dropped.serving is None


async def test_raising_a_canary_needs_approval_and_lowering_it_applies_at_once() -> None:
    plane = make_plane()
    await with_production(plane, "v1", "v2")
    asked = await plane.models.set_traffic("fraud", {"v1": 90, "v2": 10}, "canary", agent_id="bot")
    assert asked.request is not None and asked.request.action == "models.set_traffic"
    assert asked.request.payload["weights"] == {"v1": 90.0, "v2": 10.0}
    assert await plane.serving() == Serving(production="v1", weights={"v1": 10000})
    await plane.approve(asked.change.request_id)
    assert (await plane.serving()).weights == {"v1": 9000, "v2": 1000}
    lowered = await plane.models.set_traffic("fraud", {"v1": 95, "v2": 5}, "too many errors")
    assert lowered.request is None and lowered.change.status is ChangeStatus.APPLIED
    assert lowered.change.outcome is not None and "no approval is needed" in lowered.change.outcome
    off = await plane.models.set_traffic("fraud", {"v1": 100}, "stop the canary")
    assert off.request is None and (await plane.serving()).weights == {"v1": 10000}


async def test_asking_twice_for_the_same_change_reuses_the_request() -> None:
    plane = make_plane()
    await with_production(plane, "v1", "v2")
    first = await plane.models.set_traffic("fraud", {"v1": 90, "v2": 10}, "canary", agent_id="bot")
    again = await plane.models.set_traffic("fraud", {"v1": 90, "v2": 10}, "canary (retry)", agent_id="bot")
    assert again.change.request_id == first.change.request_id
    assert len((await plane.models.overview("fraud")).pending) == 1


async def test_an_approval_that_arrives_after_the_model_moved_on_is_not_applied() -> None:
    plane = make_plane()
    await with_canary(plane)
    wider = await plane.models.set_traffic("fraud", {"v1": 80, "v2": 20}, "wider", agent_id="bot")
    widest = await plane.models.set_traffic("fraud", {"v1": 50, "v2": 50}, "widest", agent_id="bot")
    # both approved before anything settles them: the first approval wins, whatever the order of the requests
    await plane.approvals.vote(widest.change.request_id or "", "alice", Verdict.APPROVE, "ok")
    plane.clock.advance(1)
    await plane.approvals.vote(wider.change.request_id or "", "bob", Verdict.APPROVE, "ok")
    assert (await plane.serving()).weights == {"v1": 5000, "v2": 5000}
    changes = {c.reason: c for c in (await plane.models.history("fraud")).changes}
    assert changes["wider"].status is ChangeStatus.DROPPED
    assert changes["wider"].outcome == (
        "approved by bob (ok), not applied: the model changed after this was requested (it now serves v1 50%, v2 50%);"
        " ask again against the current state"
    )


async def test_a_change_that_would_move_a_growing_canarys_keys_is_refused_with_steps_that_work() -> None:
    plane = make_plane()
    await with_production(plane, "v1", "v2", "v3")
    for weights in ({"v1": 80, "v2": 10, "v3": 10}, {"v1": 70, "v2": 10, "v3": 20}):
        await plane.approve(
            (await plane.models.set_traffic("fraud", weights, "canaries", agent_id="bot")).change.request_id
        )
    before = await plane.snapshot()
    with pytest.raises(InvalidInput, match=r"from v1 to v2") as refused:
        await plane.models.set_traffic("fraud", {"v1": 80, "v2": 20}, "drop v3, widen v2", agent_id="bot")
    assert await plane.snapshot() == before
    assert "1) {'v1': 90, 'v2': 10}" in refused.value.message  # the first of the steps it suggests
    step = await plane.models.set_traffic("fraud", {"v1": 90, "v2": 10}, "step 1", agent_id="bot")
    assert step.request is None  # only back to production: applied at once
    second = await plane.models.set_traffic("fraud", {"v1": 80, "v2": 20}, "step 2", agent_id="bot")
    await plane.approve(second.change.request_id)
    assert (await plane.serving()).weights == {"v1": 8000, "v2": 2000}


async def test_an_approval_is_applied_only_to_the_exact_change_it_was_given_for() -> None:
    plane = make_plane()
    await with_production(plane, "v1", "v2")
    asked = await plane.models.set_traffic("fraud", {"v1": 90, "v2": 10}, "canary", agent_id="bot")
    await plane.approvals.vote(asked.change.request_id or "", "alice", Verdict.APPROVE, "10% is fine")
    request = await plane.approvals.get(asked.change.request_id or "")
    state = await plane.models.store.get_model("fraud")
    assert state is not None
    tampered = dataclasses.replace(asked.change, payload={**asked.change.payload, "weights": {"v1": 10, "v2": 90}})
    settled = rollout.settlement(request, plane.clock.now())(state, tampered)
    assert settled.serving is None and "different arguments: not applied" in settled.outcome
    assert rollout.settlement(request, plane.clock.now())(state, asked.change).serving == Serving(
        production="v1", weights={"v1": 9000, "v2": 1000}
    )


async def test_history_at_a_time_goes_by_when_a_change_applied_not_when_it_was_asked() -> None:
    plane = make_plane()
    await with_production(plane, "v1", "v2")
    asked_at = plane.clock.now()
    asked = await plane.models.set_traffic("fraud", {"v1": 90, "v2": 10}, "canary", agent_id="bot")
    plane.clock.advance(1800)  # the reviewer takes half an hour (within the default expiry of one hour)
    await plane.approve(asked.change.request_id)
    between = await plane.models.history("fraud", at=asked_at + timedelta(minutes=15))
    assert between.serving_at is not None and dict(between.serving_at.weights) == {"v1": 10000}
    after = await plane.models.history("fraud", at=plane.clock.now())
    assert after.serving_at is not None and dict(after.serving_at.weights) == {"v1": 9000, "v2": 1000}


async def test_rollback_with_a_canary_returns_all_traffic_to_production_and_withdraws_requests() -> None:
    plane = make_plane()
    await with_canary(plane)
    waiting = await plane.models.set_traffic("fraud", {"v1": 50, "v2": 50}, "wider", agent_id="bot")
    rolled = await plane.models.rollback("fraud", "v2 errors", agent_id="oncall")
    assert rolled.request is None and rolled.serving == Serving(production="v1", weights={"v1": 10000})
    assert rolled.change.kind is ChangeKind.ROLLBACK and rolled.change.requested_by == "oncall"
    request = await plane.approvals.get(waiting.change.request_id or "")
    assert request.status is Status.CANCELLED and request.note is not None and "superseded" in request.note
    assert (await plane.models.overview("fraud")).pending == ()


async def test_rollback_without_a_canary_returns_production_to_previous() -> None:
    plane = make_plane()
    await with_production(plane, "v1", "v2")
    promoted = await plane.models.promote("fraud", "v2", "v2 passed", agent_id="bot")
    await plane.approve(promoted.change.request_id)
    assert await plane.serving() == Serving(production="v2", previous="v1", weights={"v2": 10000})
    rolled = await plane.models.rollback("fraud", "v2 misbehaves in production")
    assert rolled.serving == Serving(production="v1", previous=None, weights={"v1": 10000})
    before = await plane.snapshot()
    with pytest.raises(InvalidInput, match="nothing to roll back to"):
        await plane.models.rollback("fraud", "again")
    assert await plane.snapshot() == before


async def test_history_says_what_served_production_at_any_time() -> None:
    plane = make_plane()
    await with_production(plane, "v1", "v2")
    t1 = plane.clock.now()
    plane.clock.advance(60)
    promoted = await plane.models.promote("fraud", "v2", "v2 passed", agent_id="bot")
    plane.clock.advance(60)
    await plane.approve(promoted.change.request_id)
    await plane.models.settle()
    t2 = plane.clock.now()
    plane.clock.advance(60)
    await plane.models.rollback("fraud", "bad")
    history = await plane.models.history("fraud")
    kinds = [(c.kind, c.status, c.requested_by) for c in history.changes]
    assert kinds == [
        (ChangeKind.REGISTER, ChangeStatus.APPLIED, "bot"),
        (ChangeKind.REGISTER, ChangeStatus.APPLIED, "bot"),
        (ChangeKind.PROMOTE, ChangeStatus.APPLIED, "bot"),
        (ChangeKind.PROMOTE, ChangeStatus.APPLIED, "bot"),
        (ChangeKind.ROLLBACK, ChangeStatus.APPLIED, None),
    ]
    at = {t: (await plane.models.history("fraud", t)).serving_at for t in (t1, t2, plane.clock.now())}
    assert [s.production if s else None for s in at.values()] == ["v1", "v2", "v1"]
    before_anything = (await plane.models.history("fraud", t1 - timedelta(days=1))).serving_at
    assert before_anything is None


async def test_a_policy_that_approves_everything_still_leaves_model_changes_to_a_person() -> None:
    config = (
        'default_outcome = "approve"\n[[rules]]\nname = "canaries are fine"\naction = "models.*"\noutcome = "approve"\n'
    )
    plane = make_plane(Policy(parse_policy_config(config)))
    await with_production(plane, "v1", "v2")
    before = await plane.serving()
    outcome = await plane.models.set_traffic("fraud", {"v1": 90, "v2": 10}, "canary")
    assert outcome.request is not None and outcome.request.status is Status.PENDING
    assert outcome.change.status is ChangeStatus.PENDING
    assert await plane.serving() == before


async def test_an_approval_given_in_another_process_is_honoured_on_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    stores = [await SqliteStore.open(path), await SqliteStore.open(path)]
    model_store = await SqliteModelStore.open(path)
    try:
        approvals = ApprovalService(stores[0])
        models = ModelService(model_store, approvals, settings=ModelSettings(refresh_interval=0, settle_interval=0))
        await models.register("fraud", "v1", "http://v1")
        asked = await models.promote("fraud", "v1", "go", agent_id="bot")
        with pytest.raises(Conflict, match="serves no traffic"):
            await models.telemetry.resolve("fraud", "user-1")
        cli = ApprovalService(stores[1])  # e.g. `signoff review approve` in another terminal
        await cli.vote(asked.change.request_id or "", "alice", Verdict.APPROVE, None)
        routed = await models.telemetry.resolve("fraud", "user-1")  # no worker ran: the read path applied it
        assert (routed.version, routed.arm, routed.endpoint) == ("v1", "production", "http://v1")
    finally:
        await model_store.close()
        for store in stores:
            await store.close()


async def test_the_guard_takes_a_failing_canary_off_and_withdraws_its_requests() -> None:
    plane = make_plane(guard_min_samples=100)
    await with_canary(plane)
    waiting = await plane.models.set_traffic("fraud", {"v1": 50, "v2": 50}, "wider", agent_id="bot")
    assert await plane.models.guard_once() == []  # no data yet: insufficient, nothing done
    rng = random.Random(4)
    await plane.models.telemetry.record(
        [
            Report(model="fraud", version="v1", latency_ms=rng.uniform(40, 60), ok=rng.random() > 0.01)
            for _ in range(900)
        ]
        + [
            Report(model="fraud", version="v2", latency_ms=rng.uniform(40, 60), ok=rng.random() > 0.3)
            for _ in range(200)
        ]
    )
    (acted,) = await plane.models.guard_once()
    assert (acted.kind, acted.requested_by, acted.serving) == (
        ChangeKind.GUARD,
        "signoff-guard",
        Serving(production="v1", weights={"v1": 10000}),
    )
    assert "canary v2 failed its analysis against v1" in acted.reason
    assert (await plane.approvals.get(waiting.change.request_id or "")).status is Status.CANCELLED
    assert await plane.models.guard_once() == []  # nothing left to guard


async def test_every_applied_change_is_in_the_audit_log_and_the_reviewers_hear_of_rollbacks_and_the_guard() -> None:
    plane = make_plane(guard_min_samples=100)
    await with_canary(plane)
    approvals = plane.approvals
    await plane.models.rollback("fraud", "v2 looks off", agent_id="oncall")
    again = await plane.models.set_traffic("fraud", {"v1": 90, "v2": 10}, "try v2 again", agent_id="bot")
    await plane.approve(again.change.request_id)
    asked = [r for r in (await approvals.list_requests(RequestQuery(limit=100))).items if r.decided_by == "human"]
    assert len(asked) == 3 and all(r.consumed_at is not None for r in asked)  # each approval used when it applied
    await plane.models.telemetry.record(
        [Report(model="fraud", version="v1", latency_ms=50, ok=True)] * 900
        + [Report(model="fraud", version="v2", latency_ms=50, ok=i % 3 != 0) for i in range(300)]
    )
    (guarded,) = await plane.models.guard_once()

    def recorded(action: str) -> list[Any]:
        return [r for r in everything if r.action == action]

    everything = (await approvals.list_requests(RequestQuery(limit=100))).items
    assert sorted(r.payload["version"] for r in recorded("models.register")) == ["v1", "v2"]
    (guard,) = recorded("models.guard")
    assert (guard.status, guard.agent_id, guard.payload["change_seq"]) == (
        Status.APPROVED,
        "signoff-guard",
        guarded.seq,
    )
    assert "canary v2 failed its analysis against v1" in guard.summary and "Now serving v1 100%" in guard.summary
    (rollback,) = recorded("models.rollback")
    assert (rollback.agent_id, rollback.decided_by) == ("oncall", "policy")
    records = [r for r in everything if r.decided_by == "policy"]
    assert all(r.consumed_at is not None for r in records)  # a record is no approval anything may act on
    assert not {r.action for r in records} & {"models.set_traffic", "models.promote"}  # those always mean a person
    due = {
        item.request_id for item in await approvals.store.claim_outbox(plane.clock.now() + timedelta(days=1), limit=100)
    }
    assert {guard.id, rollback.id} <= due  # the reviewers are told
    assert not {r.id for r in recorded("models.register")} & due  # a registration is only recorded
    assert (await approvals.verify_audit()).ok


async def test_the_guard_waits_for_guard_min_samples_on_each_side() -> None:
    plane = make_plane(guard_min_samples=100)
    await with_canary(plane)
    failing = Report(model="fraud", version="v2", latency_ms=50, ok=False)
    await plane.models.telemetry.record([Report(model="fraud", version="v1", latency_ms=50, ok=True)] * 500)
    await plane.models.telemetry.record([failing] * 99)
    assert await plane.models.guard_once() == []  # 99 inferences: not judged, however bad
    await plane.models.telemetry.record([failing])
    (acted,) = await plane.models.guard_once()  # the 100th: judged, and failing beyond doubt
    assert acted.kind is ChangeKind.GUARD


async def test_a_change_that_applied_is_reported_applied_even_if_its_audit_record_cannot_be_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plane = make_plane()
    await with_canary(plane)

    async def database_locked(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    plane.approvals.record = database_locked  # type: ignore[method-assign]
    outcome = await plane.models.rollback("fraud", "v2 misbehaves", agent_id="oncall")
    assert outcome.serving == Serving(production="v1", weights={"v1": 10000})  # no error: a retry would go too far
    assert "applied but not recorded in the audit log" in caplog.text


async def test_the_guard_holds_itself_to_a_stricter_bar_than_one_analysis() -> None:
    plane = make_plane(guard_min_samples=100)
    await with_canary(plane)
    await plane.models.telemetry.record(
        [Report(model="fraud", version="v1", latency_ms=50, ok=i % 100 != 0) for i in range(2000)]
        + [Report(model="fraud", version="v2", latency_ms=50, ok=i >= 12) for i in range(100)]
    )
    one_look = await plane.models.telemetry.analyze("fraud", "v1", "v2")
    assert one_look.result.verdict is CanaryVerdict.FAIL  # 12% vs 1%: analyze_canary calls it worse
    for _ in range(3):  # but one window tested again and again must not act on what 120 looks could find by chance
        assert await plane.models.guard_once() == []
        plane.clock.advance(61)
    assert (await plane.serving()).weights == {"v1": 9000, "v2": 1000}


async def test_the_guard_can_be_switched_off() -> None:
    plane = make_plane(guard_enabled=False)
    await with_canary(plane)
    await plane.models.telemetry.record([Report(model="fraud", version="v2", latency_ms=1, ok=False)] * 500)
    assert await plane.models.guard_once() == []


async def test_decision_ids_are_checked_against_the_split_that_issued_them() -> None:
    plane = make_plane()
    await with_canary(plane, percent=50)
    routed = [await plane.models.telemetry.resolve("fraud", f"user-{i}") for i in range(20)]
    on_v1 = next(r for r in routed if r.version == "v1")
    assert (
        await plane.models.telemetry.record(
            [Report(model="fraud", version="v1", latency_ms=3, ok=True, decision_id=on_v1.decision_id)]
        )
        == 1
    )
    await plane.models.set_traffic("fraud", {"v1": 100}, "stop")  # an older split still vouches for its decisions
    assert (
        await plane.models.telemetry.record(
            [Report(model="fraud", version="v1", latency_ms=3, ok=True, decision_id=on_v1.decision_id)]
        )
        == 1
    )
    for decision_id, hint in [
        (on_v1.decision_id, "routed to v1, not 'v2'"),
        ("dec_999_1_00000000", "not issued"),
        ("x", "not issued"),
    ]:
        with pytest.raises(InvalidInput, match=hint):
            await plane.models.telemetry.record(
                [Report(model="fraud", version="v2", latency_ms=3, ok=True, decision_id=decision_id)]
            )


async def test_bad_input_is_refused_with_what_to_change_and_changes_nothing() -> None:
    plane = make_plane()
    await with_canary(plane)
    m, t = plane.models, plane.models.telemetry
    ok = Report(model="fraud", version="v1", latency_ms=5, ok=True)
    calls: list[tuple[Any, type[SignoffError], str]] = [
        (m.set_traffic("nope", {"v1": 100}, "r"), NotFound, "no model named 'nope'"),
        (m.set_traffic("fraud", {"v1": 90, "v3": 10}, "r"), InvalidInput, "unknown version(s) 'v3'"),
        (m.set_traffic("fraud", {"v1": 95, "v2": 10}, "r"), InvalidInput, "sum to 105%"),
        (m.set_traffic("fraud", {"v1": 110, "v2": -10}, "r"), InvalidInput, "from 0 to 100"),
        (m.set_traffic("fraud", {"v1": 90, "v2": 10}, "r"), InvalidInput, "already serves"),
        (m.set_traffic("fraud", {"v1": 80, "v2": 20}, "  "), InvalidInput, "reason is empty"),
        (m.promote("fraud", "v9", "r"), InvalidInput, "no version 'v9'"),
        (m.promote("fraud", "v1", "r"), InvalidInput, "already production"),
        (m.promote("nope", "v1", "r"), NotFound, "no model named"),
        (m.rollback("nope", "r"), NotFound, "no model named"),
        (m.register("fraud", "v2", "http://elsewhere"), Conflict, "already has version 'v2'"),
        (m.register("fraud", "bad version!", "http://x"), InvalidInput, "not allowed"),
        (m.register("fraud", "v3", "http://x", metadata={"x": float("nan")}), InvalidInput, "not plain JSON"),
        (m.history("nope"), NotFound, "no model named"),
        (t.resolve("nope", "k"), NotFound, "no model named"),
        (
            t.record([ok, Report(model="fraud", version="v7", latency_ms=5, ok=True)]),
            InvalidInput,
            r"items\[1\]: .*no version 'v7'",
        ),
        (t.record([ok, Report(model="fraud", version="v1", latency_ms=-1, ok=True)]), InvalidInput, "latency_ms is -1"),
        (t.record([ok, Report(model="x", version="v1", latency_ms=1, ok=True)]), NotFound, r"items\[1\]: no model"),
        (t.record([]), InvalidInput, "items is empty"),
        (t.stats("fraud", 10), InvalidInput, "window_seconds"),
        (t.analyze("fraud", "v1", "v1"), InvalidInput, "both 'v1'"),
        (t.analyze("fraud", "v1", "v9"), InvalidInput, "no version 'v9'"),
        (t.analyze("fraud", "v1", "v2", min_samples=0), InvalidInput, "min_samples"),
    ]
    before = await plane.snapshot()
    stats_before = await t.stats("fraud")
    for call, error, hint in calls:
        with pytest.raises(error, match=hint.replace("(", r"\(").replace(")", r"\)") if "\\" not in hint else hint):
            await call
    assert await plane.snapshot() == before
    assert await t.stats("fraud") == stats_before  # no half-recorded batch


async def test_registering_again_with_the_same_idempotency_key_returns_the_first() -> None:
    plane = make_plane()
    first, created = await plane.models.register("fraud", "v1", "http://v1", idempotency_key="k1")
    again, created_again = await plane.models.register("fraud", "v1", "http://v1", idempotency_key="k1")
    assert (created, created_again, again) == (True, False, first)
    assert len((await plane.models.history("fraud")).changes) == 1


async def test_a_summary_limit_cuts_only_the_agents_reason_and_refuses_what_would_cut_the_evidence() -> None:
    plane = make_plane(Policy(parse_policy_config("[limits]\nmax_summary_chars = 300\n")))
    await with_production(plane, "v1", "v2")
    asked = await plane.models.set_traffic("fraud", {"v1": 90, "v2": 10}, "because " * 100, agent_id="bot")
    assert asked.request is not None
    summary = asked.request.summary
    assert len(summary) == 300 and summary.endswith("… (cut)")
    assert summary.index("canary verdict v2 vs v1: insufficient_data") < summary.index("The agent's reason: because")
    long_name = "v" * 128
    await plane.models.register("fraud", long_name, "http://fraud/long", agent_id="bot")
    before = await plane.snapshot()
    with pytest.raises(InvalidInput, match="change fewer versions at once, or ask the operator to raise"):
        await plane.models.promote("fraud", long_name, "better", agent_id="bot")  # its evidence alone is too long
    assert await plane.snapshot() == before
