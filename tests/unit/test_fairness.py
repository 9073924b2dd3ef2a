"""Outcome fairness: a biased outcome stream is told apart from a fair one at the stated error rates (seeded
generated data), and the policy sends a flagged group's requests to people with a reason a reviewer understands."""

from __future__ import annotations

import random

import pytest

from signoff.storage import ConfigError, DecidedBy, Status, TriggerKind
from signoff.storage.approvals.memory import MemoryStore
from signoff.tools.approvals.fairness import count_outcomes, judge_groups, two_proportion
from signoff.tools.approvals.policy import Policy, PolicyInput
from signoff.tools.approvals.policy_config import FairnessGroup, parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.factories import add, make_request

GROUP = FairnessGroup(attribute="payload.age_band", outcome="payload.decision", positive="approve")
BANDS = ('"18-30"', '"31-50"', '"51-64"', '"65+"')


def stream(rng: random.Random, rates: dict[str, float], per_group: int) -> dict[str, tuple[int, int]]:
    return {band: (sum(rng.random() < rate for _ in range(per_group)), per_group) for band, rate in rates.items()}


def flagged(counts: dict[str, tuple[int, int]], group: FairnessGroup = GROUP) -> set[str]:
    return {r.key for r in judge_groups(group, counts) if r.flagged}


def test_two_proportion_matches_a_known_value() -> None:
    # 60/100 against 40/100: pooled 0.5, z = 0.2 / sqrt(0.25 * 0.02) = 2.828..., two-sided p = 0.00468
    assert two_proportion(60, 100, 40, 100) == pytest.approx(0.004678, abs=1e-6)
    assert two_proportion(10, 10, 20, 20) == 1.0  # nothing varies: nothing to see


@pytest.mark.parametrize("margin", [0.1, 0.001])
def test_a_fair_stream_raises_a_false_alarm_at_most_at_the_stated_rate(margin: float) -> None:
    """alpha = 0.05 is the chance of any false alarm over all four groups; with a margin of 0.1 it is far lower."""
    group = FairnessGroup(
        attribute="payload.age_band", outcome="payload.decision", positive="approve", margin=margin, alpha=0.05
    )
    rng = random.Random(20261205)
    trials = 600
    alarms = sum(bool(flagged(stream(rng, dict.fromkeys(BANDS, 0.6), 250), group)) for _ in range(trials))
    # The bound is alpha; 600 trials measure it within about 0.009 (one standard error), so allow three of those.
    # With a margin of 0.1 the observed rate is about half of alpha.
    assert alarms / trials <= (0.05 if margin == 0.1 else 0.05 + 3 * 0.009)


def test_a_biased_stream_is_caught_and_each_flag_points_the_right_way() -> None:
    """One group approved 20 points less often than the others. Against the rest, the others then sit about 7 points
    above: each group is compared with the rest, so they may be flagged too, but only ever as favoured."""
    rng = random.Random(7)
    trials, caught = 300, 0
    for _ in range(trials):
        counts = stream(rng, {**dict.fromkeys(BANDS[:3], 0.6), BANDS[3]: 0.4}, 250)
        rates = [r for r in judge_groups(GROUP, counts) if r.flagged]
        caught += any(r.key == BANDS[3] for r in rates)
        assert all((r.rate < r.rest_rate) == (r.key == BANDS[3]) for r in rates)
    assert caught / trials >= 0.95  # a 20-point gap with 250 requests a group: missed at most 1 time in 20


def test_small_groups_are_not_judged() -> None:
    counts = {'"a"': (2, 10), '"b"': (300, 400)}
    [big, small] = judge_groups(GROUP, counts)
    assert small.key == '"a"' and small.p_value is None and not small.flagged and big.tested == 0


def loan(band: str, decision: str, **fields: object) -> object:
    return make_request(action="loans.decide", payload={"age_band": band, "decision": decision}, flags=(), **fields)


def test_the_window_counts_the_newest_requests_with_a_group_and_an_outcome() -> None:
    group = FairnessGroup(
        attribute="payload.age_band", outcome="payload.decision", positive="approve", action=("loans.*",), window=10
    )
    requests = [loan("65+", "deny") for _ in range(3)] + [loan("18-30", "approve") for _ in range(20)]
    requests.insert(1, make_request(action="payments.transfer", payload={"age_band": "65+", "decision": "deny"}))
    requests.insert(2, make_request(action="loans.decide", payload={"decision": "deny"}))  # no group: not counted
    assert count_outcomes(group, requests) == {'"65+"': (0, 3), '"18-30"': (7, 7)}  # type: ignore[arg-type]


def test_policy_and_approved_outcomes_count_what_signoff_decided() -> None:
    by_policy = FairnessGroup(attribute="agent_id", outcome="policy")
    approved = FairnessGroup(attribute="agent_id", outcome="approved")
    requests = [
        make_request(agent_id="a", status=Status.APPROVED, decided_by=DecidedBy.POLICY),
        make_request(agent_id="a", status=Status.APPROVED, decided_by=DecidedBy.HUMAN),
        make_request(agent_id="a", status=Status.REJECTED, decided_by=DecidedBy.HUMAN),
        make_request(agent_id="a", status=Status.PENDING),
    ]
    assert count_outcomes(by_policy, requests) == {'"a"': (1, 4)}
    assert count_outcomes(approved, requests) == {'"a"': (2, 3)}


CONFIG = """
[[fairness.groups]]
attribute = "payload.age_band"
action = "loans.*"
outcome = "payload.decision"
positive = "approve"
"""


def ask(band: object, **payload: object) -> PolicyInput:
    return PolicyInput(
        action="loans.decide",
        summary="decide application 9",
        payload={"age_band": band, "decision": "deny", **payload},
        confidence=0.99,
        flags=(),
        agent_id="loan-bot",
        expires_in_seconds=None,
    )


def test_a_request_from_a_flagged_group_goes_to_people_saying_why() -> None:
    policy = Policy(parse_policy_config(CONFIG))
    counts = {'"18-30"': (180, 300), '"31-50"': (150, 300), '"65+"': (90, 300)}
    decision = policy.evaluate(ask("65+"), None, {0: counts})
    assert decision.outcome.value == "review"
    [trigger] = decision.triggers
    assert trigger.kind is TriggerKind.FAIRNESS
    assert trigger.detail.startswith(
        'payload.age_band = "65+": payload.decision = "approve" in 30% of this group\'s last 300 requests against 55%'
        " of the other 600 (a difference of 25 points, more than the margin of 10; two-proportion test p = "
    )
    assert trigger.detail.endswith("below 0.05 / 3 groups)")
    assert policy.evaluate(ask("31-50"), None, {0: counts}).outcome.value == "approve"  # 50% against 45%
    favoured = policy.evaluate(ask("18-30"), None, {0: counts}).triggers[0].detail  # favoured is a difference too
    assert "in 60% of this group's last 300 requests against 40% of the other 600" in favoured
    assert policy.evaluate(ask("65+"), None, None).outcome.value == "approve"  # no counts fetched: silent
    assert policy.evaluate(ask(None), None, {0: counts}).outcome.value == "approve"  # no group: not judged


def test_a_group_attribute_spelt_another_way_fails_closed() -> None:
    policy = Policy(parse_policy_config(CONFIG))
    request = PolicyInput(
        action="loans.decide",
        summary="decide",
        payload={"Age_Band": "65+"},
        confidence=0.99,
        flags=(),
        agent_id=None,
        expires_in_seconds=None,
    )
    decision = policy.evaluate(request, None, {0: {}})
    assert decision.outcome.value == "review" and "cannot tell the group" in decision.triggers[0].detail


async def test_the_service_reads_the_stream_and_flags_the_disfavoured_group() -> None:
    store = MemoryStore()
    rng = random.Random(3)
    for band, rate in (("18-30", 0.6), ("31-50", 0.6), ("65+", 0.3)):
        for _ in range(60):
            decision = "approve" if rng.random() < rate else "deny"
            await add(store, action="loans.decide", payload={"age_band": band, "decision": decision}, flags=())
    service = ApprovalService(store, Policy(parse_policy_config(CONFIG)))

    def draft(band: str) -> Draft:
        return Draft(
            action="loans.decide",
            summary="decide",
            payload={"age_band": band, "decision": "deny"},
            confidence=0.99,
        )

    old = await service.request_approval(draft("65+"))
    young = await service.request_approval(draft("18-30"))
    assert old.status is Status.PENDING and old.triggers[0].kind is TriggerKind.FAIRNESS
    assert young.status is Status.APPROVED


@pytest.mark.parametrize(
    ("table", "fault"),
    [
        ('attribute = "payload.band"\noutcome = "payload.decision"', "a payload outcome needs the positive value"),
        ('attribute = "payload.band"\noutcome = "decision"', 'must be "policy", "approved" or a payload path'),
        ('attribute = "band"', "unknown path 'band'"),
        ('attribute = "agent_id"\npositive = "x"', 'applies only to a payload outcome, not "policy"'),
        ('attribute = "agent_id"\nalpha = 0.9', "alpha: must be above 0 and at most 0.5"),
    ],
)
def test_a_bad_group_is_a_config_error_naming_the_key(table: str, fault: str) -> None:
    with pytest.raises(ConfigError, match=r"fairness\.groups\[0\]") as raised:
        parse_policy_config(f"[[fairness.groups]]\n{table}\n")
    assert fault in str(raised.value)
