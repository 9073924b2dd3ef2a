"""Plain-text views of requests and events for the terminal.

Every string an agent, a reviewer or the database gave goes through ``visible`` (``v`` here): an escape sequence in
a summary is printed as ``\\x1b[1A`` and moves no cursor, a newline cannot add a row, and a bidi override cannot
reverse a column. JSON output escapes them itself (``json.dumps`` writes ASCII)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from signoff.storage import ApprovalRequest, DecidedBy, Event
from signoff.storage.text import visible as v
from signoff.storage.timefmt import to_text
from signoff.tools.approvals.views import ApprovalStatus


def short_time(moment: datetime | None) -> str:
    return to_text(moment)[:19].replace("T", " ") if moment else "-"


def table(requests: Sequence[ApprovalRequest]) -> str:
    if not requests:
        return "no requests"
    rows = [("ID", "STATUS", "ACTION", "AGENT", "APPROVALS", "CREATED (UTC)", "SUMMARY")]
    for r in requests:
        rows.append(
            (
                r.id,
                r.status.value,
                v(r.action),
                v(r.agent_id or "-"),
                "policy" if r.decided_by is DecidedBy.POLICY else f"{len(r.approvals)}/{r.approvals_required}",
                short_time(r.created_at),
                _short(v(r.summary), 50),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def detail(request: ApprovalRequest, events: Sequence[Event]) -> str:
    lines = [
        f"request   {request.id}",
        f"status    {request.status.value}" + (f" (by {request.decided_by.value})" if request.decided_by else ""),
        f"action    {v(request.action)}",
        f"summary   {v(request.summary)}",
        f"agent     {v(request.agent_id or '-')}",
        f"confidence {request.confidence if request.confidence is not None else '-'}",
        f"flags     {', '.join(v(flag) for flag in request.flags) or '-'}",
        f"priority  {request.priority.value}",
        f"approvals {len(request.approvals)} of {request.approvals_required}",
        f"created   {short_time(request.created_at)}",
        f"expires   {short_time(request.expires_at)}",
        f"decided   {short_time(request.decided_at)}",
    ]
    if request.note:
        lines.append(f"note      {v(request.note)}")
    lines.append("why asked:")
    lines += [f"  - [{t.kind.value}] {v(t.detail)}" for t in request.triggers]
    lines.append(f"payload (sha256 {request.payload_sha256}):")
    lines += ["  " + line for line in json.dumps(dict(request.payload), indent=2, sort_keys=True).splitlines()]
    if request.votes:
        lines.append("votes:")
        for vote in request.votes:
            comment = f": {v(vote.comment)}" if vote.comment else ""
            lines.append(f"  - {short_time(vote.at)} {v(vote.reviewer)} {vote.verdict.value}{comment}")
    lines.append("events:")
    lines += [f"  #{e.seq} {short_time(e.at)} {e.kind.value}" for e in events]
    lines.append(f"agent sees: {v(ApprovalStatus.of(request).message)}")
    return "\n".join(lines)


def as_json(requests: Sequence[ApprovalRequest]) -> str:
    return json.dumps([ApprovalStatus.of(r).model_dump(mode="json") for r in requests], indent=2)
