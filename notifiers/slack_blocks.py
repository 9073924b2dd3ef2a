"""Requests as Slack Block Kit messages: pure functions, no I/O. Slack is a view; the database decides."""

from __future__ import annotations

import json
from datetime import datetime

from signoff.storage import ApprovalRequest, DecidedBy, Status, Verdict, Vote
from signoff.storage.canonical import is_number
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

APPROVE_ACTION = "signoff_approve"
REJECT_ACTION = "signoff_reject"
ACTIONS_BLOCK = "signoff_actions"
REJECT_CALLBACK = "signoff_reject_reason"
REASON_BLOCK = "reason"
REASON_INPUT = "text"

PAYLOAD_EXCERPT_CHARS = 1500
SECTION_CHARS = 2900  # Slack allows 3000 in a section's text
AMOUNT_KEYS = ("amount", "total", "value", "price")
ZERO_WIDTH_FENCE = "`\u200b``"


def escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters; everything a user typed is escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_date(moment: datetime) -> str:
    """A date Slack shows in each reader's time zone, with ISO text as the fallback."""
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|{moment.isoformat()}>"


def payload_excerpt(request: ApprovalRequest) -> str:
    """The payload as a code block, escaped first and then cut, so the section stays within Slack's limit."""
    text = json.dumps(dict(request.payload), indent=2, sort_keys=True, ensure_ascii=False)
    fenced = escape(text).replace("```", ZERO_WIDTH_FENCE)  # a payload must not close the code block
    if len(fenced) <= PAYLOAD_EXCERPT_CHARS:
        return f"```{fenced}```"
    kept = fenced[:PAYLOAD_EXCERPT_CHARS]
    kept = kept[: kept.rfind("&")] if kept.rfind("&") > kept.rfind(";") else kept  # never split an entity
    note = f"\n_Payload cut ({len(text):,} characters in all). See all of it with `signoff review show {request.id}`._"
    return f"```{kept}```{note}"


def headline(request: ApprovalRequest) -> str:
    """The plain-text fallback: what notifications and screen readers show."""
    who = escape(request.agent_id or "an agent")
    match request.status:
        case Status.PENDING:
            return cut(f"Approval needed: {who} wants to {escape(request.action)}: {escape(request.summary)}", 2900)
        case _:
            verdict = verdict_text(request, mrkdwn=False)
            return cut(f"{escape(request.action)} by {who} is {request.status}: {verdict}", 2900)


def verdict_text(request: ApprovalRequest, *, mrkdwn: bool = True) -> str:
    at = slack_date(request.decided_at) if (mrkdwn and request.decided_at) else str(request.decided_at or "")
    approvers = ", ".join(v.reviewer for v in request.votes if v.verdict is Verdict.APPROVE)
    match request.status:
        case Status.APPROVED if request.decided_by is DecidedBy.POLICY:
            return f"approved by policy at {at}"
        case Status.APPROVED:
            return f"approved by {escape(approvers)} at {at}"
        case Status.REJECTED:
            veto = next((v for v in request.votes if v.verdict is Verdict.REJECT), None)
            if veto is None:
                return f"rejected by policy at {at}"
            return f"rejected by {escape(veto.reviewer)} at {at}: {escape(veto.comment or '')}"
        case Status.EXPIRED:
            return f"expired at {at} without a decision; it will not run"
        case Status.CANCELLED:
            return f"cancelled by the agent at {at}: {escape(request.note or '')}"
        case Status.PENDING:
            escalated = " (escalated)" if request.escalated_at else ""
            return f"waiting{escalated}: {len(request.approvals)} of {request.approvals_required} approvals"


_ICONS = {
    Status.PENDING: ":raising_hand:",
    Status.APPROVED: ":white_check_mark:",
    Status.REJECTED: ":no_entry:",
    Status.EXPIRED: ":hourglass:",
    Status.CANCELLED: ":heavy_multiplication_x:",
}


def request_blocks(request: ApprovalRequest) -> list[Block]:
    """The whole message for the request's current state; Approve/Reject only while it is pending."""
    pending = request.status is Status.PENDING
    title = "Approval needed" if pending else request.status.value.capitalize()
    blocks: list[Block] = [
        HeaderBlock(text=cut(f"{title}: {request.action}", 150)),
        SectionBlock(
            text=MarkdownTextObject(text=cut(escape(request.summary), SECTION_CHARS)),
            fields=[MarkdownTextObject(text=cut(text, 1900)) for text in _fields(request)],
        ),
        SectionBlock(text=MarkdownTextObject(text=cut(_why(request), SECTION_CHARS))),
        SectionBlock(text=MarkdownTextObject(text=payload_excerpt(request))),
        SectionBlock(
            text=MarkdownTextObject(text=cut(f"{_ICONS[request.status]} *{verdict_text(request)}*", SECTION_CHARS))
        ),
    ]
    if pending:
        blocks.append(
            ActionsBlock(
                block_id=ACTIONS_BLOCK,
                elements=[
                    ButtonElement(text="Approve", action_id=APPROVE_ACTION, value=request.id, style="primary"),
                    ButtonElement(text="Reject", action_id=REJECT_ACTION, value=request.id, style="danger"),
                ],
            )
        )
    blocks.append(
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=f"`{request.id}` · payload sha256 `{request.payload_sha256[:12]}…` · "
                    f"`signoff review show {request.id}`"
                )
            ]
        )
    )
    return blocks


def _fields(request: ApprovalRequest) -> list[str]:
    fields = [
        f"*Requested by*\n{escape(request.agent_id or 'an agent (no agent_id)')}",
        f"*Approvals*\n{len(request.approvals)} of {request.approvals_required}",
        f"*Priority*\n{request.priority}",
        f"*Expires*\n{slack_date(request.expires_at)}",
    ]
    if request.confidence is not None:
        fields.append(f"*Agent confidence*\n{request.confidence:.2f}")
    amount = next((request.payload[k] for k in AMOUNT_KEYS if is_number(request.payload.get(k))), None)
    if amount is not None:
        currency = request.payload.get("currency")
        fields.append(f"*Amount*\n{amount:,}" + (f" {escape(str(currency))}" if isinstance(currency, str) else ""))
    return fields


def _why(request: ApprovalRequest) -> str:
    lines = [f"• _{t.kind}_: {escape(t.detail)}" for t in request.triggers]
    return "*Why you are asked*\n" + "\n".join(lines)


def escalation_note(request: ApprovalRequest, mention: str | None) -> str:
    """The note that tells the escalation target a request is still waiting."""
    who = f"{mention} " if mention else ""
    return (
        f"{who}:rotating_light: Escalated: {escape(request.agent_id or 'an agent')} has waited since "
        f"{slack_date(request.created_at)} for {escape(request.action)} ({request.id}); "
        f"it expires {slack_date(request.expires_at)}."
    )


def vote_reply(request: ApprovalRequest, vote: Vote) -> str:
    """The thread reply that records one vote."""
    approvals = sum(1 for v in request.votes[: request.votes.index(vote) + 1] if v.verdict is Verdict.APPROVE)
    if vote.verdict is Verdict.APPROVE:
        return f"{escape(vote.reviewer)} approved ({approvals} of {request.approvals_required})" + (
            f": {escape(vote.comment)}" if vote.comment else ""
        )
    return f"{escape(vote.reviewer)} rejected: {escape(vote.comment or '')}"


def reject_modal(request_id: str, channel: str) -> View:
    """The modal that asks a reviewer why they reject; the reason is required."""
    return View(
        type="modal",
        callback_id=REJECT_CALLBACK,
        private_metadata=json.dumps({"request_id": request_id, "channel": channel}),
        title=PlainTextObject(text="Reject request"),
        submit=PlainTextObject(text="Reject"),
        close=PlainTextObject(text="Cancel"),
        blocks=[
            InputBlock(
                block_id=REASON_BLOCK,
                label=PlainTextObject(text="Why? The agent reads this."),
                element=PlainTextInputElement(action_id=REASON_INPUT, multiline=True, max_length=2000),
            )
        ],
    )
