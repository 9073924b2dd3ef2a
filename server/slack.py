"""Slack inside the server: the notifier, the Socket Mode listener, and the HTTP interactivity route."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from signoff.notifiers import SlackHttpEndpoint, SlackInteractions, SlackNotifier, socket_mode_client, web_client
from signoff.notifiers.slack_transport import handle_safely
from signoff.server.config import Settings
from signoff.storage import ApprovalRequest, Verdict
from signoff.tools.access import display_name
from signoff.tools.approvals import lifecycle
from signoff.tools.approvals.service import ApprovalService

logger = logging.getLogger(__name__)

MAX_INTERACTION_BYTES = 1 << 20  # Slack's payloads are a few kilobytes; refuse anything absurd before verifying


@dataclass(slots=True)
class SlackParts:
    notifier: SlackNotifier
    interactions: SlackInteractions
    endpoint: SlackHttpEndpoint | None  #: set when SIGNOFF_SLACK_SIGNING_SECRET is


@asynccontextmanager
async def slack_session(
    settings: Settings, service: ApprovalService, background: TaskGroup
) -> AsyncIterator[SlackParts | None]:
    """Slack's parts for the server's lifetime; None when no bot token is configured."""
    if not settings.slack_bot_token:
        yield None
        return
    client = web_client(settings.slack_bot_token, settings.slack_api_url)

    # a Slack user is a reviewer only where the approvers name them (named_only): anyone in a channel can click.
    # ``reviewer`` is the Slack user id; the vote is recorded under the [[people]] name that id belongs to, if any
    async def on_vote(
        request_id: str,
        reviewer: str,
        verdict: Verdict,
        comment: str | None,
        reviewer_ids: tuple[str, ...],
        groups: tuple[str, ...],
    ) -> ApprovalRequest:
        reviewer = display_name(service.policy.config.people, reviewer)
        return await service.vote(
            request_id, reviewer, verdict, comment, reviewer_ids=reviewer_ids, groups=groups, named_only=True
        )

    async def may_vote(
        request_id: str, reviewer: str, reviewer_ids: tuple[str, ...], groups: tuple[str, ...]
    ) -> str | None:
        reviewer = display_name(service.policy.config.people, reviewer)
        return await service.vote_refusal(
            request_id, reviewer, reviewer_ids=reviewer_ids, groups=groups, named_only=True
        )

    interactions = SlackInteractions(
        client, service.store, on_vote, service.record_refusal, may_vote, lifecycle.outcome_phrase
    )

    def spawn(payload: Mapping[str, Any]) -> None:
        background.start_soon(handle_safely, interactions, payload)

    endpoint = (
        SlackHttpEndpoint(settings.slack_signing_secret, interactions, spawn) if settings.slack_signing_secret else None
    )
    parts = SlackParts(
        notifier=SlackNotifier(
            web_client(settings.slack_bot_token, settings.slack_api_url, wait_on_rate_limit=False),
            service.store,
            settings.slack_channel,
            amount_field=service.policy.config.slack.amount_field,
            public_url=settings.public_url,
            now=service.clock.now,
        ),
        interactions=interactions,
        endpoint=endpoint,
    )
    if not settings.slack_app_token:
        yield parts
        return
    socket = socket_mode_client(settings.slack_app_token, client, interactions)
    # connect() retries until Slack answers: in the background, so a Slack outage never delays the server
    background.start_soon(socket.connect)
    logger.info("connecting to Slack by Socket Mode")
    try:
        yield parts
    finally:
        with anyio.CancelScope(shield=True):  # the server's task group is being cancelled around us
            await socket.close()  # type: ignore[no-untyped-call]


async def interactions_route(request: Request, parts: SlackParts | None) -> Response:
    """``POST /slack/interactions`` (the HTTP transport only)."""
    if parts is None or parts.endpoint is None:
        return JSONResponse(
            {"error": "Slack interactivity is not set up here: set SIGNOFF_SLACK_SIGNING_SECRET"}, status_code=404
        )
    if int(request.headers.get("content-length") or 0) > MAX_INTERACTION_BYTES:
        return JSONResponse({"error": "request body too large"}, status_code=413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_INTERACTION_BYTES:
            return JSONResponse({"error": "request body too large"}, status_code=413)
    status, content = await parts.endpoint.handle(body, request.headers)
    return JSONResponse(content, status_code=status) if content is not None else Response(status_code=status)
