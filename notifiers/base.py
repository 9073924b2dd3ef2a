"""The Notifier protocol: tell people about a request. Delivery is retried from the outbox."""

from __future__ import annotations

from typing import Protocol

from signoff.storage import ApprovalRequest, SignoffError


class DeliveryFailed(SignoffError):
    """The notification could not be delivered now; it will be retried."""

    def __init__(self, message: str | None = None, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  #: when the service said when to come back (HTTP 429 Retry-After)


class Notifier(Protocol):
    name: str

    async def deliver(self, request: ApprovalRequest) -> None:
        """Show the request in its current state (new, a vote, or its verdict); raise DeliveryFailed to retry."""
        ...


class FanOut:
    """Several notifiers as one: each delivery goes to all; if any fails, the delivery is retried for all
    (Slack's is an idempotent update; the webhook's carries a delivery id for the receiver to drop repeats)."""

    def __init__(self, *notifiers: Notifier) -> None:
        self.notifiers = notifiers
        self.name = "+".join(n.name for n in notifiers)

    async def deliver(self, request: ApprovalRequest) -> None:
        failures = []
        for notifier in self.notifiers:
            try:
                await notifier.deliver(request)
            except DeliveryFailed as exc:
                failures.append(f"{notifier.name}: {exc.message}")
        if failures:
            raise DeliveryFailed("; ".join(failures))
