"""``Store.create_request(..., refuse_approval_if_asked_before=True)`` on every engine: an approval is stored only if
the same agent (the same ``agent_id``, or none) has no earlier request with the same action and payload that went to
people and was not approved by them; else nothing is stored and ``AskedBefore`` names that request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from signoff.storage import ApprovalRequest, DecidedBy, Status, Store, Verdict
from signoff.storage.errors import AskedBefore
from signoff.tools.approvals import lifecycle
from tests.factories import T0, add, make_request

PAYLOAD = {"amount": 5000, "to": {"iban": "DE00 1234"}}
APPROVED = {"status": Status.APPROVED, "decided_by": DecidedBy.POLICY, "confidence": 0.99}


def approval(**overrides: Any) -> ApprovalRequest:
    """An approval by the policy of ``PAYLOAD``, as the service would store it."""
    request = make_request(**({"payload": PAYLOAD} | APPROVED | overrides))
    return request if request.status is Status.PENDING else replace(request, decided_at=request.created_at)


async def create(store: Store, request: ApprovalRequest, *, check: bool = True) -> tuple[ApprovalRequest, bool]:
    return await store.create_request(
        request,
        lifecycle.creation_events(request),
        notify=request.status is Status.PENDING,
        refuse_approval_if_asked_before=check,
    )


async def event_count(store: Store) -> int:
    return len([e async for e in store.events()])


async def refused(store: Store, request: ApprovalRequest) -> ApprovalRequest:
    """Assert the create of ``request`` is refused and stores nothing; the earlier request it names."""
    before = await event_count(store)
    with pytest.raises(AskedBefore) as found:
        await create(store, request)
    assert await store.get(request.id) is None
    assert await event_count(store) == before
    return found.value.earlier


async def stored(store: Store, request: ApprovalRequest, *, check: bool = True) -> None:
    assert await create(store, request, check=check) == (request, True)
    assert await store.get(request.id) == request


async def _nothing() -> None:
    return None


#: how the first request (pending, sent to people) ends before the same is asked again
CLOSE: dict[str, Callable[[Store, str], Awaitable[object]]] = {
    "pending": lambda store, i: _nothing(),
    "rejected by a person": lambda store, i: store.update(
        i, lifecycle.vote("alice", Verdict.REJECT, "no", T0 + timedelta(minutes=1))
    ),
    "expired": lambda store, i: store.update(i, lifecycle.expire(T0 + timedelta(days=1))),
    "cancelled": lambda store, i: store.update(i, lifecycle.cancel("not needed", T0 + timedelta(minutes=1))),
}


@pytest.mark.parametrize("outcome", CLOSE)
async def test_an_approval_after_a_request_people_did_not_approve_is_refused(store: Store, outcome: str) -> None:
    first = await add(store, payload=PAYLOAD)
    await CLOSE[outcome](store, first.id)
    earlier = await refused(store, approval())
    assert earlier == await store.get(first.id)
    assert earlier.status.value == outcome.split()[0]


@pytest.mark.parametrize("close", ["approved by a person", "rejected by the policy", "approved by the policy"])
async def test_an_approval_after_one_people_approved_or_the_policy_decided_is_stored(store: Store, close: str) -> None:
    if close == "approved by a person":
        first = await add(store, payload=PAYLOAD)
        await store.update(first.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0 + timedelta(minutes=1)))
    elif close == "rejected by the policy":
        await create(store, approval(status=Status.REJECTED))
    else:
        await create(store, approval())
    await stored(store, approval())


async def test_only_the_same_agent_and_the_same_payload_count(store: Store) -> None:
    await add(store, payload=PAYLOAD, agent_id="billing-bot")
    await stored(store, approval(agent_id="other-bot"))  # another agent's ask
    await stored(store, approval(agent_id=None))  # no agent is not any agent
    await stored(store, approval(payload={**PAYLOAD, "amount": 5001}))  # another payload
    await stored(store, approval(action="payments.refund"))  # the same payload for another action


async def test_no_agent_id_and_no_agent_id_are_the_same_agent(store: Store) -> None:
    first = await add(store, payload=PAYLOAD, agent_id=None)
    assert (await refused(store, approval(agent_id=None))).id == first.id


async def test_the_newest_such_request_is_named(store: Store) -> None:
    await add(store, payload=PAYLOAD)
    newer = await add(store, payload=PAYLOAD)
    assert (await refused(store, approval())).id == newer.id


async def test_without_the_check_or_for_a_request_that_goes_to_people_it_is_stored(store: Store) -> None:
    await add(store, payload=PAYLOAD)
    await stored(store, approval(), check=False)  # a record of the model plane asks for no check
    await stored(store, approval(status=Status.PENDING, decided_by=None, confidence=0.5))  # not an approval


async def test_an_idempotency_key_retry_returns_the_first_request_first(store: Store) -> None:
    first = await add(store, payload=PAYLOAD, idempotency_key="k1")
    retry = approval(idempotency_key="k1")
    assert await create(store, retry) == (first, False)


async def test_people_have_the_last_word_the_newest_request_they_were_asked_counts(store: Store) -> None:
    """A person's later approval of the same ask lifts an earlier rejection; a later ask still waiting for people
    (or refused by them) holds back an earlier approval."""
    first = await add(store, payload=PAYLOAD)
    await store.update(first.id, lifecycle.vote("alice", Verdict.REJECT, "no", T0 + timedelta(minutes=1)))
    second = await add(store, payload=PAYLOAD)
    assert (await refused(store, approval())).id == second.id
    await store.update(second.id, lifecycle.vote("bob", Verdict.APPROVE, None, T0 + timedelta(minutes=2)))
    await stored(store, approval())
    third = await add(store, payload=PAYLOAD)
    assert (await refused(store, approval())).id == third.id
