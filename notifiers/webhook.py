"""A signed JSON POST for every state of a request, for systems that are not Slack.

Each POST carries three headers:

- ``X-Signoff-Delivery``: this notification's id, ``<request id>:<n>``, unique per notification (a new request, a
  vote, an escalation, a verdict each get their own) and the same when one notification is retried. Deliveries
  are retried until they get a 2xx, so the same one may arrive more than once: drop ids you have already seen.
- ``X-Signoff-Timestamp``: when it was sent, in Unix seconds.
- ``X-Signoff-Signature``: ``v2=<hex>``, the HMAC-SHA256 with the shared secret of the string
  ``v2:<X-Signoff-Timestamp>:<X-Signoff-Delivery>:<raw body>``. Check it (constant-time) before trusting the
  body or the delivery id, and refuse timestamps more than five minutes old (``verify`` below does both).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from contextvars import ContextVar
from typing import Any

import aiohttp

from signoff.notifiers.base import DeliveryFailed, DeliveryRefused, retry_after_seconds
from signoff.storage import ApprovalRequest, tracing

#: The id of the notification being delivered, set by whoever delivers it (the server's outbox worker sets
#: ``<request id>:<outbox row id>``, the same across retries of that row). Unset, each call gets a fresh id.
delivery_id: ContextVar[str | None] = ContextVar("signoff_webhook_delivery_id", default=None)


def sign(secret: str, timestamp: str, delivery: str, body: bytes) -> str:
    signed = b"v2:" + timestamp.encode() + b":" + delivery.encode() + b":" + body
    return "v2=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify(
    secret: str, timestamp: str, delivery: str, body: bytes, signature: str, *, now: float | None = None
) -> bool:
    """The receiver's check (also what signoff's tests use): a valid signature made in the last five minutes,
    over this body and this delivery id."""
    try:
        fresh = abs((now or time.time()) - int(timestamp)) <= 300
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, delivery, body), signature)


def document(request: ApprovalRequest) -> dict[str, Any]:
    return {
        "event": f"request.{request.status}",
        "request": {
            "request_id": request.id,
            "status": request.status.value,
            "decided_by": request.decided_by.value if request.decided_by else None,
            "action": request.action,
            "summary": request.summary,
            "agent_id": request.agent_id,
            "payload": dict(request.payload),
            "payload_sha256": request.payload_sha256 or None,  # null: [redact] masked a value (Redaction.request)
            "triggers": [{"kind": t.kind.value, "detail": t.detail} for t in request.triggers],
            "votes": [
                {"reviewer": v.reviewer, "verdict": v.verdict.value, "comment": v.comment, "at": v.at.isoformat()}
                for v in request.votes
            ],
            "approvals_required": request.approvals_required,
            "created_at": request.created_at.isoformat(),
            "expires_at": request.expires_at.isoformat(),
            "decided_at": request.decided_at.isoformat() if request.decided_at else None,
            "escalated_at": request.escalated_at.isoformat() if request.escalated_at else None,
            "escalate_to": request.escalate_to,
        },
    }


class WebhookNotifier:
    name = "webhook"

    def __init__(self, url: str, secret: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self.secret = secret
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def deliver(self, request: ApprovalRequest) -> None:
        body = json.dumps(document(request), sort_keys=True).encode()
        timestamp = str(int(time.time()))
        delivery = delivery_id.get() or f"{request.id}:{secrets.token_hex(8)}"
        await post_signed(self.url, self.secret, self.timeout, body, timestamp, delivery)


async def post_signed(
    url: str, secret: str, timeout: aiohttp.ClientTimeout, body: bytes, timestamp: str, delivery: str
) -> None:
    """POST ``body`` with signoff's signature headers; DeliveryFailed (with any Retry-After) unless a 2xx answers.
    Notifications and alerts both go out this way, so a receiver checks them with the same ``verify``."""
    headers = {
        "Content-Type": "application/json",
        "X-Signoff-Timestamp": timestamp,
        "X-Signoff-Delivery": delivery,
        "X-Signoff-Signature": sign(secret, timestamp, delivery, body),
    }
    if traceparent := tracing.current_traceparent():  # the delivery's span, in the agent's trace (W3C)
        headers["traceparent"] = traceparent
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, data=body, headers=headers, allow_redirects=False) as response,
        ):
            if response.status >= 300:
                raise _failure(response.status, response.headers.get("Retry-After"))
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DeliveryFailed(f"webhook could not be reached: {exc!r}") from exc


def _failure(status: int, retry_after: str | None) -> DeliveryFailed:
    """A 4xx but 408 and 429 is the receiver refusing this delivery for good; anything else is retried, after the
    receiver's Retry-After (in seconds) when it gives one."""
    if 400 <= status < 500 and status not in (408, 429):
        return DeliveryRefused(f"webhook answered HTTP {status}")
    return DeliveryFailed(f"webhook answered HTTP {status}", retry_after=retry_after_seconds(retry_after))
