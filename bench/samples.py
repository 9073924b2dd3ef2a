"""What the agents in the benchmarks ask for, and the requests signoff builds from it."""

from __future__ import annotations

from typing import Any

from signoff.storage import ApprovalRequest
from signoff.storage.approvals.memory import MemoryStore
from signoff.tools.approvals.service import ApprovalService, Draft

AGENT = "billing-bot"
REVIEWER = "bench-reviewer"
AUTO_APPROVED = 0.99  #: above the default confidence threshold (0.85): the policy approves at once
NEEDS_REVIEW = 0.2  #: below it: pending, with an outbox row for the notifier


def arguments(i: int, confidence: float) -> dict[str, Any]:
    """``request_approval`` arguments, different for every ``i`` (no two requests share a payload)."""
    return {
        "action": "payments.transfer",
        "summary": f"Pay invoice {i} to ACME Ltd",
        "payload": {"amount": 120 + i % 97, "currency": "EUR", "to": "ACME Ltd", "invoice": i},
        "confidence": confidence,
        "agent_id": AGENT,
    }


async def requests_as_built(count: int, confidence: float, start: int = 0) -> list[ApprovalRequest]:
    """The requests ``ApprovalService.request_approval`` builds for ``arguments(i)``, from the real service."""
    service = ApprovalService(MemoryStore())
    return [await service.request_approval(Draft(**arguments(i, confidence))) for i in range(start, start + count)]
