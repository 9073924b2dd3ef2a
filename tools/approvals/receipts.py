"""Approval receipts: proof, signed by the server, that this exact action and payload were approved.

The code that performs an approved action checks the receipt against the arguments it is about to use,
and refuses when they differ or the receipt has expired. Receipts are signed with HMAC-SHA256 under a server
key: whoever verifies needs the key. Only the server (the ``verify_receipt`` tool) also knows whether the
approval still stands: a single-use approval that was used is refused there (``standing``). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import Field, ValidationError

from signoff.storage import ApprovalRequest, DecidedBy, Status, Verdict
from signoff.storage.canonical import canonical_json, payload_sha256
from signoff.storage.timefmt import from_text, to_text
from signoff.tools.approvals import lifecycle
from signoff.tools.wire import WireModel

VERSION = "v1"  #: the signing scheme: HMAC-SHA256 over the canonical JSON of the other fields


class Receipt(WireModel):
    """Signed proof that ``action`` with the payload hashing to ``payload_sha256`` was approved (the approved
    payload: when a reviewer approved with changes, the changed one, not the one asked)."""

    request_id: str
    action: str
    payload_sha256: str
    decided_at: str
    decided_by: str = Field(description="policy or human")
    approvers: list[str]
    expires_at: str = Field(description="After this moment the receipt proves nothing: ask for a new approval")
    signature: str = Field(description="v1=<hex HMAC-SHA256 of the other fields as canonical JSON>")


def issue(key: bytes, request: ApprovalRequest, ttl_seconds: int | None = None) -> Receipt | None:
    """The receipt of an approved request; None for any other status. It expires when the approval lapses
    (``lifecycle.lapses_at``): ``ttl_seconds`` after the decision, or (by default) when the request itself expires."""
    expires_at = lifecycle.lapses_at(request, ttl_seconds)
    if expires_at is None or request.decided_at is None:
        return None
    fields: dict[str, Any] = {
        "request_id": request.id,
        "action": request.action,
        "payload_sha256": request.approved_sha256,  # the payload a reviewer changed it to, if one did
        "decided_at": to_text(request.decided_at),
        "decided_by": (request.decided_by or DecidedBy.POLICY).value,
        "approvers": [v.reviewer for v in request.votes if v.verdict is Verdict.APPROVE],
        "expires_at": to_text(expires_at),
    }
    return Receipt(**fields, signature=_sign(key, fields))


def check(
    key: bytes, receipt: Mapping[str, Any] | Receipt, action: str, payload: Mapping[str, Any], *, now: datetime
) -> str | None:
    """Why the receipt does not approve ``action`` with ``payload`` at ``now``, or None when it does.

    It cannot know whether a single-use approval was used since: ask the server (``verify_receipt``) for that."""
    try:
        parsed = receipt if isinstance(receipt, Receipt) else Receipt.model_validate(receipt)
    except ValidationError as exc:
        return f"not a receipt: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}"
    fields = parsed.model_dump(exclude={"signature"})
    if not hmac.compare_digest(_sign(key, fields), parsed.signature):
        return "the signature does not match: the receipt was forged, altered, or signed by another server"
    try:
        expires_at = from_text(parsed.expires_at)
    except ValueError:
        return "the receipt's expires_at is not a time this server wrote"
    if now >= expires_at:
        return f"the receipt expired at {parsed.expires_at}: ask for a new approval"
    if parsed.action != action:
        return f"the receipt approves {parsed.action!r}, not {action!r}"
    try:
        digest = payload_sha256(action, payload)
    except (TypeError, ValueError, RecursionError):
        return "the payload is not plain JSON (NaN, Infinity or another value JSON cannot hold)"
    if parsed.payload_sha256 != digest:
        return "the payload differs from the approved one: ask for a new approval with these arguments"
    return None


def standing(request: ApprovalRequest, now: datetime, ttl_seconds: int | None = None) -> str | None:
    """Why the approval behind a genuine, unexpired receipt no longer stands, or None when it does (``ttl_seconds``:
    the policy's ``receipt_ttl_seconds`` now, which a reload may have shortened since the receipt was signed)."""
    if request.status is not Status.APPROVED:
        return f"request {request.id} is {request.status}, not approved"
    if (gone := lifecycle.lapsed(request, now, ttl_seconds)) is not None:
        return f"the approval of request {request.id} lapsed at {to_text(gone)}: ask for a new approval"
    if request.consumed_at is not None:
        return (
            f"the approval of request {request.id} was used at {to_text(request.consumed_at)}; it allowed one use"
            " only: ask for a new approval"
        )
    return None


def _sign(key: bytes, fields: Mapping[str, Any]) -> str:
    digest = hmac.new(key, canonical_json(dict(fields)).encode(), hashlib.sha256).hexdigest()
    return f"{VERSION}={digest}"
