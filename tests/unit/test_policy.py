"""The policy engine: validation, rules, operators, anomaly and fairness triggers, combination."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signoff.storage import ActionHistory, InvalidInput, Priority, Trigger, TriggerKind
from signoff.tools.approvals.policy import Outcome, Policy, PolicyDecision, PolicyInput, modified_z_score
from signoff.tools.approvals.policy_config import (
    Condition,
    Op,
    PolicyConfig,
    Rule,
    load_policy_config,
    parse_policy_config,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "signoff.example.toml"

PAYLOAD: dict[str, Any] = {
    "amount": 25000,
    "currency": "USD",
    "recipient": {"country": "DE", "iban": "DE89370400440532013000"},
    "tags": ["urgent", "vip"],
    "approved": True,
    "ratio": 0.5,
    "note": None,
    "levels": [1, 2, 3],
}


def request(**changes: Any) -> PolicyInput:
    base = PolicyInput(
        action="payments.transfer",
        summary="Pay invoice 42 to ACME GmbH",
        payload=PAYLOAD,
        confidence=None,
        flags=(),
        agent_id="billing-bot",
        expires_in_seconds=None,
    )
    return dataclasses.replace(base, **changes)


def policy(toml: str) -> Policy:
    return Policy(parse_policy_config(dedent(toml)))


def decide(toml: str, **changes: Any) -> PolicyDecision:
    return policy(toml).evaluate(request(**changes))


def rule(name: str, outcome: str, *conditions: Condition, **options: Any) -> Rule:
    return Rule(name=name, outcome=Outcome(outcome), when=conditions, **options)


# --- defaults ----------------------------------------------------------------------------------


def test_no_config_high_confidence_is_approved_by_policy() -> None:
    decision = Policy().evaluate(request(confidence=0.97))
    assert decision == PolicyDecision(
        outcome=Outcome.APPROVE,
        triggers=(
            Trigger(
                kind=TriggerKind.DEFAULT,
                detail="confidence 0.97 meets the threshold 0.85 and no rule matched; approved by policy",
            ),
        ),
        approvals_required=1,
        expires_in_seconds=3600,
        priority=Priority.NORMAL,
    )


def test_no_config_low_confidence_waits_for_a_person() -> None:
    decision = Policy().evaluate(request(confidence=0.62))
    assert decision.outcome is Outcome.REVIEW
    assert decision.triggers == (
        Trigger(kind=TriggerKind.CONFIDENCE, detail="confidence 0.62 is below the threshold 0.85"),
    )


def test_confidence_equal_to_the_threshold_meets_it() -> None:
    assert Policy().evaluate(request(confidence=0.85)).outcome is Outcome.APPROVE


def test_no_confidence_uses_the_default_outcome() -> None:
    decision = Policy().evaluate(request())
    assert decision.outcome is Outcome.REVIEW
    assert decision.triggers == (
        Trigger(
            kind=TriggerKind.DEFAULT,
            detail="no rule matched and no confidence was given; the default outcome is review",
        ),
    )
    assert decide('default_outcome = "approve"').outcome is Outcome.APPROVE


def test_wants_history_follows_anomaly_enabled() -> None:
    assert Policy().wants_history is False
    assert policy("[anomaly]\nenabled = true").wants_history is True


# --- operators ---------------------------------------------------------------------------------


def matches(path: str, op: str, value: Any, **changes: Any) -> bool:
    config = PolicyConfig(rules=(rule("r", "review", Condition(path=path, op=Op(op), value=value)),))
    outcome = Policy(config).evaluate(request(confidence=0.95, **changes)).outcome
    return outcome is Outcome.REVIEW


@pytest.mark.parametrize(
    ("path", "op", "value", "expected"),
    [
        ("payload.currency", "eq", "USD", True),
        ("payload.currency", "eq", "EUR", False),
        ("payload.amount", "eq", 25000.0, True),
        ("payload.approved", "eq", True, True),
        ("payload.recipient.country", "eq", "DE", True),
        ("payload.tags", "eq", "vip", True),  # a list matches if any element does
        ("action", "eq", "payments.transfer", True),
        ("agent_id", "eq", "billing-bot", True),
        ("payload.currency", "ne", "EUR", True),
        ("payload.currency", "ne", "USD", False),
        ("payload.tags", "ne", "vip", True),  # a review rule on a list: holds for an element ("urgent")
        ("payload.tags", "ne", "urgent", True),
        ("payload.tags", "ne", "other", True),
        ("payload.amount", "gt", 10000, True),
        ("payload.amount", "gt", 25000, False),
        ("payload.amount", "gte", 25000, True),
        ("payload.amount", "lt", 25000, False),
        ("payload.amount", "lte", 25000, True),
        ("payload.ratio", "lt", 1, True),
        ("confidence", "gte", 0.9, True),
        ("payload.currency", "in", ("USD", "EUR"), True),
        ("payload.currency", "in", ("GBP",), False),
        ("payload.tags", "in", ("vip", "x"), True),
        ("payload.amount", "in", (1, 25000), True),
        ("summary", "regex", "^Pay invoice", True),
        ("summary", "regex", "^invoice", False),  # re.search, anchored by ^
        ("summary", "regex", "ACME", True),
        ("payload.tags", "regex", "^vi", True),
        ("payload.recipient.iban", "regex", r"^DE\d+$", True),
        ("payload.note", "exists", True, True),  # null is present
        ("payload.nothing", "exists", True, False),
        ("payload.nothing", "exists", False, True),
        ("payload.recipient.zip", "exists", False, True),
        ("payload.amount.cents", "exists", False, True),  # through a non-object: unclear, so it matches
        ("payload.note", "eq", "x", True),  # null is unclear: a review rule matches
        ("payload.note", "ne", "x", True),
        ("action", "eq", "PAYMENTS.Transfer", True),  # action names ignore case
        ("action", "in", ("payments.TRANSFER",), True),
        ("action", "regex", "^PAYMENTS\\.", True),
        ("summary", "eq", "pay invoice 42 to acme gmbh", False),  # other strings do not
        ("confidence", "exists", True, True),
        ("payload", "exists", True, True),
    ],
)
def test_operator(path: str, op: str, value: Any, expected: bool) -> None:
    assert matches(path, op, value) is expected


@pytest.mark.parametrize(
    ("op", "value"), [("eq", "x"), ("ne", "x"), ("gt", 0), ("lte", 10**9), ("in", ("x",)), ("regex", ".*")]
)
def test_every_operator_is_false_on_a_missing_path(op: str, value: Any) -> None:
    assert matches("payload.nothing", op, value) is False
    assert matches("agent_id", op, value, agent_id=None) is False


UNCLEAR = {**PAYLOAD, "mixed": ["vip", ["nested"]], "empty": [], "Ratio ": 0.9, "obj": {"value": 1}}


@pytest.mark.parametrize(
    ("path", "op", "value", "reason"),
    [
        ("payload.amount", "eq", "25000", "payload.amount is the number 25000, not a string"),
        ("payload.approved", "eq", 1, "payload.approved is the boolean true, not a number"),  # true is not 1
        ("payload.currency", "gt", 1, 'payload.currency is the string "USD", not a number'),
        ("payload.approved", "gt", 0, "payload.approved is the boolean true, not a number"),
        ("payload.levels", "gt", 0, "payload.levels is an array [1,2,3], not a number"),
        ("payload.note", "lt", 1, "payload.note is null, not a number"),
        ("payload.recipient", "lte", 1, 'payload.recipient is an object {"country":"DE",'),
        ("payload.approved", "in", (1, 2), "payload.approved is the boolean true, not a number"),
        ("payload.amount", "regex", "25", "payload.amount is the number 25000, not a string"),
        ("payload.obj", "eq", 1, 'payload.obj is an object {"value":1}, not a single value'),
        ("payload.obj", "ne", 1, 'payload.obj is an object {"value":1}, not a single value'),
        ("payload.mixed", "eq", "x", 'an element of payload.mixed is an array ["nested"], not a single value'),
        ("payload.mixed", "ne", "vip", 'an element of payload.mixed is an array ["nested"], not a single value'),
        ("payload.note", "eq", "x", "payload.note is null, not a value to compare"),
        ("payload.note", "in", ("x",), "payload.note is null, not a value to compare"),
        ("payload.empty", "ne", "x", "payload.empty is an array [], not a value to compare"),
        ("payload.empty", "regex", "x", "payload.empty is an array [], not a value to compare"),
        ("payload.levels", "regex", "1", "an element of payload.levels is the number 1, not a string"),
        ("payload.amount.cents", "exists", True, "payload.amount is the number 25000, not an object"),
        ("payload.tags.first", "eq", "x", 'payload.tags is an array ["urgent","vip"], not an object'),
        ("payload.ratio", "eq", 0.5, 'payload has both "ratio" and "Ratio "'),
        ("payload.ratio", "exists", False, 'payload has both "ratio" and "Ratio "'),
    ],
)
def test_a_value_a_condition_cannot_judge_matches_review_and_reject_rules_and_says_why(
    path: str, op: str, value: Any, reason: str
) -> None:
    """Fail closed: a shape the condition cannot judge makes a review or reject rule match, with the reason in its
    trigger, and keeps an approve rule from matching."""
    condition = Condition(path=path, op=Op(op), value=value)
    for outcome in ("review", "reject"):
        decision = Policy(PolicyConfig(rules=(rule("r", outcome, condition),))).evaluate(
            request(confidence=0.95, payload=UNCLEAR)
        )
        assert decision.outcome is Outcome(outcome)
        detail = decision.triggers[0].detail
        assert reason in detail and detail.endswith(": treated as matching)"), detail
    approve = Policy(PolicyConfig(rules=(rule("r", "approve", condition),)))
    assert approve.evaluate(request(payload=UNCLEAR)).outcome is Outcome.REVIEW  # the default, not the rule


@pytest.mark.parametrize(
    "payload",
    [
        {"Amount": 20000},
        {"amount ": 20000},
        {"\uff41mount": 20000},  # fullwidth a: NFKC folds it to "amount"
        {"am\u200bount": 20000},  # a zero-width space
        {"amount": 5, "AMOUNT": 20000},
        {"amount": "20000"},
        {"amount": {"value": 20000}},
        {"amount": [20000]},
        {"amount": None},
    ],
)
def test_amount_in_another_shape_goes_to_review(payload: dict[str, Any]) -> None:
    decision = decide(
        """
        [[rules]]
        name = "large transfers"
        action = "payments.*"
        when = [{ path = "payload.amount", op = "gt", value = 10000 }]
        outcome = "review"
        """,
        payload=payload,
        confidence=0.99,
    )
    assert decision.outcome is Outcome.REVIEW, decision
    assert decision.triggers[0].detail.endswith(": treated as matching)")


def test_keys_that_fold_alike_are_found_at_every_level_but_other_keys_are_not() -> None:
    nested = {"recipient": {"Country": "KP"}}
    assert matches("payload.recipient.country", "eq", "DE", payload=nested) is True
    assert matches("payload.recipient.country", "eq", "DE", payload={"recipient": {"countries": "KP"}}) is False
    assert matches("payload.recipient.country", "eq", "DE", payload={"recipient": None}) is False  # null: missing


def applies(kind: str, path: str, op: str, value: Any, payload: dict[str, Any]) -> bool:
    """Whether a ``kind`` rule with one condition matches a request with ``payload``."""
    config = PolicyConfig(rules=(rule("r", kind, Condition(path=path, op=Op(op), value=value)),))
    return bool(Policy(config).evaluate(request(payload=payload)).rules)


@pytest.mark.parametrize(
    ("op", "value", "payload", "review", "approve"),
    [
        ("eq", "a", {"v": ["a", "b"]}, True, False),  # review: any element; approve: every element
        ("eq", "a", {"v": ["a", "a"]}, True, True),
        ("eq", "c", {"v": ["a", "b"]}, False, False),
        ("ne", "a", {"v": ["a", "b"]}, True, False),
        ("ne", "a", {"v": ["a"]}, False, False),
        ("ne", "c", {"v": ["a", "b"]}, True, True),
        ("in", ("a", "b"), {"v": ["a", "c"]}, True, False),
        ("in", ("a", "b"), {"v": ["b", "a"]}, True, True),
        ("regex", "^a", {"v": ["ab", "ba"]}, True, False),
        ("regex", "^a", {"v": ["ab", "ac"]}, True, True),
        ("eq", "a", {"v": ["a", 1]}, True, False),  # an element of another kind: unclear, an approve rule fails
        ("ne", "c", {"v": ["a", ["b"]]}, True, False),
        ("eq", "a", {"v": []}, True, False),  # an empty array: unclear
        ("ne", "a", {"v": []}, True, False),
        ("eq", "a", {"v": None}, True, False),  # null: unclear
        ("ne", "a", {"v": None}, True, False),
        ("in", ("a",), {"v": None}, True, False),
        ("regex", "a", {"v": None}, True, False),
        ("eq", "a", {}, False, False),  # missing: false for both
        ("ne", "a", {}, False, False),
        ("exists", True, {"v": None}, True, True),  # an explicit check means what it says: null is present
        ("exists", False, {"v": None}, False, False),
        ("exists", True, {"v": []}, True, True),
    ],
)
def test_arrays_and_null_are_judged_in_the_direction_that_fails_closed(
    op: str, value: Any, payload: dict[str, Any], review: bool, approve: bool
) -> None:
    """A review or reject rule's condition holds if it holds for any element of an array, or the value is null or
    []; an approve rule's only if it holds for every element of a non-empty array (R8 F2)."""
    assert applies("review", "payload.v", op, value, payload) is review
    assert applies("reject", "payload.v", op, value, payload) is review
    assert applies("approve", "payload.v", op, value, payload) is approve


def test_flags_stay_any_flag_for_approve_rules_too() -> None:
    approve = PolicyConfig(rules=(rule("r", "approve", Condition(path="flags", op=Op.EQ, value="pii")),))
    assert Policy(approve).evaluate(request(flags=("x", "pii"))).outcome is Outcome.APPROVE
    no_pii = PolicyConfig(rules=(rule("r", "approve", Condition(path="flags", op=Op.NE, value="pii")),))
    assert Policy(no_pii).evaluate(request(flags=())).outcome is Outcome.APPROVE
    assert Policy(no_pii).evaluate(request(flags=("pii",))).outcome is not Outcome.APPROVE


def test_list_paths_use_any_element_for_flags() -> None:
    assert matches("flags", "eq", "pii", flags=("x", "pii")) is True
    assert matches("flags", "in", ("pii", "phi"), flags=("x", "phi")) is True
    assert matches("flags", "regex", "^fair", flags=("x", "fairness:age")) is True
    assert matches("flags", "ne", "pii", flags=("x", "pii")) is False
    assert matches("flags", "ne", "pii", flags=()) is True
    assert matches("flags", "eq", "pii", flags=()) is False


def test_conditions_are_anded() -> None:
    both = (
        Condition(path="payload.amount", op=Op.GT, value=10000),
        Condition(path="payload.currency", op=Op.EQ, value="EUR"),
    )
    config = PolicyConfig(rules=(rule("r", "review", *both),))
    assert Policy(config).evaluate(request(confidence=0.95)).outcome is Outcome.APPROVE
    eur = {**PAYLOAD, "currency": "EUR"}
    assert Policy(config).evaluate(request(confidence=0.95, payload=eur)).outcome is Outcome.REVIEW


@pytest.mark.parametrize(
    ("globs", "action", "expected"),
    [
        (("payments.*",), "payments.transfer", True),
        (("payments.*",), "payments", False),
        (("payments.*",), "refunds.issue", False),
        (("Payments.*",), "payments.transfer", True),  # ignoring case
        (("payments.*",), "PAYMENTS.TRANSFER", True),
        (("db.drop*",), "DB.Drop_users", True),
        (("refunds.*", "payments.*"), "payments.transfer", True),
        (("mcp__github__*",), "mcp__github__create_issue", True),
        (("Bash",), "Bash", True),
        (("db.drop_?able",), "db.drop_table", True),
        ((), "anything.at.all", True),
    ],
)
def test_action_globs(globs: tuple[str, ...], action: str, expected: bool) -> None:
    config = PolicyConfig(rules=(Rule(name="r", outcome=Outcome.REVIEW, action=globs),))
    outcome = Policy(config).evaluate(request(action=action, confidence=0.95)).outcome
    assert (outcome is Outcome.REVIEW) is expected


def test_rule_detail_says_why() -> None:
    decision = decide(
        """
        [[rules]]
        name = "large transfers"
        action = "payments.*"
        when = [
          { path = "payload.amount", op = "gt", value = 10000 },
          { path = "payload.memo", op = "exists", value = false },
        ]
        outcome = "review"
        """,
        confidence=0.99,
    )
    assert decision.triggers == (
        Trigger(
            kind=TriggerKind.RULE,
            detail="rule 'large transfers' (review): action payments.transfer matches 'payments.*'; "
            "payload.amount gt 10000 (was 25000); payload.memo exists false (missing)",
        ),
    )


def test_rule_without_conditions_applies_to_every_request() -> None:
    decision = decide('[[rules]]\nname = "everything"\noutcome = "review"', confidence=1.0)
    assert decision.outcome is Outcome.REVIEW
    assert decision.triggers[0].detail == "rule 'everything' (review): applies to every request"


# --- combination -------------------------------------------------------------------------------

COMBINED = """
[[rules]]
name = "keep"
when = [{ path = "payload.amount", op = "gt", value = 100 }]
outcome = "approve"
expires_in_seconds = 1200

[[rules]]
name = "big"
when = [{ path = "payload.amount", op = "gt", value = 1000 }]
outcome = "review"
approvals_required = 2
priority = "high"
expires_in_seconds = 900

[[rules]]
name = "huge"
when = [{ path = "payload.amount", op = "gt", value = 20000 }]
outcome = "review"
approvals_required = 3
priority = "low"
expires_in_seconds = 600

[[rules]]
name = "never"
when = [{ path = "payload.amount", op = "lt", value = 0 }]
outcome = "review"
approvals_required = 9
priority = "urgent"
expires_in_seconds = 5

[[rules]]
name = "forbidden currency"
when = [{ path = "payload.currency", op = "eq", value = "XXX" }]
outcome = "reject"
priority = "urgent"
"""


def test_review_rules_combine_strictly() -> None:
    decision = decide(COMBINED, confidence=0.99)
    assert decision.outcome is Outcome.REVIEW
    assert [t.detail.split(" (")[0] for t in decision.triggers] == ["rule 'big'", "rule 'huge'", "rule 'keep'"]
    assert decision.approvals_required == 3
    assert decision.priority is Priority.HIGH
    assert decision.expires_in_seconds == 600
    assert decide(COMBINED, confidence=0.99, expires_in_seconds=300).expires_in_seconds == 300
    assert decide(COMBINED, confidence=0.99, expires_in_seconds=3000).expires_in_seconds == 600


def test_guardrail_wins_and_lists_every_trigger_strongest_first() -> None:
    decision = decide(COMBINED, confidence=0.5, payload={"amount": 5000, "currency": "XXX"})
    assert decision.outcome is Outcome.REJECT
    assert [t.kind for t in decision.triggers] == [
        TriggerKind.GUARDRAIL,
        TriggerKind.RULE,
        TriggerKind.CONFIDENCE,
        TriggerKind.RULE,
    ]
    assert decision.triggers[0].detail == "rule 'forbidden currency' (reject): payload.currency eq \"XXX\""
    assert decision.triggers[-1].detail.startswith("rule 'keep' (approve)")
    assert decision.priority is Priority.URGENT


def test_approve_rule_approves_without_confidence() -> None:
    decision = decide(COMBINED, payload={"amount": 500})
    assert decision.outcome is Outcome.APPROVE
    assert decision.triggers == (
        Trigger(kind=TriggerKind.RULE, detail="rule 'keep' (approve): payload.amount gt 100 (was 500)"),
    )
    assert (decision.approvals_required, decision.expires_in_seconds) == (1, 1200)
    assert decision.priority is Priority.NORMAL


def test_approve_rule_loses_to_low_confidence() -> None:
    decision = decide(COMBINED, payload={"amount": 500}, confidence=0.2)
    assert decision.outcome is Outcome.REVIEW
    assert [t.kind for t in decision.triggers] == [TriggerKind.CONFIDENCE, TriggerKind.RULE]


def test_nothing_matched_keeps_the_defaults() -> None:
    decision = decide(COMBINED, payload={"amount": 5}, confidence=0.99)
    assert decision.outcome is Outcome.APPROVE
    assert (decision.approvals_required, decision.expires_in_seconds) == (1, 3600)
    assert decision.priority is Priority.NORMAL
    assert decide(COMBINED, payload={"amount": 5}, expires_in_seconds=42).expires_in_seconds == 42


# --- fairness ----------------------------------------------------------------------------------


def test_fairness_flag_sends_to_review() -> None:
    config = '[fairness]\nflags = ["fairness:*", "protected"]'
    decision = decide(config, confidence=0.99, flags=("other", "fairness:age"))
    assert decision.outcome is Outcome.REVIEW
    assert decision.triggers == (
        Trigger(kind=TriggerKind.FAIRNESS, detail="flag 'fairness:age' matches the fairness pattern 'fairness:*'"),
    )
    assert decide(config, confidence=0.99, flags=("other", "fairness")).outcome is Outcome.APPROVE


# --- anomaly -----------------------------------------------------------------------------------

ANOMALY = "[anomaly]\nenabled = true\nmin_samples = 20"
RECENT = (1000.0, 1100.0, 1200.0, 1300.0, 1400.0) * 4  # median 1200, MAD 100


def judge(amount: float, values: tuple[float, ...] = RECENT, seen: bool = True) -> PolicyDecision:
    history = ActionHistory(seen_from_agent=seen, values={"amount": values})
    return policy(ANOMALY).evaluate(request(payload={"amount": amount}, confidence=0.99), history)


def test_novel_action_for_this_agent() -> None:
    decision = judge(1200, seen=False)
    assert decision.outcome is Outcome.REVIEW
    assert decision.triggers == (
        Trigger(
            kind=TriggerKind.ANOMALY,
            detail="first request for action payments.transfer from agent 'billing-bot'",
        ),
    )
    quiet = policy(ANOMALY + "\nnovel_action = false")
    history = ActionHistory(seen_from_agent=False, values={})
    assert quiet.evaluate(request(payload={"amount": 1200}, confidence=0.99), history).outcome is Outcome.APPROVE


def test_numeric_outlier() -> None:
    decision = judge(950000)
    assert decision.outcome is Outcome.REVIEW
    assert decision.triggers == (
        Trigger(
            kind=TriggerKind.ANOMALY,
            detail="payload.amount = 950000 is far outside the recent history of payments.transfer "
            "(median 1200, modified z 6399.7 > 3.5 over 20 values)",
        ),
    )


def test_inliers_and_the_threshold_edge() -> None:
    assert judge(1250).outcome is Outcome.APPROVE
    assert judge(1718).outcome is Outcome.APPROVE  # z = 3.494
    assert judge(1719).outcome is Outcome.REVIEW  # z = 3.5007
    low = judge(681)  # low outliers count too
    assert low.outcome is Outcome.REVIEW
    assert "(median 1200, modified z -3.501 < -3.5 over 20 values)" in low.triggers[0].detail


def test_too_few_samples_are_not_judged() -> None:
    assert judge(950000, values=RECENT[:19]).outcome is Outcome.APPROVE


def test_anomaly_skipped_without_history_or_when_disabled() -> None:
    assert policy(ANOMALY).evaluate(request(confidence=0.99)).outcome is Outcome.APPROVE
    history = ActionHistory(seen_from_agent=False, values={"amount": RECENT})
    outlier = request(payload={"amount": 950000}, confidence=0.99)
    assert Policy().evaluate(outlier, history).outcome is Outcome.APPROVE


def test_nested_fields_are_shown_with_the_payload_prefix() -> None:
    history = ActionHistory(seen_from_agent=True, values={"order.total": RECENT})
    decision = policy(ANOMALY).evaluate(request(payload={"order": {"total": 9000}}, confidence=0.99), history)
    assert decision.triggers[0].detail.startswith("payload.order.total = 9000 is far outside")


def test_zero_mad_falls_back_to_mean_absolute_deviation() -> None:
    values = (100.0,) * 17 + (100.0, 200.0, 300.0)  # MAD 0, mean AD 15
    assert modified_z_score(200, list(values)) == pytest.approx((100 / (1.253314 * 15), 100))
    assert judge(130, values).outcome is Outcome.APPROVE  # z 1.6
    assert judge(200, values).outcome is Outcome.REVIEW  # z 5.3


def test_identical_history_flags_any_other_value() -> None:
    values = (100.0,) * 20
    assert judge(100, values).outcome is Outcome.APPROVE
    decision = judge(101, values)
    assert decision.triggers[0].detail == (
        "payload.amount = 101 differs from the recent history of payments.transfer, where all 20 values were 100"
    )
    assert modified_z_score(99, list(values)) == (-math.inf, 100)


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["Bash", "mcp__github__create_issue", "payments.transfer", "a/b:c-d", "_x"])
def test_valid_action_names(action: str) -> None:
    Policy().validate(request(action=action))


def invalid(**changes: Any) -> str:
    with pytest.raises(InvalidInput) as caught:
        Policy().evaluate(request(**changes))
    return str(caught.value)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"action": ""}, "action is empty; name the action to approve"),
        ({"action": "pay ments"}, 'action "pay ments" has characters that are not allowed'),
        ({"action": ".hidden"}, "start with a letter, digit or _"),
        ({"action": "a" * 201}, "action is 201 characters; the limit is 200 (limits.max_action_chars)"),
        ({"summary": "  \n"}, "summary is empty"),
        ({"summary": "s" * 2001}, "summary is 2,001 characters; the limit is 2,000 (limits.max_summary_chars)"),
        ({"payload": [1, 2]}, "payload must be a JSON object, not list"),
        ({"payload": {"x": math.nan}}, "payload cannot be stored as JSON"),
        ({"payload": {"x": math.inf}}, "NaN and infinity are not allowed"),
        ({"payload": {"x": {1, 2}}}, "payload cannot be stored as JSON"),
        ({"confidence": 1.5}, "confidence 1.5 is outside 0 to 1"),
        ({"confidence": -0.01}, "confidence -0.01 is outside 0 to 1"),
        ({"confidence": math.nan}, "confidence nan is outside 0 to 1"),
        ({"confidence": True}, "confidence must be a number from 0 to 1, not true"),
        ({"confidence": "0.9"}, 'confidence must be a number from 0 to 1, not "0.9"'),
        ({"flags": ("f",) * 33}, "flags has 33 entries; the limit is 32 (limits.max_flags)"),
        ({"flags": ("ok", "")}, 'flags[1] is ""; each flag must be a non-empty string'),
        ({"flags": ("ok", 7)}, "flags[1] is 7; each flag must be a non-empty string"),
        ({"flags": ("f" * 101,)}, "flags[0] is 101 characters; the limit is 100 (limits.max_flag_chars)"),
        ({"flags": "pii"}, "flags must be a list of strings, not str"),
        ({"agent_id": ""}, "agent_id is empty"),
        ({"agent_id": "a" * 201}, "agent_id is 201 characters; the limit is 200 (limits.max_agent_id_chars)"),
        ({"expires_in_seconds": 0}, "expires_in_seconds 0 is out of range; use a whole number from 1 to 604,800"),
        ({"expires_in_seconds": 604801}, "expires_in_seconds 604801 is out of range"),
        ({"expires_in_seconds": True}, "expires_in_seconds true is out of range"),
    ],
)
def test_validation_errors(changes: dict[str, Any], expected: str) -> None:
    assert expected in invalid(**changes)


def test_two_megabyte_payload_is_refused_with_advice() -> None:
    payload = {"blob": "x" * (2 * 1024 * 1024 - len('{"blob":""}'))}
    assert invalid(payload=payload) == (
        "payload is 2,097,152 bytes as canonical JSON; the limit is 65,536 bytes (limits.max_payload_bytes). "
        "Send a reference to the data (an id or URL) instead of the data itself."
    )


def test_limits_are_inclusive_and_configurable() -> None:
    exact = {"blob": "é" * 32762 + "x"}  # 11 + 2 * 32762 + 1 = 65,536 bytes: é is two bytes in UTF-8
    Policy().validate(request(payload=exact, expires_in_seconds=604800, confidence=0.0))
    with pytest.raises(InvalidInput, match="payload is 65,537 bytes"):
        Policy().validate(request(payload={"blob": "é" * 32763}))
    small = policy("[limits]\nmax_summary_chars = 10")
    small.validate(request(summary="s" * 10))
    with pytest.raises(InvalidInput, match=r"summary is 11 characters; the limit is 10 \("):
        small.validate(request(summary="s" * 11))


# --- determinism -------------------------------------------------------------------------------

EXAMPLE_POLICY = Policy(load_policy_config(EXAMPLE))
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text('ab "é', max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text("ab", max_size=6), inner, max_size=3),
    max_leaves=8,
)
INPUTS = st.builds(
    PolicyInput,
    action=st.sampled_from(["payments.transfer", "payments.refund", "db.drop_users", "Bash", "email.send"]),
    summary=st.text("ab \n", min_size=1, max_size=20).filter(str.strip),
    payload=st.fixed_dictionaries(
        {},
        optional={
            "amount": st.integers(-100, 10**6) | st.floats(-1e6, 1e6),
            "currency": st.sampled_from(["USD", "EUR", "XXX"]),
            "environment": st.sampled_from(["production", "staging"]),
            "command": st.sampled_from(["rm -rf /tmp/x", "ls"]),
            "order_id": JSON,
        },
    ),
    confidence=st.none() | st.floats(0, 1),
    flags=st.lists(st.sampled_from(["pii", "fairness:age", "other"]), max_size=3).map(tuple),
    agent_id=st.none() | st.sampled_from(["a", "b"]),
    expires_in_seconds=st.none() | st.integers(1, 604800),
)
HISTORIES = st.none() | st.builds(
    ActionHistory,
    seen_from_agent=st.booleans(),
    values=st.fixed_dictionaries({"amount": st.lists(st.floats(-1e6, 1e6), max_size=30).map(tuple)}),
)


@settings(max_examples=40, database=None, deadline=None)
@given(INPUTS, HISTORIES)
def test_evaluate_is_total_and_deterministic(asked: PolicyInput, history: ActionHistory | None) -> None:
    try:
        decision = EXAMPLE_POLICY.evaluate(asked, history)
    except InvalidInput as refused:  # the example's schema for payments.transfer: the same refusal every time
        assert asked.action == "payments.transfer" and "must match the policy's schema" in str(refused)
        with pytest.raises(InvalidInput) as again:
            EXAMPLE_POLICY.evaluate(asked, history)
        assert str(again.value) == str(refused)
        return
    assert decision == EXAMPLE_POLICY.evaluate(asked, history)
    assert decision.triggers
    assert decision.approvals_required >= 1
    assert 1 <= decision.expires_in_seconds <= 604800
    kinds = {t.kind for t in decision.triggers}
    assert (decision.outcome is Outcome.REJECT) is (TriggerKind.GUARDRAIL in kinds)


# --- action schemas ----------------------------------------------------------------------------

SCHEMA_POLICY = """
[[schemas]]
action = "payments.*"
[schemas.schema]
type = "object"
required = ["amount", "currency"]
properties = { amount = { type = "number", minimum = 0 }, currency = { type = "string", maxLength = 3 } }
"""


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"currency": "USD"}, "payload: 'amount' is a required property."),
        ({"amount": "20000", "currency": "USD"}, "payload.amount: '20000' is not of type 'number'."),
        ({"amount": 1, "currency": "USDX"}, "payload.currency: 'USDX' is too long."),
        ({"amount": 1, "currency": "U" * 60_000}, 'payload.currency: "UUUUUUUUUUUUUUUUUUUUUUUUUUUU'),
    ],
)
def test_a_payload_that_breaks_its_action_schema_is_invalid_input_naming_the_field(
    payload: dict[str, Any], expected: str
) -> None:
    for action in ("payments.transfer", "PAYMENTS.Transfer"):
        with pytest.raises(InvalidInput) as caught:
            decide(SCHEMA_POLICY, action=action, payload=payload, confidence=0.99)
        message = str(caught.value)
        assert message.startswith(expected), message
        assert f"Payloads for {action} must match the policy's schema for 'payments.*' (schemas[0], rule " in message
        assert len(message) < 400


def test_a_payload_that_matches_its_schema_is_decided_as_usual() -> None:
    decision = decide(SCHEMA_POLICY, payload={"amount": 5, "currency": "EUR"}, confidence=0.99)
    assert decision.outcome is Outcome.APPROVE
    assert decide(SCHEMA_POLICY, action="email.send", payload={}, confidence=0.99).outcome is Outcome.APPROVE


def test_a_schema_reference_that_leads_nowhere_refuses_the_request() -> None:
    broken = policy('[[schemas]]\naction = "a.*"\nschema = { "$ref" = "#/$defs/missing" }\n')
    with pytest.raises(InvalidInput, match=r"has a reference that leads nowhere .* the request is refused"):
        broken.evaluate(request(action="a.b", confidence=0.99))


def test_a_rule_detail_names_its_conditions_in_order_once_the_whole_rule_holds() -> None:
    toml = dedent(
        """
        [[rules]]
        name = "mixed"
        outcome = "review"
        action = "payments.*"
        when = [
            { path = "payload.amount", op = "gt", value = 100 },
            { path = "payload.amount", op = "gt", field = "payload.balance" },
            { path = "payload.currency", op = "in", value = ["EUR", "GBP"] },
            { path = "payload.currency", op = "eq", value = "EUR" },
            { path = "payload.memo", op = "exists", value = false },
        ]
        """
    )
    payload = {"amount": 500, "balance": 20, "currency": "EUR"}
    decision = decide(toml, action="payments.transfer", confidence=0.99, payload=payload)
    assert decision.triggers[0].detail == (
        "rule 'mixed' (review): action payments.transfer matches 'payments.*'; payload.amount gt 100 (was 500); "
        'payload.amount gt payload.balance (was 500 against 20); payload.currency in ["EUR","GBP"] (was "EUR"); '
        'payload.currency eq "EUR"; payload.memo exists false (missing)'
    )
    failing = decide(toml, action="payments.transfer", confidence=0.99, payload=payload | {"currency": "USD"})
    assert [t.kind for t in failing.triggers] == [TriggerKind.DEFAULT]


# --- routing when a rule matched only by failing closed (R8 F1) --------------------------------

ROUTED = """
[[people]]
name = "sam"
aliases = ["sam-support", "U0SAM"]

[[people]]
name = "fiona"
aliases = ["fiona-finance", "U0FIONA"]

[slack]
approvers = [{slack}]

[[rules]]
name = "small"
action = "payments.*"
when = [{{ path = "payload.amount", op = "lte", value = 100 }}]
outcome = "review"
approvers = ["sam"]
approvals_required = {small_quorum}

[[rules]]
name = "vip customers"
action = "payments.*"
when = [{{ path = "payload.customer", op = "eq", value = "vip" }}]
outcome = "review"
approvers = ["fiona"]
"""


def routed(amount: Any, customer: str = "x", slack: str = "", small_quorum: int = 1) -> PolicyDecision:
    toml = ROUTED.format(slack=slack, small_quorum=small_quorum)
    return decide(toml, payload={"amount": amount, "customer": customer}, confidence=0.99)


def test_clear_matches_route_as_before_the_first_rule_naming_approvers() -> None:
    assert routed(50).approvers == ("sam",)
    assert routed(50, customer="vip").approvers == ("sam",)
    assert routed(5000, customer="vip").approvers == ("fiona",)
    assert routed(5000, slack='"U0FIONA"').outcome is Outcome.APPROVE  # no rule matched


def test_an_unclear_rule_and_slack_approvers_with_nobody_in_common_reject_saying_what_to_send() -> None:
    decision = routed("50", slack='"U0FIONA"')  # "small" may not apply, and then [slack] picks fiona
    assert decision.outcome is Outcome.REJECT and decision.approvers == ()
    first = decision.triggers[0]
    assert first.kind is TriggerKind.GUARDRAIL
    assert "rule 'small': sam; [slack]: U0FIONA" in first.detail
    assert "rule 'small': payload.amount is the string \"50\", not a number" in first.detail
    assert "a number as a number" in first.detail
    assert decision.triggers[1].detail.endswith(": treated as matching)")  # the rule's own trigger stays


def test_an_unclear_rule_narrows_but_never_widens() -> None:
    assert routed("50").approvers == ("sam",)  # [slack] names nobody: no narrower set to keep to
    assert routed("50", slack='"U0SAM", "U0FIONA"').approvers == ("sam",)
    assert routed("50", customer="vip").outcome is Outcome.REJECT  # sam, or fiona for a vip: nobody in common


def test_an_unclear_rule_still_raises_the_quorum() -> None:
    assert routed("50", small_quorum=2).approvals_required == 2
    assert routed("50", slack='"U0SAM"', small_quorum=2).approvals_required == 2


def test_a_lookup_that_cannot_answer_may_not_widen_the_approvers_either() -> None:
    toml = """
    [[people]]
    name = "junior"
    aliases = []

    [[people]]
    name = "senior"
    aliases = []

    [[lookups]]
    name = "limits"
    file = "limits.json"

    [[rules]]
    name = "over the limit"
    action = "payments.*"
    when = [{ path = "payload.amount", op = "gt", lookup = "limits", key = "payload.customer", column = "limit" }]
    outcome = "review"
    approvers = ["junior"]

    [[rules]]
    name = "large"
    action = "payments.*"
    when = [{ path = "payload.amount", op = "gt", value = 1000 }]
    outcome = "review"
    approvers = ["senior"]
    """
    decision = decide(toml, payload={"amount": 5000}, confidence=0.99)  # no customer: the lookup cannot answer
    assert decision.outcome is Outcome.REJECT
    assert "payload.customer is missing" in decision.triggers[0].detail
