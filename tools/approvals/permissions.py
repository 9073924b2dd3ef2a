"""Claude Code's permission prompt as a use case: one approval lets one exact tool call run once.

Each prompt is decided by the policy on a request of its own (flagged ``signoff:permission-prompt``). A prompt
also looks for an earlier request for the same tool and input from the same agent that a prompt made: a pending
one is waited on; one that PEOPLE approved, that has not been used yet and whose approval has not lapsed (the user
approved it after an earlier prompt timed out) is used, once, and the use is recorded. Nothing else is reused: not
a request the agent made with request_approval (whatever decided it), not one the policy approved. Anything else
asks again.
"""

from __future__ import annotations

from typing import Any

from signoff.storage import ApprovalRequest, Conflict, DecidedBy, InvalidInput, RequestQuery, Status
from signoff.storage.canonical import payload_sha256
from signoff.tools.approvals.service import PERMISSION_PROMPT_FLAG, ApprovalService, Draft, ProgressCallback
from signoff.tools.approvals.views import next_step

RECENT = 20  #: how many of the newest requests for the tool are searched for the same call


async def permission(
    service: ApprovalService,
    tool_name: str,
    tool_input: dict[str, Any],
    *,
    agent_id: str,
    wait_seconds: float,
    on_progress: ProgressCallback | None = None,
    tool_use_id: str | None = None,
) -> dict[str, Any]:
    """``{"behavior": "allow", "updatedInput": ...}`` or ``{"behavior": "deny", "message": ...}``."""
    draft = Draft(
        action=tool_name,
        summary=f"Claude Code wants to run {tool_name}" + (f" (tool use {tool_use_id})" if tool_use_id else ""),
        payload=tool_input,
        agent_id=agent_id,
        permission_prompt=True,
    )
    try:
        request = await _same_call(service, draft) or await service.request_approval(draft)
    except InvalidInput as exc:
        return _deny(f"signoff cannot consider this call: {exc.message}")
    except (TypeError, ValueError, RecursionError):  # hashing the input before the policy could validate it
        return _deny("signoff cannot consider this call: its input is not plain JSON (NaN or Infinity)")
    if request.status is Status.PENDING:
        request = await service.wait(request.id, wait_seconds, on_progress)
    if request.status is Status.APPROVED:
        try:
            await service.consume(request.id)
        except Conflict as exc:  # used meanwhile, or lapsed: "... was already used at ...", "... lapsed at ..."
            return _deny(f"{exc.message}; retry to ask again")
        # a reviewer may have approved it with changes: the tool runs with the input they approved
        return {"behavior": "allow", "updatedInput": dict(request.effective_payload)}
    if request.status is Status.PENDING:
        stopping = ""
        if service.stopping:
            stopping = " The signoff server is stopping: retry on it once it is back, or on another."
        return _deny(
            f"signoff request {request.id} is waiting for a person to approve {tool_name}. "
            f"Once it is approved, retry the same call.{stopping}"
        )
    return _deny(f"signoff request {request.id}: {next_step(request)}")


async def _same_call(service: ApprovalService, draft: Draft) -> ApprovalRequest | None:
    """An earlier prompt's request for this call that people approved and nobody used yet, else one still
    pending; None when there is neither (then the call is asked again)."""
    digest = payload_sha256(draft.action, draft.payload)
    recent = await service.list_requests(RequestQuery(action=draft.action, agent_id=draft.agent_id, limit=RECENT))
    pending = None
    for earlier in recent.items:
        if earlier.payload_sha256 != digest or PERMISSION_PROMPT_FLAG not in earlier.flags:
            continue  # another call, or a request the agent made itself: never taken for a prompt's approval
        earlier = await service.get(earlier.id)  # expires it first if its time ran out
        if _unused_human_approval(service, earlier):
            return earlier
        if earlier.status is Status.PENDING and pending is None:
            pending = earlier
    return pending


def _unused_human_approval(service: ApprovalService, request: ApprovalRequest) -> bool:
    return request.decided_by is DecidedBy.HUMAN and service.actionable(request)  # approved, unused, not lapsed


def _deny(message: str) -> dict[str, Any]:
    return {"behavior": "deny", "message": message}
