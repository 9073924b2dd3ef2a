"""Requests as the console shows them: plain data with every agent-written string made visible (``visible``).

The templates render these with autoescape on, and the page's script builds queue rows from the same data with
``textContent``: no string that came from an agent is ever parsed as HTML."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from signoff.storage import ApprovalRequest, Event, Priority, QueueEntry, Status
from signoff.storage.redaction import Redaction
from signoff.storage.text import is_active, visible
from signoff.storage.timefmt import to_text
from signoff.tools.approvals.service import FIXED_PAYLOAD_PREFIX

FOLD_CHARS = 2000  #: a payload value (as pretty JSON) longer than this is folded: a preview, and the whole in a fold
FOLD_LINES = 40  #: likewise a value spanning more lines than this
EVENT_LINES = 8  #: an event's data longer than this is folded in the timeline
PREVIEW_CHARS = 200
SUMMARY_CHARS = 300  #: summaries longer than this are folded in queue rows, and say so


def text(value: str | None) -> str:
    return visible(value) if value else ""


def pretty(value: Any) -> str:
    """JSON for people: indented, non-ASCII kept as itself, every control or format character shown as an escape."""
    return visible(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True), keep_newlines=True)


def moment(value: datetime | None) -> str:
    return to_text(value)[:19].replace("T", " ") + " UTC" if value else "-"


#: a request as the queue shows it: in full (the request page), or only its queue columns (the queue)
Queued = ApprovalRequest | QueueEntry


def quorum(request: Queued) -> str:
    approvals = request.approval_count if isinstance(request, QueueEntry) else len(request.approvals)
    return f"{approvals} of {request.approvals_required}"


def confidence(request: Queued) -> str:
    return "-" if request.confidence is None else f"{request.confidence:.2f}"


def queue_row(request: Queued, now: datetime | None = None) -> dict[str, Any]:
    summary = text(request.summary)
    claimer = request.claim_at(now) if now is not None else None
    return {
        "id": request.id,
        "url": f"/requests/{request.id}",
        "action": text(request.action),
        "summary": summary
        if len(summary) <= SUMMARY_CHARS
        else f"{summary[:SUMMARY_CHARS]} … ({len(summary)} characters)",
        "agent": text(request.agent_id) or "-",
        "confidence": confidence(request),
        "triggers": [text(t.detail) for t in request.triggers],
        "quorum": quorum(request),
        "priority": request.priority.value,
        "expires_at": to_text(request.expires_at),
        "expires": moment(request.expires_at),
        "claimed_by": text(claimer) if claimer else "",
        "claim": f"{text(claimer)} is reviewing" if claimer else "",
    }


CLAIM_FILTERS = (("mine", "claimed by me"), ("unclaimed", "unclaimed"))


@dataclass(frozen=True, kw_only=True, slots=True)
class Filters:
    action: str = ""
    agent: str = ""
    priority: str = ""
    claim: str = ""  #: "mine", "unclaimed", or "" (any)
    me: str = ""  #: who "mine" is
    now: datetime | None = None  #: when claims are judged (lapsed ones count as none)

    @classmethod
    def of(cls, params: Mapping[str, str], me: str = "") -> Filters:
        priority, claim = params.get("priority", ""), params.get("claim", "")
        return cls(
            action=params.get("action", ""),
            agent=params.get("agent", ""),
            priority=priority if priority in {p.value for p in Priority} else "",
            claim=claim if claim in dict(CLAIM_FILTERS) else "",
            me=me,
        )

    def keep(self, request: Queued) -> bool:
        claimer = request.claim_at(self.now) if self.now is not None else None
        return (
            (not self.action or request.action == self.action)
            and (not self.agent or (request.agent_id or "") == self.agent)
            and (not self.priority or request.priority.value == self.priority)
            and (self.claim != "mine" or claimer == self.me)
            and (self.claim != "unclaimed" or claimer is None)
        )


def queue(
    pending: Sequence[Queued],
    filters: Filters,
    now: datetime,
    row: Callable[[Queued, datetime], dict[str, Any]] = queue_row,
) -> dict[str, Any]:
    """The queue page's data: pending requests, most urgent first, then the nearest deadline; counts; filter
    choices as (value, as shown). Requests past their expiry are left out (closed by the next read or sweep).
    ``row``: ``queue_row``, or one that remembers rows already made (``Console.queue_row``)."""
    live = [r for r in pending if r.status is Status.PENDING and r.expires_at > now]
    live.sort(key=lambda r: (-r.priority.rank, r.expires_at, r.id))
    filters = dataclasses.replace(filters, now=now)
    shown = [r for r in live if filters.keep(r)]
    by_priority = {p.value: sum(r.priority is p for r in live) for p in reversed(Priority)}
    return {
        "rows": [row(r, now) for r in shown],
        "counts": {"pending": len(live), "shown": len(shown), "by_priority": by_priority},
        "choices": {
            "action": [(a, text(a)) for a in sorted({r.action for r in live})],
            "agent": [(a, text(a)) for a in sorted({r.agent_id for r in live if r.agent_id})],
            "priority": [(p.value, p.value) for p in reversed(Priority)],
            "claim": list(CLAIM_FILTERS),
        },
    }


@dataclass(frozen=True, kw_only=True, slots=True)
class Field:
    """One payload entry: the key, the value as pretty JSON, and whether it is folded (a preview shown first)."""

    key: str
    value: str
    folded: bool
    preview: str
    size: str


def payload_fields(payload: Mapping[str, Any]) -> list[Field]:
    fields = []
    for key in sorted(payload):
        value = pretty(payload[key])
        folded = len(value) > FOLD_CHARS or value.count("\n") >= FOLD_LINES
        fields.append(
            Field(
                key=text(str(key)),
                value=value,
                folded=folded,
                preview=value[:PREVIEW_CHARS].split("\n", 1)[0] if folded else "",
                size=f"{len(value):,} characters, {value.count(chr(10)) + 1:,} lines" if folded else "",
            )
        )
    return fields


def timeline(
    events: Sequence[Event], redaction: Redaction | None = None, payload: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    rows = []
    for event in events:
        data = (
            pretty(redaction.event_data(event.data, payload) if redaction else dict(event.data)) if event.data else ""
        )
        rows.append(
            {
                "seq": event.seq,
                "kind": event.kind.value,
                "at": moment(event.at),
                "data": data,
                "folded": len(data) > FOLD_CHARS or data.count("\n") >= EVENT_LINES,
                "preview": _gist(event.data),
                "says": event_sentence(event),
            }
        )
    return rows


def _gist(data: Mapping[str, Any]) -> str:
    """A line naming an event's fields, to show before its data is unfolded."""
    keys = ", ".join(text(str(k)) for k in list(data)[:8])
    return f"{keys}{', …' if len(data) > 8 else ''}"[:PREVIEW_CHARS]


def editable(payload: Mapping[str, Any]) -> str:
    """The payload as JSON for a reviewer to edit: indented, non-ASCII kept, and every control, format or separator
    character (a bidi override, a zero-width space) written as a JSON escape, so the text in the editor hides
    nothing and parses back to exactly the same payload."""
    document = json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True)
    return "".join(_json_escape(char) if is_active(char) and char != "\n" else char for char in document)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Change:
    """One top-level key of the payload a reviewer changed: what was asked, and what was approved."""

    key: str
    kind: str  #: "changed", "added" or "removed"
    before: str
    after: str


def changes(asked: Mapping[str, Any], approved: Mapping[str, Any]) -> list[Change]:
    """The keys whose values differ between the payload asked and the payload approved, in key order."""
    found = []
    for key in sorted(set(asked) | set(approved)):
        if key in asked and key in approved and asked[key] == approved[key]:
            continue
        kind = "changed" if key in asked and key in approved else "added" if key in approved else "removed"
        before = pretty(asked[key]) if key in asked else ""
        after = pretty(approved[key]) if key in approved else ""
        found.append(Change(key=text(str(key)), kind=kind, before=before, after=after))
    return found


#: What each kind of trigger means, for a reviewer who has never seen signoff.
TRIGGER_KINDS = {
    "confidence": "The agent was not sure enough of itself: its confidence is below the policy's threshold.",
    "rule": "A rule in the policy file matched this request; its name and the condition that matched follow.",
    "anomaly": "Unusual for this agent or action: a new action for the agent, or a number far from the usual range.",
    "fairness": "The agent flagged a fairness concern the policy asks a person to look at.",
    "default": "No rule decided it, so the policy's default outcome applied.",
    "guardrail": "A rule that always rejects matched.",
    "contradiction": "The request disagrees with data the operator trusts (a lookup table or database), or that"
    " data could not be read.",
}


def version(request: ApprovalRequest, now: datetime) -> str:
    """What a person reading the request page would notice changing: its status, its votes, its escalation, who is
    reviewing it. The page's live stream sends a new version when this changes."""
    claim = request.claim_at(now) or ""
    return f"{request.status.value}:{len(request.votes)}:{int(request.escalated_at is not None)}:{claim}"


def outcome(request: ApprovalRequest, now: datetime) -> str:
    """The request's state in one sentence, for the live banner."""
    votes = ", ".join(f"{text(v.reviewer)} voted {v.verdict.value}" for v in request.votes)
    if request.status is Status.PENDING:
        claimer = request.claim_at(now)
        claim = f"; {text(claimer)} is reviewing it" if claimer else ""
        return f"still pending, {quorum(request)} approvals" + (f" ({votes})" if votes else "") + claim
    by = f" by {request.decided_by.value}" if request.decided_by else ""
    changed = " with changes" if request.payload_changed else ""
    return f"{request.status.value}{changed}{by}" + (f" ({votes})" if votes else "")


def event_sentence(event: Event) -> str:
    """What an audit event says, in words (its data is shown beside it)."""
    data = event.data
    match event.kind.value:
        case "created":
            return f"{text(str(data.get('agent_id') or 'an agent'))} asked for {text(str(data.get('action', '')))}"
        case "triggered":
            return f"the policy's outcome: {text(str(data.get('outcome', '')))}"
        case "voted":
            comment = f": {text(str(data['comment']))}" if data.get("comment") else ""
            return f"{text(str(data.get('reviewer', '')))} voted {text(str(data.get('verdict', '')))}{comment}"
        case "decided":
            changed = " with changes" if data.get("approved_payload") is not None else ""
            return f"{text(str(data.get('status', '')))}{changed} by {text(str(data.get('by', '')))}"
        case "notified":
            return f"shown to people by {text(str(data.get('notifier', 'a notifier')))}"
        case "refused":
            return f"{text(str(data.get('who', '')))} was refused a vote: {text(str(data.get('reason', '')))}"
        case "expired":
            return "nobody decided in time: expired, never to run"
        case "cancelled":
            return f"withdrawn: {text(str(data.get('reason', '')))}"
        case "claimed":
            until = text(str(data.get("until", "")))
            return f"{text(str(data.get('reviewer', '')))} is reviewing it (claimed until {until})"
        case "released":
            return f"{text(str(data.get('reviewer', '')))} stopped reviewing it"
        case "revealed":
            return (
                f"{text(str(data.get('reviewer', '')))} was shown its masked values ({text(str(data.get('via', '')))})"
            )
        case "consumed":
            return "the approval was used"
        case "escalated":
            return f"escalated to {text(str(data.get('to', '')))}"
        case _:
            return text(event.kind.value)


def detail(
    request: ApprovalRequest, events: Sequence[Event], now: datetime, *, redaction: Redaction | None = None
) -> dict[str, Any]:
    """The request page's values; with ``redaction``, the payloads as ``[redact]`` masks them, the triggers scrubbed
    of the masked values, and no digest when a value is masked (empty: the page says it is withheld)."""
    shown = redaction.request(request) if redaction else request
    return {
        **queue_row(shown, now),
        "claimed_at": moment(request.claimed_at) if request.claim_at(now) else "",
        "claim_until": moment(request.claim_until) if request.claim_at(now) else "",
        "summary": text(request.summary),
        "status": request.status.value,
        "decided_by": request.decided_by.value if request.decided_by else "",
        "decided_at": moment(request.decided_at),
        "created": moment(request.created_at),
        "note": text(request.note),
        "flags": [text(f) for f in request.flags],
        "trigger_list": [
            {"kind": t.kind.value, "detail": text(t.detail), "means": TRIGGER_KINDS.get(t.kind.value, "")}
            for t in shown.triggers
        ],
        "version": version(request, now),
        "approvers": [text(a) for a in request.approvers],
        "votes": [
            {"reviewer": text(v.reviewer), "verdict": v.verdict.value, "comment": text(v.comment), "at": moment(v.at)}
            for v in request.votes
        ],
        "payload_sha256": shown.payload_sha256,
        "payload": payload_fields(shown.payload),
        "editable": editable(shown.payload),
        "payload_changed": request.payload_changed,
        "approved_payload": payload_fields(shown.approved_payload) if shown.approved_payload is not None else [],
        "approved_sha256": shown.approved_sha256,
        "changes": changes(shown.payload, shown.approved_payload) if shown.approved_payload is not None else [],
        "approvals_required": request.approvals_required,
        "can_change": request.approvals_required == 1 and not request.action.startswith(FIXED_PAYLOAD_PREFIX),
        "events": timeline(events, redaction, request.payload),
        "pending": request.status is Status.PENDING,
    }
