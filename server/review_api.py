"""The reviewer HTTP API: list requests and vote, as the identity of a reviewer token.

``GET /api/requests?status=pending`` and ``POST /api/requests/{id}/votes`` with
``{"verdict": "approve" | "reject", "comment": "..."}``. Agents' tokens get 403.
"""

from __future__ import annotations

import json

from signoff.server.auth import ConfigTokenVerifier, bearer_identity
from signoff.storage import Conflict, Forbidden, InvalidInput, NotFound, RequestQuery, SignoffError, Status, Verdict
from signoff.tools.access import Role
from signoff.tools.approvals.service import ApprovalService
from signoff.tools.approvals.views import ApprovalStatus
from starlette.requests import Request
from starlette.responses import JSONResponse

_STATUS_OF_ERROR: dict[type[SignoffError], int] = {InvalidInput: 400, Forbidden: 403, NotFound: 404, Conflict: 409}


def _error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="signoff"'} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def list_requests(
    request: Request, service: ApprovalService, verifier: ConfigTokenVerifier | None
) -> JSONResponse:
    code, who = bearer_identity(request, verifier, Role.REVIEWER)
    if code != 200:
        return _error(code, who)
    wanted = request.query_params.get("status", "pending")
    if wanted not in {s.value for s in Status}:
        return _error(400, f"status must be one of {', '.join(s.value for s in Status)}")
    page = await service.list_requests(RequestQuery(status=Status(wanted), limit=200))
    return JSONResponse({"items": [ApprovalStatus.of(r).model_dump(mode="json") for r in page.items]})


async def vote(request: Request, service: ApprovalService, verifier: ConfigTokenVerifier | None) -> JSONResponse:
    code, who = bearer_identity(request, verifier, Role.REVIEWER)
    if code != 200:
        return _error(code, who)
    try:
        body = json.loads(await request.body())
        verdict = Verdict(body["verdict"])
        comment = body.get("comment")
        if comment is not None and not isinstance(comment, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return _error(
            400, 'send JSON {"verdict": "approve" | "reject", "comment": "why"} (a reason is required to reject)'
        )
    try:
        decided = await service.vote(request.path_params["request_id"], who, verdict, comment)
    except SignoffError as exc:
        return _error(_STATUS_OF_ERROR.get(type(exc), 400), exc.message)
    return JSONResponse(ApprovalStatus.of(decided).model_dump(mode="json"))
