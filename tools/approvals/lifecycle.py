"""The request lifecycle as pure functions: who may do what to a request, and what it changes.

Each step returns a ``Change`` that a Store applies while holding its write lock, so the checks here
and the write that follows are one compare-and-set. Raising stops the write: nothing changes.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import datetime, timedelta

from signoff.storage import (
    ApprovalRequest,
    Conflict,
    DecidedBy,
    EventKind,
    Forbidden,
    InvalidInput,
    NewEvent,
    Status,
    Transition,
    Verdict,
    Vote,
)
from signoff.storage.approvals.store import Change
from signoff.storage.canonical import payload_sha256
from signoff.storage.records import Claim, JsonObject

MAX_REVIEWER_CHARS = 200
MAX_COMMENT_CHARS = 2000
MAX_REASON_CHARS = 2000


def creation_events(request: ApprovalRequest) -> tuple[NewEvent, ...]:
    """``created`` and ``triggered``, plus ``decided`` when the policy decided at once."""
    at = request.created_at
    created = NewEvent(
        kind=EventKind.CREATED,
        request_id=request.id,
        at=at,
        data={
            "action": request.action,
            "summary": request.summary,
            "payload": dict(request.payload),
            "payload_sha256": request.payload_sha256,
            "confidence": request.confidence,
            "flags": list(request.flags),
            "agent_id": request.agent_id,
            "idempotency_key": request.idempotency_key,
            "approvals_required": request.approvals_required,
            "priority": request.priority.value,
            "expires_at": request.expires_at.isoformat(),
            "channel": request.channel,
            "approvers": list(request.approvers),
            "escalate_at": request.escalate_at.isoformat() if request.escalate_at else None,
            "escalate_to": request.escalate_to,
            "policy_version": request.policy_version,
            "model": request.model,
            "model_version": request.model_version,
            "model_decision_id": request.model_decision_id,
        },
    )
    triggered = NewEvent(
        kind=EventKind.TRIGGERED,
        request_id=request.id,
        at=at,
        data={
            "outcome": request.status.value,
            "triggers": [{"kind": t.kind, "detail": t.detail} for t in request.triggers],
        },
    )
    if request.status is Status.PENDING:
        return created, triggered
    decided = NewEvent(
        kind=EventKind.DECIDED,
        request_id=request.id,
        at=at,
        data={"status": request.status.value, "by": "policy"},
    )
    return created, triggered, decided


def same_name(requester: str, reviewer: str) -> bool:
    return normal_name(requester) == normal_name(reviewer)


def normal_name(name: str) -> str:
    """Names compare after NFKC and case folding, so a full-width or padded copy of a name is that name."""
    return unicodedata.normalize("NFKC", name).strip().casefold()


def vote(
    reviewer: str,
    verdict: Verdict,
    comment: str | None,
    now: datetime,
    *,
    reviewer_ids: tuple[str, ...] = (),
    same_person: Callable[[str, str], bool] = same_name,
    approved_payload: JsonObject | None = None,
) -> Change:
    """A reviewer's vote: one rejection vetoes; ``approvals_required`` distinct people approve.

    ``reviewer_ids`` are the reviewer's other names (a Slack user id). ``same_person(a, b)`` says whether two
    names are one person; the requester may not vote, and nobody votes twice under two names.

    ``approved_payload`` approves with changes: the request is approved with that payload instead of the one
    asked. Only a vote that decides alone may change the payload (a request one person approves): with a quorum,
    the other approvers would be counted for a payload they never saw. The caller has checked the payload
    against the policy (``ApprovalService.vote``); the ``decided`` event records it with its digest.
    """
    reviewer = reviewer.strip()
    comment = comment.strip() if comment else None
    if not reviewer:
        raise InvalidInput("reviewer is empty: say who is deciding (for example --as alice)")
    if len(reviewer) > MAX_REVIEWER_CHARS:
        raise InvalidInput(f"reviewer name is {len(reviewer)} characters; the limit is {MAX_REVIEWER_CHARS}")
    if verdict is Verdict.REJECT and not comment:
        raise InvalidInput("a rejection needs a reason: give a comment that tells the agent why")
    if comment and len(comment) > MAX_COMMENT_CHARS:
        raise InvalidInput(f"comment is {len(comment)} characters; the limit is {MAX_COMMENT_CHARS}")
    if approved_payload is not None and verdict is not Verdict.APPROVE:
        raise InvalidInput("only an approval can change the payload: reject without one, saying what to change")

    def change(request: ApprovalRequest) -> Transition:
        if (expired := _expire_if_due(request, now)) is not None:
            return expired
        _ensure_pending(request)
        if approved_payload is not None and request.approvals_required != 1:
            raise InvalidInput(
                f"request {request.id} needs {request.approvals_required} approvals, and approving with changes"
                " works only on a request one person decides (the others would approve a payload they never saw):"
                " approve it as asked, or reject it with the change you want in the reason so the agent asks again"
            )
        names = (reviewer, *reviewer_ids)
        if request.agent_id is not None and any(same_person(request.agent_id, name) for name in names):
            raise Forbidden(
                f"{reviewer} asked for request {request.id} and cannot vote on it; another person must review it"
                " (the requester may cancel it instead)"
            )
        for earlier in request.votes:
            if any(same_person(seen, name) for seen in (earlier.reviewer, *earlier.reviewer_ids) for name in names):
                raise Conflict(
                    f"{earlier.reviewer} already voted {earlier.verdict} on request {request.id}; each reviewer's"
                    " vote counts once"
                )
        ballot = Vote(reviewer=reviewer, verdict=verdict, comment=comment, at=now, reviewer_ids=reviewer_ids)
        voted = NewEvent(
            kind=EventKind.VOTED,
            request_id=request.id,
            at=now,
            data={
                "reviewer": reviewer,
                "reviewer_ids": list(reviewer_ids),
                "verdict": verdict.value,
                "comment": comment,
            },
        )
        approvals = len(request.approvals) + (verdict is Verdict.APPROVE)
        if verdict is Verdict.REJECT:
            outcome = Status.REJECTED
        elif approvals >= request.approvals_required:
            outcome = Status.APPROVED
        else:
            return Transition(vote=ballot, events=(voted,), notify=True)
        data: dict[str, object] = {"status": outcome.value, "by": "human"}
        if approved_payload is not None:
            data["approved_payload"] = dict(approved_payload)
            data["approved_payload_sha256"] = payload_sha256(request.action, approved_payload)
        decided = NewEvent(kind=EventKind.DECIDED, request_id=request.id, at=now, data=data)
        return Transition(
            status=outcome,
            decided_by=DecidedBy.HUMAN,
            decided_at=now,
            vote=ballot,
            events=(voted, decided),
            notify=True,
            approved_payload=approved_payload,
        )

    return change


def cancel(reason: str, now: datetime) -> Change:
    """Withdraw a pending request; nothing may run afterwards."""
    reason = reason.strip()
    if not reason:
        raise InvalidInput("reason is empty: say why the request is withdrawn")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidInput(f"reason is {len(reason)} characters; the limit is {MAX_REASON_CHARS}")

    def change(request: ApprovalRequest) -> Transition:
        if (expired := _expire_if_due(request, now)) is not None:
            return expired
        _ensure_pending(request)
        event = NewEvent(kind=EventKind.CANCELLED, request_id=request.id, at=now, data={"reason": reason})
        return Transition(status=Status.CANCELLED, decided_at=now, note=reason, events=(event,), notify=True)

    return change


def expire(now: datetime) -> Change:
    """Close a pending request whose time ran out. It fails closed: expired is never approved."""

    def change(request: ApprovalRequest) -> Transition:
        expired = _expire_if_due(request, now)
        if expired is None:
            _ensure_pending(request)
            raise Conflict(f"request {request.id} does not expire until {request.expires_at.isoformat()}")
        return expired

    return change


def lapses_at(request: ApprovalRequest, receipt_ttl_seconds: int | None) -> datetime | None:
    """When an approval stops allowing anything: when its receipt expires, ``receipt_ttl_seconds`` after the
    decision when the policy sets it, else when the request itself expires. None unless approved."""
    if request.status is not Status.APPROVED or request.decided_at is None:
        return None
    if receipt_ttl_seconds is None:
        return request.expires_at
    try:
        return request.decided_at + timedelta(seconds=receipt_ttl_seconds)
    except OverflowError:  # a TTL beyond the year 9999: it never lapses
        return datetime.max.replace(tzinfo=request.decided_at.tzinfo)


def lapsed(request: ApprovalRequest, now: datetime, receipt_ttl_seconds: int | None) -> datetime | None:
    """The moment an approved request's approval lapsed, if it has by ``now`` (else None): after it, nothing may
    act on it (its receipt is refused, it cannot be used, a model change is not applied)."""
    until = lapses_at(request, receipt_ttl_seconds)
    return until if until is not None and now >= until else None


def actionable(request: ApprovalRequest, now: datetime, receipt_ttl_seconds: int | None) -> bool:
    """Whether an agent may act on the request now: approved, not lapsed, and not a single-use approval used."""
    return (
        request.status is Status.APPROVED
        and request.consumed_at is None
        and lapsed(request, now, receipt_ttl_seconds) is None
    )


def consume(now: datetime, receipt_ttl_seconds: int | None = None) -> Change:
    """Use an approval once (permission prompts, model changes): an unused approval that has not lapsed becomes
    used; anything else is refused."""

    def change(request: ApprovalRequest) -> Transition:
        if request.status is not Status.APPROVED:
            raise Conflict(f"request {request.id} is {request.status}, not approved; it cannot be used")
        if request.consumed_at is not None:
            raise Conflict(f"request {request.id} was already used at {request.consumed_at.isoformat()}")
        if (gone := lapsed(request, now, receipt_ttl_seconds)) is not None:
            raise Conflict(
                f"the approval of request {request.id} lapsed at {gone.isoformat()}; it cannot be used: ask for a"
                " new approval"
            )
        event = NewEvent(kind=EventKind.CONSUMED, request_id=request.id, at=now)
        return Transition(consumed_at=now, events=(event,))

    return change


def refusal(who: str, reason: str, now: datetime) -> Change:
    """Record that someone was refused a vote (audit only: the request itself does not change)."""

    def change(request: ApprovalRequest) -> Transition:
        event = NewEvent(kind=EventKind.REFUSED, request_id=request.id, at=now, data={"who": who, "reason": reason})
        return Transition(events=(event,))

    return change


def revealing(who: str, via: str, now: datetime) -> Change:
    """Record that a reviewer was shown the request's masked values (audit only: the request does not change)."""

    def change(request: ApprovalRequest) -> Transition:
        event = NewEvent(kind=EventKind.REVEALED, request_id=request.id, at=now, data={"reviewer": who, "via": via})
        return Transition(events=(event,))

    return change


def escalate(now: datetime) -> Change:
    """Show a request nobody decided in time to its escalation target, once. Expiry still applies as before."""

    def change(request: ApprovalRequest) -> Transition:
        if (expired := _expire_if_due(request, now)) is not None:
            return expired
        _ensure_pending(request)
        if request.escalate_at is None or request.escalated_at is not None or now < request.escalate_at:
            raise Conflict(f"request {request.id} is not due for escalation")
        event = NewEvent(kind=EventKind.ESCALATED, request_id=request.id, at=now, data={"to": request.escalate_to})
        return Transition(escalated_at=now, events=(event,), notify=True)

    return change


def claim(reviewer: str, now: datetime, seconds: float) -> Change:
    """Say "I am looking at this" until ``now + seconds``. The request stays pending and anyone may still vote;
    while another person's claim stands it is refused (Conflict, naming them); the claimer's own claim is renewed.
    Notifiers are told (Slack's message then says who is reviewing, and until when)."""
    reviewer = reviewer.strip()
    if not reviewer:
        raise InvalidInput("reviewer is empty: say who is claiming it")

    def change(request: ApprovalRequest) -> Transition:
        if (expired := _expire_if_due(request, now)) is not None:
            return expired
        _ensure_pending(request)
        holder = request.claim_at(now)
        if holder is not None and normal_name(holder) != normal_name(reviewer):
            lapses = request.claim_until.isoformat() if request.claim_until else "?"
            raise Conflict(f"{holder} is reviewing request {request.id} (claimed until {lapses}); you may still vote")
        until = min(now + timedelta(seconds=seconds), request.expires_at)
        event = NewEvent(
            kind=EventKind.CLAIMED,
            request_id=request.id,
            at=now,
            data={"reviewer": reviewer, "until": until.isoformat()},
        )
        return Transition(claim=Claim(by=reviewer, at=now, until=until), events=(event,), notify=True)

    return change


def release(reviewer: str, now: datetime) -> Change:
    """Let go of one's own claim; refused (Conflict) when one holds none."""

    def change(request: ApprovalRequest) -> Transition:
        if (expired := _expire_if_due(request, now)) is not None:
            return expired
        _ensure_pending(request)
        holder = request.claim_at(now)
        if holder is None or normal_name(holder) != normal_name(reviewer.strip()):
            raise Conflict(f"{reviewer} holds no claim on request {request.id}; nothing was changed")
        event = NewEvent(kind=EventKind.RELEASED, request_id=request.id, at=now, data={"reviewer": holder})
        return Transition(release=True, events=(event,), notify=True)

    return change


def is_overdue(request: ApprovalRequest, now: datetime) -> bool:
    return request.status is Status.PENDING and now >= request.expires_at


def _expire_if_due(request: ApprovalRequest, now: datetime) -> Transition | None:
    if not is_overdue(request, now):
        return None
    note = f"no decision before {request.expires_at.isoformat()}"
    event = NewEvent(
        kind=EventKind.EXPIRED,
        request_id=request.id,
        at=now,
        data={"expires_at": request.expires_at.isoformat(), "note": note},
    )
    return Transition(status=Status.EXPIRED, decided_at=now, note=note, events=(event,), notify=True)


def _ensure_pending(request: ApprovalRequest) -> None:
    if request.status is not Status.PENDING:
        raise Conflict(f"request {request.id} {outcome_phrase(request)}; nothing was changed")


def outcome_phrase(request: ApprovalRequest) -> str:
    """What happened to a decided request, in words: 'was already approved by alice, bob at …'."""
    at = request.decided_at.isoformat() if request.decided_at else "an unknown time"
    match request.status:
        case Status.PENDING:
            return "is still pending"
        case Status.APPROVED | Status.REJECTED if request.decided_by is DecidedBy.POLICY:
            return f"was already {request.status} by policy at {at}"
        case Status.APPROVED:
            names = ", ".join(v.reviewer for v in request.approvals)
            changes = " with changes" if request.payload_changed else ""
            return f"was already approved{changes} by {names} at {at}"
        case Status.REJECTED:
            veto = next((v for v in request.votes if v.verdict is Verdict.REJECT), None)
            who = f"{veto.reviewer} ({veto.comment})" if veto else "a reviewer"
            return f"was already rejected by {who} at {at}"
        case Status.EXPIRED:
            return f"already expired at {at} without a decision"
        case Status.CANCELLED:
            return f"was already cancelled at {at} ({request.note})"
