"""Outbox delivery runs on every server, and a batch may take longer than the lease its claim took (a slow SMTP
server, one message after another). Each row's lease is renewed with the claim's token just before it is sent, so
two live servers never send the same notification; a server whose lease was taken over sends nothing more of its
batch, and its late result is dropped. Two stores on one database (a PostgreSQL database, or one SQLite file) are two
servers; the clock is a fake one both share, moved while a delivery is held."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from signoff.server.workers import deliver_due
from signoff.storage import ApprovalRequest, EventKind, Status, Store
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.fakes.clock import FakeClock


class HeldMail:
    """An e-mail notifier whose first ``held`` messages each wait until the test lets them go (a slow SMTP
    server); later ones go straight through."""

    name = "email"

    def __init__(self, host: str, sent: list[tuple[str, str]], held: int) -> None:
        self.host, self.sent, self.held = host, sent, held
        self.arrivals: MemoryObjectSendStream[tuple[str, anyio.Event]]
        self.arrived: MemoryObjectReceiveStream[tuple[str, anyio.Event]]
        self.arrivals, self.arrived = anyio.create_memory_object_stream[tuple[str, anyio.Event]](10)

    def close(self) -> None:
        self.arrivals.close()
        self.arrived.close()

    async def next(self) -> tuple[str, anyio.Event]:
        """The next message a is sending (its request's id), and the event that lets it through."""
        return await self.arrived.receive()

    async def deliver(self, request: ApprovalRequest) -> None:
        if self.held > 0:
            self.held -= 1
            answer = anyio.Event()
            await self.arrivals.send((request.id, answer))
            await answer.wait()
        self.sent.append((self.host, request.id))


class PromptMail:
    name = "email"

    def __init__(self, host: str, sent: list[tuple[str, str]]) -> None:
        self.host, self.sent = host, sent

    async def deliver(self, request: ApprovalRequest) -> None:
        self.sent.append((self.host, request.id))


async def _open(database: str) -> Store:
    if database.startswith("postgresql"):
        from signoff.storage.approvals.postgres import PostgresStore

        return await PostgresStore.open(database, poll_interval=600)
    return await SqliteStore.open(Path(database))


@asynccontextmanager
async def two_servers(database: str) -> AsyncIterator[tuple[ApprovalService, ApprovalService, list[str], FakeClock]]:
    """Servers a and b on one database, and the ids of two pending requests (each with a notification due)."""
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    a, b = await _open(database), await _open(database)
    try:
        service_a, service_b = ApprovalService(a, clock=clock), ApprovalService(b, clock=clock)
        ids = []
        for n in (1, 2):
            request = await service_a.request_approval(Draft(action="db.drop_table", summary=f"{n}", payload={"t": n}))
            assert request.status is Status.PENDING
            ids.append(request.id)
        yield service_a, service_b, ids, clock
    finally:
        await a.close()
        await b.close()


async def test_a_batch_that_outlives_its_lease_is_sent_once(database: str) -> None:
    sent: list[tuple[str, str]] = []
    async with two_servers(database) as (service_a, service_b, (first, second), clock):
        mail_a = HeldMail("a", sent, held=2)
        with anyio.fail_after(30), closing(mail_a):
            async with anyio.create_task_group() as tg:
                tg.start_soon(deliver_due, service_a, mail_a)  # a claims both rows: leased for 120 s
                request_id, answer = await mail_a.next()
                assert request_id == first
                clock.advance(70)  # the first message takes 70 s
                answer.set()
                request_id, answer = await mail_a.next()  # the second's lease was renewed just now
                assert request_id == second
                clock.advance(51)  # 121 s after the claim: the batch outlived the lease it took
                await deliver_due(service_b, PromptMail("b", sent))  # b's worker: nothing is due
                answer.set()
        events = [e.kind for e in await service_b.store.request_events(second)]
    assert sorted(sent) == sorted([("a", first), ("a", second)]), sent
    assert events.count(EventKind.NOTIFIED) == 1


async def test_a_server_whose_lease_was_taken_over_sends_none_of_the_rest_and_its_result_is_dropped(
    database: str, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[tuple[str, str]] = []
    caplog.set_level(logging.WARNING, logger="signoff.server.workers")
    async with two_servers(database) as (service_a, service_b, (first, second), clock):
        mail_a = HeldMail("a", sent, held=1)
        with anyio.fail_after(30), closing(mail_a):
            async with anyio.create_task_group() as tg:
                tg.start_soon(deliver_due, service_a, mail_a)
                request_id, answer = await mail_a.next()
                assert request_id == first
                clock.advance(121)  # a stalls past its lease (a hung process; the delivery timeout is real time)
                await deliver_due(service_b, PromptMail("b", sent))  # b takes both rows over and sends them
                answer.set()  # a wakes up: its result on the first is dropped, and the second is b's
        events = {rid: [e.kind for e in await service_b.store.request_events(rid)] for rid in (first, second)}
        entries = await service_b.store.outbox_entries()
    assert ("a", second) not in sent and ("b", second) in sent and ("b", first) in sent, sent
    assert events[first].count(EventKind.NOTIFIED) == 1 and events[second].count(EventKind.NOTIFIED) == 1
    assert entries == []  # b settled both; a's late result did not undo or repeat anything
    messages = [r.getMessage() for r in caplog.records]
    assert any("were dropped: another server settled it or took it over" in m for m in messages), messages
