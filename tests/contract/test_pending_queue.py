"""``Store.pending_queue`` in every Store: the review queue's columns of the pending requests, whole or by what
changed since an earlier read (the console keeps its queue between changes this way)."""

from __future__ import annotations

from datetime import timedelta

from signoff.storage import (
    ApprovalRequest,
    EventKind,
    NewEvent,
    Priority,
    QueueEntry,
    QueueRead,
    Status,
    Store,
    Verdict,
)
from signoff.storage.records import queue_entry_of
from signoff.tools.approvals import lifecycle
from tests.factories import T0, add


def apply(queue: dict[str, QueueEntry], read: QueueRead) -> None:
    """What the console does with a read."""
    if read.changed is None:
        queue.clear()
    else:
        for request_id in read.changed:
            queue.pop(request_id, None)
    queue.update((entry.id, entry) for entry in read.entries)


async def whole(store: Store) -> dict[str, QueueEntry]:
    read = await store.pending_queue()
    assert read.changed is None
    return {entry.id: entry for entry in read.entries}


async def test_the_whole_queue_is_every_pending_request_without_its_payload(store: Store) -> None:
    assert await store.pending_queue() == QueueRead(head=0, entries=())
    hostile = "<script>alert(1)</script>\u202e"
    first = await add(store, summary=hostile, agent_id=None, confidence=None, priority=Priority.URGENT)
    second = await add(store, approvals_required=2, triggers=())
    decided = await add(store, status=Status.APPROVED)
    read = await store.pending_queue()
    assert read.head > 0 and read.changed is None
    assert {entry.id: entry for entry in read.entries} == {r.id: queue_entry_of(r) for r in (first, second)}
    assert decided.id not in {entry.id for entry in read.entries}
    entry = next(e for e in read.entries if e.id == first.id)
    assert entry.summary == hostile and entry.agent_id is None and entry.confidence is None  # as stored
    assert entry.triggers == first.triggers and entry.priority is Priority.URGENT
    assert not hasattr(entry, "payload")


async def test_reading_from_a_head_gives_what_changed_and_keeps_the_queue_true(store: Store) -> None:
    staying, voted, claimed, leaving = [await add(store, approvals_required=2) for _ in range(4)]
    queue = await whole(store)
    head = (await store.pending_queue()).head

    nothing = await store.pending_queue(head)
    assert nothing == QueueRead(head=head, entries=(), changed=frozenset())

    created = await add(store)
    await store.update(voted.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0))
    await store.update(claimed.id, lifecycle.claim("bob", T0, 600))
    await store.update(leaving.id, lifecycle.cancel("not needed", T0))
    await store.append_event(
        NewEvent(kind=EventKind.CONSOLE_SIGNED_IN, request_id="console:carol", at=T0, data={"who": "carol"})
    )
    read = await store.pending_queue(head)
    assert read.changed == {created.id, voted.id, claimed.id, leaving.id}  # not `staying`, nor a sign-in
    assert read.head > head
    apply(queue, read)
    assert queue == await whole(store)
    assert staying.id in queue and leaving.id not in queue and created.id in queue
    assert queue[voted.id].approval_count == 1 and queue[voted.id].approvals_required == 2
    assert queue[claimed.id].claim_at(T0) == "bob"
    assert queue[claimed.id].claim_at(T0 + timedelta(seconds=601)) is None  # a claim lapses by itself

    assert await store.pending_queue(read.head) == QueueRead(head=read.head, entries=(), changed=frozenset())


async def test_more_changes_than_the_limit_give_the_whole_queue(store: Store) -> None:
    head = (await store.pending_queue()).head
    made: list[ApprovalRequest] = [await add(store) for _ in range(3)]
    read = await store.pending_queue(head, limit=2)
    assert read.changed is None and {e.id for e in read.entries} == {r.id for r in made}


async def test_a_head_the_log_has_not_reached_gives_the_whole_queue(store: Store) -> None:
    made = await add(store)
    read = await store.pending_queue(10_000)  # another database's head, say: nothing is assumed of it
    assert read.changed is None and [e.id for e in read.entries] == [made.id]
