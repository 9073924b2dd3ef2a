"""Requests as Slack Block Kit messages: pure functions, no I/O. Slack is a view; the database decides."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

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

from signoff.notifiers.slack_text import code, code_block, escape, plain
from signoff.storage import ApprovalRequest, DecidedBy, Status, Verdict, Vote
from signoff.storage.canonical import is_number

APPROVE_ACTION = "signoff_approve"
REJECT_ACTION = "signoff_reject"
OPEN_ACTION = "signoff_open"  #: the "Open in signoff" link button: Slack reports its clicks, signoff ignores them
ACTIONS_BLOCK = "signoff_actions"
REJECT_CALLBACK = "signoff_reject_reason"
REASON_BLOCK = "reason"
REASON_INPUT = "text"

PAYLOAD_EXCERPT_CHARS = 1500
SECTION_CHARS = 2900  # Slack allows 3000 in a section's text
CURRENCY_CODE = re.compile(r"[A-Z]{3}")
HIDDEN_KEY_NAMES_CHARS = 600  #: how much of the hidden keys' names a cut payload lists


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mrkdwn(text: str) -> MarkdownTextObject:
    """A mrkdwn object that Slack sends as written: no automatic links, channel names or mentions."""
    return MarkdownTextObject(text=text, verbatim=True)


def slack_date(moment: datetime) -> str:
    """A date Slack shows in each reader's time zone, with ISO text as the fallback."""
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|{moment.isoformat()}>"


def payload_excerpt(request: ApprovalRequest) -> str:
    """The payload as a code block within ``PAYLOAD_EXCERPT_CHARS``: whole keys while they fit (the first one cut if
    even it does not), then a note naming the keys left out."""
    entries = [
        f"  {json.dumps(key, ensure_ascii=False)}: "
        + json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).replace("\n", "\n  ")
        for key, value in sorted(request.payload.items())
    ]
    whole = "{\n" + ",\n".join(entries) + "\n}" if entries else "{}"
    if len(code_block(whole, limit=10**9)) <= PAYLOAD_EXCERPT_CHARS:
        return code_block(whole, limit=PAYLOAD_EXCERPT_CHARS)
    kept: list[str] = []
    for entry in entries:
        trial = "{\n" + ",\n".join([*kept, entry]) + ",\n  …\n}"
        if len(code_block(trial, limit=10**9)) > PAYLOAD_EXCERPT_CHARS:
            break
        kept.append(entry)
    if kept:
        shown = code_block("{\n" + ",\n".join(kept) + ",\n  …\n}", limit=PAYLOAD_EXCERPT_CHARS)
    else:  # the first key alone is too long: show its start
        shown = code_block("{\n" + entries[0], limit=PAYLOAD_EXCERPT_CHARS)
    hidden = sorted(request.payload)[len(kept) or 1 :]
    names = ""
    if hidden:
        listed: list[str] = []
        for key in hidden:  # whole code spans only, so a cut list never leaves a span open
            if sum(len(name) + 2 for name in listed) + len(code(key, 80)) > HIDDEN_KEY_NAMES_CHARS:
                listed.append("…")
                break
            listed.append(code(key, 80))
        names = f"+{len(hidden)} more {'key' if len(hidden) == 1 else 'keys'}: {', '.join(listed)}. "
    note = f"\n_Payload cut. {names}See all of it with `signoff review show {request.id}`._"
    return shown + note


def headline(request: ApprovalRequest) -> str:
    """The message's top-level ``text``: what notifications and screen readers show (Slack shows the blocks in the
    channel). Notifications do not format text, so it is escaped rather than put in code: no link, mention or
    control character gets through, and it reads as a sentence."""
    who = escape(cut(request.agent_id, 200)) if request.agent_id else "an agent"
    action = escape(cut(request.action, 300))
    match request.status:
        case Status.PENDING:
            return cut(f"Approval needed: {who} wants to {action}: {escape(cut(request.summary, 2000))}", 2900)
        case _:
            verdict = verdict_text(request, mrkdwn=False)
            return cut(f"{action} by {who} is {request.status}: {verdict}", 2900)


SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")


def reviewer_text(vote: Vote) -> str:
    """Who voted, for a Slack message: a vote recorded under the Slack user id that Slack vouched for is a mention
    (Slack shows the person's current name); any other name is escaped text."""
    if vote.reviewer in vote.reviewer_ids and SLACK_USER_ID.fullmatch(vote.reviewer):
        return f"<@{vote.reviewer}>"
    return escape(vote.reviewer)


def verdict_text(request: ApprovalRequest, *, mrkdwn: bool = True) -> str:
    at = slack_date(request.decided_at) if (mrkdwn and request.decided_at) else str(request.decided_at or "")
    approvers = ", ".join(reviewer_text(v) for v in request.votes if v.verdict is Verdict.APPROVE)
    match request.status:
        case Status.APPROVED if request.decided_by is DecidedBy.POLICY:
            return f"approved by policy at {at}"
        case Status.APPROVED:
            return f"approved by {approvers} at {at}"
        case Status.REJECTED:
            veto = next((v for v in request.votes if v.verdict is Verdict.REJECT), None)
            if veto is None:
                return f"rejected by policy at {at}"
            return f"rejected by {reviewer_text(veto)} at {at}: {code(veto.comment or '', 2000)}"
        case Status.EXPIRED:
            return f"expired at {at} without a decision; it will not run"
        case Status.CANCELLED:
            return f"cancelled by the agent at {at}: {code(request.note or '', 2000)}"
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


def console_link(public_url: str, request_id: str) -> str:
    """The request's page in the web console: built from the operator's checked ``SIGNOFF_PUBLIC_URL`` and the
    request id signoff made (``req_`` and base32), percent-encoded all the same; never from agent text."""
    return f"{public_url}/requests/{quote(request_id, safe='')}"


def request_blocks(
    request: ApprovalRequest, *, amount_field: str | None = None, public_url: str | None = None
) -> list[Block]:
    """The whole message for the request's current state; Approve/Reject only while it is pending. With
    ``public_url`` (``SIGNOFF_PUBLIC_URL``), an "Open in signoff" link to the request's console page: a button
    beside Approve/Reject while pending (where Approve with changes is done), a link in the footer afterwards.

    Everything the agent wrote is shown inside code (see ``slack_text``) or as ``plain_text`` without emoji, so it
    can neither format, link nor mention. ``amount_field`` (``payload.<field>``, set by the operator) is the only
    payload field shown as the amount."""
    pending = request.status is Status.PENDING
    title = "Approval needed" if pending else request.status.value.capitalize()
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=cut(f"{title}: {plain(request.action)}", 150), emoji=False)),
        SectionBlock(
            text=mrkdwn(code_block(request.summary, SECTION_CHARS)),
            fields=[mrkdwn(text) for text in _fields(request, amount_field)],
        ),
        SectionBlock(text=mrkdwn(cut_lines(_why(request), SECTION_CHARS))),
        SectionBlock(text=mrkdwn(payload_excerpt(request))),
        SectionBlock(text=mrkdwn(cut_lines(f"{_ICONS[request.status]} *{verdict_text(request)}*", SECTION_CHARS))),
    ]
    link = console_link(public_url, request.id) if public_url else None
    if pending:
        buttons = [
            ButtonElement(text="Approve", action_id=APPROVE_ACTION, value=request.id, style="primary"),
            ButtonElement(text="Reject", action_id=REJECT_ACTION, value=request.id, style="danger"),
        ]
        if link is not None:
            buttons.append(ButtonElement(text="Open in signoff", action_id=OPEN_ACTION, url=link))
        blocks.append(ActionsBlock(block_id=ACTIONS_BLOCK, elements=buttons))
    digest = f"payload sha256 `{request.payload_sha256[:12]}…`" if request.payload_sha256 else "payload sha256 withheld"
    footer = f"`{request.id}` · {digest} · `signoff review show {request.id}`"  # withheld: [redact] masked a value
    if link is not None:
        footer += f" · <{link}|Open in signoff>"
        if pending:
            footer += " to approve with changes"
    blocks.append(ContextBlock(elements=[mrkdwn(footer)]))
    return blocks


def cut_lines(text: str, limit: int) -> str:
    """Mrkdwn cut at a line break (never inside a code span) to fit ``limit``."""
    if len(text) <= limit:
        return text
    head = text[: limit - 2]
    return head[: head.rfind("\n")] + "\n…" if "\n" in head else "…"


def payload_value(payload: Mapping[str, Any], path: str) -> tuple[Any, Mapping[str, Any]] | None:
    """The value at ``payload.a.b`` and the mapping that holds it, or None when it is missing."""
    node: Any = payload
    parent: Mapping[str, Any] = payload
    for key in path.split(".")[1:]:
        if not isinstance(node, Mapping) or key not in node:
            return None
        parent, node = node, node[key]
    return node, parent


def _fields(request: ApprovalRequest, amount_field: str | None) -> list[str]:
    fields = [
        f"*Requested by*\n{code(request.agent_id, 1800) if request.agent_id else 'an agent (no agent_id)'}",
        f"*Approvals*\n{len(request.approvals)} of {request.approvals_required}",
        f"*Priority*\n{request.priority}",
        f"*Expires*\n{slack_date(request.expires_at)}",
    ]
    if request.confidence is not None:
        fields.append(f"*Agent confidence*\n{request.confidence:.2f}")
    if request.status is Status.PENDING and request.claimed_by and request.claim_until is not None:
        fields.append(  # a lapsed claim is not announced: the date says when this one ends
            f"*Reviewing*\n{code(request.claimed_by, 200)} is reviewing (until {slack_date(request.claim_until)})"
        )
    if amount_field:
        found = payload_value(request.payload, amount_field)
        if found is None:
            shown = f"none: {code(amount_field, 200)} is not in the payload"
        else:
            amount, parent = found
            currency = parent.get("currency")
            shown = f"{amount:,}" if is_number(amount) else json.dumps(amount, ensure_ascii=False)
            shown = shown if is_number(amount) and len(shown) <= 100 else code(shown, 1000)
            if isinstance(currency, str):  # an ISO 4217 code as it is; anything else as the agent's text
                shown += f" {currency}" if CURRENCY_CODE.fullmatch(currency) else f" {code(currency, 100)}"
        fields.append(f"*Amount* ({code(amount_field, 200)})\n{shown}")
    return fields


def _why(request: ApprovalRequest) -> str:
    lines = [f"• _{t.kind}_: {code(t.detail, 1000)}" for t in request.triggers]
    return "*Why you are asked*\n" + "\n".join(lines)


def escalation_note(request: ApprovalRequest, mention: str | None) -> str:
    """The note that tells the escalation target a request is still waiting."""
    who = f"{mention} " if mention else ""
    agent = code(request.agent_id, 200) if request.agent_id else "an agent"
    return (
        f"{who}:rotating_light: Escalated: {agent} has waited since "
        f"{slack_date(request.created_at)} for {code(request.action, 300)} ({request.id}); "
        f"it expires {slack_date(request.expires_at)}."
    )


def vote_reply(request: ApprovalRequest, vote: Vote) -> str:
    """The thread reply that records one vote."""
    approvals = sum(1 for v in request.votes[: request.votes.index(vote) + 1] if v.verdict is Verdict.APPROVE)
    if vote.verdict is Verdict.APPROVE:
        return f"{reviewer_text(vote)} approved ({approvals} of {request.approvals_required})" + (
            f": {code(vote.comment, 2000)}" if vote.comment else ""
        )
    return f"{reviewer_text(vote)} rejected: {code(vote.comment or '', 2000)}"


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
