"""The tamper-evident chain: each event's hash covers the previous hash and the event itself."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable
from dataclasses import dataclass
from datetime import datetime

from storage.canonical import canonical_json
from storage.records import Event, JsonObject, NewEvent
from storage.timefmt import to_text

GENESIS_HASH = "0" * 64


def event_hash(prev_hash: str, seq: int, kind: str, request_id: str, at: datetime, data: JsonObject) -> str:
    body = canonical_json([seq, kind, request_id, to_text(at), data])
    return hashlib.sha256(f"{prev_hash}{body}".encode()).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class ChainReport:
    ok: bool
    events_checked: int
    head_hash: str  #: anchor this value elsewhere to detect truncation of the newest events
    first_bad_seq: int | None = None
    reason: str | None = None


async def verify_chain(events: AsyncIterable[Event]) -> ChainReport:
    """Walk the log in order; report the first event that was changed, removed or reordered."""
    prev_hash = GENESIS_HASH
    expected_seq = 1
    checked = 0
    async for event in events:
        problem = _check(event, expected_seq, prev_hash)
        if problem:
            return ChainReport(
                ok=False, events_checked=checked, head_hash=prev_hash, first_bad_seq=event.seq, reason=problem
            )
        prev_hash = event.hash
        expected_seq += 1
        checked += 1
    return ChainReport(ok=True, events_checked=checked, head_hash=prev_hash)


def _check(event: Event, expected_seq: int, prev_hash: str) -> str | None:
    if event.seq != expected_seq:
        return f"expected event {expected_seq} but found {event.seq}: events were removed or reordered"
    if event.prev_hash != prev_hash:
        return "its prev_hash does not match the previous event: an event before it was changed or removed"
    recomputed = event_hash(event.prev_hash, event.seq, event.kind, event.request_id, event.at, event.data)
    if recomputed != event.hash:
        return "its contents do not match its hash: the event was changed"
    return None


def link(new: NewEvent, prev_seq: int, prev_hash: str) -> Event:
    """The event that follows ``(prev_seq, prev_hash)`` in the chain."""
    seq = prev_seq + 1
    data = dict(new.data)
    digest = event_hash(prev_hash, seq, new.kind, new.request_id, new.at, data)
    return Event(
        seq=seq,
        kind=new.kind,
        request_id=new.request_id,
        at=new.at,
        data=data,
        prev_hash=prev_hash,
        hash=digest,
    )
