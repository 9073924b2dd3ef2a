"""Rows to records and back, for stores that keep requests as SQL rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from signoff.storage.canonical import canonical_json
from signoff.storage.errors import CorruptRecord
from signoff.storage.folding import fold_action, fold_path
from signoff.storage.payload_numbers import learnt, numeric_leaves
from signoff.storage.records import (
    ApprovalRequest,
    DecidedBy,
    Event,
    EventKind,
    Priority,
    QueueEntry,
    RecordedRequest,
    Status,
    Trigger,
    TriggerKind,
    Verdict,
    Vote,
)
from signoff.storage.timefmt import from_text, to_text


def request_row(r: ApprovalRequest) -> tuple[Any, ...]:
    """Column values in the order of ``queries.INSERT_REQUEST``."""
    return (
        r.id,
        r.action,
        r.summary,
        canonical_json(r.payload),
        r.payload_sha256,
        r.confidence,
        json.dumps(list(r.flags)),
        r.agent_id,
        r.idempotency_key,
        r.status.value,
        r.decided_by.value if r.decided_by else None,
        json.dumps([{"kind": t.kind.value, "detail": t.detail} for t in r.triggers]),
        r.approvals_required,
        r.priority.value,
        to_text(r.created_at),
        to_text(r.expires_at),
        to_text(r.decided_at) if r.decided_at else None,
        r.note,
        r.channel,
        json.dumps(list(r.approvers)),
        to_text(r.escalate_at) if r.escalate_at else None,
        r.escalate_to,
        r.policy_version,
        r.model,
        r.model_version,
        r.model_decision_id,
    )


_STATUS = {member.value: member for member in Status}
_DECIDED_BY = {member.value: member for member in DecidedBy}
_PRIORITY = {member.value: member for member in Priority}
_TRIGGER_KIND = {member.value: member for member in TriggerKind}


def _strings(text: str) -> tuple[str, ...]:
    """A JSON array of strings as a tuple; ``[]`` (most of them) without the JSON decoder."""
    return () if text == "[]" else tuple(json.loads(text))


def request_from_row(row: Sequence[Any]) -> ApprovalRequest:
    """The inverse of ``request_row``, plus the votes column of ``queries.REQUEST_COLUMNS``."""
    votes = json.loads(row[18]) if row[18] else []
    try:
        status, priority = _STATUS[row[9]], _PRIORITY[row[13]]
        decided_by = _DECIDED_BY[row[10]] if row[10] else None
    except KeyError:  # not one of ours: the Enum says which
        status, priority = Status(row[9]), Priority(row[13])
        decided_by = DecidedBy(row[10]) if row[10] else None
    return ApprovalRequest(
        id=row[0],
        action=row[1],
        summary=row[2],
        payload=json.loads(row[3]),
        payload_sha256=row[4],
        confidence=row[5],
        flags=_strings(row[6]),
        agent_id=row[7],
        idempotency_key=row[8],
        status=status,
        decided_by=decided_by,
        triggers=tuple(Trigger(kind=_trigger_kind(t["kind"]), detail=t["detail"]) for t in json.loads(row[11])),
        approvals_required=row[12],
        priority=priority,
        created_at=from_text(row[14]),
        expires_at=from_text(row[15]),
        decided_at=from_text(row[16]) if row[16] else None,
        note=row[17],
        votes=tuple(
            Vote(
                reviewer=v["reviewer"],
                verdict=Verdict(v["verdict"]),
                comment=v["comment"],
                at=from_text(v["at"]),
                reviewer_ids=tuple(v.get("ids") or ()),
            )
            for v in votes
        ),
        channel=row[19],
        approvers=_strings(row[20]),
        consumed_at=from_text(row[21]) if row[21] else None,
        escalate_at=from_text(row[22]) if row[22] else None,
        escalate_to=row[23],
        escalated_at=from_text(row[24]) if row[24] else None,
        approved_payload=json.loads(row[25]) if row[25] is not None else None,
        claimed_by=row[26],
        claimed_at=from_text(row[27]) if row[27] else None,
        claim_until=from_text(row[28]) if row[28] else None,
        policy_version=row[29],
        model=row[30],
        model_version=row[31],
        model_decision_id=row[32],
    )


def queue_entry_from_row(row: Sequence[Any]) -> QueueEntry:
    """A row of the ``QUEUE_COLUMNS`` of ``queries`` / ``pg_queries``."""
    try:
        status, priority = _STATUS[row[10]], _PRIORITY[row[8]]
    except KeyError:  # not one of ours: the Enum says which
        status, priority = Status(row[10]), Priority(row[8])
    triggers = row[5]
    return QueueEntry(
        id=row[0],
        action=row[1],
        summary=row[2],
        agent_id=row[3],
        confidence=row[4],
        triggers=()
        if triggers == "[]"
        else tuple(Trigger(kind=_trigger_kind(t["kind"]), detail=t["detail"]) for t in json.loads(triggers)),
        approvals_required=row[6],
        approval_count=row[7],
        priority=priority,
        expires_at=from_text(row[9]),
        status=status,
        claimed_by=row[11],
        claimed_at=from_text(row[12]) if row[12] else None,
        claim_until=from_text(row[13]) if row[13] else None,
    )


def recorded_from_row(row: Sequence[Any]) -> RecordedRequest:
    """A row of ``queries.RECORDED_REQUESTS`` (either dialect) as the lean record replay reads."""
    try:
        status = _STATUS[row[7]]
        decided_by = _DECIDED_BY[row[8]] if row[8] else None
    except KeyError:  # not one of ours: the Enum says which
        status = Status(row[7])
        decided_by = DecidedBy(row[8]) if row[8] else None
    return RecordedRequest(
        row[0],
        row[1],
        row[2],
        json.loads(row[3]),
        row[4],
        _strings(row[5]),
        row[6],
        status,
        decided_by,
        from_text(row[9]),
        row[10],
        json.loads(row[11]) if row[11] is not None else None,
        len(row[3].encode()),  # stored as canonical JSON: its size, without encoding the payload again
    )


def approved_values(request: ApprovalRequest) -> list[tuple[str, str, float]]:
    """The rows that add an approved request's numbers to its action's history (what anomaly detection compares
    with): only approved requests count, so requests people rejected cannot shift what looks normal. Kept under the
    folded action and field (``folding``), as rules compare them: ``Refunds.Issue``'s ``Amount`` joins
    ``refunds.issue``'s ``amount``. A field in lists (``items[].qty``) adds a few of its numbers (``learnt``) to the
    history of its path without the lists (``items.qty``): one row each."""
    action = fold_action(request.action)
    return [(action, fold_path(name), value) for name, value in learnt(numeric_leaves(request.effective_payload))]


def agent_action(request: ApprovalRequest) -> tuple[str, str]:
    """The row that makes an approved request's action known for its agent (novelty), under the folded action."""
    return request.agent_id or "", fold_action(request.action)


def _trigger_kind(value: str) -> TriggerKind:
    found = _TRIGGER_KIND.get(value)
    return found if found is not None else TriggerKind(value)


def event_row(e: Event) -> tuple[Any, ...]:
    return (e.seq, e.kind.value, e.request_id, to_text(e.at), canonical_json(e.data), e.prev_hash, e.hash)


def event_from_row(row: Sequence[Any]) -> Event:
    try:
        return _event(row)
    except (ValueError, TypeError, KeyError) as exc:  # JSONDecodeError is a ValueError
        raise CorruptRecord(row[0], f"event #{row[0]} cannot be read ({exc})") from exc


def _event(row: Sequence[Any]) -> Event:
    return Event(
        seq=row[0],
        kind=EventKind(row[1]),
        request_id=row[2],
        at=from_text(row[3]),
        data=json.loads(row[4]),
        prev_hash=row[5],
        hash=row[6],
    )
