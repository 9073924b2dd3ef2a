"""The tamper-evident log: a hash chain over events, checked against the rows agents act on.

Each event's hash covers the previous hash and the event itself, so changing, removing or reordering
an event breaks the chain after it. Replaying the events must give every request's status, votes and
use, so a changed ``requests`` or ``votes`` row shows too. What a chain alone cannot show is a rewrite
of the whole chain from some point on, or its newest events cut off: record the head (``seq:hash``)
somewhere else and pass it back as an anchor.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from signoff.storage.approvals.store import Store
from signoff.storage.canonical import canonical_json
from signoff.storage.errors import CorruptRecord
from signoff.storage.records import ApprovalRequest, Event, EventKind, JsonObject, NewEvent, RequestQuery
from signoff.storage.timefmt import to_text

GENESIS_HASH = "0" * 64
BEFORE_ANY_EVENT = -(2**63)  #: walk from here, so rows forged with seq <= 0 are seen too


def event_hash(prev_hash: str, seq: int, kind: str, request_id: str, at: datetime, data: JsonObject) -> str:
    body = canonical_json([seq, kind, request_id, to_text(at), data])
    return hashlib.sha256(f"{prev_hash}{body}".encode()).hexdigest()


def link(new: NewEvent, prev_seq: int, prev_hash: str) -> Event:
    """The event that follows ``(prev_seq, prev_hash)`` in the chain."""
    seq = prev_seq + 1
    data = dict(new.data)
    digest = event_hash(prev_hash, seq, new.kind, new.request_id, new.at, data)
    return Event(
        seq=seq, kind=new.kind, request_id=new.request_id, at=new.at, data=data, prev_hash=prev_hash, hash=digest
    )


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """A new event encoded for the chain before its place in it is known: everything but one sha256, so a store
    can do the encoding before it takes the write lock. ``row`` gives exactly ``event_row(link(...))``."""

    kind: str
    request_id: str
    at: str
    data: str  #: canonical JSON
    hashed_tail: str  #: what follows ``[<seq>,`` in the hashed body: canonical JSON of [kind, request_id, at, data]

    @classmethod
    def of(cls, new: NewEvent) -> EncodedEvent:
        at, data = to_text(new.at), dict(new.data)
        tail = canonical_json([new.kind.value, new.request_id, at, data])[1:]
        return cls(new.kind.value, new.request_id, at, canonical_json(data), tail)

    def row(self, seq: int, prev_hash: str) -> tuple[int, str, str, str, str, str, str]:
        """The ``events`` row at ``seq`` after ``prev_hash``: the body hashed is ``event_hash``'s, byte for byte
        (a JSON list is ``[`` + its items joined by ``,`` + ``]``, and an int encodes as ``str``)."""
        digest = hashlib.sha256(f"{prev_hash}[{seq},{self.hashed_tail}".encode()).hexdigest()
        return (seq, self.kind, self.request_id, self.at, self.data, prev_hash, digest)


@dataclass(frozen=True, kw_only=True, slots=True)
class ChainReport:
    ok: bool
    events_checked: int
    head_seq: int  #: with head_hash, the anchor to record elsewhere
    head_hash: str
    first_bad_seq: int | None = None
    request_id: str | None = None  #: the request whose rows disagree with its events
    reason: str | None = None


@dataclass(slots=True)
class _Replayed:
    status: str = "pending"
    votes: set[tuple[str, str, str | None]] = field(default_factory=set)
    consumed: bool = False
    escalated: bool = False


async def verify_chain(events: AsyncIterable[Event], anchors: Mapping[int, str] | None = None) -> ChainReport:
    """Walk the log in order; report the first event that was changed, removed or reordered."""
    report, _ = await _walk(events, anchors or {})
    return report


async def verify_store(store: Store, anchors: Mapping[int, str] | None = None) -> ChainReport:
    """The chain, then every request's row and votes against what its events say."""
    report, replayed = await _walk(store.events(BEFORE_ANY_EVENT), anchors or {})
    if not report.ok:
        return report
    cursor = None
    while True:
        page = await store.list_requests(RequestQuery(limit=500, before=cursor))
        for request in page.items:
            if problem := _disagreement(request, replayed.pop(request.id, None)):
                return _failed(report, request_id=request.id, reason=problem)
        if (cursor := page.next_cursor) is None:
            break
    if replayed:
        orphan = next(iter(replayed))
        return _failed(report, request_id=orphan, reason="it has events but no row: the request was deleted")
    return report


def _failed(report: ChainReport, *, request_id: str, reason: str) -> ChainReport:
    return ChainReport(
        ok=False,
        events_checked=report.events_checked,
        head_seq=report.head_seq,
        head_hash=report.head_hash,
        request_id=request_id,
        reason=reason,
    )


async def _walk(events: AsyncIterable[Event], anchors: Mapping[int, str]) -> tuple[ChainReport, dict[str, _Replayed]]:
    prev_seq, prev_hash, checked = 0, GENESIS_HASH, 0
    replayed: dict[str, _Replayed] = {}

    def failed(seq: int, reason: str) -> tuple[ChainReport, dict[str, _Replayed]]:
        report = ChainReport(
            ok=False, events_checked=checked, head_seq=prev_seq, head_hash=prev_hash, first_bad_seq=seq, reason=reason
        )
        return report, replayed

    try:
        async for event in events:
            if problem := _check(event, prev_seq + 1, prev_hash):
                return failed(event.seq, problem)
            if event.seq in anchors and anchors[event.seq] != event.hash:
                return failed(event.seq, "its hash is not the anchored one: the log was rewritten from here on")
            _replay(replayed, event)
            prev_seq, prev_hash, checked = event.seq, event.hash, checked + 1
    except CorruptRecord as exc:
        return failed(exc.seq, f"it cannot be read: {exc.message}")
    missing = [seq for seq in anchors if seq > prev_seq]
    if missing:
        return failed(min(missing), f"the log ends at event {prev_seq}: the newest events were removed")
    return ChainReport(ok=True, events_checked=checked, head_seq=prev_seq, head_hash=prev_hash), replayed


def _check(event: Event, expected_seq: int, prev_hash: str) -> str | None:
    if event.seq != expected_seq:
        return f"expected event {expected_seq} but found {event.seq}: events were removed, added or reordered"
    if event.prev_hash != prev_hash:
        return "its prev_hash does not match the previous event: an event before it was changed or removed"
    recomputed = event_hash(event.prev_hash, event.seq, event.kind, event.request_id, event.at, event.data)
    if recomputed != event.hash:
        return "its contents do not match its hash: the event was changed"
    return None


def _replay(replayed: dict[str, _Replayed], event: Event) -> None:
    state = replayed.setdefault(event.request_id, _Replayed())
    data = event.data
    if event.kind is EventKind.DECIDED:
        state.status = str(data.get("status"))
    elif event.kind in (EventKind.EXPIRED, EventKind.CANCELLED):
        state.status = event.kind.value
    elif event.kind is EventKind.VOTED:
        state.votes.add((str(data.get("reviewer")), str(data.get("verdict")), data.get("comment")))
    elif event.kind is EventKind.CONSUMED:
        state.consumed = True
    elif event.kind is EventKind.ESCALATED:
        state.escalated = True


def _disagreement(request: ApprovalRequest, replayed: _Replayed | None) -> str | None:
    if replayed is None:
        return "it has no events: the row was added outside signoff"
    if request.status.value != replayed.status:
        return f"its row says {request.status} but its events say {replayed.status}"
    votes = {(v.reviewer, v.verdict.value, v.comment) for v in request.votes}
    if votes != replayed.votes:
        return "its votes differ from the votes in its events"
    if (request.consumed_at is not None) != replayed.consumed:
        return "whether it was used differs from its events"
    if (request.escalated_at is not None) != replayed.escalated:
        return "whether it was escalated differs from its events"
    return None
