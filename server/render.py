"""Plain-text views of requests and events for the terminal."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from signoff.storage import ApprovalRequest, DecidedBy, Event
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
                r.action,
                r.agent_id or "-",
                "policy" if r.decided_by is DecidedBy.POLICY else f"{len(r.approvals)}/{r.approvals_required}",
                short_time(r.created_at),
                r.summary if len(r.summary) <= 50 else r.summary[:47] + "...",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )


def detail(request: ApprovalRequest, events: Sequence[Event]) -> str:
    lines = [
        f"request   {request.id}",
        f"status    {request.status.value}" + (f" (by {request.decided_by.value})" if request.decided_by else ""),
        f"action    {request.action}",
        f"summary   {request.summary}",
        f"agent     {request.agent_id or '-'}",
        f"confidence {request.confidence if request.confidence is not None else '-'}",
        f"flags     {', '.join(request.flags) or '-'}",
        f"priority  {request.priority.value}",
        f"approvals {len(request.approvals)} of {request.approvals_required}",
        f"created   {short_time(request.created_at)}",
        f"expires   {short_time(request.expires_at)}",
        f"decided   {short_time(request.decided_at)}",
    ]
    if request.note:
        lines.append(f"note      {request.note}")
    lines.append("why asked:")
    lines += [f"  - [{t.kind.value}] {t.detail}" for t in request.triggers]
    lines.append(f"payload (sha256 {request.payload_sha256}):")
    lines += ["  " + line for line in json.dumps(dict(request.payload), indent=2, sort_keys=True).splitlines()]
    if request.votes:
        lines.append("votes:")
        for v in request.votes:
            comment = f": {v.comment}" if v.comment else ""
            lines.append(f"  - {short_time(v.at)} {v.reviewer} {v.verdict.value}{comment}")
    lines.append("events:")
    lines += [f"  #{e.seq} {short_time(e.at)} {e.kind.value}" for e in events]
    lines.append(f"agent sees: {ApprovalStatus.of(request).message}")
    return "\n".join(lines)


def as_json(requests: Sequence[ApprovalRequest]) -> str:
    return json.dumps([ApprovalStatus.of(r).model_dump(mode="json") for r in requests], indent=2)
