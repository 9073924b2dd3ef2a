"""R8 F1: a value a rule cannot judge must not let the agent choose who approves its request.

A rule matched only because it could not judge a value (a string where it expects a number) fails closed: it
matches. When an earlier, laxer rule matches that way, its approvers used to replace the ones the operator
required (the first matching rule that names approvers picked them). Now the approvers are those every rule that
may be the one to pick allows; with nobody in common, the policy rejects the request and says what to send.
"""

from __future__ import annotations

import pytest

from signoff.storage import Conflict, Forbidden, Status, Verdict
from signoff.storage.approvals.memory import MemoryStore
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft

PEOPLE = """
[[people]]
name = "sam"
aliases = ["sam-support"]

[[people]]
name = "fiona"
aliases = ["fiona-finance"]

[[people]]
name = "paul"
aliases = ["paul-support"]
"""

SMALL_FIRST = (
    PEOPLE
    + """
[[rules]]
name = "small refunds"
action = "refunds.*"
when = [{ path = "payload.amount", op = "lte", value = 100 }]
outcome = "review"
approvers = ["sam"]

[[rules]]
name = "large refunds"
action = "refunds.*"
when = [{ path = "payload.amount", op = "gt", value = 100 }]
outcome = "review"
approvers = ["fiona"]
"""
)


def draft(amount: object) -> Draft:
    return Draft(action="refunds.issue", summary="Refund the customer", payload={"amount": amount}, agent_id="bot")


def service(config: str) -> ApprovalService:
    return ApprovalService(MemoryStore(), Policy(parse_policy_config(config)))


async def test_a_string_amount_does_not_hand_a_large_refund_to_the_small_refunds_approver() -> None:
    approvals = service(SMALL_FIRST)
    honest = await approvals.request_approval(draft(50000))
    assert honest.status is Status.PENDING and honest.approvers == ("fiona",)
    with pytest.raises(Forbidden):
        await approvals.vote(honest.id, "sam", Verdict.APPROVE, None)
    small = await approvals.request_approval(draft(50))
    assert small.status is Status.PENDING and small.approvers == ("sam",)

    hostile = await approvals.request_approval(draft("50000"))
    assert hostile.status is Status.REJECTED  # sam and fiona have nobody in common: nobody may approve it
    first = hostile.triggers[0].detail
    assert "payload.amount is the string" in first and "'small refunds'" in first and "'large refunds'" in first
    assert "a number as a number" in first  # what to send instead
    with pytest.raises(Conflict):  # closed: no vote counts
        await approvals.vote(hostile.id, "sam", Verdict.APPROVE, None)
    assert (await approvals.get(hostile.id)).status is Status.REJECTED


async def test_an_unclear_lax_rule_narrows_to_the_approvers_both_rules_allow() -> None:
    both = SMALL_FIRST.replace('approvers = ["sam"]', 'approvers = ["sam", "paul"]').replace(
        'approvers = ["fiona"]', 'approvers = ["fiona-finance", "sam-support"]'
    )
    approvals = service(both)
    hostile = await approvals.request_approval(draft("50000"))
    assert hostile.status is Status.PENDING and hostile.approvers == ("sam",)  # in both: an alias is the person
    with pytest.raises(Forbidden):  # paul may approve small refunds only
        await approvals.vote(hostile.id, "paul", Verdict.APPROVE, None)
    assert (await approvals.vote(hostile.id, "sam-support", Verdict.APPROVE, None)).status is Status.APPROVED


async def test_a_clear_strict_rule_before_an_unclear_lax_one_keeps_its_approvers() -> None:
    strict_first = (
        PEOPLE
        + """
[[rules]]
name = "refunds to new customers"
action = "refunds.*"
when = [{ path = "payload.customer_days", op = "lt", value = 30 }]
outcome = "review"
approvers = ["fiona"]

[[rules]]
name = "small refunds"
action = "refunds.*"
when = [{ path = "payload.amount", op = "lte", value = 100 }]
outcome = "review"
approvers = ["sam"]
"""
    )
    approvals = service(strict_first)
    request = await approvals.request_approval(
        Draft(action="refunds.issue", summary="Refund", payload={"amount": "50000", "customer_days": 3})
    )
    assert request.status is Status.PENDING and request.approvers == ("fiona",)  # as a clear match would route it
