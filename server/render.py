"""Plain-text views of requests and events for the terminal.

Every string an agent, a reviewer or the database gave goes through ``visible`` (``v`` here): an escape sequence in
a summary is printed as ``\\x1b[1A`` and moves no cursor, a newline cannot add a row, and a bidi override cannot
reverse a column. JSON output escapes them itself (``json.dumps`` writes ASCII)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from signoff.server.spreadsheet import csv_writer, json_cell, text_cell
from signoff.storage import ApprovalRequest, DecidedBy, Event
from signoff.storage.redaction import Redaction
from signoff.storage.text import visible as v
from signoff.storage.timefmt import to_text
from signoff.tools.approvals.views import ApprovalStatus


def short_time(moment: datetime | None) -> str:
    return to_text(moment)[:19].replace("T", " ") if moment else "-"


def table(requests: Sequence[ApprovalRequest]) -> str:
    """The history: newest first, when each was made."""
    return _columns(
        ("ID", "STATUS", "PRIORITY", "ACTION", "AGENT", "APPROVALS", "CREATED (UTC)", "SUMMARY"),
        [
            (r.id, r.status.value, r.priority.value, *_who(r), short_time(r.created_at), _short(v(r.summary), 50))
            for r in requests
        ],
    )


def queue(requests: Sequence[ApprovalRequest]) -> str:
    """What waits for reviewers, in the order to take it: priority, then the deadline the request expires at."""
    return _columns(
        ("ID", "PRIORITY", "DEADLINE (UTC)", "ACTION", "AGENT", "APPROVALS", "SUMMARY"),
        [(r.id, r.priority.value, short_time(r.expires_at), *_who(r), _short(v(r.summary), 50)) for r in requests],
    )


def _who(r: ApprovalRequest) -> tuple[str, str, str]:
    approvals = "policy" if r.decided_by is DecidedBy.POLICY else f"{len(r.approvals)}/{r.approvals_required}"
    return v(r.action), v(r.agent_id or "-"), approvals


def _columns(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Aligned columns; the last (free text) is not padded."""
    if not rows:
        return "no requests"
    every = [header, *rows]
    widths = [max(len(row[i]) for row in every) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in every
    )


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def detail(
    request: ApprovalRequest,
    events: Sequence[Event],
    *,
    overdue: bool = False,
    now: datetime | None = None,
    receipt_ttl_seconds: int | None = None,
) -> str:
    """Everything about one request. ``overdue``: still pending past its deadline (the next write expires it);
    ``now`` and ``receipt_ttl_seconds`` decide whether its approval lapsed (what the agent sees)."""
    deadline = short_time(request.expires_at) + (" (passed: it expires at the next write)" if overdue else "")
    rows = [
        ("request", request.id),
        ("status", request.status.value + (f" (by {request.decided_by.value})" if request.decided_by else "")),
        ("action", v(request.action)),
        ("summary", v(request.summary)),
        ("agent", v(request.agent_id or "-")),
        ("confidence", str(request.confidence) if request.confidence is not None else "-"),
        ("flags", ", ".join(v(flag) for flag in request.flags) or "-"),
        ("priority", request.priority.value),
        ("approvals", f"{len(request.approvals)} of {request.approvals_required}"),
        ("created", short_time(request.created_at)),
        ("expires", deadline),
        ("decided", short_time(request.decided_at)),
        ("policy", request.policy_version or "- (recorded before policy versions were kept)"),
    ]
    if request.model is not None:
        rows.append(("model", f"{v(request.model)} {v(request.model_version or '-')}"))
    if request.note:
        rows.append(("note", v(request.note)))
    width = max(len(label) for label, _ in rows) + 1
    lines = [f"{label:<{width}}{value}" for label, value in rows]
    lines.append("why asked:")
    lines += [f"  - [{t.kind.value}] {v(t.detail)}" for t in request.triggers]
    digest = request.payload_sha256 or "withheld: [redact] masks a value here; --reveal shows it"
    lines.append(f"payload (sha256 {digest}):")
    lines += ["  " + line for line in json.dumps(dict(request.payload), indent=2, sort_keys=True).splitlines()]
    if request.votes:
        lines.append("votes:")
        for vote in request.votes:
            comment = f": {v(vote.comment)}" if vote.comment else ""
            lines.append(f"  - {short_time(vote.at)} {v(vote.reviewer)} {vote.verdict.value}{comment}")
    lines.append("events:")
    lines += [f"  #{e.seq} {short_time(e.at)} {e.kind.value}" for e in events]
    seen = ApprovalStatus.of(request, now=now, receipt_ttl_seconds=receipt_ttl_seconds)
    lines.append(f"agent sees: {v(seen.message)}")
    return "\n".join(lines)


def as_json(
    requests: Sequence[ApprovalRequest], *, now: datetime | None = None, receipt_ttl_seconds: int | None = None
) -> str:
    statuses = [ApprovalStatus.of(r, now=now, receipt_ttl_seconds=receipt_ttl_seconds) for r in requests]
    return json.dumps([s.model_dump(mode="json") for s in statuses], indent=2)


#: The fields of a history record, in order: the columns of ``--format csv`` and the keys of json/jsonl. Appending
#: is compatible; reordering or renaming is not (docs/operations.md documents them).
HISTORY_FIELDS = (
    "request_id",
    "created_at",
    "status",
    "decided_by",
    "decided_at",
    "priority",
    "action",
    "agent_id",
    "summary",
    "confidence",
    "flags",
    "payload",
    "payload_sha256",
    "triggers",
    "approvals_required",
    "votes",
    "expires_at",
    "escalated_at",
    "message",
    "receipt",
    "policy_version",
    "model",
    "model_version",
    "model_decision_id",
)


def history_record(
    request: ApprovalRequest, status: ApprovalStatus, redaction: Redaction | None = None
) -> dict[str, Any]:
    """One request as the history exports it: the status the agent sees (with its receipt) and what it asked, with
    the ``[redact]`` paths masked and the triggers scrubbed of their values; a request with a masked value comes
    without its digest and its receipt (``ApprovalStatus.masked``: either would let a reader test guesses)."""
    redaction = redaction or Redaction()
    record = {
        **status.masked(request, redaction).model_dump(mode="json"),
        "confidence": request.confidence,
        "flags": list(request.flags),
        "payload": redaction.payload(request.payload),
        "model": request.model,
        "model_version": request.model_version,
        "model_decision_id": request.model_decision_id,
    }
    return {name: record[name] for name in HISTORY_FIELDS}


def as_jsonl(records: Iterable[Mapping[str, Any]]) -> str:
    """One JSON object a line (ASCII: control and bidi characters are escaped)."""
    return "".join(json.dumps(record) + "\n" for record in records)


def as_csv(records: Iterable[Mapping[str, Any]]) -> str:
    """A header and one row per request, columns in ``HISTORY_FIELDS`` order. Lists and objects are compact JSON;
    null is an empty cell; text shows control and bidi characters as escapes (``\\x1b``), and is quoted, a cell that
    starts like a spreadsheet formula with a leading ``'`` (``spreadsheet``)."""
    out = io.StringIO()
    writer = csv_writer(out, lineterminator="\n")
    writer.writerow(HISTORY_FIELDS)
    for record in records:
        writer.writerow([_cell(record[name]) for name in HISTORY_FIELDS])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json_cell(value)
    return text_cell(v(str(value)))
