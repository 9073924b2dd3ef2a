"""Conditions that compare two fields of one request: contradictions the agent's own data reveals."""

from __future__ import annotations

from typing import Any

import pytest

from signoff.storage import ConfigError, TriggerKind
from signoff.tools.approvals.policy import Outcome, Policy, PolicyInput
from signoff.tools.approvals.policy_config import parse_policy_config

POLICY = Policy(
    parse_policy_config(
        """
[[rules]]
name = "more than the balance"
action = "payments.*"
when = [{ path = "payload.amount", op = "gt", field = "payload.account.balance" }]
outcome = "review"

[[rules]]
name = "disagrees with the bureau"
action = "loans.*"
when = [{ path = "payload.recommendation", op = "ne", field = "payload.bureau_decision" }]
outcome = "review"

[[rules]]
name = "agrees with the bureau"
action = "loans.*"
when = [{ path = "payload.recommendation", op = "eq", field = "payload.bureau_decision" }]
outcome = "approve"
"""
    )
)


def decide(action: str, **payload: Any) -> tuple[Outcome, list[str]]:
    request = PolicyInput(
        action=action,
        summary="s",
        payload=payload,
        confidence=0.99,
        flags=(),
        agent_id="bot",
        expires_in_seconds=None,
    )
    decision = POLICY.evaluate(request)
    return decision.outcome, [t.detail for t in decision.triggers if t.kind is TriggerKind.RULE]


def test_an_amount_over_the_reported_balance_goes_to_people_showing_both_values() -> None:
    outcome, [detail] = decide("payments.transfer", amount=5000, account={"balance": 1200})
    assert outcome is Outcome.REVIEW
    assert detail.endswith("payload.amount gt payload.account.balance (was 5000 against 1200)")
    assert decide("payments.transfer", amount=500, account={"balance": 1200})[0] is Outcome.APPROVE


def test_a_recommendation_that_contradicts_the_bureau_goes_to_people_and_one_that_agrees_is_approved() -> None:
    outcome, [detail] = decide("loans.decide", recommendation="approve", bureau_decision="decline")
    assert outcome is Outcome.REVIEW
    assert 'payload.recommendation ne payload.bureau_decision (was "approve" against "decline")' in detail
    outcome, [detail] = decide("loans.decide", recommendation="approve", bureau_decision="approve")
    assert outcome is Outcome.APPROVE and "agrees with the bureau" in detail


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"amount": 5000}, "payload.account.balance is missing, so the two cannot be compared"),
        ({"amount": 5000, "account": {"balance": None}}, "payload.account.balance is missing"),
        ({"amount": "5000", "account": {"balance": 1200}}, 'payload.amount is the string "5000", not a number'),
        ({"amount": 5000, "account": {"balance": [1200]}}, "payload.account.balance is an array"),
        ({"amount": 5000, "account": {"Balance": 1200}}, "differ only in case"),
    ],
)
def test_a_comparison_that_cannot_see_both_sides_fails_closed(payload: dict[str, Any], reason: str) -> None:
    outcome, [detail] = decide("payments.transfer", **payload)
    assert outcome is Outcome.REVIEW and reason in detail and "treated as matching" in detail


def test_an_approve_rule_never_applies_to_what_it_cannot_compare() -> None:
    outcome, details = decide("loans.decide", recommendation="approve", bureau_decision=1)
    assert outcome is Outcome.REVIEW  # the ne rule: kinds differ, treated as matching
    assert not any("'agrees with the bureau'" in d for d in details)
    assert "is the string" in details[0] and "but payload.bureau_decision is the number 1" in details[0]


@pytest.mark.parametrize(
    ("condition", "fault"),
    [
        ('path = "payload.a", op = "gt", value = 1, field = "payload.b"', "not both"),
        ('path = "payload.a", op = "regex", field = "payload.b"', "regex cannot compare two fields"),
        ('path = "payload.a", op = "eq", field = "balance"', "when[0].field: unknown path 'balance'"),
        ('path = "payload.a", op = "eq"', "when[0]: missing required key 'value'"),
    ],
)
def test_a_bad_field_comparison_is_a_config_error(condition: str, fault: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_policy_config(f'[[rules]]\nname = "r"\noutcome = "review"\nwhen = [{{ {condition} }}]\n')
    assert fault in str(raised.value)
