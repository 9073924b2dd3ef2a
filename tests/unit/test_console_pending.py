"""The console's live streams share one read of the queue per change of the store."""

from __future__ import annotations

from datetime import datetime, timedelta

import anyio

from signoff.server.console import Console, present
from signoff.storage import QueueEntry
from signoff.storage.approvals.memory import MemoryStore
from signoff.tools.approvals.service import ApprovalService, Draft

CONSOLE_MADE_OUTSIDE_THE_LOOP = Console(service_of=lambda: None)  # as build_server makes it


async def test_streams_woken_by_one_change_read_the_queue_once_and_a_change_reads_it_again() -> None:
    service = ApprovalService(MemoryStore())
    console = Console(service_of=lambda: service)
    first = await service.request_approval(Draft(action="deploy.web", summary="ship it", payload={}))
    token = await service.store.change_token()
    seen: list[object] = []

    async def stream() -> None:
        seen.append(await console.pending(token))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(stream)
    assert len(seen) == 5 and all(s is seen[0] for s in seen)  # one list, read once
    assert [r.id for r in seen[0]] == [first.id]  # type: ignore[attr-defined]

    second = await service.request_approval(Draft(action="deploy.api", summary="ship that", payload={}))
    after = await console.pending(await service.store.change_token())
    assert after is not seen[0] and {r.id for r in after} == {first.id, second.id}
    assert await console.pending() is not after  # without a token: always a fresh read


async def test_a_console_made_before_the_event_loop_runs_can_share_reads() -> None:
    service = ApprovalService(MemoryStore())
    CONSOLE_MADE_OUTSIDE_THE_LOOP.service_of = lambda: service
    await service.request_approval(Draft(action="deploy.web", summary="ship it", payload={}))
    token = await service.store.change_token()
    assert len(await CONSOLE_MADE_OUTSIDE_THE_LOOP.pending(token)) == 1


async def test_the_queue_is_kept_between_reads_and_rows_are_made_again_only_for_what_changed() -> None:
    service = ApprovalService(MemoryStore())
    console = Console(service_of=lambda: service)
    claimed = await service.request_approval(Draft(action="deploy.web", summary="<b>ship</b> it", payload={}))
    other = await service.request_approval(Draft(action="deploy.api", summary="ship that", payload={}))
    now = service.clock.now()

    def rows(pending: list[QueueEntry], at: datetime) -> dict[str, dict[str, object]]:
        return {row["id"]: row for row in present.queue(pending, present.Filters(), at, console.queue_row)["rows"]}

    before = rows(await console.pending(), now)
    assert before[claimed.id] == present.queue_row(claimed, now)  # the same row as from the whole request
    await service.claim(claimed.id, "bob")
    after = rows(await console.pending(), now)
    assert after[claimed.id]["claim"] == "bob is reviewing"
    assert after[other.id] is before[other.id]  # not made again
    lapsed = rows(await console.pending(), now + timedelta(seconds=service.claim_seconds + 1))
    assert lapsed[claimed.id]["claim"] == ""  # a lapsed claim shows as none, with no change in the store
    await service.cancel(other.id, "not needed")
    assert set(rows(await console.pending(), now)) == {claimed.id}  # a request that left, leaves the queue
