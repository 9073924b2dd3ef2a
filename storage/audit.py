"""The tamper-evident log: a hash chain over events, checked against the rows agents act on.

Each event's hash covers the previous hash and the event itself, so changing, removing or reordering
an event breaks the chain after it. Replaying the events must give every column of every ``requests`` and
``votes`` row (``storage.audit_requests``) and of the model plane's rows (``storage.audit_models``), so a row
changed, added or removed behind signoff's back shows too. What a chain alone cannot show is a rewrite
of the whole chain from some point on, or its newest events cut off: record the head (``seq:hash``)
somewhere else and pass it back as an anchor.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from signoff.storage.approvals.store import Store
from signoff.storage.audit_alerts import AlertReplay
from signoff.storage.audit_alerts import compare as compare_alerts
from signoff.storage.audit_models import ModelReplay
from signoff.storage.audit_models import compare as compare_models
from signoff.storage.audit_requests import Finding, RequestReplay
from signoff.storage.audit_requests import compare as compare_request
from signoff.storage.canonical import canonical_json
from signoff.storage.errors import CorruptRecord
from signoff.storage.models.store import ModelStore
from signoff.storage.records import ApprovalRequest, Event, JsonObject, NewEvent, RequestQuery
from signoff.storage.timefmt import to_text

if TYPE_CHECKING:
    from signoff.storage.alerts import Episode

GENESIS_HASH = "0" * 64
BEFORE_ANY_EVENT = -(2**63)  #: walk from here, so rows forged with seq <= 0 are seen too


def event_hash(prev_hash: str, seq: int, kind: str, request_id: str, at: datetime, data: JsonObject) -> str:
    body = canonical_json([seq, kind, request_id, to_text(at), data])
    return hashlib.sha256(f"{prev_hash}{body}".encode()).hexdigest()


CONSOLE_PREFIX = "console:"  #: the ``request_id`` of an event that belongs to no request (a console sign-in)


def is_request_id(request_id: str | None) -> bool:
    """Whether an event's ``request_id`` names a request (not a console event's ``console:<name>``)."""
    return request_id is not None and not request_id.startswith(CONSOLE_PREFIX)


def standalone(event: NewEvent) -> NewEvent:
    """``event`` if it may be chained on its own (``Store.append_event``): a console event, with a ``console:``
    request id; a ``ValueError`` otherwise (a request's events come with the change they record)."""
    if not event.kind.is_console or not event.request_id.startswith(CONSOLE_PREFIX):
        raise ValueError(f"only console events with a console:<name> id are appended alone, not {event.kind}")
    return event


def link(new: NewEvent, prev_seq: int, prev_hash: str) -> Event:
    """The event that follows ``(prev_seq, prev_hash)`` in the chain."""
    seq = prev_seq + 1
    data = dict(new.data)
    digest = event_hash(prev_hash, seq, new.kind, new.request_id, new.at, data)
    return Event(
        seq=seq, kind=new.kind, request_id=new.request_id, at=new.at, data=data, prev_hash=prev_hash, hash=digest
    )


EventRow = tuple[int, str, str, str, str, str, str]  #: an ``events`` row: seq, kind, request_id, at, data, prev, hash


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

    def row(self, seq: int, prev_hash: str) -> EventRow:
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
    row: str | None = None  #: the row that disagrees with its events ("request req_…", "vote by alice on …")
    column: str | None = None  #: its column that disagrees (or its key columns, for a row without events)
    #: ``table.column`` -> rows whose events predate that column being recorded: not checked
    unchecked: Mapping[str, int] = field(default_factory=dict)
    model_baselines: tuple[int, ...] = ()  #: events that adopted the model plane as found at an upgrade


@dataclass(slots=True)
class _Replay:
    requests: dict[str, RequestReplay] = field(default_factory=dict)
    models: ModelReplay = field(default_factory=ModelReplay)
    alerts: AlertReplay = field(default_factory=AlertReplay)

    def apply(self, event: Event) -> None:
        if event.kind.is_model:
            self.models.apply(event)
        elif event.kind.is_alert:
            self.alerts.apply(event)
        elif event.kind.is_console:
            pass  # sign-ins and sign-outs change no row: the chain's hashes are their whole check
        else:
            self.requests.setdefault(event.request_id, RequestReplay(event.request_id)).apply(event)


async def verify_chain(events: AsyncIterable[Event], anchors: Mapping[int, str] | None = None) -> ChainReport:
    """Walk the log in order; report the first event that was changed, removed or reordered."""
    report, _ = await _walk(events, anchors or {})
    return report


async def verify_store(
    store: Store,
    anchors: Mapping[int, str] | None = None,
    models: ModelStore | None = None,
    alerts: Sequence[Episode] | None = None,
) -> ChainReport:
    """The chain, then every column of every request and vote row against what its events say; with ``models``,
    every model, version and model change row too (they share the chain); with ``alerts`` (every alert episode
    row), each episode's start and end."""
    report, replay = await _walk(store.events(BEFORE_ANY_EVENT), anchors or {})
    if not report.ok:
        return report
    unchecked: dict[str, int] = {}
    requests = dict(replay.requests)
    cursor = None
    while True:
        try:
            page = await store.list_requests(RequestQuery(limit=500, before=cursor))
        except (ValueError, TypeError, KeyError) as exc:  # a row edited into something signoff cannot read
            return _failed(report, Finding(row="a request row", column=None, reason=f"it cannot be read ({exc})"))
        for request in page.items:
            if finding := compare_request(request, requests.pop(request.id, None), unchecked):
                return _failed(report, finding)
        if (cursor := page.next_cursor) is None:
            break
    if requests:
        orphan = next(iter(requests))
        finding = Finding(
            row=f"request {orphan}",
            column="id",
            reason="it has events but no row: the request was deleted, or its id changed",
            request_id=orphan,
        )
        return _failed(report, finding)
    if models is not None:
        try:
            finding = await compare_models(models, replay.models)
        except (ValueError, TypeError, KeyError) as exc:
            finding = Finding(row="a model-plane row", column=None, reason=f"it cannot be read ({exc})")
        if finding is not None:
            return _failed(report, finding)
    if alerts is not None and (finding := compare_alerts(alerts, replay.alerts, unchecked)) is not None:
        return _failed(report, finding)
    return dataclasses.replace(report, unchecked=unchecked, model_baselines=tuple(replay.models.baselines))


async def check_request(store: Store, request: ApprovalRequest) -> Finding | None:
    """One request's row and votes against its own events (each checked against its own hash): what a receipt
    for it may rest on, in one indexed read. The whole chain is ``verify_store``'s job."""
    replay = RequestReplay(request.id)
    for event in await store.request_events(request.id):
        recomputed = event_hash(event.prev_hash, event.seq, event.kind, event.request_id, event.at, event.data)
        if recomputed != event.hash:
            return Finding(
                row=f"event #{event.seq}",
                column=None,
                reason="its contents do not match its hash",
                request_id=request.id,
            )
        replay.apply(event)
    return compare_request(request, replay, {})


def _failed(report: ChainReport, finding: Finding) -> ChainReport:
    return ChainReport(
        ok=False,
        events_checked=report.events_checked,
        head_seq=report.head_seq,
        head_hash=report.head_hash,
        request_id=finding.request_id,
        reason=finding.reason,
        row=finding.row,
        column=finding.column,
    )


async def _walk(events: AsyncIterable[Event], anchors: Mapping[int, str]) -> tuple[ChainReport, _Replay]:
    prev_seq, prev_hash, checked = 0, GENESIS_HASH, 0
    replay = _Replay()

    def failed(seq: int, reason: str) -> tuple[ChainReport, _Replay]:
        report = ChainReport(
            ok=False, events_checked=checked, head_seq=prev_seq, head_hash=prev_hash, first_bad_seq=seq, reason=reason
        )
        return report, replay

    try:
        async for event in events:
            if problem := _check(event, prev_seq + 1, prev_hash):
                return failed(event.seq, problem)
            if event.seq in anchors and anchors[event.seq] != event.hash:
                return failed(event.seq, "its hash is not the anchored one: the log was rewritten from here on")
            replay.apply(event)
            prev_seq, prev_hash, checked = event.seq, event.hash, checked + 1
    except CorruptRecord as exc:
        return failed(exc.seq, f"it cannot be read: {exc.message}")
    missing = [seq for seq in anchors if seq > prev_seq]
    if missing:
        return failed(min(missing), f"the log ends at event {prev_seq}: the newest events were removed")
    return ChainReport(ok=True, events_checked=checked, head_seq=prev_seq, head_hash=prev_hash), replay


def _check(event: Event, expected_seq: int, prev_hash: str) -> str | None:
    if event.seq != expected_seq:
        return f"expected event {expected_seq} but found {event.seq}: events were removed, added or reordered"
    if event.prev_hash != prev_hash:
        return "its prev_hash does not match the previous event: an event before it was changed or removed"
    recomputed = event_hash(event.prev_hash, event.seq, event.kind, event.request_id, event.at, event.data)
    if recomputed != event.hash:
        return "its contents do not match its hash: the event was changed"
    return None
