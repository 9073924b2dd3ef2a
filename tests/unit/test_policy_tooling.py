"""Checking, testing and replaying a policy before trusting it (pure parts: no files, no database)."""

from __future__ import annotations

import pytest

from signoff.storage import ApprovalRequest, ConfigError, DecidedBy, Status, Trigger, TriggerKind
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_cases import Expect, parse_cases, run_cases
from signoff.tools.approvals.policy_check import policy_faults
from signoff.tools.approvals.policy_config import DEFAULT_VERSION, parse_policy_config, policy_version
from signoff.tools.approvals.replay import NO_RULE, recorded_outcome, replay
from tests.factories import make_request

BAD = """\
confidence_threshold = 1.5
[anomaly]
threshold = -1
[[rules]]
name = "a"
outcome = "review"
when = [{ path = "payload.x", op = "gtt", value = 1 }]
[[rules]]
name = "fine"
outcome = "review"
[[rules]]
name = "b"
outcome = "maybe"
[[rules]]
name = "c"
outcome = "approve"
approvals_required = 2
"""


def test_check_reports_every_fault_once_with_its_line_and_key_in_line_order() -> None:
    faults = policy_faults(BAD, "p.toml")
    assert faults == [
        "p.toml line 1: confidence_threshold: must be between 0 and 1, not 1.5",
        "p.toml line 3: anomaly.threshold: must be a number above 0 (3.5 is usual), not -1.0",
        "p.toml line 7: rules[0].when[0].op: unknown operator 'gtt'; use one of eq, ne, gt, gte, lt, lte, in, regex,"
        " exists",
        "p.toml line 13: rules[2].outcome: unknown outcome 'maybe'; use one of approve, review, reject",
        'p.toml line 17: rules[3].approvals_required: applies only to rules with outcome = "review"; remove it from'
        " this approve rule",
    ]


def test_check_finds_nothing_in_a_valid_file_and_one_line_for_broken_toml() -> None:
    assert policy_faults('confidence_threshold = 0.9\n[[rules]]\nname = "x"\noutcome = "review"\n', "p.toml") == []
    (fault,) = policy_faults("confidence_threshold = \n", "p.toml")
    assert fault.startswith("p.toml: not valid TOML")


def test_check_finds_a_fault_that_depends_on_two_rules() -> None:
    text = '[[rules]]\nname = "x"\noutcome = "review"\n[[rules]]\nname = "x"\noutcome = "approve"\n'
    assert policy_faults(text, "p.toml") == ["p.toml line 5: rules[1].name: duplicate rule name 'x'; use unique names"]


def test_the_version_is_a_hash_of_the_text() -> None:
    text = "confidence_threshold = 0.9\n"
    assert policy_version(text) == policy_version(str(text))
    assert len(policy_version(text)) == 16
    assert policy_version(text + "# a comment\n") != policy_version(text)
    assert policy_version(None) == DEFAULT_VERSION


POLICY = Policy(
    parse_policy_config(
        """
[[rules]]
name = "large transfers"
action = "payments.*"
when = [{ path = "payload.amount", op = "gt", value = 10000 }]
outcome = "review"

[[schemas]]
action = "payments.transfer"
schema = { type = "object", required = ["amount"] }
"""
    )
)


def run(text: str) -> list[tuple[str, Expect, str | None]]:
    return [(r.case.name, r.got, r.problem) for r in run_cases(POLICY, parse_cases(text, "c.toml"))]


def test_cases_pass_when_the_policy_does_what_they_expect() -> None:
    results = run(
        """
[[cases]]
name = "big"
action = "payments.transfer"
payload = { amount = 20000 }
confidence = 0.99
expect = "review"
triggers = ["rule"]

[[cases]]
name = "no amount"
action = "payments.transfer"
expect = "invalid"
message = "amount"
"""
    )
    assert results == [("big", Expect.REVIEW, None), ("no amount", Expect.INVALID, None)]


def test_a_failing_case_says_what_was_expected_and_what_happened_and_why() -> None:
    [(name, got, problem)] = run(
        """
[[cases]]
name = "big but confident"
action = "payments.transfer"
payload = { amount = 20000 }
confidence = 0.99
expect = "approve"
"""
    )
    assert name == "big but confident" and got is Expect.REVIEW
    assert problem is not None and problem.startswith("expected approve, got review (rule: ")
    assert "large transfers" in problem


def test_a_case_fails_when_a_trigger_it_names_does_not_fire_or_a_refusal_says_something_else() -> None:
    results = run(
        """
[[cases]]
name = "low confidence"
action = "payments.transfer"
payload = { amount = 5 }
confidence = 0.1
expect = "review"
triggers = ["rule"]

[[cases]]
name = "refused for the wrong reason"
action = "payments.transfer"
expect = "invalid"
message = "currency"

[[cases]]
name = "refused but expected to pass"
action = "payments.transfer"
confidence = 0.99
expect = "approve"
"""
    )
    assert [problem is not None for _, _, problem in results] == [True, True, True]
    assert "no rule trigger fired" in (results[0][2] or "")
    assert "does not say 'currency'" in (results[1][2] or "")
    assert (results[2][2] or "").startswith("refused as invalid: payload: 'amount' is a required property")


def test_a_bad_cases_file_is_one_error_naming_the_line_and_key() -> None:
    text = '[[cases]]\nname = "a"\naction = "x"\nexpect = "aprove"\n'
    with pytest.raises(ConfigError, match=r"^c.toml line 4: cases\[0\].expect: unknown outcome 'aprove'"):
        parse_cases(text, "c.toml")
    with pytest.raises(ConfigError, match="duplicate case name 'a'"):
        parse_cases(text.replace("aprove", "review") * 2, "c.toml")
    with pytest.raises(ConfigError, match="at least one"):
        parse_cases("", "c.toml")


def approved_by_policy(amount: int) -> ApprovalRequest:
    return make_request(
        action="payments.transfer",
        payload={"amount": amount},
        confidence=0.95,
        flags=(),
        status=Status.APPROVED,
        decided_by=DecidedBy.POLICY,
        triggers=(Trigger(kind=TriggerKind.DEFAULT, detail="approved by policy"),),
    )


def reviewed(amount: int, *, confidence: float = 0.8, kind: TriggerKind = TriggerKind.CONFIDENCE) -> ApprovalRequest:
    return make_request(
        action="payments.refund",
        payload={"amount": amount},
        confidence=confidence,
        flags=(),
        status=Status.APPROVED,
        decided_by=DecidedBy.HUMAN,
        triggers=(Trigger(kind=kind, detail="why"),),
    )


def test_recorded_outcome_is_what_the_policy_in_force_decided() -> None:
    assert recorded_outcome(approved_by_policy(5)) is Expect.APPROVE
    assert recorded_outcome(reviewed(5)) is Expect.REVIEW
    rejected = make_request(status=Status.REJECTED, decided_by=DecidedBy.POLICY)
    assert recorded_outcome(rejected) is Expect.REJECT
    assert recorded_outcome(make_request(status=Status.EXPIRED)) is Expect.REVIEW


def test_replay_counts_what_a_stricter_and_a_looser_policy_change_per_action_and_rule() -> None:
    history = [approved_by_policy(a) for a in (500, 20000, 30000)] + [reviewed(a) for a in (10, 20)]
    report = replay(POLICY, history)
    assert report.requests == 5 and report.changed == 2 and report.recorded_versions == {"": 5}
    assert report.transitions == {(Expect.APPROVE, Expect.REVIEW): 2}
    assert report.by_action == {"payments.transfer": {(Expect.APPROVE, Expect.REVIEW): 2}}
    assert report.by_rule == {"large transfers": 2}
    [first, _] = report.examples[(Expect.APPROVE, Expect.REVIEW)]
    assert first.request.payload == {"amount": 20000} and first.triggers[0].kind is TriggerKind.RULE

    looser = Policy(parse_policy_config("confidence_threshold = 0.75\n"))
    report = replay(looser, history)
    assert report.transitions == {(Expect.REVIEW, Expect.APPROVE): 2}
    assert report.by_rule == {NO_RULE: 2}
    assert replay(looser, history) == report  # the same history and policy give the same report


def test_replay_reports_requests_the_candidate_would_refuse_as_invalid() -> None:
    old = make_request(action="payments.transfer", payload={"to": "x"}, confidence=0.99, flags=())
    report = replay(POLICY, [old])
    assert report.transitions == {(Expect.REVIEW, Expect.INVALID): 1}
    assert "amount" in (report.examples[(Expect.REVIEW, Expect.INVALID)][0].reason or "")
