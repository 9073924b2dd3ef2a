"""Replay rebuilds the history the anomaly, out-of-distribution and fairness checks judge against (pure: no I/O)."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest

from signoff.storage import ApprovalRequest, ConfigError, DecidedBy, InvalidInput, Status, TriggerKind
from signoff.tools.approvals import fairness, shape
from signoff.tools.approvals.history import History
from signoff.tools.approvals.policy import Policy, PolicyInput
from signoff.tools.approvals.policy_cases import Expect, parse_cases, run_cases
from signoff.tools.approvals.policy_config import Anomaly, parse_policy_config
from signoff.tools.approvals.replay import Replayer, replay
from tests.factories import T0, make_request

ANOMALY = Policy(parse_policy_config("[anomaly]\nenabled = true\nnew_values = false\nkey_set = false\n"))


def asked(n: int, payload: dict[str, Any], *, status: Status = Status.APPROVED, **extra: Any) -> ApprovalRequest:
    fields: dict[str, Any] = {
        "action": "payments.refund",
        "payload": payload,
        "confidence": 0.99,
        "flags": (),
        "status": status,
        "decided_by": DecidedBy.HUMAN if status is not Status.PENDING else None,
        "created_at": T0 + timedelta(minutes=n),
    }
    return make_request(**(fields | extra))


def amounts() -> list[ApprovalRequest]:
    """30 ordinary refunds people approved, then one a hundred times larger."""
    usual = [asked(n, {"amount": 100 + n % 7}) for n in range(30)]
    return [*usual, asked(30, {"amount": 10_000})]


def test_the_first_request_is_novel_and_the_rest_are_judged_on_the_numbers_approved_before_them() -> None:
    report = replay(ANOMALY, amounts())
    # the first is novel (nothing approved yet), the next 29 are known and ordinary, the last is far out
    assert report.unchanged == 2 and report.transitions == {(Expect.REVIEW, Expect.APPROVE): 29}
    approved = {change.request.payload["amount"] for change in report.examples[(Expect.REVIEW, Expect.APPROVE)]}
    assert 10_000 not in approved
    looser = Policy(parse_policy_config("[anomaly]\nenabled = true\nmin_samples = 100\nnovel_action = false\n"))
    assert replay(looser, amounts()).transitions == {(Expect.REVIEW, Expect.APPROVE): 31}


def test_a_request_people_rejected_teaches_the_history_nothing() -> None:
    rejected = [asked(n, {"amount": 100}, status=Status.REJECTED) for n in range(3)]
    report = replay(ANOMALY, rejected)
    assert report.unchanged == 3  # each is still novel: nothing of the action was approved for the agent
    then = replay(ANOMALY, [*rejected, asked(3, {"amount": 100})])
    assert then.unchanged == 4  # the first one approved is still the first: novel


def test_a_request_the_candidate_approves_at_once_teaches_the_history() -> None:
    novel_off = Policy(parse_policy_config("[anomaly]\nenabled = true\nnovel_action = false\nmin_samples = 3\n"))
    # recorded: sent to people and rejected; the candidate approves them at once, so their numbers count
    stream = [asked(n, {"amount": 100}, status=Status.REJECTED) for n in range(3)]
    stream.append(asked(3, {"amount": 5000}, status=Status.REJECTED))
    report = replay(novel_off, stream)
    assert report.transitions == {(Expect.REVIEW, Expect.APPROVE): 3}  # the fourth is far from 100, 100, 100
    assert report.unchanged == 1


def test_a_new_category_is_judged_after_the_warmup_on_the_approved_payloads_before_it() -> None:
    config = "[anomaly]\nenabled = true\nnovel_action = false\nkey_set = false\nwarmup = 10\nwindow = 20\n"
    policy = Policy(parse_policy_config(config))
    usual = [asked(n, {"currency": ("EUR", "USD")[n % 2]}) for n in range(25)]
    report = replay(policy, [*usual, asked(25, {"currency": "XAU"})])
    assert report.transitions == {(Expect.REVIEW, Expect.APPROVE): 25}
    assert report.unchanged == 1


def test_outcome_fairness_is_judged_on_the_stream_the_earlier_requests_built() -> None:
    config = """
[[fairness.groups]]
attribute = "payload.band"
outcome = "payload.decision"
positive = "approve"
window = 400
min_samples = 30
"""
    policy = Policy(parse_policy_config(config))
    rng = random.Random(7)
    by_policy = {"status": Status.APPROVED, "decided_by": DecidedBy.POLICY}
    stream = []
    for n in range(400):
        band = ("young", "old")[n % 2]
        approve = rng.random() < (0.8 if band == "young" else 0.3)  # biased against "old"
        stream.append(asked(n, {"band": band, "decision": "approve" if approve else "deny"}, **by_policy))
    report = replay(policy, stream)
    sent = report.transitions[(Expect.APPROVE, Expect.REVIEW)]
    assert 300 < sent < 400 and set(report.transitions) == {(Expect.APPROVE, Expect.REVIEW)}  # after min_samples
    example = report.examples[(Expect.APPROVE, Expect.REVIEW)][0]
    assert example.triggers[0].kind is TriggerKind.FAIRNESS and "payload.band" in example.triggers[0].detail
    fair = [asked(n, {"band": ("young", "old")[n % 2], "decision": "approve"}, **by_policy) for n in range(400)]
    assert replay(policy, fair).changed == 0


def test_the_same_history_policy_and_batches_give_the_same_report() -> None:
    stream = amounts()
    whole = replay(ANOMALY, stream)
    replayer = Replayer(ANOMALY)
    for start in range(0, len(stream), 4):
        replayer.feed(stream[start : start + 4])
    assert replayer.report == whole == replay(ANOMALY, stream)


def test_requests_before_since_only_build_the_history() -> None:
    stream = amounts()
    report = replay(ANOMALY, stream, since=stream[-1].created_at)
    assert report.learnt == 30 and report.requests == 1 and report.unchanged == 1  # still far out: a review
    alone = replay(ANOMALY, stream[-1:])
    assert alone.requests == 1 and alone.unchanged == 1  # novel: nothing was approved before it


def test_the_kept_profile_is_the_profile_of_the_window_whatever_comes_and_goes() -> None:
    rng = random.Random(3)
    settings = Anomaly(enabled=True, window=15, warmup=1, max_categories=4)
    history = History(Policy(parse_policy_config("[anomaly]\nenabled = true\nwindow = 15\nwarmup = 1\n")))
    approved: list[dict[str, Any]] = []
    for n in range(300):
        payload: dict[str, Any] = {"kind": rng.choice("abcdefg"), "note": "x" * rng.randrange(0, 40)}
        if rng.random() < 0.3:
            payload["extra"] = {"deep": rng.choice(["p", "q"]), "n": n}
        if rng.random() < 0.2:
            payload["note"] = n  # the same key, not a string this time
        request = PolicyInput(
            action="a", summary="s", payload=payload, confidence=None, flags=(), agent_id=None, expires_in_seconds=None
        )
        _, _, kept = history.judged(request)
        expected = shape.profile(reversed(approved[-15:]), settings.max_categories)
        assert kept is not None
        assert (kept.count, kept.keys, kept.longest, kept.strings) == (
            expected.count,
            expected.keys,
            expected.longest,
            expected.strings,
        )
        assert shape.unusual(settings, "a", payload, kept) == shape.unusual(settings, "a", payload, expected)
        if rng.random() < 0.7:
            history.add(request, Status.APPROVED, DecidedBy.HUMAN)
            approved.append(payload)


def test_the_kept_streams_count_the_newest_window() -> None:
    config = '[[fairness.groups]]\nattribute = "payload.g"\noutcome = "policy"\nwindow = 10\n'
    policy = Policy(parse_policy_config(config))
    history = History(policy)
    requests = [asked(n, {"g": n % 3}) for n in range(25)]
    for request in requests:
        history.add(request, Status.APPROVED, DecidedBy.POLICY if request.payload["g"] else DecidedBy.HUMAN)
    _, streams, _ = history.judged(
        PolicyInput(
            action="x", summary="s", payload={"g": 1}, confidence=None, flags=(), agent_id=None, expires_in_seconds=None
        )
    )
    newest = [
        dataclass_replace(r, decided_by=DecidedBy.POLICY if r.payload["g"] else DecidedBy.HUMAN) for r in requests
    ]
    assert streams == {0: fairness.count_outcomes(policy.config.fairness.groups[0], reversed(newest))}


def dataclass_replace(request: ApprovalRequest, **changes: Any) -> ApprovalRequest:
    import dataclasses

    return dataclasses.replace(request, **changes)


CASES = """
[[histories]]
name = "refunds"
[[histories.requests]]
action = "payments.refund"
payload = { currency = "EUR" }
repeat = 30
[[histories.requests]]
action = "payments.refund"
payload = { currency = "USD" }
repeat = 30

[[cases]]
name = "known"
action = "payments.refund"
payload = { currency = "USD" }
confidence = 0.99
expect = "approve"
after = "refunds"

[[cases]]
name = "new"
action = "payments.refund"
payload = { currency = "XAU" }
confidence = 0.99
expect = "review"
triggers = ["anomaly"]
after = "refunds"

[[cases]]
name = "no history"
action = "payments.refund"
payload = { currency = "XAU" }
confidence = 0.99
expect = "approve"
"""


def test_cases_are_judged_after_the_history_they_name() -> None:
    policy = Policy(parse_policy_config("[anomaly]\nenabled = true\nwarmup = 50\n"))
    results = run_cases(policy, parse_cases(CASES, "c.toml"))
    assert [(r.case.name, r.problem) for r in results] == [("known", None), ("new", None), ("no history", None)]
    assert results[1].line == 21


def test_a_case_after_an_unknown_history_or_a_bad_entry_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"c.toml line 4: cases\[0\].after: no \[\[histories\]\] named 'x'"):
        parse_cases('\n[[cases]]\nname = "a"\nafter = "x"\naction = "a"\nexpect = "review"\n', "c.toml")
    bad = CASES.replace("repeat = 30\n[[histories.requests]]", "repeat = 0\n[[histories.requests]]", 1)
    with pytest.raises(ConfigError, match=r"c.toml line 7: histories\[0\].requests\[0\].repeat: must be from 1"):
        parse_cases(bad, "c.toml")


def test_a_known_payload_size_is_judged_like_a_measured_one() -> None:
    policy = Policy(parse_policy_config("[limits]\nmax_payload_bytes = 100\n"))
    big = asked(0, {"memo": "x" * 200}, status=Status.APPROVED, decided_by=DecidedBy.POLICY)
    measured = replay(policy, [big])
    assert measured.transitions == {(Expect.APPROVE, Expect.INVALID): 1}
    assert measured.by_rule == {"(refused as invalid input before any rule is checked)": 1}


def test_the_fast_spread_is_exactly_the_statistics_modules() -> None:
    import statistics

    from signoff.tools.approvals.policy import _spread

    rng = random.Random(1)
    for n in range(1, 250):
        xs = tuple(rng.choice([rng.random() * 100, 5.0, 7.0, -3.5]) for _ in range(n))
        median = statistics.median(xs)
        deviations = [abs(v - median) for v in xs]
        assert _spread(xs) == (median, statistics.median(deviations), statistics.fmean(deviations))


def test_the_kept_numbers_are_the_newest_two_hundred_approved() -> None:
    history = History(ANOMALY)
    rng = random.Random(5)
    numbers = [rng.choice([rng.randrange(1000), 42]) for _ in range(500)]
    for n, number in enumerate(numbers):
        status = Status.APPROVED if n % 5 else Status.REJECTED
        history.add(asked(n, {"amount": number}, status=status), status, DecidedBy.HUMAN)
        judged, _, _ = history.judged(
            PolicyInput(
                action="payments.refund",
                summary="s",
                payload={"amount": 1},
                confidence=None,
                flags=(),
                agent_id=None,
                expires_in_seconds=None,
            )
        )
        approved = [x for i, x in enumerate(numbers[: n + 1]) if i % 5]
        assert judged is not None and sorted(judged.values["amount"]) == sorted(approved[-200:])


def test_the_sorted_spread_is_the_spread_of_the_same_numbers() -> None:
    from signoff.tools.approvals.policy import _spread, sorted_spread

    rng = random.Random(7)
    shapes = [
        lambda: float(rng.randint(-3, 3)),  # many ties, on both sides of the median
        lambda: rng.uniform(-1e6, 1e6),
        lambda: rng.choice([0.1, 0.2, 0.3, 1e-300, 7.0, -2.5]),
        lambda: round(rng.lognormvariate(5, 2), 2),
        lambda: rng.choice([100.0, 100.0, 100.0, 250.5]),  # MAD 0: the mean absolute deviation stands in
    ]
    for trial in range(4000):
        n = rng.randint(1, 30) if trial % 2 else rng.randint(1, 210)
        xs = [shapes[trial % len(shapes)]() for _ in range(n)]
        median, mad, mean_ad = _spread(tuple(xs))
        assert sorted_spread(sorted(xs))[:2] == (median, mad), xs
        if mad == 0:
            assert sorted_spread(sorted(xs))[2] == mean_ad, xs


def test_the_kept_spreads_judge_as_the_numbers_they_come_from() -> None:
    from signoff.storage import ActionHistory

    history = History(ANOMALY)
    rng = random.Random(11)
    for n in range(400):
        number = rng.choice([rng.randrange(1000), 42, 42, 7])
        history.add(asked(n, {"amount": number}), Status.APPROVED, DecidedBy.HUMAN)
        for probe in (42, 500, 5_000, rng.randrange(2000)):
            request = PolicyInput(
                action="payments.refund",
                summary="s",
                payload={"amount": probe},
                confidence=None,
                flags=(),
                agent_id=None,
                expires_in_seconds=None,
            )
            judged, _, _ = history.judged(request)
            assert judged is not None and judged.spreads["amount"][0] == len(judged.values["amount"])
            plain = ActionHistory(seen_from_agent=judged.seen_from_agent, values=judged.values)
            assert ANOMALY.evaluate(request, judged) == ANOMALY.evaluate(request, plain)


SCHEMA = """
[[schemas]]
action = "payments.*"
schema = { type = "object", required = ["amount"], properties = { amount = { type = "number", maximum = 500 } } }
"""


def test_a_payload_the_schema_refuses_is_counted_and_its_example_says_why() -> None:
    policy = Policy(parse_policy_config(SCHEMA))
    requests = [
        asked(n, {"amount": amount}, status=Status.APPROVED, decided_by=DecidedBy.POLICY)
        for n, amount in enumerate([10, 900, "ten", 20, 1_000, 30, 2_000, 3_000])
    ]
    report = replay(policy, requests)
    assert report.transitions == {(Expect.APPROVE, Expect.INVALID): 5}
    assert report.by_rule == {"(refused as invalid input before any rule is checked)": 5}
    examples = report.examples[(Expect.APPROVE, Expect.INVALID)]
    assert [change.request.id for change in examples] == [requests[i].id for i in (1, 2, 4)]
    for change in examples:  # the reason the server would have given, not the short one replay counts with
        with pytest.raises(InvalidInput) as refused:
            policy.evaluate(PolicyInput(**_inputs(change.request)))
        assert change.reason == refused.value.message and "payload.amount" in change.reason


def test_a_schema_refuses_the_same_payloads_explained_or_not() -> None:
    from signoff.tools.approvals.policy import schema_violation

    schemas = parse_policy_config(SCHEMA).schemas
    for payload in ({"amount": 1}, {"amount": 501}, {"amount": "x"}, {}, {"amount": 500, "memo": "m"}):
        for action in ("payments.refund", "deploy.production"):
            explained = schema_violation(schemas, action, payload)
            short = schema_violation(schemas, action, payload, explain=False)
            assert (explained is None) is (short is None)


def _inputs(request: ApprovalRequest) -> dict[str, Any]:
    return {
        "action": request.action,
        "summary": request.summary,
        "payload": request.payload,
        "confidence": request.confidence,
        "flags": request.flags,
        "agent_id": request.agent_id,
        "expires_in_seconds": None,
    }


def test_replay_judges_a_case_variant_of_an_action_or_key_against_the_same_history() -> None:
    """Review R7, as ``policy replay`` rebuilds the history: the stores keep it folded, so replay does too."""
    numbers = Policy(parse_policy_config("[anomaly]\nenabled = true\nnovel_action = false\n"))
    for action, field in (("Payments.REFUND", "amount"), ("payments.refund", "Amount")):
        report = replay(numbers, [*amounts()[:30], asked(30, {field: 10_000}, action=action)])
        # the 30 ordinary ones are approved at once; the variant is far outside their numbers: it stays with people
        assert report.transitions == {(Expect.REVIEW, Expect.APPROVE): 30}, (action, field)
        assert report.unchanged == 1


def test_replay_judges_a_spelling_of_an_action_against_the_same_out_of_distribution_profile() -> None:
    """The profile is read under the folded action at runtime (``streams.Windows``), so replay rebuilds it so too:
    a new category sent as another spelling of the action is judged against the payloads approved under any."""
    config = "[anomaly]\nenabled = true\nnovel_action = false\nkey_set = false\nwarmup = 10\nwindow = 20\n"
    policy = Policy(parse_policy_config(config))
    spellings = ("payments.refund", "payments.refund", "Payments.Refund")
    usual = [asked(n, {"currency": ("EUR", "USD")[n % 2]}, action=spellings[n % 3]) for n in range(25)]
    for action in ("PAYMENTS.REFUND", "payments.rEFUND"):
        report = replay(policy, [*usual, asked(25, {"currency": "XAU"}, action=action)])
        assert report.transitions == {(Expect.REVIEW, Expect.APPROVE): 25}, action
        assert report.unchanged == 1, action  # the new category stays with people


def test_a_cases_history_counts_for_the_field_whatever_its_case() -> None:
    cases = """
[[cases]]
name = "far out under another case"
action = "payments.refund"
payload = { Amount = 10000 }
confidence = 0.99
expect = "review"
triggers = ["anomaly"]
history = { values = { amount = [100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110] } }
"""
    policy = Policy(parse_policy_config("[anomaly]\nenabled = true\nmin_samples = 10\n"))
    assert [r.problem for r in run_cases(policy, parse_cases(cases, "c.toml"))] == [None]
