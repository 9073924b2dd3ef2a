"""A NUL character anywhere in what an agent or a reviewer sends is refused with the same clear error on every
engine (PostgreSQL's text cannot hold one), and nothing is stored."""

from __future__ import annotations

import pytest

from signoff.storage import InvalidInput, NotFound, RequestQuery, Store, Verdict
from signoff.tools.approvals.service import ApprovalService, Draft


async def stored(store: Store) -> tuple[int, int]:
    page = await store.list_requests(RequestQuery(limit=100))
    return len(page.items), len([e async for e in store.events()])


@pytest.mark.parametrize(
    ("draft", "where"),
    [
        (Draft(action="db.drop\x00", summary="drop", payload={}), "action"),
        (Draft(action="db.drop", summary="drop \x00 it", payload={}), "summary"),
        (Draft(action="db.drop", summary="drop", payload={"rows": [1, {"name": "a\x00b"}]}), "payload.rows[1].name"),
        (Draft(action="db.drop", summary="drop", payload={"k\x00": 1}), "a key in payload"),
        (Draft(action="db.drop", summary="drop", payload={}, flags=("ok", "x\x00")), "flags[1]"),
        (Draft(action="db.drop", summary="drop", payload={}, agent_id="bot\x00"), "agent_id"),
        (Draft(action="db.drop", summary="drop", payload={}, idempotency_key="k\x00"), "idempotency_key"),
    ],
)
async def test_request_approval_refuses_a_nul_anywhere(store: Store, draft: Draft, where: str) -> None:
    before = await stored(store)
    with pytest.raises(InvalidInput) as caught:
        await ApprovalService(store).request_approval(draft)
    assert caught.value.message == (
        f"{where} contains a NUL character (\\x00), which signoff does not store: remove it, or encode binary data"
        " (base64, hex) before sending it"
    )
    assert await stored(store) == before


async def test_a_vote_comment_with_a_nul_is_refused_and_the_request_stays_pending(store: Store) -> None:
    service = ApprovalService(store)
    request = await service.request_approval(Draft(action="db.drop", summary="drop the table", payload={}))
    with pytest.raises(InvalidInput, match=r"^comment contains a NUL character"):
        await service.vote(request.id, "alice", Verdict.REJECT, "no\x00")
    assert (await service.get(request.id)) == request
    # the same text without the NUL is stored as it is, other control characters and all
    await service.vote(request.id, "alice", Verdict.REJECT, "no \x01 way")
    assert [v.comment for v in (await service.get(request.id)).votes] == ["no \x01 way"]


@pytest.mark.parametrize("request_id", ["req_\x00", "\x00", "req_test000001\x00"])
async def test_a_request_id_with_a_nul_is_no_request_on_every_engine(store: Store, request_id: str) -> None:
    service = ApprovalService(store)
    await service.request_approval(Draft(action="db.drop", summary="drop the table", payload={}))
    before = await stored(store)
    message = f"no request with id {request_id!r}; check the id (list_requests shows recent requests)"
    with pytest.raises(NotFound) as caught:
        await service.get(request_id)  # get_status
    assert caught.value.message == message
    with pytest.raises(NotFound) as caught:
        await service.cancel(request_id, "not needed")  # cancel_request
    assert caught.value.message == message
    with pytest.raises(NotFound):
        await service.vote(request_id, "alice", Verdict.APPROVE, None)
    with pytest.raises(NotFound):
        await service.consume(request_id)
    assert await stored(store) == before


async def test_a_nul_postgresql_cannot_be_sent_is_a_clear_invalid_input(pg_url: str) -> None:
    """Whatever reaches PostgreSQL with a NUL character past the checks above (a filter, an id from another
    channel) is refused as bad input saying what to change, not a database driver's error (an internal error)."""
    from signoff.storage.approvals.postgres import PostgresStore

    store = await PostgresStore.open(pg_url, poll_interval=600)
    try:
        with pytest.raises(InvalidInput, match=r"NUL character, \\x00, cannot be stored"):
            await store.list_requests(RequestQuery(agent_id="bot\x00"))
        with pytest.raises(InvalidInput, match=r"NUL character, \\x00, cannot be stored"):
            await store.request_events("req_\x00")
    finally:
        await store.close()
