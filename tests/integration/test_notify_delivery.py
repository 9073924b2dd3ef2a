"""Per-notifier delivery: each notifier keeps its own retries, gives up on its own, and a Slack post is never made
twice. Against the local fake Slack, a real webhook receiver and the console's log line, with a fake clock."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from signoff.notifiers import (
    ConsoleNotifier,
    FanOut,
    SlackInteractions,
    SlackNotifier,
    WebhookNotifier,
    socket_mode_client,
    web_client,
)
from signoff.notifiers.slack_notifier import RESERVATION_HOLD
from signoff.server.workers import DeliveryLimits, backoff, deliver_due
from signoff.storage import EventKind, MessageRef
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.fakes.clock import FakeClock
from tests.fakes.slack import FakeSlack
from tests.integration.support import webhook_receiver

SIGNOFF = str(Path(sys.executable).parent / "signoff")


def draft() -> Draft:
    return Draft(action="db.drop_table", summary="Drop table staging.events", payload={"table": "events"})


@dataclass
class Receiver:
    """A webhook receiver that answers ``status`` and keeps what it got."""

    status: int = 204
    bodies: list[bytes] = field(default_factory=list)

    async def hook(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        return web.Response(status=self.status)


@asynccontextmanager
async def rig(tmp_path: Path) -> AsyncIterator[tuple[ApprovalService, FakeSlack, Receiver, FakeClock, FanOut]]:
    """Console + Slack + webhook, on a SQLite file, with a clock that starts now (so the CLI's re-queue is due)."""
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    fake = await FakeSlack(start_ts=clock.now().timestamp()).start()
    store = await SqliteStore.open(tmp_path / "signoff.db")
    receiver = Receiver()
    try:
        async with webhook_receiver(receiver.hook) as url:
            slack = SlackNotifier(
                web_client("xoxb-test", fake.api_url, wait_on_rate_limit=False), store, "C0APPROVALS", now=clock.now
            )
            fan_out = FanOut(ConsoleNotifier(), slack, WebhookNotifier(url, "whsec-test"))
            yield ApprovalService(store, clock=clock), fake, receiver, clock, fan_out
    finally:
        await store.close()
        await fake.stop()


def console_lines(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if r.name == "signoff.notify" and "approval needed" in r.getMessage())


async def events(service: ApprovalService, request_id: str, kind: EventKind) -> list[dict[str, object]]:
    return [dict(e.data) for e in await service.store.request_events(request_id) if e.kind is kind]


async def test_a_slack_429_waits_its_retry_after_and_the_console_and_webhook_are_not_run_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with rig(tmp_path) as (service, fake, receiver, clock, notifier):
        request = await service.request_approval(draft())
        fake.ratelimit_next["chat.postMessage"], fake.retry_after = 1, 2
        await deliver_due(service, notifier)  # console and webhook deliver; Slack answers 429, Retry-After: 2
        assert (len(fake.of("chat.postMessage")), len(receiver.bodies), console_lines(caplog)) == (1, 1, 1)
        clock.advance(1)
        await deliver_due(service, notifier)  # 1 s later: Slack asked for 2, so nothing is sent
        assert (len(fake.of("chat.postMessage")), len(receiver.bodies), console_lines(caplog)) == (1, 1, 1)
        clock.advance(1)
        await deliver_due(service, notifier)  # 2 s: Slack alone is retried, and posts
        await deliver_due(service, notifier)  # nothing left
        assert (len(fake.of("chat.postMessage")), len(receiver.bodies), console_lines(caplog)) == (2, 1, 1)
        notified = await events(service, request.id, EventKind.NOTIFIED)
    assert sorted(str(e["notifier"]) for e in notified) == ["console", "slack", "webhook"]


async def signoff(db: Path, *args: str) -> tuple[int, str]:
    env = {**os.environ, "SIGNOFF_DB": str(db)}
    result = await anyio.run_process([SIGNOFF, *args], env=env, check=False)
    return result.returncode, result.stdout.decode() + result.stderr.decode()


async def test_a_refused_webhook_is_dead_lettered_listed_and_delivered_again_on_retry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "signoff.db"
    async with rig(tmp_path) as (service, fake, receiver, clock, notifier):
        request = await service.request_approval(draft())
        receiver.status = 410  # gone: retrying cannot help
        await deliver_due(service, notifier)
        [failed] = await events(service, request.id, EventKind.NOTIFY_FAILED)
        assert failed["notifier"] == "webhook" and "410" in str(failed["error"])
        [warning] = [r for r in caplog.records if "gave up" in r.getMessage()]
        assert warning.levelno == logging.WARNING and "signoff outbox retry" in warning.getMessage()
        clock.advance(3600)
        await deliver_due(service, notifier)  # dead: not retried by itself
        assert len(receiver.bodies) == 1

        code, listing = await signoff(db, "outbox", "list")
        assert code == 0 and request.id in listing
        [dead] = [line for line in listing.splitlines() if " dead " in line]
        assert "webhook" in dead and "HTTP 410" in dead
        outbox_id = dead.split()[0]

        receiver.status = 204  # the receiver is fixed
        code, retried = await signoff(db, "outbox", "retry", outbox_id)
        assert code == 0 and outbox_id in retried, retried
        clock.advance(60)
        await deliver_due(service, notifier)
        assert len(receiver.bodies) == 2
        assert len(fake.of("chat.postMessage")) == 1 and console_lines(caplog) == 1  # the others were not re-run
        assert (await signoff(db, "outbox", "list"))[1].startswith("nothing waiting")
        code, again = await signoff(db, "outbox", "retry", outbox_id)
        assert code == 1 and "no dead delivery" in again
        assert (await signoff(db, "audit", "verify"))[0] == 0  # the chain accepts notify_failed


class FlakyNotifier:
    name = "flaky"

    async def deliver(self, request: object) -> None:
        from signoff.notifiers import DeliveryFailed

        raise DeliveryFailed("the service is down")


async def test_a_notifier_gives_up_after_the_configured_attempts(tmp_path: Path) -> None:
    async with rig(tmp_path) as (service, _, _, clock, _):
        request = await service.request_approval(draft())
        limits = DeliveryLimits(max_attempts=3, give_up_seconds=86_400)
        for attempt in range(3):
            assert not await events(service, request.id, EventKind.NOTIFY_FAILED)
            await deliver_due(service, FlakyNotifier(), limits)
            clock.advance(backoff(attempt))
        [failed] = await events(service, request.id, EventKind.NOTIFY_FAILED)
        assert failed["attempts"] == 3
        [entry] = await service.store.outbox_entries()
        assert [m.state.value for m in entry.marks] == ["dead"]


async def test_slack_unreachable_logs_one_line_per_retry(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with rig(tmp_path) as (service, fake, _, clock, _):
        await fake.stop()  # nothing listens there any more
        slack = SlackNotifier(web_client("xoxb-test", fake.api_url, wait_on_rate_limit=False), service.store, "C0X")
        await service.request_approval(draft())
        for attempt in range(3):
            await deliver_due(service, slack)
            clock.advance(backoff(attempt))
    lines = [r for r in caplog.records if r.name == "signoff.server.workers"]
    assert len(lines) == 3
    for record in lines:
        message = record.getMessage()
        assert record.exc_info is None and "\n" not in message
        assert "Slack could not be reached" in message and "next at" in message


async def test_socket_mode_that_cannot_connect_logs_one_line_per_retry(caplog: pytest.LogCaptureFixture) -> None:
    fake = await FakeSlack().start()
    await fake.stop()  # Slack unreachable
    client = web_client("xoxb-test", fake.api_url)
    interactions = SlackInteractions(client, None, None, None, None, None)  # type: ignore[arg-type]  # never called
    socket = socket_mode_client("xapp-test", client, interactions, retry_interval=0.05)
    seen = anyio.Event()

    class Three(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if sum(1 for r in caplog.records if r.name.endswith("slack_socket_mode")) >= 3:
                seen.set()

    watcher = Three()
    logging.getLogger("signoff.notifiers.slack_socket_mode").addHandler(watcher)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(socket.connect)
            with anyio.fail_after(30):
                await seen.wait()
            await socket.close()  # type: ignore[no-untyped-call]
            group.cancel_scope.cancel()
    finally:
        logging.getLogger("signoff.notifiers.slack_socket_mode").removeHandler(watcher)
    records = [r for r in caplog.records if r.name.endswith("slack_socket_mode")]
    assert len(records) >= 3
    for record in records:
        assert record.exc_info is None and record.levelno == logging.WARNING
        assert "cannot connect" in record.getMessage() and "next try at" in record.getMessage()
        assert "\n" not in record.getMessage()


class SaveFailsOnce(SqliteStore):
    """The process 'dies' after Slack accepted the post and before its ts was stored: the save fails once."""

    failed = False

    async def save_message_ref(self, ref: MessageRef) -> None:
        if ref.confirmed and not self.failed:
            self.failed = True
            raise OSError("killed before the ts was stored")
        await super().save_message_ref(ref)


async def test_a_post_whose_ts_was_not_stored_is_adopted_not_posted_twice(tmp_path: Path) -> None:
    clock = FakeClock(datetime.now(UTC))
    fake = await FakeSlack(start_ts=clock.now().timestamp()).start()
    store = await SaveFailsOnce.open(tmp_path / "signoff.db")
    try:
        service = ApprovalService(store, clock=clock)
        slack = SlackNotifier(
            web_client("xoxb-test", fake.api_url, wait_on_rate_limit=False), store, "C0APPROVALS", now=clock.now
        )
        request = await service.request_approval(draft())
        await deliver_due(service, slack)  # posted; the ts is lost
        assert store.failed and not (await store.message_ref(request.id, "slack")).confirmed  # type: ignore[union-attr]
        clock.advance(backoff(0))
        await deliver_due(service, slack)  # the post may still be on its way: it waits for it
        assert len(fake.of("chat.postMessage")) == 1 and fake.of("conversations.history") == []
        clock.advance(RESERVATION_HOLD.total_seconds())
        await deliver_due(service, slack)  # looks first, finds its own post, adopts it
        [post] = fake.of("chat.postMessage")
        assert post.args["metadata"] == {"event_type": "signoff_request", "event_payload": {"request_id": request.id}}
        assert fake.of("conversations.history")[0].args["include_all_metadata"] in ("1", "true")
        ref = await store.message_ref(request.id, "slack")
        assert ref is not None and ref.confirmed and ref.ts == fake.messages[0]["ts"]
        kinds = [e.kind for e in await store.request_events(request.id)]
        assert kinds.count(EventKind.NOTIFIED) == 1
        await service.cancel(request.id, "changed plan")
        await deliver_due(service, slack)  # later states update the adopted message
        assert len(fake.of("chat.postMessage")) == 1
        assert fake.of("chat.update")[-1].args["ts"] == ref.ts
    finally:
        await store.close()
        await fake.stop()
