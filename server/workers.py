"""Background work the server owns: closing expired requests and delivering the outbox."""

from __future__ import annotations

import logging
from datetime import timedelta

import anyio
from signoff.notifiers import DeliveryFailed, Notifier
from signoff.notifiers.webhook import delivery_id
from signoff.storage import EventKind, NewEvent
from signoff.storage.errors import StorageError
from signoff.tools.approvals.service import ApprovalService

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0
WORKER_POLL_SECONDS = 0.25  #: how soon the outbox notices another process's change; waiting agents poll faster
DELIVERY_GAP_SECONDS = 0.02
DELIVERY_BATCH = 10


async def sweep_expired(service: ApprovalService, interval: float) -> None:
    """Every ``interval`` seconds: expire overdue requests (nothing stays pending past its deadline), and
    escalate those whose escalation time has come."""
    while True:
        try:
            if count := await service.expire_due():
                logger.info("expired %d overdue request(s)", count)
            if count := await service.escalate_due():
                logger.info("escalated %d request(s) nobody decided in time", count)
        except StorageError as exc:  # the database is full, locked, damaged: one line, not a traceback a second
            logger.error("expiry sweep failed: %s Retrying in %.0fs", exc.message, interval)
        except Exception:  # a worker that dies takes the server with it; log, and sweep again next time
            logger.exception("expiry sweep failed; retrying in %.0fs", interval)
        await anyio.sleep(interval)


def backoff(attempts: int) -> float:
    """1 s, 2 s, 4 s, ... capped at five minutes."""
    return float(min(MAX_BACKOFF_SECONDS, 2 ** min(attempts, 16)))


async def deliver_outbox(
    service: ApprovalService, notifier: Notifier, idle_wait: float = 1.0, min_gap: float = DELIVERY_GAP_SECONDS
) -> None:
    """Deliver queued notifications; a failure is retried with backoff and never changes a decision.

    Every commit wakes this worker, most of them with nothing for it to send (an approval the policy gave at once),
    so after a round that did not fill a batch it waits ``min_gap`` before the next: under load a round sends
    several notifications instead of one, and nothing is missed (the change token is taken before the round).
    """
    while True:
        try:
            token = await service.store.change_token()
            if not await _delivery_round(service, notifier):
                await anyio.sleep(min_gap)
            await service.store.wait_for_change(token, idle_wait, poll_interval=WORKER_POLL_SECONDS)
        except StorageError as exc:  # the database full, locked or damaged: one line, and try again later
            logger.error("outbox delivery failed: %s Retrying in %.0fs", exc.message, idle_wait)
            await anyio.sleep(idle_wait)


async def _delivery_round(service: ApprovalService, notifier: Notifier) -> bool:
    """``deliver_due``, logging (not raising) any failure but the database's own."""
    try:
        return await deliver_due(service, notifier)
    except StorageError:
        raise
    except Exception:  # a notifier's or the store's bug: log it whole, and try again on the next round
        logger.exception("outbox delivery round failed; retrying")
        return False


async def deliver_due(service: ApprovalService, notifier: Notifier) -> bool:
    """Deliver what is due, one batch; whether the batch was full (more may be waiting)."""
    store, clock = service.store, service.clock
    items = await store.claim_outbox(clock.now(), limit=DELIVERY_BATCH)
    for item in items:
        request = await store.get(item.request_id)
        if request is None:
            continue
        # One id per outbox row (the newest it covers): retries of a notification repeat it, a later one differs.
        delivery = delivery_id.set(f"{request.id}:{max(item.id, item.upto)}")
        try:
            await notifier.deliver(request)
        except DeliveryFailed as exc:
            await _retry_later(service, item.id, item.attempts, str(exc), exc.retry_after)
            continue
        except Exception as exc:  # a notifier's bug must not stop other notifications or the server
            logger.exception("notifier %s failed on %s", notifier.name, request.id)
            await _retry_later(service, item.id, item.attempts, f"{type(exc).__name__}: {exc}")
            continue
        finally:
            delivery_id.reset(delivery)
        event = NewEvent(
            kind=EventKind.NOTIFIED,
            request_id=request.id,
            at=clock.now(),
            data={"notifier": notifier.name, "status": request.status.value},
        )
        await store.complete_outbox(item, event)
    return len(items) == DELIVERY_BATCH


async def _retry_later(
    service: ApprovalService, item_id: int, attempts: int, error: str, retry_after: float | None = None
) -> None:
    delay = retry_after if retry_after is not None else backoff(attempts)
    logger.warning("notification %d failed (%s); retry in %.0fs", item_id, error, delay)
    await service.store.retry_outbox(item_id, service.clock.now() + timedelta(seconds=delay), error)
