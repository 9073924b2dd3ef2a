"""A request's page shows how its payload differs from the last approval of the same action and agent before it."""

from __future__ import annotations

from signoff.server.console import Console
from signoff.server.console.pages import _previous
from signoff.storage import Verdict
from signoff.storage.approvals.memory import MemoryStore
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.fakes.clock import FakeClock


def draft(amount: int) -> Draft:
    return Draft(action="refunds.issue", summary="Refund", payload={"amount": amount}, agent_id="billing-bot")


async def test_an_old_requests_page_compares_with_the_approval_before_it_not_a_newer_one() -> None:
    clock = FakeClock()
    service = ApprovalService(MemoryStore(), clock=clock)
    console = Console(service_of=lambda: service)
    before = await service.request_approval(draft(10))
    await service.vote(before.id, "alice", Verdict.APPROVE, None)
    clock.advance(1)
    old = await service.request_approval(draft(20))
    for amount in range(30, 55):  # more approvals afterwards than one page of the search holds
        clock.advance(1)
        later = await service.request_approval(draft(amount))
        await service.vote(later.id, "alice", Verdict.APPROVE, None)
    shown = await _previous(console, old, None)
    assert shown is not None and shown["id"] == before.id
    first = await _previous(console, before, None)
    assert first is None  # nothing was approved before the first one
