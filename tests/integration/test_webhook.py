"""The signed webhook, against a real HTTP receiver on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from signoff.notifiers import DeliveryFailed, WebhookNotifier
from signoff.notifiers.webhook import verify
from tests.factories import make_request
from tests.integration.support import webhook_receiver

SECRET = "whsec-test"


@asynccontextmanager
async def receiver(
    status: int, headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[str, list[tuple[bytes, dict[str, str]]]]]:
    received: list[tuple[bytes, dict[str, str]]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), dict(request.headers)))
        return web.Response(status=status, headers=headers)

    async with webhook_receiver(hook) as url:
        yield url, received


async def test_the_webhook_is_signed_and_describes_the_request() -> None:
    request = make_request()
    async with receiver(204) as (url, received):
        await WebhookNotifier(url, SECRET).deliver(request)
    [(body, headers)] = received
    at, delivery, signature = (
        headers["X-Signoff-Timestamp"],
        headers["X-Signoff-Delivery"],
        headers["X-Signoff-Signature"],
    )
    assert verify(SECRET, at, delivery, body, signature)
    assert not verify("another-secret", at, delivery, body, signature)
    assert not verify(SECRET, at, delivery, body + b" ", signature)
    document = json.loads(body)
    assert document["event"] == "request.pending"
    assert document["request"]["request_id"] == request.id
    assert document["request"]["payload_sha256"] == request.payload_sha256
    assert delivery.startswith(f"{request.id}:")


@pytest.mark.parametrize("status", [404, 500, 503])
async def test_a_refusing_receiver_means_retry(status: int) -> None:
    async with receiver(status) as (url, _):
        with pytest.raises(DeliveryFailed, match=str(status)):
            await WebhookNotifier(url, SECRET).deliver(make_request())


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [("7", 7.0), ("²", None), ("1e9", None), ("-5", None), ("Wed, 21 Oct 2026 07:28:00 GMT", None), ("9" * 30, 3600.0)],
)
async def test_a_receivers_retry_after_is_followed_only_as_plain_seconds_and_within_an_hour(
    retry_after: str, wait: float | None
) -> None:
    """A receiver's Retry-After is its word, not ours: a number Python reads but HTTP does not ("²", "1e9") is no
    delay and no crash, and none parks a notification for longer than an hour."""
    async with receiver(503, {"Retry-After": retry_after}) as (url, _):
        with pytest.raises(DeliveryFailed) as failed:
            await WebhookNotifier(url, SECRET).deliver(make_request())
    assert failed.value.retry_after == wait


async def test_an_unreachable_receiver_means_retry() -> None:
    async with receiver(200) as (url, _):
        pass  # closed again: nothing listens on that port now
    with pytest.raises(DeliveryFailed, match="could not be reached"):
        await WebhookNotifier(url, SECRET, timeout=5).deliver(make_request())
