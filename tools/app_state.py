"""What every MCP tool call shares: the server's state, the caller's identity, and domain errors as tool errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

from signoff.storage import ApprovalRequest, Forbidden, SignoffError, Status
from signoff.storage.audit import check_request
from signoff.storage.errors import unknown_request
from signoff.tools.approvals import lifecycle, receipts
from signoff.tools.approvals.service import ApprovalService
from signoff.tools.approvals.views import ApprovalStatus
from signoff.tools.models.service import ModelService

logger = logging.getLogger(__name__)

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class AppState:
    """What the server's lifespan hands to every tool call."""

    service: ApprovalService
    permission_wait_seconds: float = 120.0
    permission_agent_id: str = "claude-code"
    models: ModelService | None = None  #: the model control plane (tools/model_handlers.py)
    receipt_key: bytes = b""  #: signs approval receipts (tools/receipts.py)
    agents_see_all: bool = False  #: with HTTP auth, let agents read requests other agents made

    def visible(self, request: ApprovalRequest) -> ApprovalRequest:
        """The request, if the caller may see it: an authenticated agent sees only its own."""
        caller = caller_identity()
        if caller is not None and not self.agents_see_all and request.agent_id != caller:
            raise unknown_request(request.id)  # as if it did not exist: ids of others' requests leak nothing
        return request

    def own(self, request: ApprovalRequest) -> ApprovalRequest:
        """The request, if the caller may change it (withdraw it): an authenticated agent changes only its own.
        ``agents_see_all`` lets an agent read the others' requests, never act on them (review R3)."""
        caller = caller_identity()
        if caller is not None and self.visible(request).agent_id != caller:
            raise Forbidden(
                f"request {request.id} was made by {request.agent_id or 'another agent'}, not by you ({caller}):"
                " only the agent that asked can withdraw it"
            )
        return request

    async def status(
        self,
        request: ApprovalRequest,
        *,
        strict: bool = True,
        just_created: bool = False,
        reveal: bool | None = None,
    ) -> ApprovalStatus:
        """The request as the agent sees it, with a receipt while its approval is actionable (approved, not lapsed,
        not a used single-use approval): only if its row agrees with its own audit events (``check_request``: one
        indexed read of a few events, approved requests only), so a row edited behind signoff's back never gets a
        signed receipt. ``strict`` refuses the call; otherwise (a list) the item comes without a receipt and says why.

        ``just_created``: ``request`` is the object this call built and committed with its events a moment ago (an
        approval the policy gave at once). Its row and events come from the same object in memory, not from the
        database, so comparing them could find nothing an edit made: the check is skipped.

        ``reveal``: whether the values ``[redact]`` masks may be shown (``ApprovalStatus.masked`` otherwise). By
        default, to the agent that asked only (it acts with the approved payload), or to a caller without an
        identity (stdio, or HTTP without ``[auth]``: agents are not told apart); never to another agent
        (``agents_see_all``). Reviewers' and exports' callers say which they want."""
        status = await self._status(request, strict=strict, just_created=just_created)
        if reveal is None:
            caller = caller_identity()
            reveal = caller is None or request.agent_id == caller
            if not reveal and status.actionable:  # another agent's approval (agents_see_all): never its to act on
                status = status.model_copy(
                    update={
                        "actionable": False,
                        "receipt": None,
                        "message": f"approved for {request.agent_id or 'another agent'}, not for you: only the agent"
                        " that asked acts on an approval (and verify_receipt refuses its receipt to any other)",
                    }
                )
        return status if reveal else status.masked(request, self.service.policy.config.redact.redaction)

    async def _status(self, request: ApprovalRequest, *, strict: bool, just_created: bool) -> ApprovalStatus:
        service = self.service
        now, ttl = service.clock.now(), service.receipt_ttl_seconds

        def view(receipt: receipts.Receipt | None = None) -> ApprovalStatus:
            return ApprovalStatus.of(request, receipt, stopping=service.stopping, now=now, receipt_ttl_seconds=ttl)

        if not self.receipt_key or request.status is not Status.APPROVED:
            return view()
        finding = None if just_created else await check_request(service.store, request)
        if finding is None:
            actionable = lifecycle.actionable(request, now, ttl)
            return view(receipts.issue(self.receipt_key, request, ttl) if actionable else None)
        logger.error(
            "request %s disagrees with its audit log (%s, column %s: %s); no receipt issued",
            request.id,
            finding.row,
            finding.column,
            finding.reason,
            extra={"request_id": request.id},
        )
        message = (
            f"do not act: request {request.id}'s stored row disagrees with its audit log (column {finding.column});"
            " no receipt is issued. An operator should run `signoff audit verify`."
        )
        if strict:
            raise ToolError(message)
        return view().model_copy(update={"message": message, "actionable": False})


@asynccontextmanager
async def domain_errors() -> AsyncIterator[None]:
    """Domain errors reach the agent as tool errors with their message (what to change)."""
    try:
        yield
    except SignoffError as exc:
        raise ToolError(exc.message) from exc


def caller_identity() -> str | None:
    """Who is calling, when the HTTP transport authenticated them (None over stdio, or without auth)."""
    token = get_access_token()
    return token.client_id if token is not None else None


def state_of(ctx: Context[AppState]) -> AppState:
    return ctx.request_context.lifespan_context
