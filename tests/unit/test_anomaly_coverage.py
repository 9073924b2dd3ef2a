"""The numeric anomaly check fails closed (review R3-A): it judges at most 32 numeric fields of a payload, in
objects up to four deep (a field in lists, ``items[].qty``, counts as one, up to 100 numbers); a payload with a
number it does not judge (the 33rd field, the 101st number of a field in lists, one nested deeper, two fields on
one path) goes to a person with an ``anomaly`` trigger that says why. ``policy replay`` and ``policy test`` judge
it the same way as the server."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from signoff.storage import ActionHistory, Status, Trigger, TriggerKind
from signoff.storage.payload_numbers import history_names, numeric_fields
from signoff.tools.approvals import shape
from signoff.tools.approvals.policy import Outcome, Policy, PolicyDecision, PolicyInput
from signoff.tools.approvals.policy_cases import Expect, parse_cases, run_cases
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.replay import replay
from tests.factories import asked as asked_for

POLICY = Policy(parse_policy_config("[anomaly]\nenabled = true\nnovel_action = false\nmin_samples = 5\n"))
USUAL = (100.0, 110.0, 120.0, 130.0, 95.0, 105.0)


def decide(payload: dict[str, Any], walked: bool = False, known: tuple[str, ...] | None = None) -> PolicyDecision:
    """``POLICY``'s decision on ``payload``, with a usual history for each of the ``known`` fields (default: every
    field the check judges)."""
    request = PolicyInput(
        action="refunds.issue",
        summary="refund",
        payload=payload,
        confidence=0.99,
        flags=(),
        agent_id="bot",
        expires_in_seconds=None,
    )
    fields = history_names(numeric_fields(payload).leaves) if known is None else known
    history = ActionHistory(seen_from_agent=True, values=dict.fromkeys(fields, USUAL))
    return POLICY.evaluate(request, history, walked=shape.walk(payload) if walked else None)


def details(decision: PolicyDecision) -> list[str]:
    return [t.detail for t in decision.triggers if t.kind is TriggerKind.ANOMALY]


def numbered(count: int, **extra: Any) -> dict[str, Any]:
    return {f"f{i:02d}": 100 for i in range(count)} | extra


def test_exactly_32_numeric_fields_are_all_judged_and_the_33rd_sends_the_payload_to_a_person() -> None:
    assert decide(numbered(32)).outcome is Outcome.APPROVE  # all 32 judged, all usual
    far = decide(numbered(31, zz=10**9))  # the field sorting last is still judged
    assert far.outcome is Outcome.REVIEW
    assert [d.split(" (")[0] for d in details(far)] == [
        "payload.zz = 1000000000 is far outside the recent history of refunds.issue"
    ]
    over = decide(numbered(33))
    assert over.outcome is Outcome.REVIEW
    assert details(over) == [
        "the payload has 33 numeric fields; the anomaly check judges at most 32: a person reviews it"
    ]


def test_decoy_keys_that_sort_first_do_not_get_a_far_amount_approved() -> None:
    decoys = {f"_{i:02d}": 0 for i in range(32)}
    decision = decide({"amount": 10**9, **decoys}, known=("amount",))  # the decoys have no history
    assert decision.outcome is Outcome.REVIEW
    assert details(decision) == [
        "the payload has 33 numeric fields; the anomaly check judges at most 32: a person reviews it"
    ]


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (
            {"amount": 100, "items": [{"qty": 100}] * 101},
            "payload.items[].qty has 101 numbers in lists; the anomaly check judges at most 100 numbers of a field:"
            " a person reviews it",
        ),
        (
            {"a": {"b": {"c": {"d": {"amount": 10**9}}}}},
            "payload.a.b.c.d.amount is a number nested more than 4 objects or 4 lists deep; the anomaly check does"
            " not judge it: a person reviews it",
        ),
        (
            {"a": [{"b": {"c": {"d": {"amount": 10**9}}}}]},
            "payload.a[0].b.c.d.amount is a number nested more than 4 objects or 4 lists deep; the anomaly check"
            " does not judge it: a person reviews it",
        ),
        (
            {"m": [[[[[10**9]]]]]},
            "payload.m[0][0][0][0][0] is a number nested more than 4 objects or 4 lists deep; the anomaly check does"
            " not judge it: a person reviews it",
        ),
        (
            {"refund.amount": 100, "refund": {"amount": -(10**9)}},
            "payload.refund.amount names two numeric fields (a dotted key and a nested one, or a key ending in []"
            " and a list); the anomaly check cannot tell them apart: a person reviews it",
        ),
        (
            {"amount[]": 100, "amount": [100]},
            "payload.amount[] names two numeric fields (a dotted key and a nested one, or a key ending in [] and a"
            " list); the anomaly check cannot tell them apart: a person reviews it",
        ),
    ],
    ids=["101-items", "five-deep", "five-deep-in-a-list", "five-lists", "dotted-twin", "list-twin"],
)
def test_a_number_the_check_cannot_judge_sends_the_payload_to_a_person(payload: dict[str, Any], detail: str) -> None:
    for walked in (False, True):  # as the server judges it, and as replay does from its one walk
        decision = decide(payload, walked)
        assert decision.outcome is Outcome.REVIEW
        assert detail in details(decision)


def test_what_the_check_can_judge_or_that_holds_no_number_passes() -> None:
    four_deep = {"a": {"b": {"c": {"amount": 100}}}}
    assert decide(four_deep).outcome is Outcome.APPROVE
    assert [tuple(f) for f in numeric_fields(four_deep).leaves] == [("a.b.c.amount", "a.b.c.amount", (100.0,))]
    assert details(decide({"a": {"b": {"c": {"amount": 10**9}}}}))  # four deep is judged
    in_lists = {"a": [{"b": {"c": {"amount": 100}}}], "m": [[[[100]]]], "items": [{"qty": 100}] * 100}
    assert decide(in_lists).outcome is Outcome.APPROVE  # four objects, four lists, 100 numbers: all judged
    assert [d.split(" (")[0] for d in details(decide({**in_lists, "m": [[[[100, 10**9]]]]}))] == [
        "payload.m[][][][] = 1000000000 is far outside the recent history of refunds.issue"
    ]
    no_numbers = {"amount": 100, "tags": ["a", True, None, {"k": "v"}, []], "a": {"b": {"c": {"d": {"e": "x"}}}}}
    assert decide(no_numbers).outcome is Outcome.APPROVE


def test_what_is_named_does_not_depend_on_the_order_of_the_keys() -> None:
    payload = {"z": [1], "b": {"y": [{"q": 1}, 2]}, "a": ["x", [3, [[[{"k": 4}]]]]], "c": {"d": "x"}}
    backwards = dict(reversed(payload.items()))
    assert numeric_fields(payload) == numeric_fields(backwards) == shape.walk(backwards).fields
    assert [f.path for f in numeric_fields(payload).leaves] == ["a[][]", "b.y[]", "b.y[].q", "z[]"]
    assert numeric_fields(payload).too_deep == "a[1][1][0][0][0].k"


asked = functools.partial(asked_for, "refunds.issue")  #: what the agent asked at minute n: asked(n, payload, status)


def test_replay_and_policy_test_send_the_same_payloads_to_a_person() -> None:
    decoys = {f"_{i:02d}": 0 for i in range(32)}
    recorded = [asked(n, {"amount": value}) for n, value in enumerate(USUAL)]
    hidden = asked(10, {"amount": 10**9, **decoys}, Status.PENDING)
    listed = asked(11, {"amount": [10**9]}, Status.PENDING)  # judged against the history of amount
    report = replay(POLICY, [*recorded, hidden, listed])
    assert report.transitions == {} and report.unchanged == 8  # the two stay with people, as on the server
    cases = """
[[cases]]
name = "decoys"
action = "refunds.issue"
payload = { amount = 1000000000, _00 = 0, _01 = 0, _02 = 0, _03 = 0, _04 = 0, _05 = 0, _06 = 0, _07 = 0, _08 = 0, _09 = 0, _10 = 0, _11 = 0, _12 = 0, _13 = 0, _14 = 0, _15 = 0, _16 = 0, _17 = 0, _18 = 0, _19 = 0, _20 = 0, _21 = 0, _22 = 0, _23 = 0, _24 = 0, _25 = 0, _26 = 0, _27 = 0, _28 = 0, _29 = 0, _30 = 0, _31 = 0 }
confidence = 0.99
expect = "review"
triggers = ["anomaly"]
history = { values = { amount = [100, 110, 120, 130, 95, 105] } }
"""  # noqa: E501
    results = run_cases(POLICY, parse_cases(cases, "c.toml"))
    assert [(r.got, r.problem) for r in results] == [(Expect.REVIEW, None)]


def test_the_triggers_say_why_in_one_anomaly_trigger_each() -> None:
    decision = decide({"amount": 100, "rows": [1] * 101, "a": {"b": {"c": {"d": {"e": 1}}}}, **numbered(33)})
    assert [t.kind for t in decision.triggers] == [TriggerKind.ANOMALY] * 3
    assert decision.triggers[0] == Trigger(
        kind=TriggerKind.ANOMALY,
        detail="the payload has 35 numeric fields; the anomaly check judges at most 32: a person reviews it",
    )
