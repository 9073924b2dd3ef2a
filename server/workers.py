"""Background work the server owns: closing expired requests and delivering the outbox."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio

from signoff.notifiers import DeliveryFailed, DeliveryRefused, Notifier, members
from signoff.notifiers.webhook import delivery_id
from signoff.storage import ApprovalRequest, DeliveryMark, DeliveryState, EventKind, NewEvent, OutboxItem, tracing
from signoff.storage.errors import StorageError
from signoff.tools.approvals.service import ApprovalService

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0
WORKER_POLL_SECONDS = 0.25  #: how soon the outbox notices another process's change; waiting agents poll faster
DELIVERY_GAP_SECONDS = 0.02
DELIVERY_BATCH = 10
#: How long an outbox claim holds a row, per notifier about to send it; renewed just before the row is sent, so a
#: batch may outlive the lease its claim took.
LEASE_SECONDS = 120.0
#: One notifier's delivery of one row is cut off (and retried) after this, well inside its share of the lease: the
#: lease never runs out while its holder is still sending, even with clocks a minute apart.
DELIVERY_TIMEOUT_SECONDS = 60.0
NOTIFY_SPAN = "signoff.notify"


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


@dataclass(frozen=True, slots=True)
class DeliveryLimits:
    """When a notifier gives up on a notification (it is then dead-lettered: a ``notify_failed`` event, a warning,
    and ``signoff outbox list`` shows it until ``signoff outbox retry`` queues it again)."""

    max_attempts: int = 50  #: SIGNOFF_NOTIFY_MAX_ATTEMPTS: failed attempts
    give_up_seconds: float = 86_400.0  #: SIGNOFF_NOTIFY_GIVE_UP_SECONDS: since its first failure


async def deliver_outbox(
    service: ApprovalService,
    notifier: Notifier,
    idle_wait: float = 1.0,
    min_gap: float = DELIVERY_GAP_SECONDS,
    limits: DeliveryLimits = DeliveryLimits(),
) -> None:
    """Deliver queued notifications; a failure is retried with backoff and never changes a decision.

    Every commit wakes this worker, most of them with nothing for it to send (an approval the policy gave at once),
    so after a round that did not fill a batch it waits ``min_gap`` before the next: under load a round sends
    several notifications instead of one, and nothing is missed (the change token is taken before the round).
    """
    while True:
        try:
            token = await service.store.change_token()
            if not await _delivery_round(service, notifier, limits):
                await anyio.sleep(min_gap)
            await service.store.wait_for_change(token, idle_wait, poll_interval=WORKER_POLL_SECONDS)
        except StorageError as exc:  # the database full, locked or damaged: one line, and try again later
            logger.error("outbox delivery failed: %s Retrying in %.0fs", exc.message, idle_wait)
            await anyio.sleep(idle_wait)


async def _delivery_round(service: ApprovalService, notifier: Notifier, limits: DeliveryLimits) -> bool:
    """``deliver_due``, logging (not raising) any failure but the database's own."""
    try:
        return await deliver_due(service, notifier, limits)
    except StorageError:
        raise
    except Exception:  # a notifier's or the store's bug: log it whole, and try again on the next round
        logger.exception("outbox delivery round failed; retrying")
        return False


async def deliver_due(
    service: ApprovalService,
    notifier: Notifier,
    limits: DeliveryLimits = DeliveryLimits(),
) -> bool:
    """Deliver what is due, one batch; whether the batch was full (more may be waiting).

    Each notifier (each member of a fan-out) is tracked on its own: one that delivered is not run again when
    another is retried, and each waits out its own backoff or Retry-After.

    Every server runs this. Each row's lease is renewed, with the claim's token, just before the row is sent: a row
    whose lease ran out while earlier rows were sent, and which another server claimed meanwhile, is left to that
    server (and if this one's result comes too late anyway, the store drops it), so no two live servers send it."""
    store, clock = service.store, service.clock
    notifiers = members(notifier)
    items = await store.claim_outbox(clock.now(), lease_seconds=LEASE_SECONDS, limit=DELIVERY_BATCH)
    for item in items:
        await _deliver_item(service, notifiers, item, limits)
    return len(items) == DELIVERY_BATCH


async def _deliver_item(
    service: ApprovalService, notifiers: Sequence[Notifier], item: OutboxItem, limits: DeliveryLimits
) -> None:
    """Deliver one claimed row with each notifier that still owes it, and record the results, while the claim's
    lease holds the row; a row another server took over is left to it."""
    store, clock = service.store, service.clock
    names = [n.name for n in notifiers]
    known = {mark.notifier: mark for mark in item.marks}
    start = clock.now()
    due = [member for member in notifiers if _owes(known.get(member.name), start)]
    # Each send is cut off after DELIVERY_TIMEOUT_SECONDS: the lease outlasts them all, with a margin for clocks.
    if due and not await store.renew_outbox(item, start, LEASE_SECONDS * len(due)):
        logger.warning(
            "notification %d of %s is left to another server: this one's lease ran out before it was sent",
            item.id,
            item.request_id,
            extra={"request_id": item.request_id, "outbox_id": item.id},
        )
        return
    request = await store.get(item.request_id)
    if request is None:
        return
    traceparent = await service.traceparent(request.id)  # each delivery continues the agent's trace
    shown = service.policy.config.redact.redaction.request(request)  # [redact]: masked for every notifier
    marks: list[DeliveryMark] = []
    events: list[NewEvent] = []
    for member in due:
        mark = known.get(member.name)
        now = clock.now()
        # One id per outbox row (the newest it covers): retries of a notification repeat it, a later one differs.
        delivery = delivery_id.set(f"{request.id}:{max(item.id, item.upto)}")
        with tracing.span(
            NOTIFY_SPAN, parent=traceparent, attributes=_notify_attributes(request, member.name, item)
        ) as span:
            try:
                await _deliver_in_time(member, shown)
            except DeliveryFailed as exc:
                span.fail(exc)
                marks.append(_failed(item, request, member.name, mark, now, str(exc), exc, limits, events))
                continue
            except Exception as exc:  # a notifier's bug must not stop other notifications or the server
                span.fail(exc)
                logger.exception("notifier %s failed on %s", member.name, request.id)
                error = f"{type(exc).__name__}: {exc}"
                marks.append(_failed(item, request, member.name, mark, now, error, None, limits, events))
                continue
            finally:
                delivery_id.reset(delivery)
        marks.append(DeliveryMark(notifier=member.name, state=DeliveryState.DELIVERED, at=now))
        events.append(
            NewEvent(
                kind=EventKind.NOTIFIED,
                request_id=request.id,
                at=now,
                data={"notifier": member.name, "status": request.status.value},
            )
        )
    latest = {**known, **{m.notifier: m for m in marks}}
    waiting = [
        m.next_attempt_at
        for name in names
        if (m := latest.get(name)) is not None and m.state is DeliveryState.PENDING and m.next_attempt_at
    ]
    now = clock.now()
    if not await store.record_deliveries(
        item, marks, notifiers=names, now=now, next_attempt_at=min(waiting, default=now), events=events
    ):
        logger.warning(
            "the delivery results of notification %d of %s were dropped: another server settled it or took it over",
            item.id,
            request.id,
            extra={"request_id": request.id, "outbox_id": item.id},
        )


def _owes(mark: DeliveryMark | None, now: datetime) -> bool:
    """Whether a notifier with this mark on the row sends it now: not if it delivered (or gave up) already, nor
    while it waits for its own retry time."""
    return mark is None or not (mark.state.is_final or (mark.next_attempt_at or now) > now)


async def _deliver_in_time(member: Notifier, request: ApprovalRequest) -> None:
    """``member.deliver``, cut off after ``DELIVERY_TIMEOUT_SECONDS`` (a failed attempt, retried with backoff)."""
    try:
        with anyio.fail_after(DELIVERY_TIMEOUT_SECONDS):
            await member.deliver(request)
    except TimeoutError as exc:
        raise DeliveryFailed(f"{member.name} did not answer within {DELIVERY_TIMEOUT_SECONDS:.0f}s") from exc


def _notify_attributes(request: ApprovalRequest, notifier: str, item: OutboxItem) -> dict[str, str | int]:
    return {
        "signoff.request_id": request.id,
        "signoff.notifier": notifier,
        "signoff.status": request.status.value,
        "signoff.outbox_id": item.id,
        "signoff.attempt": item.attempts + 1,
    }


def _failed(
    item: OutboxItem,
    request: ApprovalRequest,
    name: str,
    mark: DeliveryMark | None,
    now: datetime,
    error: str,
    exc: DeliveryFailed | None,
    limits: DeliveryLimits,
    events: list[NewEvent],
) -> DeliveryMark:
    """The mark a failed attempt leaves: pending with its own next attempt, or dead (with its event)."""
    attempts = (mark.attempts if mark is not None else 0) + 1
    first = mark.first_failed_at if mark is not None and mark.first_failed_at else now
    refused = isinstance(exc, DeliveryRefused)
    gave_up = attempts >= limits.max_attempts or (now - first).total_seconds() >= limits.give_up_seconds
    if refused or gave_up:
        why = "it was refused" if refused else f"{attempts} failed attempts since {first:%Y-%m-%d %H:%M:%S}"
        logger.warning(
            "%s gave up on notification %d of %s (%s): %s. Queue it again with: signoff outbox retry %d",
            name,
            item.id,
            request.id,
            why,
            error,
            item.id,
            extra={"request_id": request.id, "notifier": name, "outbox_id": item.id},
        )
        events.append(
            NewEvent(
                kind=EventKind.NOTIFY_FAILED,
                request_id=request.id,
                at=now,
                data={"notifier": name, "status": request.status.value, "attempts": attempts, "error": error[:500]},
            )
        )
        return DeliveryMark(
            notifier=name, state=DeliveryState.DEAD, attempts=attempts, first_failed_at=first, last_error=error, at=now
        )
    delay = exc.retry_after if exc is not None and exc.retry_after is not None else backoff(attempts - 1)
    retry_at = now + timedelta(seconds=delay)
    logger.warning(
        "%s could not deliver notification %d of %s (%s); attempt %d of %d, next at %s (in %.0fs)",
        name,
        item.id,
        request.id,
        error,
        attempts,
        limits.max_attempts,
        f"{retry_at:%H:%M:%S}",
        delay,
        extra={"request_id": request.id, "notifier": name, "outbox_id": item.id},
    )
    return DeliveryMark(
        notifier=name,
        state=DeliveryState.PENDING,
        attempts=attempts,
        next_attempt_at=retry_at,
        first_failed_at=first,
        last_error=error,
    )
