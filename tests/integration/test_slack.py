"""Reviewers in Slack, against a local fake Slack: messages, clicks by Socket Mode, the reason modal, refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from signoff.notifiers.slack_blocks import APPROVE_ACTION, REJECT_ACTION
from signoff.server.app import build_server
from signoff.server.config import Settings
from signoff.storage import EventKind, Status
from signoff.storage.approvals.sqlite import SqliteStore
from tests.fakes.slack import FakeSlack, click, submission

POLICY = """
[slack]
amount_field = "payload.amount"
approvers = ["U0ALICE", "U0BOB", "S0FINANCE"]

[[people]]
name = "carol"
aliases = ["U0CAROL", "billing-bot"]

[[people]]
name = "alice"
aliases = ["U0ALICE"]

[[people]]
name = "bob"
aliases = ["U0BOB"]

[[rules]]
name = "big transfers"
action = "payments.*"
when = [{ path = "payload.amount", op = "gt", value = 10000 }]
outcome = "review"
approvals_required = 2
channel = "#payments"
"""


@asynccontextmanager
async def slack_server(tmp_path: Path) -> AsyncIterator[tuple[Client, FakeSlack, Path]]:
    """A signoff server wired to a fake Slack by Socket Mode, and an agent connected to it."""
    fake = await FakeSlack(channels={"#approvals": "C0APPROVALS", "#payments": "C0PAYMENTS"}).start()
    fake.usergroups["S0FINANCE"] = ["U0CAROL", "U0DAVE"]
    (tmp_path / "policy.toml").write_text(POLICY)
    settings = Settings(
        db_path=tmp_path / "signoff.db",
        config_path=tmp_path / "policy.toml",
        progress_interval=0.2,
        sweep_interval=0.05,
        slack_bot_token="xoxb-test",
        slack_app_token="xapp-test",
        slack_channel="#approvals",
        slack_api_url=fake.api_url,
    )
    try:
        async with Client(build_server(settings)) as agent:
            await fake.wait_for(lambda: fake.connected)
            yield agent, fake, settings.db_path
    finally:
        await fake.stop()


async def ask(agent: Client, **arguments: Any) -> str:
    defaults = {"action": "payments.transfer", "summary": "Pay invoice 7 to ACME", "agent_id": "billing-bot"}
    result = await agent.call_tool("request_approval", {**defaults, **arguments})
    assert result.structured_content is not None, result.content
    return str(result.structured_content["request_id"])


def message_for(fake: FakeSlack, request_id: str) -> tuple[str, str] | None:
    """(channel, ts) of the message posted for the request, once it is posted."""
    for index, call in enumerate(fake.of("chat.postMessage")):
        if "thread_ts" not in call.args and request_id in str(call.args.get("blocks")):
            answer_ts = f"{1_700_000_000.0 + index + 1:.6f}"  # the fake numbers messages in order
            return (call.args["channel"], answer_ts)
    return None


async def posted(fake: FakeSlack, request_id: str) -> tuple[str, str]:
    await fake.wait_for(lambda: message_for(fake, request_id) is not None)
    found = message_for(fake, request_id)
    assert found is not None
    return found


async def stored(db: Path, request_id: str) -> Any:
    store = await SqliteStore.open(db)
    try:
        return await store.get(request_id), [e.kind for e in await store.request_events(request_id)]
    finally:
        await store.close()


def updates_of(fake: FakeSlack, ts: str) -> list[dict[str, Any]]:
    return [c.args for c in fake.of("chat.update") if c.args["ts"] == ts]


async def test_a_request_needing_people_is_posted_with_buttons(tmp_path: Path) -> None:
    async with slack_server(tmp_path) as (agent, fake, _):
        request_id = await ask(
            agent, payload={"amount": 25000, "currency": "EUR", "memo": "<b>&co</b>"}, confidence=0.9
        )
        channel, _ = await posted(fake, request_id)
    call = next(c for c in fake.of("chat.postMessage") if request_id in str(c.args.get("blocks")))
    assert channel == "#payments"  # the matching rule's channel, not the default
    assert "Approval needed: billing-bot wants to payments.transfer: Pay invoice 7 to ACME" == call.args["text"]
    blocks = call.args["blocks"]
    text = str(blocks)
    assert "0 of 2" in text and "25,000 EUR" in text and "big transfers" in text
    assert "&lt;b&gt;&amp;co&lt;/b&gt;" in text and "<b>" not in text
    actions = next(b for b in blocks if b["type"] == "actions")
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [
        (APPROVE_ACTION, request_id),
        (REJECT_ACTION, request_id),
    ]


async def test_an_approvers_click_decides_and_the_waiting_agent_hears_at_once(tmp_path: Path) -> None:
    async with slack_server(tmp_path) as (agent, fake, db):
        request_id = await ask(agent)
        channel, ts = await posted(fake, request_id)
        first_progress = anyio.Event()

        async def progressed(progress: float, total: float | None, message: str | None) -> None:
            first_progress.set()

        verdict: dict[str, Any] = {}

        async def wait() -> None:
            result = await agent.call_tool(
                "get_status", {"request_id": request_id, "wait_seconds": 60}, progress_callback=progressed
            )
            verdict.update(result.structured_content or {})

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await first_progress.wait()
            envelope = await fake.send_interaction(
                click(
                    user_id="U0ALICE",
                    username="alice",
                    action_id=APPROVE_ACTION,
                    request_id=request_id,
                    channel="C0APPROVALS",
                    ts=ts,
                )
            )
        assert verdict["status"] == "approved" and verdict["votes"][0]["reviewer"] == "alice"
        assert fake.ack_for(envelope) == {"envelope_id": envelope}
        await fake.wait_for(lambda: any("actions" not in str(u["blocks"]) for u in updates_of(fake, ts)))
        await fake.wait_for(lambda: any(c.args.get("thread_ts") == ts for c in fake.of("chat.postMessage")))
        request, events = await stored(db, request_id)
    final = [u for u in updates_of(fake, ts) if "actions" not in str(u["blocks"])][-1]
    assert "approved by alice" in str(final["blocks"]) and channel == "#approvals"
    reply = next(c for c in fake.of("chat.postMessage") if c.args.get("thread_ts") == ts)
    assert reply.args["text"] == "alice approved (1 of 1)"
    assert request.status is Status.APPROVED
    assert [EventKind.VOTED, EventKind.DECIDED] == [k for k in events if k in (EventKind.VOTED, EventKind.DECIDED)]


async def test_reject_asks_for_a_reason_in_a_modal(tmp_path: Path) -> None:
    async with slack_server(tmp_path) as (agent, fake, db):
        request_id = await ask(agent)
        _, ts = await posted(fake, request_id)
        await fake.send_interaction(
            click(
                user_id="U0BOB",
                username="bob",
                action_id=REJECT_ACTION,
                request_id=request_id,
                channel="C0APPROVALS",
                ts=ts,
            )
        )
        await fake.wait_for(lambda: fake.of("views.open"))
        view = fake.of("views.open")[0].args["view"]
        empty = await fake.send_interaction(submission(user_id="U0BOB", username="bob", view=view, reason="  "))
        await fake.wait_for(lambda: fake.ack_for(empty))
        assert (await stored(db, request_id))[0].status is Status.PENDING
        reasoned = await fake.send_interaction(
            submission(user_id="U0BOB", username="bob", view=view, reason="Wrong account, use the EUR one")
        )
        await fake.wait_for(lambda: fake.ack_for(reasoned))
        request, _ = await stored(db, request_id)
    assert fake.ack_for(empty)["payload"]["response_action"] == "errors"  # type: ignore[index]
    assert fake.ack_for(reasoned) == {"envelope_id": reasoned}  # closes the modal
    assert request.status is Status.REJECTED
    assert [(v.reviewer, v.comment) for v in request.votes] == [("bob", "Wrong account, use the EUR one")]


@pytest.mark.parametrize(
    ("user_id", "username", "expected"),
    [
        ("U0MALLORY", "mallory", "not an approver"),
        ("U0CAROL", "carol.s", "cannot vote"),  # in the approvers' group, but her Slack id runs billing-bot
    ],
)
async def test_a_click_that_may_not_count_changes_nothing_but_the_audit_log(
    tmp_path: Path, user_id: str, username: str, expected: str
) -> None:
    async with slack_server(tmp_path) as (agent, fake, db):
        request_id = await ask(agent)
        _, ts = await posted(fake, request_id)
        await fake.send_interaction(
            click(
                user_id=user_id,
                username=username,
                action_id=APPROVE_ACTION,
                request_id=request_id,
                channel="C0APPROVALS",
                ts=ts,
            )
        )
        await fake.wait_for(lambda: fake.of("chat.postEphemeral"))
        await fake.send_interaction(  # then an approver decides: the refused click must not have counted
            click(
                user_id="U0ALICE",
                username="alice",
                action_id=APPROVE_ACTION,
                request_id=request_id,
                channel="C0APPROVALS",
                ts=ts,
            )
        )
        await fake.wait_for(lambda: any("approved by alice" in str(u["blocks"]) for u in updates_of(fake, ts)))
        request, events = await stored(db, request_id)
    note = fake.of("chat.postEphemeral")[0].args
    assert note["user"] == user_id and expected in note["text"]
    assert request.status is Status.APPROVED and [v.reviewer for v in request.votes] == ["alice"]
    assert events.count(EventKind.REFUSED) == 1 and events.count(EventKind.VOTED) == 1


async def test_the_server_starts_and_decides_while_slack_is_down(tmp_path: Path) -> None:
    fake = await FakeSlack().start()
    fake.down = True
    settings = Settings(
        db_path=tmp_path / "signoff.db",
        slack_bot_token="xoxb-test",
        slack_app_token="xapp-test",
        slack_channel="#approvals",
        slack_api_url=fake.api_url,
    )
    try:
        with anyio.fail_after(30):
            async with Client(build_server(settings)) as agent:
                result = await agent.call_tool(
                    "request_approval", {"action": "email.send", "summary": "newsletter", "confidence": 0.99}
                )
    finally:
        await fake.stop()
    assert result.structured_content is not None and result.structured_content["status"] == "approved"


async def test_a_group_member_counts_towards_the_quorum_and_a_second_click_is_told_who_decided(tmp_path: Path) -> None:
    async with slack_server(tmp_path) as (agent, fake, db):
        request_id = await ask(agent, payload={"amount": 50000})
        _, ts = await posted(fake, request_id)

        async def approve_as(user_id: str, name: str) -> None:
            await fake.send_interaction(
                click(
                    user_id=user_id,
                    username=name,
                    action_id=APPROVE_ACTION,
                    request_id=request_id,
                    channel="C0PAYMENTS",
                    ts=ts,
                )
            )

        def replies() -> list[str]:
            return [c.args["text"] for c in fake.of("chat.postMessage") if c.args.get("thread_ts") == ts]

        await approve_as("U0DAVE", "dave")  # a member of the approvers' user group S0FINANCE
        await fake.wait_for(lambda: "<@U0DAVE> approved (1 of 2)" in replies())  # no [[people]] name: his id
        assert (await stored(db, request_id))[0].status is Status.PENDING
        await approve_as("U0ALICE", "alice")
        await fake.wait_for(lambda: "alice approved (2 of 2)" in replies())
        await approve_as("U0BOB", "bob")
        await fake.wait_for(lambda: fake.of("chat.postEphemeral"))
        request, _ = await stored(db, request_id)
    assert request.status is Status.APPROVED
    assert [v.reviewer for v in request.votes] == ["U0DAVE", "alice"]
    late = fake.of("chat.postEphemeral")[0].args
    assert late["user"] == "U0BOB" and "already approved by U0DAVE, alice" in late["text"]


async def test_a_reject_click_that_lost_the_race_is_told_who_decided(tmp_path: Path) -> None:
    """Bob's Reject arrives after Alice's Approve decided the request (his message was not updated yet): he is told
    who decided and when, as a late Approve is, no reason form opens and nothing is recorded (review R7)."""
    async with slack_server(tmp_path) as (agent, fake, db):
        request_id = await ask(agent)  # one approval needed
        _, ts = await posted(fake, request_id)

        def clicked(user_id: str, name: str, action: str) -> dict[str, Any]:
            return click(
                user_id=user_id, username=name, action_id=action, request_id=request_id, channel="C0APPROVALS", ts=ts
            )

        await fake.send_interaction(clicked("U0ALICE", "alice", APPROVE_ACTION))
        await fake.wait_for(lambda: any("approved by alice" in str(u["blocks"]) for u in updates_of(fake, ts)))
        _, decided = await stored(db, request_id)
        await fake.send_interaction(clicked("U0BOB", "bob", REJECT_ACTION))
        await fake.wait_for(lambda: fake.of("chat.postEphemeral"))
        request, events = await stored(db, request_id)
    assert request.status is Status.APPROVED and events == decided  # nothing recorded for Bob's click
    note = fake.of("chat.postEphemeral")[0].args
    assert note["user"] == "U0BOB"
    assert note["text"].startswith("This request was already approved by alice at 20")
    assert note["text"].endswith("; nothing was recorded.")
    assert fake.of("views.open") == []


async def test_a_double_click_by_one_approver_counts_once(tmp_path: Path) -> None:
    async with slack_server(tmp_path) as (agent, fake, db):
        request_id = await ask(agent, payload={"amount": 50000})  # needs two approvals
        _, ts = await posted(fake, request_id)
        for _ in range(2):
            await fake.send_interaction(
                click(
                    user_id="U0ALICE",
                    username="alice",
                    action_id=APPROVE_ACTION,
                    request_id=request_id,
                    channel="C0PAYMENTS",
                    ts=ts,
                )
            )
        await fake.wait_for(lambda: fake.of("chat.postEphemeral"))
        request, events = await stored(db, request_id)
    assert request.status is Status.PENDING and [v.reviewer for v in request.votes] == ["alice"]
    assert events.count(EventKind.VOTED) == 1
    assert "already voted approve" in fake.of("chat.postEphemeral")[0].args["text"]
