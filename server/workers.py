"""Background work the server owns: closing expired requests and delivering the outbox."""

from __future__ import annotations

import logging
from datetime import timedelta

import anyio

from notifiers import DeliveryFailed, Notifier
from storage import EventKind, NewEvent, SignoffError
from tools.service import ApprovalService

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0


async def sweep_expired(service: ApprovalService, interval: float) -> None:
    """Expire overdue requests every ``interval`` seconds, so nothing stays pending past its deadline."""
    while True:
        try:
            if count := await service.expire_due():
                logger.info("expired %d overdue request(s)", count)
        except SignoffError:
            logger.exception("expiry sweep failed; retrying")
        await anyio.sleep(interval)


def backoff(attempts: int) -> float:
    """1 s, 2 s, 4 s, ... capped at five minutes."""
    return float(min(MAX_BACKOFF_SECONDS, 2 ** min(attempts, 16)))


async def deliver_outbox(service: ApprovalService, notifier: Notifier, idle_wait: float = 1.0) -> None:
    """Deliver queued notifications; a failure is retried with backoff and never changes a decision."""
    store, clock = service.store, service.clock
    while True:
        token = await store.change_token()
        for item in await store.claim_outbox(clock.now()):
            request = await store.get(item.request_id)
            if request is None:
                continue
            try:
                await notifier.deliver(request)
            except DeliveryFailed as exc:
                delay = backoff(item.attempts)
                logger.warning("notification for %s failed (%s); retry in %.0fs", request.id, exc, delay)
                await store.retry_outbox(item.id, clock.now() + timedelta(seconds=delay), str(exc))
                continue
            event = NewEvent(
                kind=EventKind.NOTIFIED,
                request_id=request.id,
                at=clock.now(),
                data={"notifier": notifier.name, "status": request.status.value},
            )
            await store.complete_outbox(item.id, event)
        await store.wait_for_change(token, idle_wait)
