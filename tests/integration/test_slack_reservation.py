"""Two servers delivering the same request to Slack post one message: the post's reservation is a compare-and-set
(of two servers that both found no message yet, one reserves and posts, the other posts nothing), and a reservation
young enough that its post may still be on its way is waited for, not replaced. Two stores on one database (a
PostgreSQL database, or one SQLite file) against the local fake Slack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import anyio
import pytest

from signoff.notifiers import DeliveryFailed, SlackNotifier, web_client
from signoff.notifiers.slack_notifier import RESERVATION_HOLD
from signoff.storage import ApprovalRequest, MessageRef, Store
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.fakes.clock import FakeClock
from tests.fakes.slack import FakeSlack


async def _open(database: str) -> Store:
    if database.startswith("postgresql"):
        from signoff.storage.approvals.postgres import PostgresStore

        return await PostgresStore.open(database, poll_interval=600)
    return await SqliteStore.open(Path(database))


@dataclass
class SlowReader:
    """Server b's view of the store: after reading the message reference it stops until the test lets it go on
    (the moment between reading "no message yet" and reserving the post)."""

    store: Store
    read: anyio.Event
    go_on: anyio.Event

    async def message_ref(self, request_id: str, notifier: str) -> MessageRef | None:
        ref = await self.store.message_ref(request_id, notifier)
        self.read.set()
        await self.go_on.wait()
        return ref

    async def save_message_ref(self, ref: MessageRef) -> None:
        await self.store.save_message_ref(ref)

    async def swap_message_ref(self, expected: MessageRef | None, ref: MessageRef) -> bool:
        return await self.store.swap_message_ref(expected, ref)


@asynccontextmanager
async def rig(database: str) -> AsyncIterator[tuple[Store, Store, FakeSlack, FakeClock, ApprovalRequest]]:
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    fake = await FakeSlack(start_ts=clock.now().timestamp()).start()
    a, b = await _open(database), await _open(database)
    try:
        request = await ApprovalService(a, clock=clock).request_approval(
            Draft(action="db.drop_table", summary="Drop table staging.events", payload={"table": "events"})
        )
        yield a, b, fake, clock, request
    finally:
        await a.close()
        await b.close()
        await fake.stop()


def slack(fake: FakeSlack, store: Store | SlowReader, clock: FakeClock) -> SlackNotifier:
    client = web_client("xoxb-test", fake.api_url, wait_on_rate_limit=False)
    return SlackNotifier(client, cast(Store, store), "C0APPROVALS", now=clock.now)


async def test_two_servers_that_both_found_no_message_post_it_once(database: str) -> None:
    async with rig(database) as (a, b, fake, clock, request):
        slow_b = SlowReader(b, anyio.Event(), anyio.Event())
        outcome: list[BaseException | None] = []

        async def deliver_b() -> None:
            try:
                await slack(fake, slow_b, clock).deliver(request)
                outcome.append(None)
            except DeliveryFailed as exc:
                outcome.append(exc)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(deliver_b)
                await slow_b.read.wait()  # b found no message yet
                await slack(fake, a, clock).deliver(request)  # a reserves and posts
                slow_b.go_on.set()  # b goes on to reserve the same post
        assert len(fake.of("chat.postMessage")) == 1, fake.of("chat.postMessage")
        assert isinstance(outcome[0], DeliveryFailed) and "reserved the Slack post" in str(outcome[0])
        ref = await b.message_ref(request.id, "slack")
        assert ref is not None and ref.confirmed and ref.ts == fake.messages[0]["ts"]  # a's post, kept


async def test_a_post_still_on_its_way_is_waited_for_not_posted_again(database: str) -> None:
    async with rig(database) as (a, b, fake, clock, request):
        fake.hold_next_post = held = anyio.Event()
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(slack(fake, a, clock).deliver, request)  # a reserved; Slack has not taken it yet
                await fake.wait_for(lambda: fake.of("chat.postMessage"))
                clock.advance(5)
                with pytest.raises(DeliveryFailed, match="not confirmed yet") as waited:
                    await slack(fake, b, clock).deliver(request)  # b must not look, miss it, and post again
                held.set()
        assert waited.value.retry_after == (RESERVATION_HOLD.total_seconds() - 5)
        assert len(fake.of("chat.postMessage")) == 1 and fake.of("conversations.history") == []
        clock.advance(RESERVATION_HOLD.total_seconds())
        await slack(fake, b, clock).deliver(request)  # b's retry updates a's message
        assert len(fake.of("chat.postMessage")) == 1 and len(fake.of("chat.update")) == 1
