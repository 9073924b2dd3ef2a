"""What ``policy replay`` does to read each request once gives the same answers as the checks it stands in for:
one walk of a payload for the out-of-distribution leaves and the anomaly numbers, the rules and fairness groups
that can apply to an action picked once per action, and a missing required key refusing a payload at once."""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from signoff.storage import DecidedBy, Priority, Status
from signoff.storage.payload_numbers import numeric_fields, numeric_leaves
from signoff.tools.approvals import shape
from signoff.tools.approvals.conditions import match_rule
from signoff.tools.approvals.history import History
from signoff.tools.approvals.policy import Policy, PolicyInput, schema_violation
from signoff.tools.approvals.policy_config import parse_policy_config

KEYS = st.sampled_from(["a", "b", "a.b", "b.a", "amount", "Amount", "x-1", "x.1", "é", ""])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**1030), max_value=2**1030),  # beyond a float's range too
    st.sampled_from([10**400, -(10**400), 2**1023, 2**1023 + 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=6)),
    max_leaves=80,
)
PAYLOADS = st.dictionaries(KEYS, JSON, max_size=8)


def deep(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"n": levels, "flag": True}
    for level in range(levels):
        node = {f"k{level}": node, "v": level + 0.5}
    return node


EDGES: list[Any] = [
    {},
    deep(7),  # deeper than either walk goes
    {"a": {"b": 1}, "a.b": 2},  # two leaves with one path
    {"a.b": 2, "a": {"b": 1}},
    {f"f{i:03d}": i for i in range(100)},  # more leaves than are read, more numbers than are kept
    {f"g{i}": {"x": i, "y": [i, {"z": i}]} for i in range(40)},
    {"t": True, "f": False, "one": 1, "zero": 0, "nan": math.nan, "inf": -math.inf, "big": 10**400},
    {"list": [[1, 2], [3, [4, {"deep": 5}]]], "obj": {"list": [{"a": 1}]}},
    {1: "int key", "1": "string key", "2": 2, 10: {"x": 1.5}},  # non-string keys sort as their text
    MappingProxyType({"b": MappingProxyType({"c": 3}), "a": 1}),  # mappings that are not dicts
]


def assert_one_walk_is_two(payload: Any) -> None:
    walked = shape.walk(payload)
    assert walked.leaves == shape.leaves(payload)
    assert [(path, type(value)) for path, value in walked.leaves] == [
        (path, type(value)) for path, value in shape.leaves(payload)
    ]
    numbers = numeric_leaves(payload)
    assert walked.numbers == numbers and list(walked.numbers) == list(numbers)
    assert all(type(value) is float for field in walked.numbers for value in field.values)
    assert walked.fields == numeric_fields(payload)


def test_one_walk_gives_the_leaves_and_numbers_of_the_two_walks_on_edge_cases() -> None:
    for payload in EDGES:
        assert_one_walk_is_two(payload)


@settings(max_examples=400, deadline=None)
@given(PAYLOADS)
def test_one_walk_gives_the_leaves_and_numbers_of_the_two_walks(payload: dict[str, Any]) -> None:
    assert_one_walk_is_two(payload)


EXAMPLE = Policy(parse_policy_config((Path(__file__).resolve().parents[2] / "signoff.example.toml").read_text()))


def asked(rng: random.Random, n: int) -> PolicyInput:
    action = rng.choice(["payments.transfer", "payments.refund", "email.send", "loans.personal", "Bash", "db.drop_x"])
    payload: dict[str, Any] = {"amount": rng.choice([rng.lognormvariate(5, 2), 10, 10, True, "10", math.nan])}
    if rng.random() < 0.5:
        payload["currency"] = rng.choice(["USD", "EUR", "CHF", 3])
    if rng.random() < 0.3:
        payload["applicant"] = {"age_band": rng.choice(["18-25", "26-40", "65+"]), "score": rng.randrange(900)}
    if rng.random() < 0.3:
        payload["decision"] = rng.choice(["approve", "decline"])
        payload["recommendation"], payload["bureau_decision"] = rng.choice([("a", "a"), ("a", "b"), (1, "1")])
    if rng.random() < 0.1:
        payload["memo"] = "x" * rng.choice([5, 50, 500])
    if rng.random() < 0.1:
        payload["nested"] = [{"amount": 5}, [1, 2]]
    return PolicyInput(
        action=action,
        summary=f"request {n}",
        payload=payload,
        confidence=rng.choice([0.99, 0.6, None]),
        flags=rng.choice([(), ("pii",), ("fairness:age",)]),
        agent_id=rng.choice(["a", "b", None]),
        expires_in_seconds=None,
    )


def test_a_walked_payload_is_judged_and_learnt_as_one_walked_by_each_check() -> None:
    walked_history, plain_history = History(EXAMPLE), History(EXAMPLE)
    rng = random.Random(3)
    for n in range(3000):
        request = asked(rng, n)
        walked = shape.walk(request.payload)
        with_walk = walked_history.judged(request, walked)
        without = plain_history.judged(request)
        assert with_walk == without
        # validated: judged whatever the schema says, NaN and all
        decision = EXAMPLE.evaluate(request, *with_walk, validated=True, walked=walked)
        assert decision == EXAMPLE.evaluate(request, *without, validated=True)
        status = rng.choice([Status.APPROVED, Status.APPROVED, Status.REJECTED, Status.PENDING])
        changed = {"amount": 1.0} if rng.random() < 0.05 else None  # a reviewer's changed payload
        walked_history.add(request, status, DecidedBy.HUMAN, changed, walked)
        plain_history.add(request, status, DecidedBy.HUMAN, changed)


def test_only_the_rules_and_groups_for_an_action_are_checked_and_they_are_all_that_match() -> None:
    rng = random.Random(8)
    for n in range(2000):
        request = asked(rng, n)
        every = tuple(r.name for r in EXAMPLE.config.rules if match_rule(r, request) is not None)
        assert EXAMPLE.evaluate(request, validated=True).rules == every
        groups = EXAMPLE.config.fairness.groups
        watched = [i for i, g in enumerate(groups) if not g.action or request.action.startswith("loans.")]
        assert EXAMPLE.watched_groups(request.action) == watched


DIALECTS = [
    None,  # draft 2020-12
    "https://json-schema.org/draft/2019-09/schema",
    "http://json-schema.org/draft-07/schema#",
    "http://json-schema.org/draft-06/schema#",
    "http://json-schema.org/draft-04/schema#",
]  # draft 3 reads "required" elsewhere (a boolean in each property): a top-level list is refused as invalid


def schemas(dialect: str | None, body: str) -> Any:
    head = "" if dialect is None else f'"$schema" = "{dialect}"\n'
    return parse_policy_config(f'[[schemas]]\naction = "pay.*"\n[schemas.schema]\n{head}{body}').schemas


def test_a_missing_required_key_refuses_what_the_validator_refuses() -> None:
    bodies = [
        'type = "object"\nrequired = ["amount", "to"]\nproperties.amount = { type = "number", maximum = 5 }',
        'required = ["amount"]\nadditionalProperties = false\nproperties.amount = {}',
        'anyOf = [{ required = ["a"] }, { required = ["b"] }]\nrequired = ["amount"]',
    ]
    payloads: list[Any] = [
        {},
        {"amount": 1},
        {"amount": 9, "to": "x"},
        {"amount": 1, "to": "x"},
        {"amount": 1, "a": 1},
        {"to": "x", "b": 2},
        MappingProxyType({"to": "x"}),  # not a dict: no shortcut, the validator decides
    ]
    for dialect in DIALECTS:
        for body in bodies:
            for entry in schemas(dialect, body):
                assert entry.required_keys == ("amount", "to") if "to" in body else ("amount",)
                for payload in payloads:
                    refused = schema_violation((entry,), "pay.x", payload, explain=False) is not None
                    assert refused is not entry.validator.is_valid(payload), (dialect, body, payload)
                    assert refused is (schema_violation((entry,), "pay.x", payload) is not None)


def test_a_schema_with_a_reference_is_left_to_the_validator() -> None:
    # in draft 7 a top-level $ref overrides its siblings: "required" is not checked at all
    body = 'required = ["amount"]\n"$ref" = "#/definitions/any"\ndefinitions.any = { type = "object" }'
    (entry,) = schemas("http://json-schema.org/draft-07/schema#", body)
    assert entry.required_keys == ()
    assert entry.validator.is_valid({})
    assert schema_violation((entry,), "pay.x", {}, explain=False) is None
    nowhere = 'required = ["amount"]\nproperties.amount = { "$ref" = "#/$defs/missing" }'
    (entry,) = schemas(None, nowhere)
    assert entry.required_keys == ()
    said = schema_violation((entry,), "pay.x", {"amount": 1}, explain=False)
    assert said is not None and "leads nowhere" in said


def test_a_request_no_rule_matches_gets_the_policys_own_settings() -> None:
    rng = random.Random(9)
    routing = EXAMPLE.config.slack
    assert routing.channel and routing.approvers  # so a decision that drops them is seen
    seen = 0
    for n in range(2000):
        request = asked(rng, n)
        if rng.random() < 0.5:
            request = dataclasses.replace(request, expires_in_seconds=rng.choice([60, 10**6]))
        decision = EXAMPLE.evaluate(request, validated=True)
        if decision.rules:
            continue
        seen += 1
        asked_for = request.expires_in_seconds
        assert decision.channel == routing.channel and decision.approvers == routing.approvers
        assert decision.approvals_required == 1 and decision.priority is Priority.NORMAL
        assert decision.escalate_after_seconds is None and decision.escalate_to is None
        assert decision.expires_in_seconds == (
            EXAMPLE.config.default_expires_in_seconds if asked_for is None else asked_for
        )
    assert seen > 500
