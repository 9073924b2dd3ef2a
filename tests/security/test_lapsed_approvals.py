"""Security: nothing lapsed runs (review finding F7, and S1 for the model plane).

An approval may be acted on until its receipt expires: ``receipt_ttl_seconds`` after the decision when the policy
sets it, else when the request expires. After that moment every surface says the same thing: ``verify_receipt``
refuses the receipt, ``get_status``, ``list_requests`` and a ``request_approval`` retried with the same
idempotency key answer ``approved`` (history) with ``actionable: false``, no receipt and a message that says not to
act; a single-use approval can no longer be used; and a model change approved in time but settled only after its
approval lapsed (no server was running) is dropped, with the reason in the audit chain, instead of applied late.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from signoff.storage import ChangeStatus, Conflict, EventKind, ModelStore, Status, Store, Verdict
from signoff.storage.approvals.memory import MemoryStore
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.audit import verify_store
from signoff.storage.models.memory import MemoryModelStore
from signoff.storage.models.sqlite import SqliteModelStore
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService
from signoff.tools.models.service import ModelService
from tests.fakes.clock import FakeClock
from tests.security.test_decisions import BASH, in_memory_server, prompt

TTL = "receipt_ttl_seconds = 30\n"


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error and result.structured_content is not None, result.content
    return result.structured_content


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_not_actionable(status: dict[str, Any], request_id: str) -> None:
    """What an agent must read once the approval lapsed: still approved (history), but not to be acted on."""
    assert status["request_id"] == request_id
    assert status["status"] == "approved"  # the stored decision is history; the audit chain keeps it
    assert status["actionable"] is False
    assert status["receipt"] is None
    message = status["message"]
    assert "lapsed" in message and "do not perform" in message.lower(), message
    assert "go ahead" not in message, message
    assert "new idempotency_key" in message, message  # the same key would only return this request again


@pytest.mark.parametrize(
    ("config", "lifetime"),
    [("", 60), (TTL, 30)],
    ids=["with-its-request", "after-receipt_ttl_seconds"],
)
async def test_a_lapsed_approval_is_not_actionable_on_any_surface(tmp_path: Path, config: str, lifetime: int) -> None:
    clock = FakeClock()
    server, _, _ = in_memory_server(tmp_path, config, clock)
    ask = {
        "action": "db.vacuum",
        "summary": "vacuum",
        "confidence": 0.99,
        "expires_in_seconds": 60,
        "idempotency_key": "k1",
    }
    async with Client(server) as client:
        made = await call(client, "request_approval", **ask)
        request_id, receipt = made["request_id"], made["receipt"]
        clock.advance(lifetime - 1)
        last_second = await call(client, "get_status", request_id=request_id)
        clock.advance(1)
        later = await call(client, "get_status", request_id=request_id)
        again = await call(client, "request_approval", **ask)
        listed = await call(client, "list_requests", status="approved")
        check = await call(client, "verify_receipt", receipt=receipt, action="db.vacuum", payload={})
    assert made["status"] == "approved" and made["actionable"] is True and "go ahead" in made["message"]
    assert moment(made["actionable_until"]) == moment(receipt["expires_at"])  # one moment, on every surface
    assert last_second["actionable"] is True and last_second["receipt"] is not None
    for status in (later, again, *listed["items"]):
        assert_not_actionable(status, request_id)
        assert status["actionable_until"] == made["actionable_until"]
    assert check["valid"] is False and "expired" in check["reason"]


async def test_a_human_approval_lapses_with_its_receipt_not_before(tmp_path: Path) -> None:
    """Approved near its deadline with receipt_ttl_seconds set: actionable for the TTL after the decision, even
    past the request's own expires_at (the receipt says so too); then not."""
    clock = FakeClock()
    server, _, reviewers = in_memory_server(tmp_path, "receipt_ttl_seconds = 600\n", clock)
    async with Client(server) as client:
        asked = await call(client, "request_approval", action="db.drop", summary="drop it", confidence=0.1)
        clock.advance(3500)
        await reviewers.vote(asked["request_id"], "alice", Verdict.APPROVE, None)
        clock.advance(599)  # past the request's expires_at (3600), inside the receipt's 600 s
        inside = await call(client, "get_status", request_id=asked["request_id"])
        clock.advance(1)
        outside = await call(client, "get_status", request_id=asked["request_id"])
    assert inside["actionable"] is True and "go ahead" in inside["message"]
    assert moment(inside["actionable_until"]) == moment(inside["receipt"]["expires_at"]) == clock.now()
    assert_not_actionable(outside, asked["request_id"])


async def test_a_lapsed_permission_approval_is_not_used(tmp_path: Path) -> None:
    """People approved a permission prompt's request, but its receipt lapsed before Claude retried the call: the
    retry asks again instead of running, and the approval cannot be used any more."""
    clock = FakeClock()
    server, store, reviewers = in_memory_server(tmp_path, TTL, clock)
    async with Client(server) as client:
        waiting = await prompt(client, BASH)
        request_id = waiting["message"].split("signoff request ")[1].split()[0]
        await reviewers.vote(request_id, "alice", Verdict.APPROVE, None)
        clock.advance(30)  # the receipt's TTL; the request itself would not expire for an hour
        retried = await prompt(client, BASH)
    assert retried["behavior"] == "deny"
    with pytest.raises(Conflict, match="lapsed"):
        await reviewers.consume(request_id)
    events = [e.kind async for e in store.events() if e.request_id == request_id]
    assert EventKind.CONSUMED not in events


async def test_a_used_single_use_approval_is_not_actionable(tmp_path: Path) -> None:
    """Once a permission prompt used people's approval, get_status no longer says to go ahead (verify_receipt
    already refused the receipt): the same approval is not acted on twice."""
    server, _, reviewers = in_memory_server(tmp_path)
    async with Client(server) as client:
        waiting = await prompt(client, BASH)
        request_id = waiting["message"].split("signoff request ")[1].split()[0]
        await reviewers.vote(request_id, "alice", Verdict.APPROVE, None)
        before = await call(client, "get_status", request_id=request_id)
        assert (await prompt(client, BASH))["behavior"] == "allow"
        after = await call(client, "get_status", request_id=request_id)
    assert before["actionable"] is True and before["receipt"] is not None
    assert after["status"] == "approved" and after["actionable"] is False and after["receipt"] is None
    assert "allowed one use" in after["message"] and "go ahead" not in after["message"], after["message"]


# -- S1: the model plane ----------------------------------------------------------------------------------------------


@dataclass
class Plane:
    clock: FakeClock
    store: Store
    approvals: ApprovalService
    models: ModelService


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, ModelStore]]:
    """An approval store and a model store on one database (one audit chain), on every engine."""
    approvals: Store
    models: ModelStore
    if request.param == "memory":
        approvals, models = MemoryStore(), MemoryModelStore(seed=1)
    elif request.param == "sqlite":
        approvals = await SqliteStore.open(tmp_path / "signoff.db")
        models = await SqliteModelStore.open(tmp_path / "signoff.db", seed=1)
    else:
        from signoff.storage.approvals.postgres import PostgresStore
        from signoff.storage.models.postgres import PostgresModelStore

        url = request.getfixturevalue("pg_url")
        approvals = await PostgresStore.open(url)
        models = await PostgresModelStore.open(url, seed=1)
    try:
        yield approvals, models
    finally:
        await models.close()
        await approvals.close()


def plane(stores: tuple[Store, ModelStore], config: str = "") -> Plane:
    clock = FakeClock()
    approvals = ApprovalService(stores[0], Policy(parse_policy_config(config)), clock)
    return Plane(clock, stores[0], approvals, ModelService(stores[1], approvals, clock=clock))


async def approved_while_nobody_settles(p: Plane) -> str:
    """v1 asked for production, approved by alice 3500 s later (the request expires at 3600) by a process that
    does not settle model changes (the CLI while no server runs)."""
    await p.models.register("fraud", "v1", "http://v1", agent_id="deployer")
    asked = await p.models.promote("fraud", "v1", "first", agent_id="deployer")
    assert asked.request is not None
    p.clock.advance(3500)
    await p.approvals.vote(asked.request.id, "alice", Verdict.APPROVE, "ok")
    return asked.request.id


async def test_a_model_change_settled_after_its_approval_lapsed_is_dropped(stores: tuple[Store, ModelStore]) -> None:
    p = plane(stores)
    request_id = await approved_while_nobody_settles(p)
    p.clock.advance(3 * 86400)  # three days later a server starts and settles
    settled = await p.models.settle()
    state = (await p.models.overview("fraud")).state
    change = (await p.models.history("fraud")).changes[-1]
    assert state.serving.production is None  # nothing applied late
    assert [c.seq for c in settled] == [change.seq]
    assert change.status is ChangeStatus.DROPPED and change.serving is None
    assert change.outcome is not None and change.outcome.startswith("approved by alice (ok), but")
    assert "lapsed" in change.outcome and "not applied" in change.outcome
    request = await p.approvals.get(request_id)
    assert request.status is Status.APPROVED and request.consumed_at is None  # history kept; never used
    events = [e async for e in p.store.events()]
    assert EventKind.CONSUMED not in {e.kind for e in events if e.request_id == request_id}
    if not isinstance(p.store, MemoryStore):  # the drop and its reason are in the audit chain, which verifies
        drop = [e for e in events if e.kind is EventKind.MODEL_SETTLED][-1]
        assert drop.data["change"]["status"] == "dropped" and drop.data["change"]["outcome"] == change.outcome
        assert (await verify_store(p.store, models=p.models.store)).ok


async def test_a_model_change_settled_before_its_approval_lapses_applies(stores: tuple[Store, ModelStore]) -> None:
    """The same rule the other way: with receipt_ttl_seconds = 600, an approval made at 3500 s stands until 4100 s,
    past the request's expires_at, so a settle at 4099 s applies it (and uses the approval)."""
    p = plane(stores, "receipt_ttl_seconds = 600\n")
    request_id = await approved_while_nobody_settles(p)
    p.clock.advance(599)
    await p.models.settle()
    change = (await p.models.history("fraud")).changes[-1]
    assert change.status is ChangeStatus.APPLIED, change.outcome
    assert (await p.models.overview("fraud")).state.serving.production == "v1"
    assert (await p.approvals.get(request_id)).consumed_at is not None
