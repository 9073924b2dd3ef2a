"""An in-process Store for fast tests and experiments; same contract as the SQLite store, no durability."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta

from signoff.storage.approvals.store import Change
from signoff.storage.audit import GENESIS_HASH, link
from signoff.storage.canonical import numeric_leaves
from signoff.storage.change_signal import ChangeSignal
from signoff.storage.errors import unknown_request
from signoff.storage.metrics_queries import ApprovalMetrics, approval_metrics_of
from signoff.storage.records import (
    ActionHistory,
    ApprovalRequest,
    Event,
    MessageRef,
    NewEvent,
    OutboxItem,
    Page,
    RequestQuery,
    Status,
)


@dataclasses.dataclass(slots=True)
class _Outbox:
    item: OutboxItem
    next_attempt_at: datetime
    delivered: bool = False


class MemoryStore:
    def __init__(self) -> None:
        self._requests: dict[str, ApprovalRequest] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._events: list[Event] = []
        self._seen: set[tuple[str, str]] = set()
        self._values: dict[tuple[str, str], list[float]] = defaultdict(list)
        self._outbox: dict[int, _Outbox] = {}
        self._refs: dict[tuple[str, str], MessageRef] = {}
        self._signal = ChangeSignal()

    async def close(self) -> None:
        pass

    # Every method below runs without awaiting between its reads and writes, so each is atomic
    # on the event loop, as a transaction is in SQLite.

    async def create_request(
        self, request: ApprovalRequest, events: Sequence[NewEvent], *, notify: bool
    ) -> tuple[ApprovalRequest, bool]:
        key = (request.agent_id or "", request.idempotency_key) if request.idempotency_key else None
        if key is not None and key in self._by_key:
            return self._requests[self._by_key[key]], False
        self._requests[request.id] = request
        if key is not None:
            self._by_key[key] = request.id
        self._seen.add((request.agent_id or "", request.action))
        if request.status is Status.APPROVED:
            self._record_values(request)
        self._append(events)
        if notify:
            self._queue(request.id, request.created_at)
        self._signal_change()
        return request, True

    def _record_values(self, request: ApprovalRequest) -> None:
        """Only approved requests feed the action's history, as in the SQLite store."""
        for name, value in numeric_leaves(request.payload).items():
            self._values[(request.action, name)].append(value)

    async def get(self, request_id: str) -> ApprovalRequest | None:
        return self._requests.get(request_id)

    async def update(self, request_id: str, change: Change) -> ApprovalRequest:
        current = self._requests.get(request_id)
        if current is None:
            raise unknown_request(request_id)
        transition = change(current)
        updated = current
        if transition.vote is not None:
            updated = dataclasses.replace(updated, votes=(*updated.votes, transition.vote))
        if transition.status is not None:
            updated = dataclasses.replace(
                updated,
                status=transition.status,
                decided_by=transition.decided_by,
                decided_at=transition.decided_at,
                note=transition.note,
            )
            if transition.status is Status.APPROVED:
                self._record_values(current)
        if transition.escalated_at is not None:
            updated = dataclasses.replace(updated, escalated_at=transition.escalated_at)
        if transition.consumed_at is not None:
            updated = dataclasses.replace(updated, consumed_at=transition.consumed_at)
        self._requests[request_id] = updated
        self._append(transition.events)
        if transition.notify:
            self._queue(request_id, transition.decided_at or transition.events[0].at)
        self._signal_change()
        return updated

    async def list_requests(self, query: RequestQuery) -> Page:
        def keep(r: ApprovalRequest) -> bool:
            return (
                (query.status is None or r.status is query.status)
                and (query.action is None or r.action == query.action)
                and (query.agent_id is None or r.agent_id == query.agent_id)
                and (query.since is None or r.created_at >= query.since)
                and (query.until is None or r.created_at < query.until)
                and (query.before is None or (r.created_at, r.id) < query.before)
            )

        ordered = sorted(filter(keep, self._requests.values()), key=lambda r: (r.created_at, r.id), reverse=True)
        items = tuple(ordered[: query.limit])
        more = len(ordered) > query.limit
        return Page(items=items, next_cursor=(items[-1].created_at, items[-1].id) if more else None)

    async def pending_due(self, now: datetime, limit: int = 100) -> list[str]:
        due = [r for r in self._requests.values() if r.status is Status.PENDING and r.expires_at <= now]
        return [r.id for r in sorted(due, key=lambda r: r.expires_at)[:limit]]

    async def escalations_due(self, now: datetime, limit: int = 100) -> list[str]:
        due = [
            r
            for r in self._requests.values()
            if r.status is Status.PENDING
            and r.escalated_at is None
            and r.escalate_at is not None
            and r.escalate_at <= now
        ]
        return [r.id for r in sorted(due, key=lambda r: r.escalate_at or now)[:limit]]

    async def action_history(
        self, action: str, agent_id: str | None, fields: Sequence[str], limit: int = 200
    ) -> ActionHistory:
        values = {name: tuple(reversed(self._values.get((action, name), [])[-limit:])) for name in fields}
        return ActionHistory(seen_from_agent=(agent_id or "", action) in self._seen, values=values)

    def _append(self, events: Sequence[NewEvent]) -> None:
        for new in events:
            prev_seq, prev_hash = (self._events[-1].seq, self._events[-1].hash) if self._events else (0, GENESIS_HASH)
            self._events.append(link(new, prev_seq, prev_hash))

    async def events(self, after_seq: int = 0) -> AsyncIterator[Event]:
        for event in [e for e in self._events if e.seq > after_seq]:
            yield event

    async def request_events(self, request_id: str) -> list[Event]:
        return [e for e in self._events if e.request_id == request_id]

    def _signal_change(self) -> None:
        self._signal.notify()

    async def change_token(self) -> int:
        return self._signal.generation

    async def wait_for_change(self, token: object, timeout: float, poll_interval: float | None = None) -> None:
        assert isinstance(token, int)
        await self._signal.wait(token, timeout)

    def _queue(self, request_id: str, at: datetime) -> None:
        item_id = len(self._outbox) + 1
        item = OutboxItem(id=item_id, request_id=request_id, attempts=0, created_at=at)
        self._outbox[item_id] = _Outbox(item=item, next_attempt_at=at)

    async def claim_outbox(self, now: datetime, lease_seconds: float = 120.0, limit: int = 10) -> list[OutboxItem]:
        undelivered = [o for o in self._outbox.values() if not o.delivered]
        oldest: dict[str, _Outbox] = {}
        newest: dict[str, int] = {}
        for entry in undelivered:
            oldest.setdefault(entry.item.request_id, entry)
            newest[entry.item.request_id] = entry.item.id
        due = [o for o in oldest.values() if o.next_attempt_at <= now][:limit]
        for entry in due:
            entry.next_attempt_at = now + timedelta(seconds=lease_seconds)
        return [dataclasses.replace(entry.item, upto=newest[entry.item.request_id]) for entry in due]

    async def complete_outbox(self, item: OutboxItem, event: NewEvent) -> None:
        if self._outbox[item.id].delivered:
            return
        for entry in self._outbox.values():
            if entry.item.request_id == item.request_id and entry.item.id <= max(item.id, item.upto):
                if not entry.delivered:
                    entry.delivered = True
                    entry.item = dataclasses.replace(entry.item, attempts=entry.item.attempts + 1)
        self._append([event])
        self._signal_change()

    async def retry_outbox(self, item_id: int, next_attempt_at: datetime, error: str) -> None:
        entry = self._outbox[item_id]
        if not entry.delivered:
            entry.item = dataclasses.replace(entry.item, attempts=entry.item.attempts + 1)
            entry.next_attempt_at = next_attempt_at

    async def message_ref(self, request_id: str, notifier: str) -> MessageRef | None:
        return self._refs.get((request_id, notifier))

    async def save_message_ref(self, ref: MessageRef) -> None:
        self._refs[(ref.request_id, ref.notifier)] = ref

    async def metrics(self) -> ApprovalMetrics:
        outbox = ((o.item.attempts, o.delivered) for o in self._outbox.values())
        return approval_metrics_of(self._requests.values(), self._events, outbox)
