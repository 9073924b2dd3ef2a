"""The numeric anomaly check judges numbers in lists: a number in a list is a number of the field named with ``[]``
for the list (``items[].qty``, ``ids[]``, ``m[][]``), judged against the history of its path without the lists
(``items.qty``: the history a payload with the number outside a list judges against too). Every number of such a
field is judged, up to 100 (the farthest from the median decides, against the threshold times the square root of
how many there are, so a long order of ordinary items is not sent to a person nearly always and padding raises
the threshold at most tenfold); an approved request adds at most 8 of them to the history, evenly spread from
the smallest to the largest. ``policy replay`` and ``policy test`` learn and judge them as the stores and
the server do."""

from __future__ import annotations

import functools
import random
from typing import Any

from signoff.storage import ActionHistory, Status, TriggerKind
from signoff.storage.codec import approved_values
from signoff.storage.payload_numbers import JUDGED_ITEMS, LEARNT_ITEMS, learnt, numeric_leaves
from signoff.tools.approvals import shape
from signoff.tools.approvals.history import History
from signoff.tools.approvals.policy import Outcome, Policy, PolicyDecision, PolicyInput, list_threshold
from signoff.tools.approvals.policy_cases import Expect, parse_cases, run_cases
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.replay import replay
from tests.factories import asked as asked_for
from tests.factories import make_request

POLICY = Policy(parse_policy_config("[anomaly]\nenabled = true\nnovel_action = false\nmin_samples = 5\n"))
QTY = (1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0)
PRICE = (9.5, 10.0, 10.5, 10.0, 9.9, 10.2)


def decide(payload: dict[str, Any], values: dict[str, tuple[float, ...]], walked: bool = False) -> PolicyDecision:
    request = PolicyInput(
        action="orders.place",
        summary="order",
        payload=payload,
        confidence=0.99,
        flags=(),
        agent_id="bot",
        expires_in_seconds=None,
    )
    history = ActionHistory(seen_from_agent=True, values=values)
    return POLICY.evaluate(request, history, walked=shape.walk(payload) if walked else None)


def details(decision: PolicyDecision) -> list[str]:
    return [t.detail.split(" (")[0] for t in decision.triggers if t.kind is TriggerKind.ANOMALY]


def items(*qty: int, price: float = 10.0) -> dict[str, Any]:
    return {"items": [{"sku": f"s{n}", "qty": q, "price": price} for n, q in enumerate(qty)]}


HISTORY = {"items.qty": QTY, "items.price": PRICE}


def test_every_item_is_judged_and_the_farthest_decides_however_many_usual_items_pad_it() -> None:
    for walked in (False, True):
        assert decide(items(1, 2, 3), HISTORY, walked).outcome is Outcome.APPROVE
        for far in (10**6, -(10**6)):  # the largest or the smallest: either side
            padded = items(*[2] * 60, far, *[1, 3] * 19)  # 100 numbers in items[].qty: all judged
            decision = decide(padded, HISTORY, walked)
            assert decision.outcome is Outcome.REVIEW
            assert details(decision) == [
                f"payload.items[].qty = {far} is far outside the recent history of orders.place"
            ]
    assert details(decide(items(2, 2, price=10**7), HISTORY)) == [
        "payload.items[].price = 10000000 is far outside the recent history of orders.place"
    ]


def test_a_field_counts_once_in_the_32_and_a_field_of_101_numbers_goes_to_a_person() -> None:
    scalars = {f"f{i:02d}": 2 for i in range(31)}
    history = dict.fromkeys([f"f{i:02d}" for i in range(32)], QTY) | {"ids": QTY}
    assert decide({**scalars, "ids": [2] * JUDGED_ITEMS}, history).outcome is Outcome.APPROVE  # 32 fields
    over = decide({**scalars, "f31": 2, "ids": [2]}, history)
    assert details(over) == [
        "the payload has 33 numeric fields; the anomaly check judges at most 32: a person reviews it"
    ]
    crowded = decide({"ids": [2] * (JUDGED_ITEMS + 1)}, history)
    assert crowded.outcome is Outcome.REVIEW
    assert details(crowded) == [
        "payload.ids[] has 101 numbers in lists; the anomaly check judges at most 100 numbers of a field: a person"
        " reviews it"
    ]


def test_a_number_that_moves_into_or_out_of_a_list_is_judged_against_the_same_history() -> None:
    amounts = {"amount": (100.0, 110.0, 120.0, 130.0, 95.0, 105.0)}
    assert details(decide({"amount": [10**9]}, amounts)) == [
        "payload.amount[] = 1000000000 is far outside the recent history of orders.place"
    ]
    assert details(decide({"amount": [[10**9]]}, amounts)) == [
        "payload.amount[][] = 1000000000 is far outside the recent history of orders.place"
    ]
    assert decide({"amount": [100, 120]}, amounts).outcome is Outcome.APPROVE
    assert [f.history for f in numeric_leaves({"amount": [1], "items": [{"qty": 1}], "a": {"b": [[2]]}})] == [
        "a.b",
        "amount",
        "items.qty",
    ]
    # a field with no history is not judged, in a list or not (as for any new field), until min_samples are known
    for payload in ({"fee": 10**9}, {"fee": [10**9]}):
        assert decide(payload, amounts).outcome is Outcome.APPROVE


def test_an_approved_request_adds_at_most_8_numbers_of_a_field_the_same_whatever_the_order() -> None:
    ordered = list(range(100))
    shuffled = random.Random(7).sample(ordered, len(ordered))
    rows = learnt(numeric_leaves({"ids": ordered, "total": 5}))
    assert rows == learnt(numeric_leaves({"total": 5, "ids": shuffled}))
    assert rows == [("ids", v) for v in (0.0, 14.0, 28.0, 42.0, 57.0, 71.0, 85.0, 99.0)] + [("total", 5.0)]
    assert len([r for r in rows if r[0] == "ids"]) == LEARNT_ITEMS
    assert learnt(numeric_leaves(items(3, 1, 2))) == [
        ("items.price", 10.0),
        ("items.price", 10.0),
        ("items.price", 10.0),
        ("items.qty", 1.0),
        ("items.qty", 2.0),
        ("items.qty", 3.0),
    ]
    request = make_request(action="Orders.Place", payload={"Items": [{"Qty": 3}, {"Qty": 1}]}, status=Status.APPROVED)
    assert approved_values(request) == [("orders.place", "items.qty", 1.0), ("orders.place", "items.qty", 3.0)]


asked = functools.partial(asked_for, "orders.place")  #: what the agent asked at minute n: asked(n, payload, status)


def test_replay_learns_and_judges_numbers_in_lists_as_the_stores_and_the_server() -> None:
    rng = random.Random(3)
    recorded = [asked(n, items(*[rng.randint(1, 3) for _ in range(rng.randint(1, 12))])) for n in range(40)]
    history = History(POLICY)
    for request in recorded:
        history.add(request, request.status, request.decided_by)
    probe = PolicyInput(
        action="orders.place",
        summary="order",
        payload=items(2),
        confidence=0.99,
        flags=(),
        agent_id="bot",
        expires_in_seconds=None,
    )
    judged, _, _ = history.judged(probe)
    assert judged is not None
    rows = [value for request in recorded for _, name, value in approved_values(request) if name == "items.qty"]
    assert sorted(judged.values["items.qty"]) == sorted(rows[-200:])  # the newest 200 rows, as a store reads them
    ordinary = asked(50, items(1, 2, 3, 2), Status.PENDING)
    hidden = asked(51, items(2, 1, 10**6, 3, 2), Status.PENDING)
    report = replay(POLICY, [*recorded, ordinary, hidden])
    assert report.transitions == {(Expect.REVIEW, Expect.APPROVE): 1}  # the ordinary one, not the hidden one
    cases = """
[[cases]]
name = "line items"
action = "orders.place"
payload = { items = [{ qty = 2 }, { qty = 1000000 }, { qty = 1 }] }
confidence = 0.99
expect = "review"
triggers = ["anomaly"]
history = { values = { "items.qty" = [1, 2, 3, 2, 1, 2] } }
"""
    results = run_cases(POLICY, parse_cases(cases, "c.toml"))
    assert [(r.got, r.problem) for r in results] == [(Expect.REVIEW, None)]


def review_rate(items: int, sigma: float, requests: int = 300) -> float:
    """The share of ordinary orders sent to a person (review R5-A1): prices drawn from a skewed (log-normal, median
    about 20) distribution, ``items`` line items an order (0: one price, not in a list), every order approved and
    learnt as the stores learn it (at most 8 numbers of a field an order), judged once 20 prices are known."""
    policy = Policy(
        parse_policy_config(
            'default_outcome = "approve"\n[anomaly]\nenabled = true\nnovel_action = false\nmin_samples = 20\n'
        )
    )
    rnd = random.Random(7)
    history: list[float] = []
    reviews = judged = 0
    for _ in range(requests):
        prices = [{"price": round(rnd.lognormvariate(3, sigma), 2)} for _ in range(max(items, 1))]
        payload: dict[str, Any] = {"items": prices if items else prices[0]}
        request = PolicyInput(
            action="orders.place",
            summary="s",
            payload=payload,
            confidence=None,
            flags=(),
            agent_id="bot",
            expires_in_seconds=None,
        )
        recent = tuple(reversed(history[-200:]))  # the store's action_history: the newest 200, newest first
        decision = policy.evaluate(request, ActionHistory(seen_from_agent=True, values={"items.price": recent}))
        if len(history) >= 20:
            judged += 1
            reviews += decision.outcome is Outcome.REVIEW
        history.extend(value for _, value in learnt(numeric_leaves(payload)))
    return reviews / judged


def test_an_order_of_many_ordinary_line_items_goes_to_a_person_no_more_often_than_one_ordinary_price() -> None:
    for sigma in (0.8, 1.2):  # skewed, as prices are; 1.2: a long tail (the 95th percentile 7 times the median)
        single = review_rate(0, sigma)
        assert 0.02 < single < 0.15, (sigma, single)  # one skewed price is sometimes far enough to ask a person
        for items in (20, 50, 100):  # before: 59%, 92% and 99% of ordinary orders at sigma 0.8
            assert review_rate(items, sigma) <= single, (sigma, items)


def test_a_far_number_among_n_numbers_is_flagged_beyond_the_threshold_times_the_square_root_of_n() -> None:
    # items.qty: median 2, MAD 0.5, so modified z = 0.6745 * (qty - 2) / 0.5; 3.5 x sqrt(100) = 35: qty 28 is beyond
    assert list_threshold(3.5, 1) == 3.5 and list_threshold(3.5, 100) == 35
    assert decide(items(5), HISTORY).outcome is Outcome.REVIEW  # z 4.0 > 3.5: one number, the usual threshold
    assert decide(items(4), HISTORY).outcome is Outcome.APPROVE  # z 2.7
    assert decide(items(*[2] * 99, 27), HISTORY).outcome is Outcome.APPROVE  # z 33.7 <= 35
    for order in ([*[2] * 99, 28], [28, *[1, 2, 3] * 33]):  # z 35.1 > 35, wherever it is among 99 usual ones
        decision = decide(items(*order), HISTORY)
        assert decision.outcome is Outcome.REVIEW
        assert [t.detail for t in decision.triggers if t.kind is TriggerKind.ANOMALY] == [
            "payload.items[].qty = 28 is far outside the recent history of orders.place (median 2, modified z 35.1"
            " > 35 over 8 values; 100 numbers in lists: threshold 3.5 times √100)"
        ]
    assert decide(items(2, 3, 1, 10**6, 2, 1, 3, 2, 2, 1), HISTORY).outcome is Outcome.REVIEW  # z 1.3 million
