"""The server's background work: the expiry sweeper and outbox delivery, retries included."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from mcp import Client

from signoff.notifiers import DeliveryFailed
from signoff.server import workers
from signoff.server.app import build_server
from signoff.server.config import Settings
from signoff.server.workers import backoff, deliver_due
from signoff.storage import ApprovalRequest, ConfigError, EventKind, Status
from signoff.storage.approvals.memory import MemoryStore
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.fakes.clock import FakeClock
from tests.waits import stored_when


async def test_the_running_server_expires_overdue_requests_and_notifies(tmp_path: Path) -> None:
    store, clock = MemoryStore(), FakeClock()
    settings = Settings(db_path=tmp_path / "unused.db", sweep_interval=0.01)
    async with Client(build_server(settings, store=store, clock=clock)) as client:
        created = await client.call_tool(
            "request_approval", {"action": "deploy.prod", "summary": "ship", "expires_in_seconds": 60}
        )
        request_id = created.structured_content["request_id"]  # type: ignore[index]

        async def notified(times: int) -> None:
            with anyio.fail_after(30):
                while True:
                    token = await store.change_token()
                    kinds = [e.kind for e in await store.request_events(request_id)]
                    if kinds.count(EventKind.NOTIFIED) == times:
                        return
                    await store.wait_for_change(token, 5)

        await stored_when(store, request_id, lambda r: r.status is Status.PENDING)
        await notified(1)  # reviewers heard of it (had it expired first, one notification would tell both)
        clock.advance(61)
        expired = await stored_when(store, request_id, lambda r: r.status is Status.EXPIRED)
        assert expired.decided_by is None and not expired.votes
        await notified(2)  # and that it expired


class FlakyNotifier:
    """Fails as scripted: a DeliveryFailed (Slack down), then a bug, then works."""

    name = "flaky"

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.seen: list[Status] = []

    async def deliver(self, request: ApprovalRequest) -> None:
        self.seen.append(request.status)
        step = self.script.pop(0)
        if step == "down":
            raise DeliveryFailed("slack is down")
        if step == "bug":
            raise RuntimeError("notifier bug")


async def test_failed_deliveries_are_retried_with_backoff_and_never_decide() -> None:
    store, clock = MemoryStore(), FakeClock()
    service = ApprovalService(store, clock=clock)
    request = await service.request_approval(Draft(action="db.drop", summary="drop", payload={}))
    notifier = FlakyNotifier(["down", "bug", "ok"])

    await deliver_due(service, notifier)  # down: retry in 1 s
    await deliver_due(service, notifier)  # not due yet
    assert len(notifier.seen) == 1
    clock.advance(backoff(0))
    await deliver_due(service, notifier)  # a bug: retry in 2 s
    clock.advance(backoff(1))
    await deliver_due(service, notifier)  # delivered
    await deliver_due(service, notifier)  # nothing left
    assert notifier.seen == [Status.PENDING] * 3
    assert (await service.get(request.id)).status is Status.PENDING
    kinds = [e.kind for e in await store.request_events(request.id)]
    assert kinds.count(EventKind.NOTIFIED) == 1


class HangingNotifier:
    """A notifier whose service accepts the connection and never answers."""

    name = "hanging"

    async def deliver(self, request: ApprovalRequest) -> None:
        await anyio.sleep_forever()


async def test_a_delivery_that_hangs_is_cut_off_inside_its_lease_and_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """A send must end while its lease still holds the row, or another server could take the row over and send it
    too: it is cut off after DELIVERY_TIMEOUT_SECONDS (a minute; a fraction of a second here), a failed attempt."""
    monkeypatch.setattr(workers, "DELIVERY_TIMEOUT_SECONDS", 0.05)
    store, clock = MemoryStore(), FakeClock()
    service = ApprovalService(store, clock=clock)
    request = await service.request_approval(Draft(action="db.drop", summary="drop", payload={}))
    with anyio.fail_after(10):
        await deliver_due(service, HangingNotifier())
    [entry] = await store.outbox_entries()
    [mark] = entry.marks
    assert mark.attempts == 1 and mark.last_error == "hanging did not answer within 0s", mark
    assert entry.next_attempt_at == clock.now() + timedelta(seconds=backoff(0))
    assert (await service.get(request.id)).status is Status.PENDING


class CountingNotifier:
    name = "counting"

    def __init__(self) -> None:
        self.delivered: list[str] = []

    async def deliver(self, request: ApprovalRequest) -> None:
        self.delivered.append(request.id)


async def test_a_burst_of_requests_is_delivered_in_full_batches_then_the_rest() -> None:
    service = ApprovalService(MemoryStore(), clock=FakeClock())
    ids = [
        (await service.request_approval(Draft(action="db.drop", summary=f"drop {i}", payload={}))).id for i in range(25)
    ]
    notifier = CountingNotifier()
    rounds = [await deliver_due(service, notifier) for _ in range(4)]
    assert rounds == [True, True, False, False]  # full: the worker goes on at once; not full: it may pause
    assert sorted(notifier.delivered) == sorted(ids)


async def test_the_running_server_delivers_every_notification_of_a_burst(tmp_path: Path) -> None:
    store, notifier = MemoryStore(), CountingNotifier()
    settings = Settings(db_path=tmp_path / "unused.db")
    async with Client(build_server(settings, store=store, notifier=notifier)) as client:
        created = []
        for i in range(23):
            result = await client.call_tool("request_approval", {"action": "db.drop", "summary": f"drop {i}"})
            created.append(result.structured_content["request_id"])  # type: ignore[index]
        with anyio.fail_after(30):
            while len(notifier.delivered) < len(created):
                await store.wait_for_change(await store.change_token(), 5)
    assert sorted(notifier.delivered) == sorted(created)


@pytest.mark.parametrize(("attempts", "seconds"), [(0, 1), (1, 2), (5, 32), (30, 300)])
def test_backoff_doubles_up_to_five_minutes(attempts: int, seconds: float) -> None:
    assert backoff(attempts) == seconds


def test_the_delivery_limits_are_read_from_the_environment() -> None:
    env = {"SIGNOFF_NOTIFY_MAX_ATTEMPTS": "5", "SIGNOFF_NOTIFY_GIVE_UP_SECONDS": "600"}
    settings = Settings.from_env(env)
    assert (settings.notify_max_attempts, settings.notify_give_up_seconds) == (5, 600.0)
    assert Settings.from_env({}).notify_max_attempts == 50
    with pytest.raises(ConfigError, match="SIGNOFF_NOTIFY_MAX_ATTEMPTS"):
        Settings.from_env({"SIGNOFF_NOTIFY_MAX_ATTEMPTS": "0"})
    with pytest.raises(ConfigError, match="SIGNOFF_NOTIFY_GIVE_UP_SECONDS"):
        Settings.from_env({"SIGNOFF_NOTIFY_GIVE_UP_SECONDS": "soon"})
