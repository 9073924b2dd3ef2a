"""Claims: "alice is reviewing this". The request stays pending, nobody is kept from voting, a claim lapses by
itself, only someone who may vote may claim, and claims are audit events."""

from __future__ import annotations

import pytest

from signoff.storage import Conflict, EventKind, Forbidden, Status, Verdict
from signoff.storage.audit import verify_store
from signoff.tools.approvals.views import ApprovalStatus
from tests.unit.test_service import draft, make_service

ROUTED = """
[[people]]
name = "alice"
aliases = ["U0ALICE"]

[[rules]]
name = "deploys need alice"
action = "deploy.*"
outcome = "review"
approvers = ["alice"]
"""


async def test_a_claim_shows_in_the_status_keeps_nobody_from_voting_and_is_audited() -> None:
    service, store, clock = make_service()
    request = await service.request_approval(draft())
    claimed = await service.claim(request.id, "alice")
    assert claimed.status is Status.PENDING and claimed.claim_at(clock.now()) == "alice"
    status = ApprovalStatus.of(claimed, now=clock.now())
    assert (status.claimed_by, status.claimed_at) == ("alice", clock.now())
    with pytest.raises(Conflict, match="alice is reviewing"):
        await service.claim(request.id, "bob")
    decided = await service.vote(request.id, "bob", Verdict.APPROVE, None)  # the claim blocks no vote
    assert decided.status is Status.APPROVED and ApprovalStatus.of(decided, now=clock.now()).claimed_by is None
    kinds = [e.kind for e in await store.request_events(request.id)]
    assert EventKind.CLAIMED in kinds
    assert (await verify_store(store)).ok


async def test_a_claim_lapses_by_itself_and_can_be_released_only_by_its_holder() -> None:
    service, store, clock = make_service()
    request = await service.request_approval(draft())
    await service.claim(request.id, "alice")
    with pytest.raises(Conflict, match="bob holds no claim"):
        await service.release(request.id, "bob")
    released = await service.release(request.id, "alice")
    assert released.claim_at(clock.now()) is None
    await service.claim(request.id, "bob")
    clock.advance(service.claim_seconds + 1)
    assert (await service.get(request.id)).claim_at(clock.now()) is None  # lapsed
    retaken = await service.claim(request.id, "alice")
    assert retaken.claim_at(clock.now()) == "alice"
    kinds = [e.kind for e in await store.request_events(request.id)]
    assert kinds.count(EventKind.CLAIMED) == 3 and kinds.count(EventKind.RELEASED) == 1
    assert (await verify_store(store)).ok


async def test_only_someone_who_may_vote_may_claim() -> None:
    service, store, _ = make_service(ROUTED)
    request = await service.request_approval(draft(action="deploy.web", agent_id="billing-bot"))
    with pytest.raises(Forbidden, match="not an approver"):
        await service.claim(request.id, "bob")
    own = await service.request_approval(draft(agent_id="carol"))
    with pytest.raises(Forbidden, match="cannot review it"):
        await service.claim(own.id, "carol")
    assert await store.get(request.id) == request and await store.get(own.id) == own
