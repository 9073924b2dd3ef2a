"""Builders for records in tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from signoff.storage import ApprovalRequest, DecidedBy, Priority, Status, Trigger, TriggerKind
from signoff.storage.canonical import payload_sha256
from signoff.tools.approvals.lifecycle import creation_events

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_ids = itertools.count(1)  #: the n-th request of the current test: its id, summary, amount and times (T0 + n s)


def restart() -> None:
    """Number requests from 1 again: run before every test (tests/conftest.py). A test's requests are then the same
    whatever ran before it; counting on across tests would move ``created_at`` (T0 + n seconds) past the times tests
    compare it with (T0 + 1 hour) once a few thousand requests had been made, so a test's outcome would depend on
    which tests ran first."""
    global _ids
    _ids = itertools.count(1)


def make_request(**overrides: Any) -> ApprovalRequest:
    n = next(_ids)
    fields: dict[str, Any] = {
        "id": f"req_test{n:06d}",
        "action": "payments.transfer",
        "summary": f"pay invoice {n}",
        "payload": {"amount": 100 + n, "to": {"iban": "DE00 1234"}},
        "confidence": 0.5,
        "flags": ("pii",),
        "agent_id": "billing-bot",
        "idempotency_key": None,
        "status": Status.PENDING,
        "decided_by": None,
        "triggers": (Trigger(kind=TriggerKind.CONFIDENCE, detail="confidence 0.5 is below the threshold 0.85"),),
        "approvals_required": 1,
        "priority": Priority.NORMAL,
        "created_at": T0 + timedelta(seconds=n),
        "expires_at": T0 + timedelta(seconds=n, hours=1),
    }
    fields.update(overrides)
    if "payload_sha256" not in overrides:
        fields["payload_sha256"] = payload_sha256(fields["action"], fields["payload"])
    return ApprovalRequest(**fields)


def asked(action: str, n: int, payload: dict[str, Any], status: Status = Status.APPROVED) -> ApprovalRequest:
    """What an agent ``bot`` asked at minute ``n`` (confident, no flags), as the anomaly history learns from it: by
    default approved by the policy."""
    return make_request(
        action=action,
        payload=payload,
        confidence=0.99,
        flags=(),
        agent_id="bot",
        status=status,
        decided_by=DecidedBy.POLICY if status is Status.APPROVED else None,
        created_at=T0 + timedelta(minutes=n),
    )


async def add(store: Any, **overrides: Any) -> ApprovalRequest:
    request = make_request(**overrides)
    stored, created = await store.create_request(
        request, creation_events(request), notify=request.status is Status.PENDING
    )
    assert created
    return stored
