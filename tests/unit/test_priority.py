"""Priority computed from the request: bands of a number and the kinds of triggers that fired, so the riskiest
requests come first in the queue."""

from __future__ import annotations

from typing import Any

import pytest

from signoff.storage import ConfigError, Priority
from signoff.tools.approvals.policy import Policy, PolicyInput
from signoff.tools.approvals.policy_config import parse_policy_config

POLICY = Policy(
    parse_policy_config(
        """
[[rules]]
name = "transfers"
action = "payments.*"
outcome = "review"
priority = "low"
[rules.priority_from]
path = "payload.amount"
bands = [
  { at_least = 10000, priority = "normal" },
  { at_least = 100000, priority = "high" },
  { at_least = 1000000, priority = "urgent" },
]

[[rules]]
name = "anything unusual"
outcome = "approve"
when = [{ path = "payload.kind", op = "eq", value = "routine" }]
priority_from = { triggers = [{ kind = "confidence", priority = "high" }, { kind = "anomaly", priority = "urgent" }] }
"""
    )
)


def priority(action: str, confidence: float = 0.99, **payload: Any) -> Priority:
    request = PolicyInput(
        action=action,
        summary="s",
        payload=payload,
        confidence=confidence,
        flags=(),
        agent_id="bot",
        expires_in_seconds=None,
    )
    return POLICY.evaluate(request).priority


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (50, Priority.LOW),  # below every band: the rule's own priority
        (10000, Priority.NORMAL),  # at_least is inclusive
        (99999.99, Priority.NORMAL),
        (250000, Priority.HIGH),
        (5_000_000, Priority.URGENT),
        ("a lot", Priority.URGENT),  # not a number: the highest band (unclear input fails closed)
    ],
)
def test_amount_bands_give_the_band_reached_and_never_less_than_the_rule_sets(amount: Any, expected: Priority) -> None:
    assert priority("payments.transfer", amount=amount) is expected


def test_a_missing_number_gets_no_band() -> None:
    assert priority("payments.transfer") is Priority.LOW


def test_trigger_kinds_raise_the_priority_and_the_highest_wins() -> None:
    assert priority("docs.edit", kind="routine") is Priority.NORMAL  # the rule applies, no trigger of its kinds
    assert priority("docs.edit", confidence=0.2, kind="routine") is Priority.HIGH
    assert priority("payments.transfer", confidence=0.2, kind="routine", amount=5_000_000) is Priority.URGENT
    assert priority("payments.transfer", confidence=0.2, kind="routine", amount=50) is Priority.HIGH
    assert priority("docs.edit", confidence=0.2) is Priority.NORMAL  # no rule computing it matched: the default


@pytest.mark.parametrize(
    ("table", "fault"),
    [
        ('priority_from = { bands = [{ at_least = 1, priority = "high" }] }', "rules[0].priority_from: bands need"),
        ('priority_from = { path = "payload.a" }', "give bands (with path), triggers, or both"),
        (
            'priority_from = { path = "payload.a", bands = [{ at_least = 5, priority = "high" },'
            ' { at_least = 1, priority = "low" }] }',
            "rules[0].priority_from.bands[1].at_least: bands must be in increasing order",
        ),
        ('priority_from = { triggers = [{ kind = "hunch", priority = "high" }] }', "unknown trigger kind 'hunch'"),
        ('priority_from = { triggers = [{ kind = "rule", priority = "asap" }] }', "unknown priority 'asap'"),
    ],
)
def test_bad_priority_from_is_refused_with_its_line(table: str, fault: str) -> None:
    with pytest.raises(ConfigError, match=r"p\.toml line 4: ") as raised:
        parse_policy_config(f'[[rules]]\nname = "r"\noutcome = "review"\n{table}\n', "p.toml")
    assert fault in str(raised.value)
