"""``recorded_requests``: every request oldest first, in batches, as ``policy replay`` walks them (every Store)."""

from __future__ import annotations

from datetime import timedelta

from signoff.storage import DecidedBy, RecordedRequest, Status, Store, Verdict
from signoff.storage.canonical import canonical_json
from signoff.tools.approvals import lifecycle
from tests.factories import T0, add


async def _all(store: Store, **kwargs: object) -> list[list[RecordedRequest]]:
    return [batch async for batch in store.recorded_requests(**kwargs)]  # type: ignore[arg-type]


async def test_requests_come_oldest_first_in_batches_with_what_replay_needs(store: Store) -> None:
    assert await _all(store) == []
    same_time = T0 + timedelta(days=1)
    made = [
        await add(store, created_at=T0 + timedelta(days=2), payload={"amount": 1, "memo": "<b>ü</b>"}),
        await add(store, id="req_b", created_at=same_time, flags=(), confidence=None, agent_id=None),
        await add(store, id="req_a", created_at=same_time, policy_version="abc123"),
        await add(
            store, created_at=T0, status=Status.APPROVED, decided_by=DecidedBy.POLICY, decided_at=T0, flags=("x",)
        ),
    ]
    await store.update(made[0].id, lifecycle.vote("alice", Verdict.APPROVE, None, T0, approved_payload={"amount": 2}))
    batches = await _all(store, batch=2)
    assert [len(b) for b in batches] == [2, 2]
    seen = [r for batch in batches for r in batch]
    assert [r.id for r in seen] == [made[3].id, "req_a", "req_b", made[0].id]  # by time, then id
    first, a, b, last = seen
    assert (first.status, first.decided_by, first.flags) == (Status.APPROVED, DecidedBy.POLICY, ("x",))
    assert a.policy_version == "abc123" and a.created_at == same_time
    assert (b.confidence, b.agent_id, b.flags, b.status, b.decided_by) == (None, None, (), Status.PENDING, None)
    assert last.payload == {"amount": 1, "memo": "<b>ü</b>"} and last.effective_payload == {"amount": 2}
    assert (last.status, last.decided_by, last.action, last.summary) == (
        Status.APPROVED,
        DecidedBy.HUMAN,
        made[0].action,
        made[0].summary,
    )
    assert first.effective_payload == first.payload and first.approved_payload is None
    # the size limit is judged on the stored size, which must be that of the canonical JSON
    assert [r.payload_bytes for r in seen] == [len(canonical_json(r.payload).encode()) for r in seen]


async def test_since_starts_at_that_moment_and_an_exact_batch_ends_cleanly(store: Store) -> None:
    for day in range(4):
        await add(store, created_at=T0 + timedelta(days=day))
    later = await _all(store, since=T0 + timedelta(days=2), batch=2)
    assert [[r.created_at for r in batch] for batch in later] == [[T0 + timedelta(days=2), T0 + timedelta(days=3)]]
    assert sum(len(b) for b in await _all(store, batch=1)) == 4
