"""The Notifier protocol: tell people about a request. Delivery is retried from the outbox."""

from __future__ import annotations

from typing import Protocol

from signoff.storage import ApprovalRequest, SignoffError


class DeliveryFailed(SignoffError):
    """The notification could not be delivered now; it will be retried."""

    def __init__(self, message: str | None = None, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  #: when the service said when to come back (HTTP 429 Retry-After)


MAX_RETRY_AFTER_SECONDS = 3600.0  #: a longer Retry-After is cut to this: a receiver cannot park a delivery for years


def retry_after_seconds(header: str | None) -> float | None:
    """An HTTP ``Retry-After`` in seconds (RFC 9110 delay-seconds: ASCII digits; an HTTP date or anything else is
    ignored), at most ``MAX_RETRY_AFTER_SECONDS``; None when there is none to follow."""
    if header is None or not (text := header.strip()).isascii() or not text.isdigit():
        return None
    return min(float(text), MAX_RETRY_AFTER_SECONDS)


class DeliveryRefused(DeliveryFailed):
    """The service refused the notification for good (e.g. an HTTP 4xx other than 429); retrying cannot help."""


class Notifier(Protocol):
    name: str

    async def deliver(self, request: ApprovalRequest) -> None:
        """Show the request in its current state (new, a vote, or its verdict); raise DeliveryFailed to retry,
        DeliveryRefused to give up."""
        ...


class FanOut:
    """Several notifiers as one. The outbox worker delivers to each member on its own (``members``), so each keeps
    its own retries; ``deliver`` tries them all and fails if any failed, waiting as long as the slowest asks."""

    def __init__(self, *notifiers: Notifier) -> None:
        names = [n.name for n in notifiers]
        if len(set(names)) != len(names):
            raise ValueError(f"notifier names must differ, as each one's deliveries are tracked by name: {names}")
        self.notifiers = notifiers
        self.name = "+".join(names)

    async def deliver(self, request: ApprovalRequest) -> None:
        failures: list[tuple[str, DeliveryFailed]] = []
        for notifier in self.notifiers:
            try:
                await notifier.deliver(request)
            except DeliveryFailed as exc:
                failures.append((notifier.name, exc))
        if failures:
            waits = [f.retry_after for _, f in failures if f.retry_after is not None]
            message = "; ".join(f"{name}: {f.message}" for name, f in failures)
            if all(isinstance(f, DeliveryRefused) for _, f in failures):
                raise DeliveryRefused(message)
            raise DeliveryFailed(message, retry_after=max(waits) if waits else None)


def members(notifier: Notifier) -> tuple[Notifier, ...]:
    """The notifiers whose deliveries are tracked one by one: a fan-out's members, or the notifier itself."""
    return notifier.notifiers if isinstance(notifier, FanOut) else (notifier,)
