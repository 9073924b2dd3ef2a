"""What every MCP tool call shares: the server's state, the caller's identity, and domain errors as tool errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from signoff.storage import ApprovalRequest, SignoffError
from signoff.storage.errors import unknown_request
from signoff.tools.approvals import receipts
from signoff.tools.approvals.service import ApprovalService
from signoff.tools.approvals.views import ApprovalStatus
from signoff.tools.models.service import ModelService

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

    def status(self, request: ApprovalRequest) -> ApprovalStatus:
        receipt = receipts.issue(self.receipt_key, request) if self.receipt_key else None
        return ApprovalStatus.of(request, receipt, stopping=self.service.stopping)


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
