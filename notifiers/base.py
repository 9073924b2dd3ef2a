"""The Notifier protocol: tell people about a request. Delivery is retried from the outbox."""

from __future__ import annotations

from typing import Protocol

from storage import ApprovalRequest, SignoffError


class DeliveryFailed(SignoffError):
    """The notification could not be delivered now; it will be retried."""


class Notifier(Protocol):
    name: str

    async def deliver(self, request: ApprovalRequest) -> None:
        """Show the request in its current state (new, a vote, or its verdict); raise DeliveryFailed to retry."""
        ...
