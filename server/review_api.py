"""The reviewer HTTP API: read requests and vote, as the identity of a reviewer token. Agents' tokens get 403.

- ``GET /api/requests``: a page of requests, newest first. Query: ``status`` (``pending`` unless given; ``all`` for
  every status), ``action``, ``agent_id``, ``since``, ``until`` (ISO 8601), ``limit`` (1-200, default 50) and
  ``cursor`` (``next_cursor`` of the previous page). Each item carries its priority and a payload excerpt.
- ``GET /api/requests/{id}``: one request with everything a reviewer needs: payload, triggers, votes, events, receipt.
- ``POST /api/requests/{id}/votes`` with ``{"verdict": "approve" | "reject", "comment": "..."}`` (and
  ``"approved_payload": {...}`` to approve with changes): the request after the
  vote, with its receipt when the vote approved it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from signoff.server.auth import ConfigTokenVerifier, bearer_identity
from signoff.storage import (
    ApprovalRequest,
    Conflict,
    Event,
    Forbidden,
    InvalidInput,
    NotFound,
    RequestQuery,
    SignoffError,
    Status,
    Verdict,
)
from signoff.storage.canonical import canonical_json
from signoff.storage.redaction import Redaction
from signoff.tools.access import Role
from signoff.tools.app_state import AppState
from signoff.tools.approvals.views import decode_cursor, encode_cursor

_STATUS_OF_ERROR: dict[type[SignoffError], int] = {InvalidInput: 400, Forbidden: 403, NotFound: 404, Conflict: 409}
LIST_PARAMETERS = ("status", "action", "agent_id", "since", "until", "limit", "cursor")
VOTE_FIELDS = ("verdict", "comment", "approved_payload")
MAX_LIMIT = 200
EXCERPT_VALUE_CHARS = 200  #: a payload value longer than this (as JSON) is folded in list items
EXCERPT_KEYS = 20  #: list items show at most this many payload keys


def _error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="signoff"'} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def payload_excerpt(payload: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The payload's first keys with short values; longer values and further keys are folded, never cut silently."""
    excerpt: dict[str, Any] = {}
    complete = True
    for index, (key, value) in enumerate(payload.items()):
        if index == EXCERPT_KEYS:
            excerpt["…"] = f"{len(payload) - EXCERPT_KEYS} more keys: see the request's payload"
            return excerpt, False
        text = canonical_json(value)
        if len(text) > EXCERPT_VALUE_CHARS:
            excerpt[key] = f"… ({len(text.encode())} bytes: see the request's payload)"
            complete = False
        else:
            excerpt[key] = value
    return excerpt, complete


async def _summary(state: AppState, request: ApprovalRequest) -> dict[str, Any]:
    """A list item: masked as ``GET /api/requests/{id}`` masks (no ``reveal`` in lists)."""
    status = (await state.status(request, strict=False, reveal=False)).model_dump(mode="json")
    excerpt, complete = payload_excerpt(state.service.policy.config.redact.redaction.payload(request.payload))
    return {
        **status,
        "payload_excerpt": excerpt,
        "payload_complete": complete,
        "url": f"/api/requests/{request.id}",
    }


def _event(event: Event, redaction: Redaction, payload: Mapping[str, Any]) -> dict[str, Any]:
    data = redaction.event_data(event.data, payload)
    return {"seq": event.seq, "kind": event.kind.value, "at": event.at.isoformat(), "data": data}


def _time(name: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{name} must be an ISO 8601 date or time, e.g. 2026-01-31T09:00:00Z; got {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def list_query(params: Mapping[str, str]) -> RequestQuery:
    """The query a ``GET /api/requests`` asks for; InvalidInput names the parameter at fault."""
    unknown = sorted(set(params) - set(LIST_PARAMETERS))
    if unknown:
        raise InvalidInput(f"unknown query parameter {', '.join(unknown)}; use {', '.join(LIST_PARAMETERS)}")
    wanted = params.get("status", Status.PENDING.value)
    statuses = [s.value for s in Status]
    if wanted != "all" and wanted not in statuses:
        raise InvalidInput(f"status must be one of {', '.join(statuses)} or all; got {wanted!r}")
    limit_text = params.get("limit", "50")
    if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= MAX_LIMIT:  # not "²"
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}; got {limit_text!r}")
    return RequestQuery(
        status=None if wanted == "all" else Status(wanted),
        action=params.get("action"),
        agent_id=params.get("agent_id"),
        since=_time("since", params["since"]) if "since" in params else None,
        until=_time("until", params["until"]) if "until" in params else None,
        limit=int(limit_text),
        before=decode_cursor(params["cursor"]) if params.get("cursor") else None,
    )


def vote_body(raw: bytes) -> tuple[Verdict, str | None, dict[str, Any] | None]:
    """The verdict, the comment and, to approve with changes, the changed payload."""
    usage = (
        'send a JSON object {"verdict": "approve" | "reject", "comment": "why"} (a reason is required to reject;'
        ' "approved_payload": {...} with approve approves with changes)'
    )
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidInput(f"the body is not JSON: {usage}") from None
    except RecursionError:
        raise InvalidInput(f"the body is nested too deeply to read: {usage}") from None
    try:  # "\ud800" is valid JSON but no text: it could be neither stored nor shown
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):
        raise InvalidInput(f"the body holds a lone surrogate (\\ud800-\\udfff): {usage}") from None
    if not isinstance(body, dict):
        raise InvalidInput(usage)
    unknown = sorted(set(body) - set(VOTE_FIELDS))
    if unknown:
        raise InvalidInput(f"unknown field {', '.join(map(repr, unknown))}; {usage}")
    try:
        verdict = Verdict(str(body.get("verdict")))
    except ValueError:
        raise InvalidInput(f"verdict must be approve or reject; {usage}") from None
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise InvalidInput(f"comment must be a string; {usage}")
    changed = body.get("approved_payload")
    if changed is not None and not isinstance(changed, dict):
        raise InvalidInput(f"approved_payload must be a JSON object; {usage}")
    return verdict, comment, changed


async def list_requests(request: Request, state: AppState, verifier: ConfigTokenVerifier | None) -> JSONResponse:
    code, who = bearer_identity(request, verifier, Role.REVIEWER)
    if code != 200:
        return _error(code, who)
    try:
        page = await state.service.list_requests(list_query(request.query_params))
    except SignoffError as exc:
        return _error(_STATUS_OF_ERROR.get(type(exc), 400), exc.message)
    items = [await _summary(state, r) for r in page.items]
    return JSONResponse({"items": items, "next_cursor": encode_cursor(page.next_cursor)})


async def show_request(request: Request, state: AppState, verifier: ConfigTokenVerifier | None) -> JSONResponse:
    code, who = bearer_identity(request, verifier, Role.REVIEWER)
    if code != 200:
        return _error(code, who)
    try:
        found = await state.service.get(request.path_params["request_id"])
    except SignoffError as exc:
        return _error(_STATUS_OF_ERROR.get(type(exc), 400), exc.message)
    reveal = request.query_params.get("reveal") == "1"  # [redact]ed fields (and digests) are shown only when asked
    masking = state.service.policy.config.redact.redaction
    redaction = Redaction() if reveal else masking
    if reveal and (masking.masks(found.payload) or (found.approved_payload and masking.masks(found.approved_payload))):
        try:  # written before the values are shown, or not shown
            await state.service.record_reveal(found.id, who, "api")
        except SignoffError as exc:
            return _error(_STATUS_OF_ERROR.get(type(exc), 400), exc.message)
    events = await state.service.store.request_events(found.id)
    status = (await state.status(found, strict=False, reveal=reveal)).model_dump(mode="json")
    payload = redaction.payload(found.payload)
    body = {**status, "payload": payload, "events": [_event(e, redaction, found.payload) for e in events]}
    return JSONResponse(body)


async def vote(request: Request, state: AppState, verifier: ConfigTokenVerifier | None) -> JSONResponse:
    code, who = bearer_identity(request, verifier, Role.REVIEWER)
    if code != 200:
        return _error(code, who)
    try:
        verdict, comment, changed = vote_body(await request.body())
        request_id = request.path_params["request_id"]
        if changed is not None:  # a field left masked ([redact]) keeps the value the agent asked with
            asked = await state.service.get(request_id)
            changed = state.service.policy.config.redact.redaction.restore(changed, asked.payload)
        decided = await state.service.vote(request_id, who, verdict, comment, approved_payload=changed)
    except SignoffError as exc:
        return _error(_STATUS_OF_ERROR.get(type(exc), 400), exc.message)
    # masked as GET shows it: the answer to a vote reveals nothing more
    status = (await state.status(decided, strict=False, reveal=False)).model_dump(mode="json")
    return JSONResponse(status)
