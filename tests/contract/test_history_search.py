"""History search in every Store: words in the action, summary or agent; the reviewer who voted; with paging."""

from __future__ import annotations

from signoff.storage import RequestQuery, Store, Verdict
from signoff.tools.approvals import lifecycle
from tests.factories import T0, add


async def ids(store: Store, **filters: object) -> set[str]:
    page = await store.list_requests(RequestQuery(limit=100, **filters))  # type: ignore[arg-type]
    return {r.id for r in page.items}


async def test_text_matches_the_action_summary_or_agent_in_any_ascii_case(store: Store) -> None:
    refund = await add(store, action="refunds.issue", summary="Refund order A-17")
    mail = await add(store, action="email.send", summary="Newsletter for Müller", agent_id="Mailer-Bot")
    other = await add(store, action="db.drop", summary="drop 100%_of tables", agent_id=None)
    assert await ids(store, text="REFUND") == {refund.id}
    assert await ids(store, text="mailer") == {mail.id}  # the agent id
    assert await ids(store, text="Müller") == {mail.id}  # non-ASCII letters as they are
    assert await ids(store, text="100%_") == {other.id}  # no wildcards: % and _ are themselves
    assert await ids(store, text="%") == {other.id}
    assert await ids(store, text="nothing like it") == set()


async def test_reviewer_finds_the_requests_they_voted_on_and_pages_stay_whole(store: Store) -> None:
    voted = [await add(store) for _ in range(5)]
    await add(store)
    for request in voted:
        await store.update(request.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0))
    first = await store.list_requests(RequestQuery(reviewer="alice", limit=3))
    second = await store.list_requests(RequestQuery(reviewer="alice", limit=3, before=first.next_cursor))
    assert [r.id for r in first.items] + [r.id for r in second.items] == [r.id for r in reversed(voted)]
    assert second.next_cursor is None
    assert await ids(store, reviewer="Alice") == set()  # the name as recorded
    assert await ids(store, reviewer="alice", text="invoice") == {r.id for r in voted}
