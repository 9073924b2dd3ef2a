"""The MCP tools agents call: validate, call the service, turn domain errors into ToolError.

No tool here can approve or reject anything: deciding is for people (the CLI, Slack, the reviewer HTTP API).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types import TextContent, ToolAnnotations
from pydantic import Field

from signoff.storage import ApprovalRequest, InvalidInput, Order, RequestQuery, Status
from signoff.tools.app_state import READ_ONLY, AppState, caller_identity, domain_errors, state_of
from signoff.tools.approvals.permissions import permission
from signoff.tools.approvals.service import ApprovalService, Draft, ProgressCallback, Submitted
from signoff.tools.approvals.views import ApprovalStatus, ReceiptCheck, RequestList, decode_cursor, encode_cursor

MAX_WAIT_SECONDS = 300
T = TypeVar("T")


def _progress(ctx: Context[AppState]) -> ProgressCallback:
    async def report(done: float, total: float, message: str) -> None:
        await ctx.report_progress(done, total=total, message=message)

    return report


async def _call(ctx: Context[AppState], work: Callable[[ApprovalService], Awaitable[T]]) -> T:
    async with domain_errors():
        return await work(state_of(ctx).service)


WaitSeconds = Annotated[
    float,
    Field(
        ge=0,
        le=MAX_WAIT_SECONDS,
        description=(
            "Seconds to wait for a human decision before answering (0 = answer at once). While waiting the server"
            " sends progress notifications; if time runs out the answer is status 'pending' (call get_status again)."
        ),
    ),
]
RequestId = Annotated[
    str, Field(min_length=1, max_length=64, description="The request_id returned by request_approval")
]


def register_tools(mcp: MCPServer[AppState]) -> None:
    @mcp.tool(
        title="Request human approval",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
        ),
    )
    async def request_approval(
        ctx: Context[AppState],
        action: Annotated[
            str,
            Field(description="Dotted name of what you are about to do, e.g. 'payments.transfer', 'db.drop_table'"),
        ],
        summary: Annotated[str, Field(description="One or two sentences a reviewer reads: what, to whom, why")],
        payload: Annotated[
            dict[str, Any],
            Field(description="The exact arguments you will execute with (a JSON object); the approval binds to them"),
        ] = {},  # noqa: B006 - pydantic copies defaults; this is the schema's default
        confidence: Annotated[
            float | None, Field(ge=0, le=1, description="How sure you are this is right and intended, 0 to 1")
        ] = None,
        flags: Annotated[list[str], Field(description="Labels that may force review, e.g. 'fairness:age', 'pii'")] = [],  # noqa: B006
        agent_id: Annotated[str | None, Field(description="Your agent's stable name, e.g. 'billing-bot'")] = None,
        idempotency_key: Annotated[
            str | None,
            Field(max_length=200, description="Retry-safe key: the same key returns the first request"),
        ] = None,
        wait_seconds: WaitSeconds = 0,
        expires_in_seconds: Annotated[
            int | None,
            Field(ge=1, description="Give up (status 'expired') if nobody decides within this time"),
        ] = None,
        model: Annotated[
            str | None,
            Field(max_length=128, description="The model whose output this action acts on, e.g. 'fraud-scorer'"),
        ] = None,
        version: Annotated[
            str | None, Field(max_length=128, description="That model's version, as resolve_model returned it")
        ] = None,
        decision_id: Annotated[
            str | None, Field(max_length=100, description="The decision_id resolve_model returned for this inference")
        ] = None,
    ) -> ApprovalStatus:
        """Ask for approval BEFORE a risky action (moving money, deleting data, deploying, emailing customers).

        The policy answers at once ('approved' or 'rejected') or routes the request to people ('pending').
        Only perform the action when status is 'approved' AND actionable is true, and only with exactly this
        action and payload, before actionable_until (approved but actionable false: the approval lapsed or was
        used; do not act). If 'pending', call get_status with the request_id (use wait_seconds to wait). Never
        retry with a new request to get a different answer (the same action and payload asked again while people
        have it, or after they did not approve it, goes to people again); reuse idempotency_key when retrying
        after an error (it returns the same request, so after a lapsed approval ask with a new idempotency_key).
        When a registered model produced this decision, pass model, version and the decision_id from
        resolve_model: people's verdicts then count in that version's model_stats.
        """
        async with domain_errors():
            await _check_model_link(state_of(ctx), model, version, decision_id)
        draft = Draft(
            action=action,
            summary=summary,
            payload=payload,
            confidence=confidence,
            flags=tuple(flags),
            agent_id=caller_identity() or agent_id,  # an authenticated caller cannot speak for another agent
            idempotency_key=idempotency_key,
            expires_in_seconds=expires_in_seconds,
            model=model,
            model_version=version,
            model_decision_id=decision_id,
        )

        async def work(service: ApprovalService) -> Submitted:
            submitted = await service.submit(draft)
            request = submitted.request
            if wait_seconds and request.status is Status.PENDING:
                return Submitted(await service.wait(request.id, wait_seconds, _progress(ctx)), False)  # changed since
            return submitted

        answer = await _call(ctx, work)
        return await state_of(ctx).status(answer.request, just_created=answer.created)

    @mcp.tool(title="Get approval status", annotations=READ_ONLY)
    async def get_status(
        ctx: Context[AppState], request_id: RequestId, wait_seconds: WaitSeconds = 0
    ) -> ApprovalStatus:
        """Read the verdict on a request you made with request_approval.

        With wait_seconds, returns as soon as a human decides (or 'pending' when the time is up: call again).
        Proceed only on 'approved' with actionable true, before actionable_until; on 'approved' with actionable
        false (the approval lapsed or was used), 'rejected', 'expired' or 'cancelled' do not perform the action.
        """

        async def work(service: ApprovalService) -> ApprovalRequest:
            request = state_of(ctx).visible(await service.get(request_id))
            if wait_seconds:
                return await service.wait(request.id, wait_seconds, _progress(ctx))
            return request

        return await state_of(ctx).status(await _call(ctx, work))

    @mcp.tool(
        title="Cancel an approval request",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
        ),
    )
    async def cancel_request(
        ctx: Context[AppState],
        request_id: RequestId,
        reason: Annotated[str, Field(description="Why the request is withdrawn; shown to reviewers")],
    ) -> ApprovalStatus:
        """Withdraw a pending request you no longer need (the plan changed). Reviewers can no longer approve it.

        A request that is already decided cannot be cancelled; the error says how it was decided.
        """

        async def work(service: ApprovalService) -> ApprovalRequest:
            state_of(ctx).own(await service.get(request_id))
            return await service.cancel(request_id, reason)

        return await state_of(ctx).status(await _call(ctx, work))

    @mcp.tool(title="List approval requests", annotations=READ_ONLY)
    async def list_requests(
        ctx: Context[AppState],
        status: Literal["pending", "approved", "rejected", "expired", "cancelled"] | None = None,
        action: Annotated[str | None, Field(description="Exact action name, e.g. 'payments.transfer'")] = None,
        agent_id: str | None = None,
        since: Annotated[datetime | None, Field(description="Only requests created at or after (ISO 8601)")] = None,
        until: Annotated[datetime | None, Field(description="Only requests created before (ISO 8601)")] = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Field(description="next_cursor from the previous page")] = None,
        order: Annotated[
            Literal["newest", "priority"],
            Field(
                description="'newest' (default): newest first. 'priority': pending requests only, most urgent first,"
                " then the nearest deadline"
            ),
        ] = "newest",
    ) -> RequestList:
        """The approval history, newest first, with filters and pagination (pass next_cursor to continue).

        order='priority' lists the pending requests as reviewers should take them: urgent first, then the nearest
        deadline. Its pages follow that order: a request decided meanwhile drops out, and one created after the
        first page shows up only on a new listing (call again without cursor).
        """
        by_priority = order == "priority"
        async with domain_errors():
            if by_priority and status not in (None, "pending"):
                raise InvalidInput(
                    f"order='priority' lists pending requests only: omit status or pass 'pending', not {status!r}"
                )
            query = RequestQuery(
                order=Order.PRIORITY if by_priority else Order.NEWEST,
                status=Status.PENDING if by_priority else Status(status) if status else None,
                action=action,
                agent_id=agent_id if state_of(ctx).agents_see_all else (caller_identity() or agent_id),
                since=_aware(since, "since"),
                until=_aware(until, "until"),
                limit=limit,
                before=decode_cursor(cursor, Order(order)) if cursor else None,
            )
        page = await _call(ctx, lambda s: s.list_requests(query))
        return RequestList(
            items=[await state_of(ctx).status(r, strict=False) for r in page.items],
            next_cursor=encode_cursor(page.next_cursor),
        )

    @mcp.tool(title="Verify an approval receipt", annotations=READ_ONLY)
    async def verify_receipt(
        ctx: Context[AppState],
        receipt: Annotated[dict[str, Any], Field(description="The receipt from an approved request's status")],
        action: Annotated[str, Field(description="The action you are about to perform")],
        payload: Annotated[dict[str, Any], Field(description="The exact arguments you are about to use")] = {},  # noqa: B006
    ) -> ReceiptCheck:
        """Check, right before acting, that a receipt approves exactly this action and payload, now.

        valid=false means: do not perform the action; the reason says why (it differs, it expired or its
        approval lapsed, its single-use approval was already used, or another agent asked for it): ask for a new
        approval.
        """
        state = state_of(ctx)
        caller = caller_identity()
        problem = await _call(
            ctx, lambda s: s.verify_receipt(state.receipt_key, receipt, action, payload, caller=caller)
        )
        return ReceiptCheck(valid=problem is None, reason=problem)

    @mcp.tool(
        title="Permission prompt (Claude Code)",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
        structured_output=False,
    )
    async def permission_prompt(
        ctx: Context[AppState],
        tool_name: Annotated[str, Field(description="The tool Claude Code wants to run")],
        input: Annotated[dict[str, Any], Field(description="The tool's input")],
        tool_use_id: str | None = None,
    ) -> list[TextContent]:
        """Claude Code's --permission-prompt-tool: allow or deny a tool call by signoff's policy and reviewers.

        Returns one text block of JSON: {"behavior":"allow","updatedInput":...} or {"behavior":"deny","message":...}.
        """
        state = state_of(ctx)
        async with domain_errors():
            answer = await permission(
                state.service,
                tool_name,
                input,
                agent_id=caller_identity() or state.permission_agent_id,
                wait_seconds=state.permission_wait_seconds,
                on_progress=_progress(ctx),
                tool_use_id=tool_use_id,
            )
        return [TextContent(type="text", text=json.dumps(answer))]


async def _check_model_link(state: AppState, model: str | None, version: str | None, decision_id: str | None) -> None:
    """A request's link to a model names a registered version of a registered model, and a decision_id (optional)
    that resolve_model issued for that version; nothing is stored when it does not."""
    if model is None and version is None and decision_id is None:
        return
    if model is None or version is None:
        missing = "model" if model is None else "version"
        raise InvalidInput(
            f"{missing} is missing: a link to a model names both model and version (and optionally the decision_id"
            " resolve_model returned); pass both, or none of model, version and decision_id"
        )
    if state.models is None:
        raise InvalidInput(
            "this server's model control plane is off, so a request cannot name a model: omit model, version and"
            " decision_id"
        )
    await state.models.telemetry.check_link(model, version, decision_id)


def _aware(moment: datetime | None, name: str) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise InvalidInput(f"{name} needs a timezone, e.g. 2026-01-31T09:00:00Z")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+14:00 is before the first representable UTC moment
        raise InvalidInput(f"{name} is out of range: give a time between the years 1 and 9999 in UTC") from None
