"""History an auditor can search: every request by words, status, agent, reviewer and dates, keyset-paged;
the search exported as CSV or JSON Lines; and the audit chain's state, checked from the page."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from signoff.server.console import present
from signoff.server.console.core import Console, redirect
from signoff.server.console.security import secured
from signoff.server.spreadsheet import csv_writer, text_cell
from signoff.storage import ApprovalRequest, InvalidInput, RequestQuery, Status
from signoff.storage.audit import ChainReport
from signoff.storage.timefmt import to_text
from signoff.tools.approvals.views import decode_cursor, encode_cursor

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
EXPORT_PAGE = 500
EXPORT_LIMIT = 100_000  #: rows in one export at most; the file says so in its last line when it stops there
MAX_TEXT = 200
CSV_COLUMNS = (
    "id", "created_at", "action", "summary", "agent_id", "status", "decided_by", "decided_at", "approvers",
    "rejected_by", "payload_sha256", "payload_changed", "approved_payload_sha256",
)  # fmt: skip


@dataclass(frozen=True, kw_only=True, slots=True)
class Search:
    """The history's filters as the form sent them (kept as typed, to show back)."""

    text: str = ""
    status: str = ""
    agent: str = ""
    reviewer: str = ""
    since: str = ""  #: YYYY-MM-DD, from the start of that day (UTC)
    until: str = ""  #: YYYY-MM-DD, to the end of that day (UTC)

    @classmethod
    def of(cls, params: Mapping[str, str]) -> Search:
        names = ("text", "status", "agent", "reviewer", "since", "until")
        return cls(**{name: params.get(name, "").strip() for name in names})

    def query(self, limit: int, cursor: str = "") -> RequestQuery:
        """The store query; InvalidInput saying which field to correct."""
        if len(self.text) > MAX_TEXT:
            raise InvalidInput(f"Words is {len(self.text)} characters; search for at most {MAX_TEXT}")
        if self.status and self.status not in {s.value for s in Status}:
            raise InvalidInput(f"Status must be one of {', '.join(s.value for s in Status)}")
        since, until = _day(self.since, "From"), _day(self.until, "To")
        return RequestQuery(
            text=self.text or None,
            status=Status(self.status) if self.status else None,
            agent_id=self.agent or None,
            reviewer=self.reviewer or None,
            since=datetime.combine(since, time(), UTC) if since else None,
            until=datetime.combine(until + timedelta(days=1), time(), UTC) if until else None,
            limit=limit,
            before=decode_cursor(cursor) if cursor else None,
        )


def _day(text: str, label: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{label} must be a date like 2026-01-31, not {text[:40]!r}") from None


@dataclass(kw_only=True, slots=True)
class ChainCheck:
    """The last audit check made from the console: its report and when."""

    report: ChainReport
    at: datetime
    by: str


async def page(console: Console, request: Request) -> Response:
    session = console.signed_in(request)
    if session is None:
        return redirect("/sign-in")
    search = Search.of(request.query_params)
    rows: list[dict[str, Any]] = []
    error, next_url, status = "", "", 200
    try:
        query = search.query(PAGE_SIZE, request.query_params.get("cursor", ""))
        found = await console.service.list_requests(query)
        rows = [row(r) for r in found.items]
        if found.next_cursor is not None:
            next_url = _url("/history", search, cursor=encode_cursor(found.next_cursor) or "")
    except InvalidInput as exc:
        error, status = exc.message, 400
    context = {
        "session": session,
        "search": search,
        "rows": rows,
        "error": error,
        "next_url": next_url,
        "first_page": bool(request.query_params.get("cursor")),
        "first_url": _url("/history", search),
        "csv_url": _url("/history/export.csv", search),
        "jsonl_url": _url("/history/export.jsonl", search),
        "statuses": [s.value for s in Status],
        "chain": _chain(console.chain_check if isinstance(console.chain_check, ChainCheck) else None),
        "checked": request.query_params.get("checked") == "1",
    }
    return console.page("history.html", status, **context)


def row(request: ApprovalRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "url": f"/requests/{request.id}",
        "created": present.moment(request.created_at),
        "action": present.text(request.action),
        "summary": present.queue_row(request)["summary"],
        "agent": present.text(request.agent_id) or "-",
        "status": request.status.value,
        "changed": request.payload_changed,
        "decided_by": request.decided_by.value if request.decided_by else "",
        "reviewers": ", ".join(f"{present.text(v.reviewer)} ({v.verdict.value})" for v in request.votes),
    }


def _url(path: str, search: Search, **extra: str) -> str:
    fields = {name: getattr(search, name) for name in Search.__slots__ if getattr(search, name)}
    fields.update({k: v for k, v in extra.items() if v})
    return f"{path}?{urlencode(fields)}" if fields else path


def _chain(check: ChainCheck | None) -> dict[str, Any] | None:
    if check is None:
        return None
    report = check.report
    return {
        "ok": report.ok,
        "events": f"{report.events_checked:,}",
        "head": f"#{report.head_seq} {report.head_hash[:16]}…" if report.head_seq else "empty",
        "reason": present.text(report.reason),
        "row": present.text(report.row),
        "at": present.moment(check.at),
        "by": present.text(check.by),
    }


async def verify(console: Console, request: Request) -> Response:
    """Check the audit chain now (POST, with the session's CSRF token); the page shows the result and when."""
    posted = await console.posted(request, "check")
    if isinstance(posted, Response):
        return posted
    session, _ = posted
    service = console.service
    if console.check_chain is not None:
        report = await console.check_chain(service, console.models)
    else:
        report = await service.verify_audit()
    assert session.identity is not None
    console.chain_check = ChainCheck(report=report, at=console.service.clock.now(), by=session.identity)
    logger.info("console audit check by %s: %s", session.identity, "ok" if report.ok else report.reason)
    return redirect("/history?checked=1")


async def export(console: Console, request: Request) -> Response:
    """The current search, every page of it (up to EXPORT_LIMIT rows), as CSV or JSON Lines."""
    session = console.signed_in(request)
    if session is None:
        return secured(Response("sign in first", status_code=401))
    kind = request.path_params["kind"]
    if kind not in ("csv", "jsonl"):
        return secured(Response("not found", status_code=404))
    search = Search.of(request.query_params)
    try:
        first = search.query(EXPORT_PAGE)
    except InvalidInput as exc:
        return secured(Response(exc.message, status_code=400))
    body = _csv(console, first) if kind == "csv" else _jsonl(console, first)
    media = "text/csv; charset=utf-8" if kind == "csv" else "application/x-ndjson"
    headers = {"Content-Disposition": f'attachment; filename="signoff-history.{kind}"'}
    return secured(StreamingResponse(body, media_type=media, headers=headers))


async def _requests(console: Console, query: RequestQuery) -> AsyncIterator[ApprovalRequest]:
    sent = 0
    while True:
        found = await console.service.list_requests(query)
        for request in found.items:
            if sent >= EXPORT_LIMIT:
                return
            sent += 1
            yield request
        if found.next_cursor is None:
            return
        query = dataclasses.replace(query, before=found.next_cursor)


async def _csv(console: Console, query: RequestQuery) -> AsyncIterator[str]:
    out = io.StringIO()
    writer = csv_writer(out)  # every text cell quoted: one cell whatever separator the spreadsheet splits on
    writer.writerow(CSV_COLUMNS)
    redaction = console.service.policy.config.redact.redaction  # [redact]: no digest of a masked payload
    async for full in _requests(console, query):
        r = redaction.request(full)
        writer.writerow(
            [
                r.id, to_text(r.created_at), text_cell(r.action), text_cell(r.summary), text_cell(r.agent_id or ""),
                r.status.value,
                r.decided_by.value if r.decided_by else "", to_text(r.decided_at) if r.decided_at else "",
                text_cell(" ".join(v.reviewer for v in r.approvals)),
                text_cell(" ".join(v.reviewer for v in r.votes if v.verdict.value == "reject")),
                r.payload_sha256, "yes" if r.payload_changed else "no", r.approved_sha256,  # empty when masked
            ]
        )  # fmt: skip
        if out.tell() > 64_000:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


async def _jsonl(console: Console, query: RequestQuery) -> AsyncIterator[str]:
    redaction = console.service.policy.config.redact.redaction  # [redact]: masked in the export
    async for full in _requests(console, query):
        r = redaction.request(full)
        document = {
            "id": r.id,
            "created_at": to_text(r.created_at),
            "action": r.action,
            "summary": r.summary,
            "agent_id": r.agent_id,
            "status": r.status.value,
            "decided_by": r.decided_by.value if r.decided_by else None,
            "decided_at": to_text(r.decided_at) if r.decided_at else None,
            "votes": [
                {"reviewer": v.reviewer, "verdict": v.verdict.value, "comment": v.comment, "at": to_text(v.at)}
                for v in r.votes
            ],
            "payload": dict(r.payload),
            "payload_sha256": r.payload_sha256 or None,  # null: [redact] masked a value (Redaction.request)
            "approved_payload": dict(r.approved_payload) if r.approved_payload is not None else None,
        }
        # ASCII JSON: every control, separator and format character escaped, so each request is one line anywhere
        yield json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n"
