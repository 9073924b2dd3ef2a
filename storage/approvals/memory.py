"""An in-process Store for fast tests and experiments; same contract as the SQLite store, no durability."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta

from signoff.storage.approvals.deliveries import claim_marks, is_settled, lease_token
from signoff.storage.approvals.store import Change
from signoff.storage.audit import GENESIS_HASH, is_request_id, link, standalone
from signoff.storage.canonical import canonical_json
from signoff.storage.change_signal import ChangeSignal
from signoff.storage.codec import agent_action, approved_values
from signoff.storage.errors import AskedBefore, unknown_request
from signoff.storage.folding import fold_action, fold_path
from signoff.storage.metrics_queries import ApprovalMetrics, approval_metrics_of
from signoff.storage.records import (
    ActionHistory,
    ApprovalRequest,
    Cursor,
    DeliveryMark,
    DeliveryState,
    Event,
    HumanOutcomes,
    MessageRef,
    NewEvent,
    Order,
    OutboxEntry,
    OutboxItem,
    Page,
    QueueRead,
    RecordedRequest,
    RequestQuery,
    Status,
    ascii_lower,
    human_outcomes_of,
    matches_text,
    newest_key,
    priority_key,
    queue_entry_of,
    went_to_people,
)


@dataclasses.dataclass(slots=True)
class _Outbox:
    item: OutboxItem
    next_attempt_at: datetime
    delivered: bool = False
    lease: str | None = None  #: the token of the claim holding it (``OutboxItem.lease``)


class MemoryStore:
    def __init__(self) -> None:
        self._requests: dict[str, ApprovalRequest] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._by_digest: dict[tuple[str, str], list[str]] = defaultdict(list)  #: (agent, payload_sha256) -> ids
        self._events: list[Event] = []
        self._seen: set[tuple[str, str]] = set()
        self._values: dict[tuple[str, str], list[float]] = defaultdict(list)
        self._outbox: dict[int, _Outbox] = {}
        self._refs: dict[tuple[str, str], MessageRef] = {}
        self._marks: dict[int, dict[str, DeliveryMark]] = defaultdict(dict)  #: outbox id -> notifier -> mark
        self._claims: dict[str, datetime] = {}  #: claim_once's keys -> when each may be forgotten
        self._signal = ChangeSignal()

    async def close(self) -> None:
        pass

    # Every method below runs without awaiting between its reads and writes, so each is atomic
    # on the event loop, as a transaction is in SQLite.

    async def create_request(
        self,
        request: ApprovalRequest,
        events: Sequence[NewEvent],
        *,
        notify: bool,
        refuse_approval_if_asked_before: bool = False,
    ) -> tuple[ApprovalRequest, bool]:
        key = (request.agent_id or "", request.idempotency_key) if request.idempotency_key else None
        if key is not None and key in self._by_key:
            return self._requests[self._by_key[key]], False
        asked = (request.agent_id or "", request.payload_sha256)
        if refuse_approval_if_asked_before and request.status is Status.APPROVED:
            earlier = [r for i in self._by_digest.get(asked, ()) if went_to_people(r := self._requests[i])]
            if earlier and (last := max(earlier, key=_last_word)).status is not Status.APPROVED:
                raise AskedBefore(last)
        self._requests[request.id] = request
        if key is not None:
            self._by_key[key] = request.id
        self._by_digest[asked].append(request.id)
        if request.status is Status.APPROVED:
            self._record_approved(request)
        self._append(events)
        if notify:
            self._queue(request.id, request.created_at)
        self._signal_change()
        return request, True

    def _record_approved(self, request: ApprovalRequest) -> None:
        """Only approved requests feed the action's history, as in the SQLite store: the action becomes known
        for the agent, and its numbers join the values anomaly detection compares with."""
        self._seen.add(agent_action(request))
        for action, name, value in approved_values(request):
            self._values[(action, name)].append(value)

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
                approved_payload=transition.approved_payload,
            )
            if transition.status is Status.APPROVED:
                self._record_approved(updated)
        if transition.claim is not None or transition.release:
            c = transition.claim
            updated = dataclasses.replace(
                updated,
                claimed_by=c.by if c else None,
                claimed_at=c.at if c else None,
                claim_until=c.until if c else None,
            )
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
        folded = None if query.folded_action is None else ascii_lower(query.folded_action)

        def keep(r: ApprovalRequest) -> bool:
            return (
                (query.status is None or r.status is query.status)
                and (query.action is None or r.action == query.action)
                and (folded is None or ascii_lower(r.action) == folded)
                and (query.agent_id is None or r.agent_id == query.agent_id)
                and (query.since is None or r.created_at >= query.since)
                and (query.until is None or r.created_at < query.until)
                and (query.before is None or _after(r, query))
                and (query.text is None or matches_text(r, query.text))
                and (query.reviewer is None or any(v.reviewer == query.reviewer for v in r.votes))
            )

        if query.order is Order.PRIORITY:
            ordered = sorted(filter(keep, self._requests.values()), key=_priority_order)
            cursor: Callable[[ApprovalRequest], Cursor] = priority_key
        else:
            ordered = sorted(filter(keep, self._requests.values()), key=newest_key, reverse=True)
            cursor = newest_key
        items = tuple(ordered[: query.limit])
        more = len(ordered) > query.limit
        return Page(items=items, next_cursor=cursor(items[-1]) if more else None)

    async def pending_queue(self, after_seq: int | None = None, limit: int = 500) -> QueueRead:
        head = self._events[-1].seq if self._events else 0
        if after_seq is not None and 0 <= head - after_seq <= limit:
            # seqs run 1, 2, 3, ...: the events after ``after_seq`` are the list from that index on
            changed = frozenset(e.request_id for e in self._events[after_seq:] if is_request_id(e.request_id))
            found = (self._requests[i] for i in sorted(changed) if i in self._requests)
            entries = tuple(queue_entry_of(r) for r in found if r.status is Status.PENDING)
            return QueueRead(head=head, entries=entries, changed=changed)
        pending = (r for r in self._requests.values() if r.status is Status.PENDING)
        return QueueRead(head=head, entries=tuple(queue_entry_of(r) for r in pending))

    async def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        return sorted(i for i in self._requests if i.startswith(prefix))[:limit]

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

    async def recorded_requests(
        self, since: datetime | None = None, batch: int = 1000
    ) -> AsyncIterator[list[RecordedRequest]]:
        ordered = sorted(self._requests.values(), key=lambda r: (r.created_at, r.id))
        found = [recorded(r) for r in ordered if since is None or r.created_at >= since]
        for start in range(0, len(found), batch):
            yield found[start : start + batch]

    async def action_history(
        self, action: str, agent_id: str | None, fields: Sequence[str], limit: int = 200
    ) -> ActionHistory:
        action = fold_action(action)  # kept folded, as rules compare actions and keys (``folding``)
        values = {name: tuple(reversed(self._values.get((action, fold_path(name)), [])[-limit:])) for name in fields}
        return ActionHistory(seen_from_agent=(agent_id or "", action) in self._seen, values=values)

    def _append(self, events: Sequence[NewEvent]) -> tuple[Event, ...]:
        for new in events:
            prev_seq, prev_hash = (self._events[-1].seq, self._events[-1].hash) if self._events else (0, GENESIS_HASH)
            self._events.append(link(new, prev_seq, prev_hash))
        return tuple(self._events[len(self._events) - len(events) :])

    async def events(self, after_seq: int = 0) -> AsyncIterator[Event]:
        for event in [e for e in self._events if e.seq > after_seq]:
            yield event

    async def request_events(self, request_id: str) -> list[Event]:
        return [e for e in self._events if e.request_id == request_id]

    async def append_event(self, event: NewEvent) -> None:
        self._append([standalone(event)])

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
        lease = lease_token()
        for entry in due:
            entry.next_attempt_at, entry.lease = now + timedelta(seconds=lease_seconds), lease
        return [
            dataclasses.replace(
                entry.item,
                upto=(upto := newest[entry.item.request_id]),
                marks=claim_marks(entry.item.id, self._covered(entry.item, upto)),
                lease=lease,
            )
            for entry in due
        ]

    async def renew_outbox(self, item: OutboxItem, now: datetime, lease_seconds: float = 120.0) -> bool:
        entry = self._outbox[item.id]
        if entry.delivered or entry.lease != item.lease:
            return False
        entry.next_attempt_at = now + timedelta(seconds=lease_seconds)
        return True

    def _covered(self, item: OutboxItem, upto: int) -> dict[int, list[DeliveryMark]]:
        """The marks of the request's unsettled rows from ``item`` up to ``upto``, by row."""
        return {
            e.item.id: list(self._marks[e.item.id].values())
            for e in self._outbox.values()
            if e.item.request_id == item.request_id and item.id <= e.item.id <= max(item.id, upto) and not e.delivered
        }

    async def record_deliveries(
        self,
        item: OutboxItem,
        marks: Sequence[DeliveryMark],
        *,
        notifiers: Sequence[str],
        now: datetime,
        next_attempt_at: datetime,
        events: Sequence[NewEvent],
    ) -> bool:
        claimed = self._outbox[item.id]
        if claimed.delivered or claimed.lease != item.lease:
            return False  # settled first, or taken over by a later claim when the lease ran out
        covered = self._covered(item, item.upto)
        for mark in marks:
            for row in covered if mark.state.is_final else [item.id]:
                self._marks[row][mark.notifier] = mark
        for row in covered:
            if is_settled(list(self._marks[row].values()), notifiers):
                entry = self._outbox[row]
                entry.delivered = True
                entry.item = dataclasses.replace(entry.item, attempts=entry.item.attempts + 1)
        if not claimed.delivered:
            claimed.next_attempt_at, claimed.lease = next_attempt_at, None
        self._append(events)
        self._signal_change()
        return True

    async def outbox_entries(self, limit: int = 1000) -> list[OutboxEntry]:
        shown = [
            e
            for e in self._outbox.values()
            if not e.delivered or any(m.state is DeliveryState.DEAD for m in self._marks[e.item.id].values())
        ]
        return [
            OutboxEntry(
                id=e.item.id,
                request_id=e.item.request_id,
                created_at=e.item.created_at,
                next_attempt_at=e.next_attempt_at,
                settled=e.delivered,
                marks=tuple(sorted(self._marks[e.item.id].values(), key=lambda m: m.notifier)),
            )
            for e in sorted(shown, key=lambda e: e.item.id)[:limit]
        ]

    async def requeue_dead(self, outbox_id: int | None, now: datetime) -> list[int]:
        ids = sorted(
            row
            for row, marks in self._marks.items()
            if (outbox_id is None or row == outbox_id) and any(m.state is DeliveryState.DEAD for m in marks.values())
        )
        for row in ids:
            self._marks[row] = {n: m for n, m in self._marks[row].items() if m.state is not DeliveryState.DEAD}
            entry = self._outbox[row]
            entry.delivered, entry.next_attempt_at = False, now
        if ids:
            self._signal_change()
        return ids

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

    async def swap_message_ref(self, expected: MessageRef | None, ref: MessageRef) -> bool:
        if self._refs.get((ref.request_id, ref.notifier)) != expected:
            return False
        self._refs[(ref.request_id, ref.notifier)] = ref
        return True

    async def claim_once(self, key: str, now: datetime, forget_after: datetime) -> bool:
        self._claims = {k: until for k, until in self._claims.items() if until > now}
        if key in self._claims:
            return False
        self._claims[key] = forget_after
        return True

    async def human_outcomes(self, model: str, since: datetime, until: datetime) -> dict[str, HumanOutcomes]:
        return human_outcomes_of((r for r in self._requests.values() if since <= r.created_at < until), model)

    async def metrics(self) -> ApprovalMetrics:
        marks = ((o.delivered, mark) for o in self._outbox.values() for mark in self._marks[o.item.id].values())
        return approval_metrics_of(self._requests.values(), self._events, marks)


def _priority_order(request: ApprovalRequest) -> tuple[int, datetime, str]:
    rank, expires_at, request_id = priority_key(request)
    return -rank, expires_at, request_id


def _after(request: ApprovalRequest, query: RequestQuery) -> bool:
    """Whether ``request`` comes after the query's cursor in its order."""
    match query.before:
        case (int() as rank, datetime() as expires_at, str() as request_id):
            return _priority_order(request) > (-rank, expires_at, request_id)
        case (datetime() as created_at, str() as request_id):
            return newest_key(request) < (created_at, request_id)
    return True


def recorded(request: ApprovalRequest) -> RecordedRequest:
    """What ``recorded_requests`` yields of a stored request."""
    return RecordedRequest(
        request.id,
        request.action,
        request.summary,
        request.payload,
        request.confidence,
        request.flags,
        request.agent_id,
        request.status,
        request.decided_by,
        request.created_at,
        request.policy_version,
        request.approved_payload,
        len(canonical_json(request.payload).encode()),
    )


def _last_word(request: ApprovalRequest) -> tuple[datetime, bool, str]:
    """The order of ``ASKED_BEFORE``: newest, and of requests made at the same instant an approved one, then by id."""
    return request.created_at, request.status is Status.APPROVED, request.id
