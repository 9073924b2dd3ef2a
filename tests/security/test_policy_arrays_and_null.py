"""R8 F2: an array, an empty array or a null where a rule expects one value never gets a softer outcome.

Conditions used to judge an array by "any element" (``ne``: "no element equals") whatever the rule's outcome, and
null as "equals nothing". So wrapping a value in an array with the one value a rule allows escaped a ``ne`` review
rule and met an ``in`` approve rule, and an empty array or null met a ``ne`` approve rule. Now a review or reject
rule matches if its condition holds for ANY element (or the value is null or []), and an approve rule applies only
if it holds for EVERY element of a non-empty array.
"""

from __future__ import annotations

from typing import Any

import pytest

from signoff.storage import Status
from signoff.storage.approvals.memory import MemoryStore
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft

REVIEW_NE = """
[[rules]]
name = "money leaving our own account"
action = "payments.*"
when = [{ path = "payload.to", op = "ne", value = "ACME-OPS" }]
outcome = "review"
"""

APPROVE_IN = """
[[rules]]
name = "deploys to staging need nobody"
action = "deploy.*"
when = [{ path = "payload.env", op = "in", value = ["staging", "dev"] }]
outcome = "approve"
"""

APPROVE_NE = """
[[rules]]
name = "anything but production needs nobody"
action = "deploy.*"
when = [{ path = "payload.env", op = "ne", value = "production" }]
outcome = "approve"
"""

REJECT_EQ = """
[[rules]]
name = "never pay the blocked account"
action = "payments.*"
when = [{ path = "payload.to", op = "eq", value = "BLOCKED-1" }]
outcome = "reject"
"""


def service(config: str) -> ApprovalService:
    return ApprovalService(MemoryStore(), Policy(parse_policy_config(config)))


def pay(to: Any) -> Draft:
    return Draft(action="payments.transfer", summary="pay", payload={"to": to}, confidence=0.99)


def deploy(env: Any) -> Draft:
    return Draft(action="deploy.app", summary="deploy", payload={"env": env})


async def test_a_list_with_the_allowed_value_does_not_escape_a_ne_review_rule() -> None:
    approvals = service(REVIEW_NE)
    assert (await approvals.request_approval(pay("ACME-OPS"))).status is Status.APPROVED
    assert (await approvals.request_approval(pay(["ACME-OPS"]))).status is Status.APPROVED  # every element allowed
    hostile = await approvals.request_approval(pay(["ACME-OPS", "ATTACKER-1"]))
    assert hostile.status is Status.PENDING
    assert 'payload.to ne "ACME-OPS" (was ["ACME-OPS","ATTACKER-1"])' in hostile.triggers[0].detail


@pytest.mark.parametrize("to", [None, []])
async def test_null_or_an_empty_list_matches_a_ne_review_rule(to: Any) -> None:
    hostile = await service(REVIEW_NE).request_approval(pay(to))
    assert hostile.status is Status.PENDING
    assert hostile.triggers[0].detail.endswith(": treated as matching)")


async def test_a_reject_rule_matches_a_list_holding_the_rejected_value() -> None:
    hostile = await service(REJECT_EQ).request_approval(pay(["ACME-OPS", "BLOCKED-1"]))
    assert hostile.status is Status.REJECTED


async def test_a_list_with_the_allowed_value_does_not_meet_an_approve_rule() -> None:
    approvals = service(APPROVE_IN)  # default_outcome = review
    assert (await approvals.request_approval(deploy("staging"))).status is Status.APPROVED
    assert (await approvals.request_approval(deploy(["staging", "dev"]))).status is Status.APPROVED  # all allowed
    assert (await approvals.request_approval(deploy("production"))).status is Status.PENDING
    hostile = await approvals.request_approval(deploy(["staging", "production"]))
    assert hostile.status is Status.PENDING


@pytest.mark.parametrize("env", [[], None, ["production"], ["dev", "production"]])
async def test_an_empty_list_null_or_a_list_naming_production_does_not_meet_a_ne_approve_rule(env: Any) -> None:
    approvals = service(APPROVE_NE)  # default_outcome = review
    assert (await approvals.request_approval(deploy("staging"))).status is Status.APPROVED
    assert (await approvals.request_approval(deploy(env))).status is Status.PENDING
