"""The queue, one request, a vote, and the live-update stream."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse

from signoff.server.console import present
from signoff.server.console.core import HERE, Console, redirect
from signoff.server.console.security import secured
from signoff.server.console.sessions import Session
from signoff.storage import (
    ApprovalRequest,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RequestQuery,
    SignoffError,
    Status,
    Verdict,
)
from signoff.storage.redaction import Redaction

logger = logging.getLogger(__name__)

STREAM_SECONDS = 300.0  #: a live-update stream ends after this; the browser reconnects (and the session is rechecked)
KEEPALIVE_SECONDS = 15.0
POLL_SECONDS = 0.25  #: how often a stream looks for another process's changes
STATIC = {"console.js": "text/javascript", "console.css": "text/css", "favicon.svg": "image/svg+xml"}
_STATUS_OF_ERROR: dict[type[SignoffError], int] = {InvalidInput: 400, Forbidden: 403, NotFound: 404, Conflict: 409}


async def queue(console: Console, request: Request) -> Response:
    session = console.signed_in(request)
    if session is None:
        return redirect("/sign-in")
    filters = present.Filters.of(request.query_params, session.identity or "")
    data = present.queue(await console.pending(), filters, console.service.clock.now(), console.queue_row)
    return console.page("queue.html", session=session, filters=filters, **data)


async def events(console: Console, request: Request) -> Response:
    """Server-sent events: ``queue`` with the queue's data whenever it changes; ``signed-out`` when the session
    ends. The data is JSON; the page builds rows from it with ``textContent``. An open stream is not activity: a
    queue left open in a tab does not keep its session alive."""
    session = console.signed_in(request, activity=False)
    if session is None:
        return secured(Response("sign in first", status_code=401))
    filters = present.Filters.of(request.query_params, session.identity or "")
    stream = _queue_stream(console, session, filters)
    return secured(StreamingResponse(stream, media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}))


async def _queue_stream(console: Console, session: Session, filters: present.Filters) -> AsyncIterator[str]:
    store, clock = console.service.store, console.service.clock
    yield "retry: 1000\n\n"
    last = ""
    ends = anyio.current_time() + STREAM_SECONDS
    while console.sessions.alive(session) and anyio.current_time() < ends:
        token = await store.change_token()
        pending = await console.pending(token)
        now = clock.now()
        snapshot = json.dumps(present.queue(pending, filters, now, console.queue_row))
        yield f"event: queue\ndata: {snapshot}\n\n" if snapshot != last else ": unchanged\n\n"
        last = snapshot
        nearest = min(((r.expires_at - now).total_seconds() for r in pending if r.expires_at > now), default=None)
        timeout = KEEPALIVE_SECONDS if nearest is None else min(KEEPALIVE_SECONDS, nearest + 0.05)
        await store.wait_for_change(token, timeout, poll_interval=POLL_SECONDS)
    if not console.sessions.alive(session):
        yield "event: signed-out\ndata: {}\n\n"


async def show(console: Console, request: Request) -> Response:
    session = console.signed_in(request)
    if session is None:
        return redirect("/sign-in")
    voted = request.query_params.get("voted", "")
    notice = {
        "approve": "Your approval was recorded.",
        "reject": "Your rejection was recorded.",
        "changed": "Your approval with changes was recorded: the agent is told to act with the payload you approved.",
        "claimed": "You are reviewing this request: everyone sees it, until you decide, release it, or it lapses.",
        "released": "You released this request: others see nobody is reviewing it.",
    }.get(voted, "")
    reveal = request.query_params.get("reveal") == "1"  # [redact]ed fields are shown only when asked
    return await _detail(console, session, request.path_params["request_id"], notice=notice, reveal=reveal)


async def _detail(
    console: Console,
    session: Session,
    request_id: str,
    *,
    error: str = "",
    notice: str = "",
    status: int = 200,
    reason: str = "",
    amended: str | None = None,
    reveal: bool = False,
) -> Response:
    """The request page; ``amended``: the changed payload a reviewer sent (kept in the editor after a refusal)."""
    try:
        found = await console.service.get(request_id)
    except NotFound:
        return console.page("missing.html", 404, session=session, request_id=request_id)
    redaction = console.service.policy.config.redact.redaction
    masked = redaction.masks(found.payload) or (
        found.approved_payload is not None and redaction.masks(found.approved_payload)
    )
    if reveal and masked and session.identity is not None:  # written before the values are shown, or not shown
        try:
            await console.service.record_reveal(found.id, session.identity, "console")
        except Forbidden as exc:  # not one of its approvers: the page, masked, says why
            reveal, error, status = False, exc.message, 403
    events = await console.service.store.request_events(found.id)
    r = present.detail(found, events, console.service.clock.now(), redaction=None if reveal else redaction)
    r["masked"] = masked
    r["revealed"] = reveal and masked
    r["previous"] = await _previous(console, found, redaction)  # another request: revealing this one shows none of it
    r["model"] = await _model_of(console, found)
    context: dict[str, Any] = {"session": session, "r": r, "reason": reason, "amending": amended is not None}
    context["amend_text"] = r["editable"] if amended is None else amended
    return console.page("request.html", status, error=error, notice=notice, **context)


MODEL_WINDOW = timedelta(days=7)  #: the request page shows people's verdicts on the linked version over this time


async def _model_of(console: Console, request: ApprovalRequest) -> dict[str, Any] | None:
    """The model version the agent linked, and what people made of its requests over the last ``MODEL_WINDOW``."""
    if request.model is None or request.model_version is None:
        return None
    now = console.service.clock.now()
    outcomes = await console.service.store.human_outcomes(request.model, now - MODEL_WINDOW, now)
    o = outcomes.get(request.model_version)
    return {
        "name": request.model,
        "version": request.model_version,
        "decision_id": request.model_decision_id,
        "requests": o.requests if o else 0,
        "to_people": o.to_people if o else 0,
        "decided": o.decided_by_people if o else 0,
        "rejected": f"{o.rejected_share:.0%}" if o and o.rejected_share is not None else "-",
        "changed": f"{o.changed_share:.0%}" if o and o.changed_share is not None else "-",
    }


async def _previous(console: Console, request: ApprovalRequest, redaction: Redaction | None) -> dict[str, Any] | None:
    """The last approved request of the same action and agent before this one, and how this payload differs from
    the payload it was approved with; None when there is none."""
    # from this request backwards (a keyset cursor at it): an old request's page finds the approval before it, not
    # only among the newest ones
    query = RequestQuery(
        status=Status.APPROVED,
        action=request.action,
        agent_id=request.agent_id,
        limit=20,
        before=(request.created_at, request.id),
    )
    for earlier in (await console.service.list_requests(query)).items:
        if (
            earlier.id != request.id
            and earlier.agent_id == request.agent_id
            and earlier.created_at <= request.created_at
        ):
            return {
                "id": earlier.id,
                "url": f"/requests/{earlier.id}",
                "decided_at": present.moment(earlier.decided_at),
                "changes": present.changes(
                    *(
                        (redaction.payload(earlier.effective_payload), redaction.payload(request.payload))
                        if redaction
                        else (earlier.effective_payload, request.payload)
                    )
                ),
            }
    return None


async def request_stream(console: Console, request: Request) -> Response:
    """Server-sent events for one request page: ``request`` with its new version and state in words whenever what
    the page shows changes (a vote, a decision anywhere, an escalation); ``signed-out`` when the session ends."""
    session = console.signed_in(request, activity=False)
    if session is None:
        return secured(Response("sign in first", status_code=401))
    request_id = request.path_params["request_id"]
    seen = request.query_params.get("version", "")
    stream = _request_stream(console, session, request_id, seen)
    return secured(StreamingResponse(stream, media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}))


async def _request_stream(console: Console, session: Session, request_id: str, seen: str) -> AsyncIterator[str]:
    store = console.service.store
    yield "retry: 1000\n\n"
    ends = anyio.current_time() + STREAM_SECONDS
    while console.sessions.alive(session) and anyio.current_time() < ends:
        token = await store.change_token()
        try:
            found = await console.service.get(request_id)
        except NotFound:
            return
        moment = console.service.clock.now()
        now = present.version(found, moment)
        if now != seen:
            state = {"version": now, "status": found.status.value, "outcome": present.outcome(found, moment)}
            yield f"event: request\ndata: {json.dumps(state)}\n\n"
            seen = now
        else:
            yield ": unchanged\n\n"
        until_expiry = (found.expires_at - moment).total_seconds()
        if found.claim_at(moment) and found.claim_until is not None:  # wake when the claim lapses, too
            until_expiry = min(until_expiry, (found.claim_until - moment).total_seconds())
        timeout = (
            KEEPALIVE_SECONDS if found.status is not Status.PENDING else min(KEEPALIVE_SECONDS, until_expiry + 0.05)
        )
        await store.wait_for_change(token, max(timeout, 0.05), poll_interval=POLL_SECONDS)
    if not console.sessions.alive(session):
        yield "event: signed-out\ndata: {}\n\n"


async def claim(console: Console, request: Request) -> Response:
    """Claim (say "I am reviewing this") or release, from the request page; POST with the session's CSRF token."""
    posted = await console.posted(request, "claim")
    if isinstance(posted, Response):
        return posted
    session, fields = posted
    request_id = request.path_params["request_id"]
    assert session.identity is not None
    releasing = fields.get("claim") == "release"
    try:
        if releasing:
            await console.service.release(request_id, session.identity)
        else:
            await console.service.claim(request_id, session.identity)
    except SignoffError as exc:
        status = _STATUS_OF_ERROR.get(type(exc), 400)
        return await _detail(console, session, request_id, error=exc.message, status=status)
    return redirect(f"/requests/{request_id}?voted={'released' if releasing else 'claimed'}")


def _payload_of(text: str) -> object:
    """The changed payload a reviewer typed, parsed; InvalidInput saying where the JSON is wrong."""

    def no_constant(name: str) -> object:
        raise InvalidInput(f"the changed payload holds {name}, which is not JSON: write a number or null")

    try:
        return json.loads(text, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"the changed payload is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}):"
            " correct it and approve again"
        ) from None
    except RecursionError:
        raise InvalidInput("the changed payload is nested too deeply to read") from None


async def vote(console: Console, request: Request) -> Response:
    posted = await console.posted(request, "vote")
    if isinstance(posted, Response):
        return posted
    session, fields = posted
    request_id = request.path_params["request_id"]
    verdict_text, reason = fields.get("verdict"), fields.get("reason")
    reason = reason.strip() if isinstance(reason, str) else ""
    amended_text = fields.get("approved_payload")
    amended = amended_text if isinstance(amended_text, str) else None
    assert session.identity is not None
    try:
        verdict = Verdict(verdict_text if isinstance(verdict_text, str) else "")
    except ValueError:
        return await _detail(console, session, request_id, error="Choose Approve or Reject.", status=400)
    if verdict is Verdict.REJECT and not reason:
        error = "A reason is required to reject: write in Reason what the agent should know."
        return await _detail(console, session, request_id, error=error, status=400)
    try:
        payload = _payload_of(amended) if amended is not None else None
        if payload is not None and not isinstance(payload, dict):
            raise InvalidInput("the changed payload must be a JSON object ({...}), like the payload the agent sent")
        if payload is not None:  # a field left masked ([redact]) keeps the value the agent asked with
            asked = await console.service.get(request_id)
            payload = console.service.policy.config.redact.redaction.restore(payload, asked.payload)
        decided = await console.service.vote(
            request_id, session.identity, verdict, reason or None, approved_payload=payload
        )
    except SignoffError as exc:
        if isinstance(exc, Forbidden):
            await console.service.record_refusal(request_id, session.identity, exc.message)
        logger.info("console vote refused: %s", exc.message, extra={"reviewer": session.identity})
        status = _STATUS_OF_ERROR.get(type(exc), 400)
        return await _detail(
            console, session, request_id, error=exc.message, status=status, reason=reason, amended=amended
        )
    logger.info("console vote: %s %s %s", session.identity, verdict.value, request_id)
    return redirect(f"/requests/{request_id}?voted={'changed' if decided.payload_changed else verdict.value}")


async def static(_: Console, request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC:
        return secured(Response("not found", status_code=404))
    return secured(FileResponse(HERE / "static" / name, media_type=STATIC[name]))
