"""Security: an agent does not get a person's "no" (or their silence) turned into the policy's yes by asking again.

With the default policy (confidence_threshold 0.85, [anomaly] off), a request the agent sent with confidence 0.5
went to people. The same agent then asks for the same action and payload with confidence 0.99: while the first is
still pending, after a person rejected it, after it expired or was cancelled. Each of these asks goes to people too,
with a trigger naming the first request, instead of being approved by the policy. A changed payload is a new
request, decided as before (this is about exact retries; ``[anomaly]`` is what watches changed payloads). Two
identical asks sent at the same moment never leave an approval stored after the other went to people.

Through the real MCP client, on an SQLite file and on PostgreSQL (the ``database`` fixture); the person votes
through a service of their own on the same database, as the CLI or the console would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from signoff.server.app import build_server
from signoff.server.config import Settings
from signoff.server.stores import open_store
from signoff.storage import EventKind, Store, Verdict
from signoff.tools.approvals.service import ApprovalService
from tests.fakes.clock import FakeClock

ASK = {
    "action": "payments.transfer",
    "summary": "Pay invoice 7",
    "payload": {"amount": 5000, "to": "DE00 1234"},
    "agent_id": "billing-bot",
}


@dataclass
class Agent:
    client: Client
    people: ApprovalService  #: a reviewer's service on the same database (the CLI, the console)
    store: Store
    clock: FakeClock

    async def ask(self, confidence: float, **changes: Any) -> dict[str, Any]:
        result = await self.client.call_tool("request_approval", {**ASK, "confidence": confidence, **changes})
        assert not result.is_error and result.structured_content is not None, result.content
        return result.structured_content


@asynccontextmanager
async def agent(tmp_path: Path, database: str) -> AsyncIterator[Agent]:
    url = database if database.startswith("postgresql") else None
    settings = Settings(db_path=tmp_path / "signoff.db" if url else Path(database), db_url=url)
    clock = FakeClock()
    store = await open_store(settings)
    try:
        async with Client(build_server(settings, clock=clock)) as client:
            yield Agent(client, ApprovalService(store, clock=clock), store, clock)
    finally:
        await store.close()


def asked_again(status: dict[str, Any], first: str) -> str:
    """The trigger that sent ``status`` to people because ``first`` was not approved by them."""
    found = [t for t in status["triggers"] if t["detail"].startswith("asked again")]
    assert len(found) == 1 and found[0]["kind"] == "rule", status["triggers"]
    assert f"request {first} with this same action and payload" in found[0]["detail"], found
    assert "a person decides this one too" in found[0]["detail"], found
    return str(found[0]["detail"])


async def test_asking_again_confidently_while_the_first_is_pending_goes_to_people(
    tmp_path: Path, database: str
) -> None:
    async with agent(tmp_path, database) as bot:
        first = await bot.ask(0.5)
        assert first["status"] == "pending"
        again = await bot.ask(0.99)
        assert again["status"] == "pending", again
        assert again["receipt"] is None
        assert "(still pending)" in asked_again(again, first["request_id"])
        # it is a request like any other for people: notified, in the queue, decided by a vote
        kinds = [e.kind for e in await bot.store.request_events(again["request_id"])]
        assert kinds[:2] == [EventKind.CREATED, EventKind.TRIGGERED]
        queue = {e.id for e in (await bot.store.pending_queue()).entries}
        assert {first["request_id"], again["request_id"]} <= queue


async def test_asking_again_after_a_person_rejected_goes_to_people(tmp_path: Path, database: str) -> None:
    async with agent(tmp_path, database) as bot:
        first = await bot.ask(0.5)
        await bot.people.vote(first["request_id"], "alice", Verdict.REJECT, "not this invoice")
        again = await bot.ask(0.99)
        assert again["status"] == "pending", again
        assert "(rejected by alice)" in asked_again(again, first["request_id"])
        third = await bot.ask(1.0)  # and again: the second is pending now, the first still rejected
        assert third["status"] == "pending", third


async def test_asking_again_after_cancelling_goes_to_people(tmp_path: Path) -> None:
    async with agent(tmp_path, str(tmp_path / "signoff.db")) as bot:
        first = await bot.ask(0.5)
        cancelled = await bot.client.call_tool("cancel_request", {"request_id": first["request_id"], "reason": "oops"})
        assert not cancelled.is_error
        again = await bot.ask(0.99)
        assert again["status"] == "pending", again
        assert "(cancelled)" in asked_again(again, first["request_id"])


async def test_asking_again_after_it_expired_goes_to_people(tmp_path: Path) -> None:
    async with agent(tmp_path, str(tmp_path / "signoff.db")) as bot:
        first = await bot.ask(0.5, expires_in_seconds=60)
        bot.clock.advance(61)
        expired = await bot.client.call_tool("get_status", {"request_id": first["request_id"]})
        assert expired.structured_content is not None and expired.structured_content["status"] == "expired"
        again = await bot.ask(0.99)
        assert again["status"] == "pending", again
        assert "(expired)" in asked_again(again, first["request_id"])


async def test_a_changed_payload_or_another_agent_is_decided_as_before(tmp_path: Path) -> None:
    async with agent(tmp_path, str(tmp_path / "signoff.db")) as bot:
        first = await bot.ask(0.5)
        await bot.people.vote(first["request_id"], "alice", Verdict.REJECT, "no")
        changed = await bot.ask(0.99, payload={**ASK["payload"], "amount": 5001})
        other = await bot.ask(0.99, agent_id="another-bot")
    assert changed["status"] == "approved" and changed["receipt"], changed
    assert other["status"] == "approved" and other["receipt"], other


async def ask_into(bot: Agent, answers: dict[float, dict[str, Any]], confidence: float, payload: Any) -> None:
    answers[confidence] = await bot.ask(confidence, payload=payload)


async def test_two_identical_asks_at_once_never_leave_a_later_approval(tmp_path: Path) -> None:
    """One ask at 0.5 and one at 0.99, sent together, in rounds (each with its own payload): the 0.99 one may be
    approved only if it was stored first, before the other went to people; an approval stored after it is the
    hole."""
    async with agent(tmp_path, str(tmp_path / "signoff.db")) as bot:
        for n in range(8):
            payload = {"amount": 7000 + n, "to": "DE00 1234"}
            answers: dict[float, dict[str, Any]] = {}
            async with anyio.create_task_group() as group:
                group.start_soon(ask_into, bot, answers, 0.5, payload)
                group.start_soon(ask_into, bot, answers, 0.99, payload)
            low, high = answers[0.5], answers[0.99]
            assert low["status"] == "pending"
            if high["status"] == "approved":  # it was first: then the other was asked after an approval
                order = [e.request_id async for e in bot.store.events() if e.kind is EventKind.CREATED]
                assert order.index(high["request_id"]) < order.index(low["request_id"]), (n, high, low)
            else:
                assert high["status"] == "pending", high
                asked_again(high, low["request_id"])
