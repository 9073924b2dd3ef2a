"""The Store contract: every backend (memory, SQLite; later PostgreSQL) must pass all of it."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import anyio
import pytest

from signoff.storage import (
    ApprovalRequest,
    Conflict,
    DecidedBy,
    DeliveryMark,
    DeliveryState,
    EventKind,
    MessageRef,
    NewEvent,
    NotFound,
    Order,
    Priority,
    RequestQuery,
    Status,
    Store,
    Transition,
    Verdict,
)
from signoff.storage.audit import verify_chain
from signoff.tools.approvals import lifecycle
from tests.factories import T0, add, make_request


async def event_count(store: Store) -> int:
    return len([e async for e in store.events()])


async def test_create_then_get_returns_every_field(store: Store) -> None:
    created = await add(
        store,
        payload={"amount": 12.5, "nested": {"list": [1, "ü"], "none": None}},
        flags=("a", "b"),
        channel="#payments",
        approvers=("U0ALICE", "S0FINANCE"),
    )
    assert await store.get(created.id) == created


async def test_get_unknown_is_none(store: Store) -> None:
    assert await store.get("req_missing") is None


async def test_idempotency_key_returns_first_request_and_writes_nothing(store: Store) -> None:
    first = await add(store, idempotency_key="k1")
    before = await event_count(store)
    again = make_request(idempotency_key="k1", summary="a retry")
    stored, created = await store.create_request(again, lifecycle.creation_events(again), notify=True)
    assert (stored, created) == (first, False)
    assert await store.get(again.id) is None
    assert await event_count(store) == before


async def test_idempotency_key_is_scoped_per_agent(store: Store) -> None:
    await add(store, idempotency_key="k1", agent_id="a")
    await add(store, idempotency_key="k1", agent_id="b")
    await add(store, idempotency_key="k1", agent_id=None)
    second = make_request(idempotency_key="k1", agent_id=None)
    _, created = await store.create_request(second, (), notify=False)
    assert created is False


async def test_update_applies_vote_and_decision_atomically(store: Store) -> None:
    request = await add(store)
    change = lifecycle.vote("alice", Verdict.APPROVE, "ok", T0 + timedelta(minutes=1))
    updated = await store.update(request.id, change)
    assert updated.status is Status.APPROVED and updated.decided_by is DecidedBy.HUMAN
    assert [(v.reviewer, v.verdict, v.comment) for v in updated.votes] == [("alice", Verdict.APPROVE, "ok")]
    assert await store.get(request.id) == updated
    kinds = [e.kind for e in await store.request_events(request.id)]
    assert kinds == [EventKind.CREATED, EventKind.TRIGGERED, EventKind.VOTED, EventKind.DECIDED]


async def test_a_change_that_raises_writes_nothing(store: Store) -> None:
    request = await add(store)
    before = await event_count(store)

    def refuse(current: ApprovalRequest) -> Transition:
        raise Conflict("no")

    with pytest.raises(Conflict):
        await store.update(request.id, refuse)
    assert await store.get(request.id) == request
    assert await event_count(store) == before


async def test_update_unknown_request_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="req_nope"):
        await store.update("req_nope", lifecycle.cancel("x", T0))


async def test_concurrent_decisions_only_the_first_wins(store: Store) -> None:
    request = await add(store)
    outcomes: list[str] = []

    async def decide(name: str) -> None:
        try:
            await store.update(request.id, lifecycle.vote(name, Verdict.APPROVE, None, T0))
            outcomes.append(f"won:{name}")
        except Conflict as exc:
            outcomes.append(f"lost:{exc}")

    async with anyio.create_task_group() as tg:
        for name in ("alice", "bob", "carol", "dave"):
            tg.start_soon(decide, name)
    winners = [o for o in outcomes if o.startswith("won:")]
    assert len(winners) == 1
    winner = winners[0].removeprefix("won:")
    assert all(f"already approved by {winner}" in o for o in outcomes if o.startswith("lost:"))
    final = await store.get(request.id)
    assert final is not None and [v.reviewer for v in final.votes] == [winner]


async def test_list_is_newest_first_and_pages_cover_everything_once(store: Store) -> None:
    same_moment = T0 + timedelta(days=1)
    made = [await add(store, created_at=same_moment if i % 3 == 0 else T0 + timedelta(minutes=i)) for i in range(23)]
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_requests(RequestQuery(limit=5, before=cursor))
        seen += [r.id for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    expected = [r.id for r in sorted(made, key=lambda r: (r.created_at, r.id), reverse=True)]
    assert seen == expected


async def test_list_filters(store: Store) -> None:
    a = await add(store, action="db.drop", agent_id="ops", created_at=T0 + timedelta(hours=2))
    b = await add(store, action="db.drop", agent_id="etl", status=Status.APPROVED, decided_by=DecidedBy.POLICY)
    c = await add(store, action="email.send", agent_id="ops", created_at=T0 + timedelta(hours=5))

    async def ids(**kw: object) -> set[str]:
        page = await store.list_requests(RequestQuery(**kw))  # type: ignore[arg-type]
        return {r.id for r in page.items}

    assert await ids(action="db.drop") == {a.id, b.id}
    assert await ids(agent_id="ops") == {a.id, c.id}
    assert await ids(status=Status.APPROVED) == {b.id}
    assert await ids(since=T0 + timedelta(hours=2)) == {a.id, c.id}
    assert await ids(until=T0 + timedelta(hours=2)) == {b.id}
    assert await ids(status=Status.PENDING, action="email.send", agent_id="ops") == {c.id}


async def test_pending_due_lists_only_overdue_pending(store: Store) -> None:
    overdue = await add(store, expires_at=T0)
    await add(store, expires_at=T0 + timedelta(hours=3))
    await add(store, expires_at=T0, status=Status.APPROVED, decided_by=DecidedBy.POLICY)
    assert await store.pending_due(T0 + timedelta(seconds=1)) == [overdue.id]


async def test_action_history_tracks_agents_and_recent_approved_values_newest_first(store: Store) -> None:
    for amount in (10, 20):
        await add(store, action="pay", agent_id="bot", payload={"amount": amount, "meta": {"fee": 1}},
                  status=Status.APPROVED, decided_by=DecidedBy.POLICY)  # fmt: skip
    await add(store, action="pay", agent_id="bot", payload={"amount": 999999},
              status=Status.REJECTED, decided_by=DecidedBy.POLICY)  # fmt: skip
    history = await store.action_history("pay", "bot", ["amount", "meta.fee", "absent"], limit=5)
    assert history.seen_from_agent is True
    assert history.values == {"amount": (20.0, 10.0), "meta.fee": (1.0, 1.0), "absent": ()}
    assert (await store.action_history("pay", "other-bot", [])).seen_from_agent is False


async def test_a_pending_request_counts_in_the_history_once_people_approve_it_and_never_if_they_reject_it(
    store: Store,
) -> None:
    approved = await add(store, action="pay", payload={"amount": 30})
    rejected = await add(store, action="pay", payload={"amount": 888888})
    assert (await store.action_history("pay", None, ["amount"])).values == {"amount": ()}  # pending: not yet
    await store.update(approved.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0))
    await store.update(rejected.id, lifecycle.vote("alice", Verdict.REJECT, "too much", T0))
    assert (await store.action_history("pay", None, ["amount"])).values == {"amount": (30.0,)}


async def test_an_action_becomes_known_to_an_agent_only_when_a_request_for_it_is_approved(store: Store) -> None:
    """Finding 4: a person's "no" must not be undone by asking again. Creating, rejecting, cancelling or expiring
    a request leaves the action novel for its agent; approving one (by policy or by people) makes it known."""

    async def known(agent: str) -> bool:
        return (await store.action_history("data.export_customers", agent, [])).seen_from_agent

    rejected = await add(store, action="data.export_customers", agent_id="bot")
    cancelled = await add(store, action="data.export_customers", agent_id="bot")
    expired = await add(store, action="data.export_customers", agent_id="bot")
    assert not await known("bot")  # pending
    await store.update(rejected.id, lifecycle.vote("alice", Verdict.REJECT, "no", T0))
    await store.update(cancelled.id, lifecycle.cancel("changed my mind", T0))
    await store.update(expired.id, lifecycle.expire(expired.expires_at))
    await add(store, action="data.export_customers", agent_id="bot",
              status=Status.REJECTED, decided_by=DecidedBy.POLICY)  # fmt: skip
    assert not await known("bot")

    approved = await add(store, action="data.export_customers", agent_id="bot")
    await store.update(approved.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0))
    assert await known("bot")
    assert not await known("other-bot")
    await add(store, action="data.export_customers", agent_id="other-bot",
              status=Status.APPROVED, decided_by=DecidedBy.POLICY)  # fmt: skip
    assert await known("other-bot")


async def test_event_log_is_a_verified_chain(store: Store) -> None:
    request = await add(store)
    await store.update(request.id, lifecycle.vote("alice", Verdict.REJECT, "no", T0))
    report = await verify_chain(store.events())
    assert report.ok and report.events_checked == 4
    seqs = [e.seq async for e in store.events()]
    assert seqs == [1, 2, 3, 4]
    assert [e.seq async for e in store.events(after_seq=2)] == [3, 4]


async def test_wait_for_change_wakes_on_a_change(store: Store) -> None:
    request = await add(store)
    token = await store.change_token()
    woke = anyio.Event()

    async def waiter() -> None:
        await store.wait_for_change(token, timeout=30)
        woke.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await store.update(request.id, lifecycle.cancel("plan changed", T0))
            await woke.wait()


async def test_wait_for_change_returns_at_timeout_without_change(store: Store) -> None:
    token = await store.change_token()
    with anyio.fail_after(10):
        await store.wait_for_change(token, timeout=0.05)


async def test_outbox_is_written_with_the_request_and_leased(store: Store) -> None:
    request = await add(store)  # pending -> notify
    await add(store, status=Status.APPROVED, decided_by=DecidedBy.POLICY)  # no notification
    items = await store.claim_outbox(T0 + timedelta(hours=1), lease_seconds=60)
    assert [i.request_id for i in items] == [request.id]
    assert await store.claim_outbox(T0 + timedelta(hours=1)) == []  # leased to the first worker
    assert [i.id for i in await store.claim_outbox(T0 + timedelta(hours=1, minutes=2))] == [items[0].id]


async def test_outbox_retry_and_complete(store: Store) -> None:
    request = await add(store)
    now = T0 + timedelta(hours=1)
    [item] = await store.claim_outbox(now)
    await store.retry_outbox(item.id, now + timedelta(seconds=30), "slack down")
    assert await store.claim_outbox(now + timedelta(seconds=29)) == []
    [again] = await store.claim_outbox(now + timedelta(seconds=31))
    assert again.attempts == 1
    event = NewEvent(kind=EventKind.NOTIFIED, request_id=request.id, at=now, data={"notifier": "test"})
    await store.complete_outbox(again, event)
    await store.complete_outbox(again, event)  # a second worker finishing late changes nothing
    assert await store.claim_outbox(now + timedelta(days=1)) == []
    kinds = [e.kind for e in await store.request_events(request.id)]
    assert kinds.count(EventKind.NOTIFIED) == 1


async def test_decisions_queue_a_notification(store: Store) -> None:
    request = await add(store, status=Status.APPROVED, decided_by=DecidedBy.POLICY)
    pending = await add(store)
    [first] = await store.claim_outbox(T0 + timedelta(days=1))
    await store.complete_outbox(first, NewEvent(kind=EventKind.NOTIFIED, request_id=pending.id, at=T0))
    await store.update(pending.id, lifecycle.cancel("not needed", T0))
    [item] = await store.claim_outbox(T0 + timedelta(days=1))
    assert item.request_id == pending.id and request.id != pending.id


async def test_stored_records_are_frozen(store: Store) -> None:
    request = await add(store)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.status = Status.APPROVED  # type: ignore[misc]


async def test_message_refs_are_saved_and_replaced(store: Store) -> None:
    request = await add(store)
    assert await store.message_ref(request.id, "slack") is None
    await store.save_message_ref(MessageRef(request_id=request.id, notifier="slack", channel="C1", ts="1.1"))
    await store.save_message_ref(
        MessageRef(request_id=request.id, notifier="slack", channel="C1", ts="1.1", votes_posted=2)
    )
    assert await store.message_ref(request.id, "slack") == MessageRef(
        request_id=request.id, notifier="slack", channel="C1", ts="1.1", votes_posted=2
    )
    assert await store.message_ref(request.id, "webhook") is None


async def test_a_message_ref_is_swapped_only_if_it_is_still_the_one_read(store: Store) -> None:
    """Slack's reservation of a post is a compare-and-set: of two servers reserving it, one wins."""
    request = await add(store)
    mine = MessageRef(request_id=request.id, notifier="slack", channel="C1", ts="", reserved_at=T0)
    theirs = dataclasses.replace(mine, reserved_at=T0 + timedelta(seconds=1))
    assert await store.swap_message_ref(None, mine)
    assert not await store.swap_message_ref(None, theirs)  # both read "none yet": the second loses
    assert await store.message_ref(request.id, "slack") == mine
    posted = MessageRef(request_id=request.id, notifier="slack", channel="C1", ts="1.2")
    assert not await store.swap_message_ref(theirs, posted)  # not what is stored
    assert await store.swap_message_ref(mine, posted)
    assert await store.message_ref(request.id, "slack") == posted
    retried = dataclasses.replace(posted, votes_posted=1)
    assert not await store.swap_message_ref(mine, retried) and await store.swap_message_ref(posted, retried)
    assert await store.message_ref(request.id, "slack") == retried


async def test_a_reserved_message_ref_keeps_its_reservation_time(store: Store) -> None:
    request = await add(store)
    reserved = MessageRef(request_id=request.id, notifier="slack", channel="C1", ts="", reserved_at=T0)
    await store.save_message_ref(reserved)
    assert await store.message_ref(request.id, "slack") == reserved and not reserved.confirmed
    confirmed = MessageRef(request_id=request.id, notifier="slack", channel="C1", ts="1.2")
    await store.save_message_ref(confirmed)
    assert await store.message_ref(request.id, "slack") == confirmed


def delivered(name: str) -> DeliveryMark:
    return DeliveryMark(notifier=name, state=DeliveryState.DELIVERED, at=T0)


def waiting(name: str, until: datetime, attempts: int = 1) -> DeliveryMark:
    return DeliveryMark(
        notifier=name, state=DeliveryState.PENDING, attempts=attempts, next_attempt_at=until, first_failed_at=T0
    )


async def test_each_notifier_is_retried_on_its_own_and_the_row_settles_when_all_delivered(store: Store) -> None:
    request = await add(store)
    now = T0 + timedelta(days=1)
    names = ["console", "slack"]
    [item] = await store.claim_outbox(now)
    assert item.marks == ()
    notified = NewEvent(kind=EventKind.NOTIFIED, request_id=request.id, at=now, data={"notifier": "console"})
    retry_at = now + timedelta(seconds=2)
    marks = [delivered("console"), waiting("slack", retry_at)]
    await store.record_deliveries(item, marks, notifiers=names, now=now, next_attempt_at=retry_at, events=[notified])
    assert await store.claim_outbox(now + timedelta(seconds=1)) == []  # slack's own Retry-After, not the lease
    [again] = await store.claim_outbox(retry_at)
    assert again.id == item.id and again.marks == (delivered("console"), waiting("slack", retry_at))
    [entry] = await store.outbox_entries()
    assert entry.id == item.id and not entry.settled
    await store.record_deliveries(
        again, [delivered("slack")], notifiers=names, now=retry_at, next_attempt_at=retry_at, events=[]
    )
    assert await store.claim_outbox(now + timedelta(days=1)) == []
    assert await store.outbox_entries() == []
    await store.record_deliveries(  # a second worker finishing late changes nothing
        again, [delivered("slack")], notifiers=names, now=retry_at, next_attempt_at=retry_at, events=[notified]
    )
    assert [e.kind for e in await store.request_events(request.id)].count(EventKind.NOTIFIED) == 1


async def test_a_lease_taken_over_after_it_ran_out_is_the_new_claims_alone(store: Store) -> None:
    """A worker whose batch outlived its lease can neither renew the row another claim took over nor record its
    result over that claim's: only the newest claim's token holds the row."""
    request = await add(store)
    now = T0 + timedelta(days=1)
    names = ["console"]
    [first] = await store.claim_outbox(now, lease_seconds=120)
    assert first.lease and await store.renew_outbox(first, now + timedelta(seconds=60), 120)  # still its lease
    assert await store.claim_outbox(now + timedelta(seconds=179)) == []  # renewed: held until +180
    [second] = await store.claim_outbox(now + timedelta(seconds=181))  # ran out: another worker takes it over
    assert second.id == first.id and second.lease != first.lease
    assert not await store.renew_outbox(first, now + timedelta(seconds=182), 120)  # the first must not send it
    notified = NewEvent(kind=EventKind.NOTIFIED, request_id=request.id, at=now, data={"notifier": "console"})
    late = await store.record_deliveries(
        first, [delivered("console")], notifiers=names, now=now, next_attempt_at=now, events=[notified]
    )
    assert late is False  # dropped: the row is still the second claim's to settle
    [entry] = await store.outbox_entries()
    assert entry.id == first.id and not entry.settled and entry.marks == ()
    assert [e.kind for e in await store.request_events(request.id)].count(EventKind.NOTIFIED) == 0
    assert await store.renew_outbox(second, now + timedelta(seconds=182), 120)
    assert await store.record_deliveries(
        second, [delivered("console")], notifiers=names, now=now, next_attempt_at=now, events=[notified]
    )
    assert await store.outbox_entries() == []
    assert not await store.renew_outbox(second, now + timedelta(seconds=183), 120)  # recorded: the lease is given up


async def test_a_lease_is_given_up_when_its_result_is_recorded(store: Store) -> None:
    await add(store)
    now = T0 + timedelta(days=1)
    [item] = await store.claim_outbox(now)
    retry_at = now + timedelta(seconds=5)
    recorded = await store.record_deliveries(
        item, [waiting("slack", retry_at)], notifiers=["slack"], now=now, next_attempt_at=retry_at, events=[]
    )
    assert recorded and not await store.renew_outbox(item, now, 120)  # nobody holds it until the next claim
    [again] = await store.claim_outbox(retry_at)
    assert again.lease != item.lease and await store.renew_outbox(again, retry_at, 120)


async def test_a_notifier_that_showed_an_older_state_owes_the_newer_one(store: Store) -> None:
    request = await add(store)
    now = T0 + timedelta(days=1)
    [item] = await store.claim_outbox(now)
    marks = [delivered("console"), waiting("slack", now)]
    await store.record_deliveries(item, marks, notifiers=["console", "slack"], now=now, next_attempt_at=now, events=[])
    await store.update(request.id, lifecycle.cancel("changed plan", T0))  # a newer state: row 2
    [again] = await store.claim_outbox(now)
    assert again.id == item.id and again.upto > item.id
    assert again.marks == (waiting("slack", now),)  # the console showed only the older state: it runs again


async def test_dead_deliveries_are_listed_and_queued_again(store: Store) -> None:
    request = await add(store)
    now = T0 + timedelta(days=1)
    [item] = await store.claim_outbox(now)
    dead = DeliveryMark(notifier="slack", state=DeliveryState.DEAD, attempts=1, last_error="refused", at=now)
    failed = NewEvent(kind=EventKind.NOTIFY_FAILED, request_id=request.id, at=now, data={"notifier": "slack"})
    names = ["console", "slack"]
    await store.record_deliveries(
        item, [delivered("console"), dead], notifiers=names, now=now, next_attempt_at=now, events=[failed]
    )
    assert await store.claim_outbox(now + timedelta(days=1)) == []  # settled: nothing left to try by itself
    [entry] = await store.outbox_entries()
    assert (entry.id, entry.request_id, entry.settled) == (item.id, request.id, True)
    assert entry.marks == (delivered("console"), dead)
    assert await store.requeue_dead(item.id + 100, now) == []
    assert await store.requeue_dead(None, now) == [item.id]
    [again] = await store.claim_outbox(now)
    assert again.id == item.id and again.marks == (delivered("console"),)  # only slack runs again
    assert await store.requeue_dead(None, now) == []
    assert EventKind.NOTIFY_FAILED in [e.kind for e in await store.request_events(request.id)]
    assert (await verify_chain(store.events())).ok


async def test_one_requests_notifications_are_delivered_one_at_a_time(store: Store) -> None:
    request = await add(store)  # notification 1: pending
    await store.update(request.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0))  # 2: approved
    later = T0 + timedelta(days=1)
    [item] = await store.claim_outbox(later)
    assert item.request_id == request.id and item.upto > item.id
    assert await store.claim_outbox(later + timedelta(seconds=60)) == []  # its newer row waits behind the leased one
    await store.update(request.id, lifecycle.consume(T0))  # not a notification
    event = NewEvent(kind=EventKind.NOTIFIED, request_id=request.id, at=later)
    await store.complete_outbox(item, event)  # the state delivered covers both rows
    assert await store.claim_outbox(later + timedelta(days=1)) == []


async def test_a_notification_queued_during_a_delivery_is_delivered_next(store: Store) -> None:
    request = await add(store)
    later = T0 + timedelta(days=1)
    [item] = await store.claim_outbox(later)
    await store.update(request.id, lifecycle.cancel("changed plan", T0))  # queued while the first is out
    await store.complete_outbox(item, NewEvent(kind=EventKind.NOTIFIED, request_id=request.id, at=later))
    [next_item] = await store.claim_outbox(later)
    assert next_item.request_id == request.id and next_item.id > item.id


async def test_priority_order_is_most_urgent_first_then_nearest_deadline_and_pages_cover_everything_once(
    store: Store,
) -> None:
    made = [
        await add(store, priority=priority, expires_at=T0 + timedelta(minutes=minutes))
        for priority, minutes in [
            (Priority.LOW, 1),
            (Priority.URGENT, 30),
            (Priority.NORMAL, 5),
            (Priority.URGENT, 10),
            (Priority.HIGH, 60),
            (Priority.NORMAL, 5),  # the same deadline: ordered by id
            (Priority.URGENT, 10),
        ]
    ]
    await add(store, priority=Priority.URGENT, status=Status.APPROVED, decided_by=DecidedBy.POLICY)
    seen: list[str] = []
    cursor = None
    while True:
        query = RequestQuery(status=Status.PENDING, order=Order.PRIORITY, limit=2, before=cursor)
        page = await store.list_requests(query)
        seen += [r.id for r in page.items]
        if (cursor := page.next_cursor) is None:
            break
    expected = sorted(made, key=lambda r: (-r.priority.rank, r.expires_at, r.id))
    assert seen == [r.id for r in expected]
    assert [r.priority for r in expected][:3] == [Priority.URGENT] * 3


async def test_ids_with_prefix_are_found_in_order_and_wildcards_match_nothing(store: Store) -> None:
    for suffix in ("abc_1", "abc_2", "abd_1", "b%c_1"):
        await add(store, id=f"req_{suffix}")
    assert await store.ids_with_prefix("req_abc") == ["req_abc_1", "req_abc_2"]
    assert await store.ids_with_prefix("req_ab", limit=2) == ["req_abc_1", "req_abc_2"]
    assert await store.ids_with_prefix("req_abd_1") == ["req_abd_1"]
    assert await store.ids_with_prefix("req_a_c") == []  # `_` is a character, not LIKE's wildcard
    assert await store.ids_with_prefix("req_%") == []
    assert await store.ids_with_prefix("req_b%") == ["req_b%c_1"]
