"""An integer beyond a float's range is plain JSON (``10**400``): where a policy reads a payload value as a group, a
lookup key or a priority band, it is judged like any other number, never an internal error. ``math.isfinite`` on
such an int raises OverflowError; a fairness group's outcome field is not judged on its own request, so such a
request was stored, and every later request of the watched actions then failed reading it back, in this process
and in every other (a restart, a replica), for as long as it stayed in the window."""

from __future__ import annotations

from pathlib import Path

from signoff.storage import Priority, Status
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft

HUGE = 10**400
FAIRNESS = """
[[fairness.groups]]
attribute = "payload.band"
action = "loans.*"
outcome = "payload.decision"
positive = "approve"
"""


def loan(decision: object, band: object = "18-30") -> Draft:
    return Draft(action="loans.decide", summary="Decide", payload={"band": band, "decision": decision}, confidence=0.99)


async def test_a_huge_integer_outcome_does_not_stop_the_requests_after_it(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "signoff.db")
    try:
        service = ApprovalService(store, Policy(parse_policy_config(FAIRNESS)))
        assert (await service.request_approval(loan(HUGE))).status is Status.APPROVED
        assert (await service.request_approval(loan("approve"))).status is Status.APPROVED
        restarted = ApprovalService(store, Policy(parse_policy_config(FAIRNESS)))  # reads the window whole again
        for band in ("18-30", "65+"):
            assert (await restarted.request_approval(loan("approve", band))).status is Status.APPROVED
    finally:
        await store.close()


async def test_a_huge_integer_group_is_a_group_like_any_number(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "signoff.db")
    try:
        service = ApprovalService(store, Policy(parse_policy_config(FAIRNESS)))
        assert (await service.request_approval(loan("approve", HUGE))).status is Status.APPROVED
    finally:
        await store.close()


async def test_a_huge_integer_lookup_key_is_looked_up_and_found_missing(tmp_path: Path) -> None:
    (tmp_path / "limits.csv").write_text("customer_id,limit\n1,100\n")
    config = f"""
[[lookups]]
name = "limits"
file = "{tmp_path / "limits.csv"}"
key = "customer_id"

[[rules]]
name = "over the limit"
action = "payments.*"
when = [{{ path = "payload.amount", op = "gt", lookup = "limits", key = "payload.customer", column = "limit" }}]
outcome = "review"
"""
    service = ApprovalService(await SqliteStore.open(tmp_path / "signoff.db"), Policy(parse_policy_config(config)))
    try:
        draft = Draft(action="payments.pay", summary="Pay", payload={"amount": 5, "customer": HUGE}, confidence=0.99)
        request = await service.request_approval(draft)
        assert request.status is Status.PENDING  # no such customer: the limit is unknown, a person checks
        assert any("limits" in t.detail for t in request.triggers)
    finally:
        await service.store.close()


async def test_a_huge_integer_in_a_priority_band_path_reaches_the_top_band(tmp_path: Path) -> None:
    config = """
[[rules]]
name = "transfers"
action = "payments.*"
outcome = "review"
priority_from = { path = "payload.amount", bands = [{ at_least = 10000, priority = "high" }] }
"""
    service = ApprovalService(await SqliteStore.open(tmp_path / "signoff.db"), Policy(parse_policy_config(config)))
    try:
        request = await service.request_approval(Draft(action="payments.pay", summary="Pay", payload={"amount": HUGE}))
        assert request.status is Status.PENDING and request.priority is Priority.HIGH
    finally:
        await service.store.close()
