"""Outbound Slack under failure: rate limits, outages, a crash before delivery, expiry.

Nothing is lost and nothing is approved."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from mcp import Client

from signoff.notifiers import SlackNotifier, web_client
from signoff.server.app import build_server
from signoff.server.config import Settings
from signoff.server.workers import backoff, deliver_due
from signoff.storage import EventKind, MessageRef, Status, Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.fakes.clock import FakeClock
from tests.fakes.slack import FakeSlack

POLICY = Policy(parse_policy_config('[slack]\napprovers = ["U0ALICE"]\n'))


@asynccontextmanager
async def rig(tmp_path: Path) -> AsyncIterator[tuple[ApprovalService, SlackNotifier, FakeSlack, FakeClock]]:
    fake = await FakeSlack().start()
    store = await SqliteStore.open(tmp_path / "signoff.db")
    clock = FakeClock()
    service = ApprovalService(store, POLICY, clock)
    try:
        notifier = SlackNotifier(web_client("xoxb-test", fake.api_url, wait_on_rate_limit=False), store, "#approvals")
        yield service, notifier, fake, clock
    finally:
        await store.close()
        await fake.stop()


def draft(**overrides: object) -> Draft:
    return Draft(action="db.drop_table", summary="Drop table staging.events", payload={"table": "events"}, **overrides)  # type: ignore[arg-type]


async def posted(service: ApprovalService, request_id: str) -> MessageRef | None:
    """The Slack message stored for the request, if its ts is known (a reservation alone is not a post)."""
    ref = await service.store.message_ref(request_id, "slack")
    return ref if ref is not None and ref.confirmed else None


async def notified(service: ApprovalService, request_id: str) -> int:
    return [e.kind for e in await service.store.request_events(request_id)].count(EventKind.NOTIFIED)


async def test_a_rate_limited_post_is_retried_after_retry_after_and_posted_once(tmp_path: Path) -> None:
    async with rig(tmp_path) as (service, slack, fake, clock):
        request = await service.request_approval(draft())
        fake.ratelimit_next["chat.postMessage"] = 1
        await deliver_due(service, slack)  # 429 with Retry-After: 1
        assert await posted(service, request.id) is None
        clock.advance(0.5)
        await deliver_due(service, slack)  # too early: not retried yet
        assert len(fake.of("chat.postMessage")) == 1
        clock.advance(0.5)
        await deliver_due(service, slack)
        ref = await service.store.message_ref(request.id, "slack")
        assert len(fake.of("chat.postMessage")) == 2  # the 429, then the post
        assert ref is not None and ref.channel == "C0APPROVALS"
        assert await notified(service, request.id) == 1


async def test_a_retry_after_that_is_not_plain_seconds_means_one_second_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with rig(tmp_path) as (service, slack, fake, clock):
        request = await service.request_approval(draft())
        fake.ratelimit_next["chat.postMessage"], fake.retry_after = 1, "²"  # "²".isdigit(), but float("²") fails
        await deliver_due(service, slack)
        assert await posted(service, request.id) is None
        clock.advance(1)
        await deliver_due(service, slack)
        assert len(fake.of("chat.postMessage")) == 2 and await posted(service, request.id) is not None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "the 429 was not read as a rate limit"


async def test_slack_down_for_a_while_loses_nothing_and_approves_nothing(tmp_path: Path) -> None:
    async with rig(tmp_path) as (service, slack, fake, clock):
        request = await service.request_approval(draft())
        fake.down = True
        for attempt in range(3):
            await deliver_due(service, slack)
            clock.advance(backoff(attempt))
        assert len(fake.of("chat.postMessage")) == 3
        assert (await service.get(request.id)).status is Status.PENDING
        assert await posted(service, request.id) is None
        assert await notified(service, request.id) == 0
        fake.down = False
        await deliver_due(service, slack)
        await deliver_due(service, slack)  # nothing left to send
        assert len(fake.of("chat.postMessage")) == 4
        assert await service.store.message_ref(request.id, "slack") is not None
        assert await notified(service, request.id) == 1
        assert (await service.get(request.id)).status is Status.PENDING


async def test_every_later_state_updates_the_same_message(tmp_path: Path) -> None:
    async with rig(tmp_path) as (service, slack, fake, clock):
        request = await service.request_approval(draft(expires_in_seconds=60))
        await deliver_due(service, slack)
        clock.advance(61)
        assert await service.expire_due() == 1
        await deliver_due(service, slack)
    [post] = fake.of("chat.postMessage")
    [update] = fake.of("chat.update")
    assert update.args["channel"] == "C0APPROVALS" and update.args["ts"] == "1700000001.000000"
    assert "actions" not in str(update.args["blocks"]) and "Expired" in str(update.args["blocks"])
    assert "expired" in update.args["text"] and request.id in str(post.args["blocks"])


async def test_a_notification_committed_before_a_crash_is_delivered_by_the_next_server(tmp_path: Path) -> None:
    """The request and its outbox row commit together; no process delivered it (as if the server died right
    after the commit). The next server to start on the database delivers it, once."""
    fake = await FakeSlack().start()
    try:
        store = await SqliteStore.open(tmp_path / "signoff.db")
        request = await ApprovalService(store, POLICY).request_approval(draft())
        await store.close()
        settings = Settings(
            db_path=tmp_path / "signoff.db",
            slack_bot_token="xoxb-test",
            slack_channel="#approvals",
            slack_api_url=fake.api_url,
        )
        async with Client(build_server(settings)):
            await fake.wait_for(
                lambda: any(request.id in str(c.args.get("blocks")) for c in fake.of("chat.postMessage"))
            )
    finally:
        await fake.stop()
    assert len(fake.of("chat.postMessage")) == 1


ESCALATING = Policy(
    parse_policy_config(
        '[slack]\napprovers = ["U0ALICE"]\n\n[[people]]\nname = "alice"\naliases = ["U0ALICE"]\n\n'
        '[[rules]]\nname = "group"\naction = "db.*"\noutcome = "review"\n'
        'escalate_after_seconds = 60\nescalate_to = "S0ONCALL"\n\n[[rules]]\nname = "channel"\naction = "deploy.*"\n'
        'outcome = "review"\nescalate_after_seconds = 60\nescalate_to = "C0ONCALL"\n'
    )
)


async def test_an_escalation_mentions_the_group_or_posts_to_the_channel_once(tmp_path: Path) -> None:
    async with rig(tmp_path) as (_, slack, fake, clock):
        service = ApprovalService(slack.store, ESCALATING, clock)
        mention = await service.request_approval(draft())
        copy = await service.request_approval(Draft(action="deploy.prod", summary="Ship v2", payload={"version": "2"}))
        await deliver_due(service, slack)
        clock.advance(61)
        assert await service.escalate_due() == 2
        await deliver_due(service, slack)
        await service.vote(copy.id, "alice", Verdict.APPROVE, None)
        await deliver_due(service, slack)
    thread = [c.args for c in fake.of("chat.postMessage") if c.args.get("thread_ts")]
    assert [t["text"].startswith("<!subteam^S0ONCALL>") for t in thread if mention.id in t["text"]] == [True]
    copies = [c.args for c in fake.of("chat.postMessage") if c.args["channel"] == "C0ONCALL"]
    assert len(copies) == 1 and "Escalated" in copies[0]["text"] and "actions" in str(copies[0]["blocks"])
    updated = [c.args for c in fake.of("chat.update") if c.args["channel"] == "C0ONCALL"]
    assert updated and "approved by alice" in str(updated[-1]["blocks"])  # the copy follows the verdict too
