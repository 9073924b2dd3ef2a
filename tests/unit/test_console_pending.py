"""The console's live streams share one read of the queue per change of the store."""

from __future__ import annotations

import anyio

from signoff.server.console import Console
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
