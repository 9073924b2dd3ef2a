"""Replaying a request's events into the columns of its ``requests`` and ``votes`` rows, and comparing.

Every column a request has is compared with the event that set it: what it asked for with ``created``, its
triggers with ``triggered``, its decision (and a payload a reviewer changed, ``approved_payload``) with ``decided``
/ ``expired`` / ``cancelled``, its use with ``consumed``, its escalation with ``escalated``, and each vote row with
its ``voted`` event. An event written before a column was recorded in it does not carry that column: the column
is then *unchecked* for that request, and the report says so instead of passing it silently. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from signoff.storage.canonical import canonical_json
from signoff.storage.records import ApprovalRequest, Event, EventKind, Vote
from signoff.storage.timefmt import to_text

_UNKNOWN = object()  #: a column the request's events do not carry (written before it was recorded)

#: ``requests`` columns and the ``created`` event's key for each (the same name but for ``created_at``).
CREATED_COLUMNS = (
    "action",
    "summary",
    "payload",
    "payload_sha256",
    "confidence",
    "flags",
    "agent_id",
    "idempotency_key",
    "approvals_required",
    "priority",
    "expires_at",
    "channel",
    "approvers",
    "escalate_at",
    "escalate_to",
    "policy_version",
    "model",
    "model_version",
    "model_decision_id",
)
_TIMES = {"expires_at", "escalate_at"}


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    """One disagreement between the rows and the chain."""

    row: str  #: e.g. "request req_abc", "vote by alice on request req_abc", "model change 3 of model m"
    column: str | None
    reason: str
    request_id: str | None = None


@dataclass(slots=True)
class RequestReplay:
    """The columns of one request (and its votes) as its events say they should be."""

    request_id: str
    columns: dict[str, Any] = field(default_factory=dict)  #: column -> value, or _UNKNOWN
    votes: dict[str, dict[str, Any]] = field(default_factory=dict)  #: reviewer -> vote columns
    created: bool = False

    def apply(self, event: Event) -> None:
        data, at = event.data, to_text(event.at)
        match event.kind:
            case EventKind.CREATED:
                self.created = True
                self.columns.update(id=event.request_id, created_at=at)
                for name in CREATED_COLUMNS:
                    self.columns[name] = _created_value(name, data)
                self.columns.update(
                    status="pending", decided_by=None, decided_at=None, note=None, consumed_at=None, escalated_at=None
                )
                self.columns["approved_payload"] = None
                self.columns.update(claimed_by=None, claimed_at=None, claim_expires_at=None)
            case EventKind.TRIGGERED:
                self.columns["triggers"] = _triggers(data["triggers"]) if "triggers" in data else _UNKNOWN
            case EventKind.DECIDED:
                by = data.get("by", _UNKNOWN)
                self.columns.update(status=data.get("status", _UNKNOWN), decided_by=by, decided_at=at, note=None)
                # a decision before approve-with-changes existed carries no approved_payload, and had none
                amended = data.get("approved_payload")
                self.columns["approved_payload"] = canonical_json(amended) if amended is not None else None
            case EventKind.EXPIRED:
                self.columns.update(status="expired", decided_by=None, decided_at=at, note=data.get("note", _UNKNOWN))
            case EventKind.CANCELLED:
                note = data.get("reason", _UNKNOWN)
                self.columns.update(status="cancelled", decided_by=None, decided_at=at, note=note)
            case EventKind.VOTED:
                reviewer = str(data.get("reviewer"))
                self.votes[reviewer] = {
                    "request_id": event.request_id,
                    "reviewer": reviewer,
                    "verdict": data.get("verdict", _UNKNOWN),
                    "comment": data.get("comment", _UNKNOWN),
                    "at": at,
                    "reviewer_ids": list(data["reviewer_ids"]) if "reviewer_ids" in data else _UNKNOWN,
                }
            case EventKind.CLAIMED:
                until = data.get("until")
                self.columns.update(
                    claimed_by=data.get("reviewer", _UNKNOWN),
                    claimed_at=at,
                    claim_expires_at=to_text(datetime.fromisoformat(until)) if isinstance(until, str) else _UNKNOWN,
                )
            case EventKind.RELEASED:
                self.columns.update(claimed_by=None, claimed_at=None, claim_expires_at=None)
            case EventKind.CONSUMED:
                self.columns["consumed_at"] = at
            case EventKind.ESCALATED:
                self.columns["escalated_at"] = at
            case _:
                pass  # notified, notify_failed, refused: they change no row


def request_columns(request: ApprovalRequest) -> dict[str, Any]:
    """A request's ``requests`` columns, in the form the replay gives them (times as stored text)."""
    return {
        "id": request.id,
        "action": request.action,
        "summary": request.summary,
        "payload": canonical_json(request.payload),
        "payload_sha256": request.payload_sha256,
        "confidence": request.confidence,
        "flags": list(request.flags),
        "agent_id": request.agent_id,
        "idempotency_key": request.idempotency_key,
        "status": request.status.value,
        "decided_by": request.decided_by.value if request.decided_by else None,
        "triggers": _triggers([{"kind": t.kind.value, "detail": t.detail} for t in request.triggers]),
        "approvals_required": request.approvals_required,
        "priority": request.priority.value,
        "created_at": to_text(request.created_at),
        "expires_at": to_text(request.expires_at),
        "decided_at": _time(request.decided_at),
        "note": request.note,
        "channel": request.channel,
        "approvers": list(request.approvers),
        "consumed_at": _time(request.consumed_at),
        "escalate_at": _time(request.escalate_at),
        "escalate_to": request.escalate_to,
        "escalated_at": _time(request.escalated_at),
        "approved_payload": canonical_json(request.approved_payload) if request.approved_payload is not None else None,
        "claimed_by": request.claimed_by,
        "claimed_at": _time(request.claimed_at),
        "claim_expires_at": _time(request.claim_until),
        "policy_version": request.policy_version,
        "model": request.model,
        "model_version": request.model_version,
        "model_decision_id": request.model_decision_id,
    }


def vote_columns(request_id: str, vote: Vote) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "reviewer": vote.reviewer,
        "verdict": vote.verdict.value,
        "comment": vote.comment,
        "at": to_text(vote.at),
        "reviewer_ids": list(vote.reviewer_ids),
    }


def compare(request: ApprovalRequest, replay: RequestReplay | None, unchecked: dict[str, int]) -> Finding | None:
    """The first column of the request or its votes that differs from its events. Columns the events do not
    carry are counted in ``unchecked`` (``table.column`` -> how many rows)."""
    where = f"request {request.id}"
    if replay is None or not replay.created:
        return Finding(
            row=where,
            column="id",
            reason="it has no created event: the row was added, or its id changed, outside signoff",
            request_id=request.id,
        )
    found = _differs(where, "requests", request_columns(request), replay.columns, unchecked, request.id)
    if found is not None:
        return found
    rows = {vote.reviewer: vote_columns(request.id, vote) for vote in request.votes}
    for reviewer, columns in rows.items():
        expected = replay.votes.get(reviewer)
        if expected is None:
            return Finding(
                row=f"vote by {reviewer} on request {request.id}",
                column="request_id, reviewer",
                reason="its votes differ from its events: this vote has no voted event (added, or its reviewer or"
                " request changed, outside signoff)",
                request_id=request.id,
            )
        vote_where = f"vote by {reviewer} on request {request.id}"
        if (found := _differs(vote_where, "votes", columns, expected, unchecked, request.id)) is not None:
            return found
    for reviewer in replay.votes.keys() - rows.keys():
        return Finding(
            row=f"vote by {reviewer} on request {request.id}",
            column="request_id, reviewer",
            reason="its votes differ from its events: this voted event has no vote row (removed, or its reviewer or"
            " request changed)",
            request_id=request.id,
        )
    return None


def _differs(
    where: str,
    table: str,
    row: dict[str, Any],
    expected: dict[str, Any],
    unchecked: dict[str, int],
    request_id: str,
) -> Finding | None:
    for column, value in row.items():
        want = expected.get(column, _UNKNOWN)
        if want is _UNKNOWN:
            unchecked[f"{table}.{column}"] = unchecked.get(f"{table}.{column}", 0) + 1
            continue
        if value != want:
            return Finding(
                row=where,
                column=column,
                reason=f"its row says {_show(value)} but its events say {_show(want)}",
                request_id=request_id,
            )
    return None


def _created_value(name: str, data: Any) -> Any:
    if name not in data:
        return _UNKNOWN
    value = data[name]
    if name == "payload":
        return canonical_json(value)
    if name in _TIMES and value is not None:
        return to_text(datetime.fromisoformat(value))
    if name in ("flags", "approvers"):
        return list(value)
    return value


def _triggers(items: Any) -> list[tuple[str, str]]:
    return [(str(t["kind"]), str(t["detail"])) for t in items]


def _time(moment: datetime | None) -> str | None:
    return to_text(moment) if moment is not None else None


def _show(value: Any) -> str:
    """A value for the report: plain when it is a simple word, else its repr (control and bidi characters escaped,
    since a payload or summary is agent-written)."""
    if isinstance(value, str) and value and all(c.isascii() and (c.isalnum() or c in "_.:-+") for c in value):
        return value
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
