"""What agents see: the status object and the one sentence that tells them what to do next."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field

from signoff.storage import ApprovalRequest, DecidedBy, InvalidInput, Order, Status, Verdict
from signoff.storage.records import Cursor
from signoff.storage.redaction import Redaction
from signoff.storage.timefmt import from_text, to_text
from signoff.tools.approvals import lifecycle
from signoff.tools.approvals.receipts import Receipt
from signoff.tools.wire import WireModel


class TriggerView(WireModel):
    kind: Literal["confidence", "rule", "anomaly", "fairness", "default", "guardrail", "contradiction"]
    detail: str


class VoteView(WireModel):
    reviewer: str
    verdict: Literal["approve", "reject"]
    comment: str | None
    at: datetime


class ModelLink(WireModel):
    """The model behind a request, as its agent named it with request_approval."""

    name: str
    version: str
    decision_id: str | None = Field(description="The decision_id resolve_model returned, when the agent passed it")

    @classmethod
    def of(cls, request: ApprovalRequest) -> ModelLink | None:
        if request.model is None or request.model_version is None:
            return None
        return cls(name=request.model, version=request.model_version, decision_id=request.model_decision_id)


class ApprovalStatus(WireModel):
    """The state of one approval request."""

    request_id: str
    status: Literal["pending", "approved", "rejected", "expired", "cancelled"]
    actionable: bool = Field(
        default=False,
        description=(
            "True only while you may perform the action: status 'approved', the approval has not lapsed"
            " (actionable_until) and, if it allowed one use, it was not used. Act only when status is 'approved'"
            " AND actionable is true"
        ),
    )
    actionable_until: datetime | None = Field(
        default=None,
        description=(
            "When approved: the moment the approval lapses (the receipt's expires_at). After it, do not act: request"
            " a new approval. Null when not approved"
        ),
    )
    decided_by: Literal["policy", "human"] | None
    action: str
    summary: str
    agent_id: str | None
    triggers: list[TriggerView]
    votes: list[VoteView]
    approvals_required: int
    priority: Literal["low", "normal", "high", "urgent"] = Field(
        description="How soon reviewers should look: urgent, high, normal or low (set by the policy's rules)"
    )
    payload_sha256: str | None = Field(
        description="SHA-256 of the canonical action+payload as asked; null in a view that masks a field ([redact])"
    )
    payload_changed: bool = Field(
        default=False,
        description="True when a reviewer approved it with changes: act with approved_payload, not your payload",
    )
    approved_payload: dict[str, Any] | None = Field(
        default=None,
        description="When approved with changes: the payload to act with (the receipt binds this one); else null",
    )
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    escalated_at: datetime | None = Field(default=None, description="When it was escalated, if it was")
    claimed_by: str | None = Field(
        default=None, description="The reviewer looking at it now, if one said so (still pending: do not act yet)"
    )
    claimed_at: datetime | None = Field(default=None, description="When claimed_by said they are looking at it")
    policy_version: str | None = Field(
        default=None, description="The version (a hash of the policy file) of the policy that decided this request"
    )
    model: ModelLink | None = Field(
        default=None, description="The model version behind the request, when the agent named one; else null"
    )
    message: str = Field(description="What to do next")
    receipt: Receipt | None = Field(
        default=None,
        description=(
            "When approved and actionable: signed proof to check with verify_receipt right before acting; null"
            " otherwise (a lapsed or used approval gets none)"
        ),
    )

    @classmethod
    def of(
        cls,
        request: ApprovalRequest,
        receipt: Receipt | None = None,
        *,
        stopping: bool = False,
        now: datetime | None = None,
        receipt_ttl_seconds: int | None = None,
    ) -> ApprovalStatus:
        """``now`` decides whether a claim and an approval have lapsed (the present moment when not given);
        ``receipt_ttl_seconds`` is the policy's (an approval lapses that long after its decision; None: with its
        request). A ``receipt`` is shown only while the approval is actionable."""
        now = now or datetime.now(UTC)
        claimer = request.claim_at(now)
        actionable = lifecycle.actionable(request, now, receipt_ttl_seconds)
        return cls(
            claimed_by=claimer,
            claimed_at=request.claimed_at if claimer else None,
            receipt=receipt if actionable else None,
            actionable=actionable,
            actionable_until=lifecycle.lapses_at(request, receipt_ttl_seconds),
            request_id=request.id,
            status=request.status.value,
            decided_by=request.decided_by.value if request.decided_by else None,
            action=request.action,
            summary=request.summary,
            agent_id=request.agent_id,
            triggers=[TriggerView(kind=t.kind.value, detail=t.detail) for t in request.triggers],
            votes=[
                VoteView(reviewer=v.reviewer, verdict=v.verdict.value, comment=v.comment, at=v.at)
                for v in request.votes
            ],
            approvals_required=request.approvals_required,
            priority=request.priority.value,
            payload_sha256=request.payload_sha256 or None,  # empty in a request shown under [redact]
            payload_changed=request.payload_changed,
            approved_payload=dict(request.approved_payload) if request.approved_payload is not None else None,
            created_at=request.created_at,
            expires_at=request.expires_at,
            decided_at=request.decided_at,
            escalated_at=request.escalated_at,
            policy_version=request.policy_version,
            model=ModelLink.of(request),
            message=(
                stopping_step(request)
                if stopping and request.status is Status.PENDING
                else next_step(request, now=now, receipt_ttl_seconds=receipt_ttl_seconds)
            ),
        )

    def masked(self, request: ApprovalRequest, redaction: Redaction) -> ApprovalStatus:
        """This status (of ``request``) as ``[redact]`` lets anyone but the agent that asked see it: the approved
        payload masked and the triggers scrubbed of the masked values, as ``Redaction.request`` shows the request;
        and when a value is masked, no digest and no receipt (the receipt's digest is the approved payload's): either
        would let a reader test guesses of the masked value."""
        shown = redaction.request(request)
        if shown is request:
            return self
        update: dict[str, Any] = {
            "approved_payload": dict(shown.approved_payload) if shown.approved_payload is not None else None,
            "triggers": [TriggerView(kind=t.kind.value, detail=t.detail) for t in shown.triggers],
        }
        if not shown.payload_sha256:
            update |= {"payload_sha256": None, "receipt": None}
        return self.model_copy(update=update)


class ReceiptCheck(WireModel):
    """Whether a receipt approves exactly this action and payload."""

    valid: bool
    reason: str | None = Field(description="Why not, when not valid")


class RequestList(WireModel):
    """A page of approval history, newest first."""

    items: list[ApprovalStatus]
    next_cursor: str | None = Field(description="Pass as cursor to get the next page; null on the last page")


def next_step(request: ApprovalRequest, *, now: datetime | None = None, receipt_ttl_seconds: int | None = None) -> str:
    """One sentence telling the agent what to do now (``now``: the present moment when not given; an approval
    lapses ``receipt_ttl_seconds`` after its decision, or with its request when None)."""
    now = now or datetime.now(UTC)
    gone = lifecycle.lapsed(request, now, receipt_ttl_seconds)
    match request.status:
        case Status.APPROVED if gone is not None:
            return (
                f"{_approved_by(request)}, but this approval lapsed at {to_text(gone)}: do not perform this action."
                " If it is still needed, call request_approval again with a new idempotency_key (the same key"
                " returns this request)."
            )
        case Status.APPROVED if request.consumed_at is not None:
            return (
                f"{_approved_by(request)}, and this approval allowed one use, made at {to_text(request.consumed_at)}:"
                " do not perform this action again. If it is needed again, call request_approval with a new"
                " idempotency_key."
            )
        case Status.APPROVED if request.payload_changed:
            return (
                f"{_approved_by(request)}: go ahead with exactly this action and approved_payload (the reviewer"
                " changed your payload; the receipt binds the changed one), not the payload you asked with."
                f"{_until(request, receipt_ttl_seconds)}"
            )
        case Status.APPROVED:
            return (
                f"{_approved_by(request)}: go ahead with exactly this action and payload; "
                f"different arguments need a new request.{_until(request, receipt_ttl_seconds)}"
            )
        case Status.REJECTED if request.decided_by is DecidedBy.POLICY:
            reasons = "; ".join(t.detail for t in request.triggers if t.kind == "guardrail") or "a policy rule"
            return f"Rejected by policy ({reasons}): do not perform this action; tell the user why."
        case Status.REJECTED:
            veto = next((v for v in request.votes if v.verdict is Verdict.REJECT), None)
            why = f": {veto.comment}" if veto and veto.comment else ""
            who = veto.reviewer if veto else "a reviewer"
            return f"Rejected by {who}{why}. Do not perform this action; tell the user or change the plan."
        case Status.EXPIRED:
            return (
                "Expired without a decision: do not perform this action. "
                "If it is still needed, call request_approval again."
            )
        case Status.CANCELLED:
            return f"Cancelled ({request.note}): do not perform this action."
        case Status.PENDING:
            return (
                f"Waiting for a human ({len(request.approvals)} of {request.approvals_required} approvals; "
                f"expires {to_text(request.expires_at)}). Do not perform the action yet: call get_status with "
                f"request_id={request.id} and wait_seconds=60 to wait for the decision."
            )


def stopping_step(request: ApprovalRequest) -> str:
    """What a pending request's waiter is told when the server stops under it."""
    return (
        f"This signoff server is stopping, so it answered before a decision; the request is still waiting for a "
        f"human ({len(request.approvals)} of {request.approvals_required} approvals). Do not perform the action "
        f"yet: call get_status with request_id={request.id} again, on this server once it is back or on another "
        "signoff server using the same database."
    )


def _approved_by(request: ApprovalRequest) -> str:
    changes = " with changes" if request.payload_changed else ""
    who = "policy" if request.decided_by is DecidedBy.POLICY else _names(request, Verdict.APPROVE)
    return f"Approved{changes} by {who}"


def _until(request: ApprovalRequest, receipt_ttl_seconds: int | None) -> str:
    until = lifecycle.lapses_at(request, receipt_ttl_seconds)
    return f" Act before {to_text(until)}, when this approval lapses." if until is not None else ""


def _names(request: ApprovalRequest, verdict: Verdict) -> str:
    return ", ".join(v.reviewer for v in request.votes if v.verdict is verdict) or "a reviewer"


def encode_cursor(cursor: Cursor | None) -> str | None:
    """A page's end as an opaque string: ``[created_at, id]`` (newest first) or ``["priority", rank, expires_at,
    id]`` (by priority), as JSON in URL-safe base64."""
    if cursor is None:
        return None
    match cursor:
        case (int() as rank, datetime() as expires_at, str() as request_id):
            parts: list[object] = ["priority", rank, to_text(expires_at), request_id]
        case (datetime() as created_at, str() as request_id):
            parts = [to_text(created_at), request_id]
    raw = json.dumps(parts).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


MAX_CURSOR_LENGTH = 512  #: the cursors this server issues are under 120 characters


def decode_cursor(text: str, order: Order = Order.NEWEST) -> Cursor:
    """The cursor ``encode_cursor`` wrote, for a query in ``order``; InvalidInput if it is not one, or belongs to
    the other order."""
    invalid = InvalidInput("cursor is not one this server issued: pass next_cursor from the previous page, or omit it")
    if len(text) > MAX_CURSOR_LENGTH:
        raise invalid
    try:
        padded = text + "=" * (-len(text) % 4)
        parts = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(parts, list):
            raise invalid
        if parts and parts[0] == "priority":
            _, rank, expires_at, request_id = parts
            if not (isinstance(rank, int) and isinstance(expires_at, str) and isinstance(request_id, str)):
                raise invalid
            cursor: Cursor = (rank, from_text(expires_at), request_id)
        else:
            created_at, request_id = parts
            if not (isinstance(created_at, str) and isinstance(request_id, str)):
                raise invalid
            cursor = (from_text(created_at), request_id)
    except (ValueError, TypeError, binascii.Error, RecursionError) as exc:  # RecursionError: deeply nested JSON
        raise invalid from exc
    if (len(cursor) == 3) != (order is Order.PRIORITY):
        raise InvalidInput(
            f"this cursor is from a list in another order: pass order={'newest' if len(cursor) == 2 else 'priority'}"
            " with it, as on the page that returned it, or omit the cursor"
        )
    return cursor
