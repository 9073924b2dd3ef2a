"""Out of distribution beyond numbers: a categorical value never seen, keys that differ from what the action usually
sends, and text far longer than usual; each learnt from recent approved payloads, each switched on its own."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from signoff.storage import ActionHistory, DecidedBy, Status, TriggerKind
from signoff.storage.approvals.memory import MemoryStore
from signoff.tools.approvals import shape
from signoff.tools.approvals.policy import Outcome, Policy, PolicyInput
from signoff.tools.approvals.policy_config import Anomaly, parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from signoff.tools.approvals.shape import profile, unusual
from tests.factories import add

ON = Anomaly(enabled=True)


def usual(rng: random.Random, index: int) -> dict[str, Any]:
    return {
        "amount": rng.randint(10, 900),
        "currency": rng.choice(["EUR", "USD", "GBP"]),
        "to": {"iban": f"DE{index:020d}"},
        "reference": f"invoice {index}",
        "memo": (f"order {index:02d} " + "x" * 40)[: 40 if index == 0 else rng.randint(12, 39)],  # free text
    }


def seen(count: int = 60) -> Any:
    rng = random.Random(11)
    return profile((usual(rng, i) for i in range(count)), ON.max_categories)


def judge(payload: dict[str, Any], settings: Anomaly = ON, count: int = 60) -> list[str]:
    return unusual(settings, "payments.transfer", payload, seen(count))


BASE = {"amount": 120, "currency": "EUR", "to": {"iban": "DE1"}, "reference": "invoice 7", "memo": "thanks"}


def test_a_usual_payload_raises_nothing() -> None:
    assert judge(BASE) == []


def test_a_categorical_value_never_seen_is_named_with_the_values_that_were() -> None:
    [detail] = judge({**BASE, "currency": "XAU"})
    assert detail.startswith('payload.currency = "XAU" was never seen in the last 60 approved requests of payments')
    assert '"EUR"' in detail and '"GBP"' in detail and '"USD"' in detail


def test_free_text_fields_are_not_categories() -> None:
    # 60 distinct references and memos in 60 requests: values that do not repeat are free text
    assert judge({**BASE, "reference": "invoice 999999", "memo": "a memo never written"}) == []
    few = dataclasses.replace(ON, max_categories=2)  # three currencies are more than 2 categories
    assert judge({**BASE, "currency": "XAU"}, few) == []


def test_keys_never_sent_and_keys_always_sent_but_missing_are_reported() -> None:
    payload = {**BASE, "override_limit": True, "to": {"iban": "DE1", "bic": "X"}}
    del payload["reference"]
    details = judge(payload)
    assert (
        'payload has keys never sent in the last 60 approved requests of payments.transfer: "override_limit", "to.bic"'
        in details
    )
    assert (
        'payload lacks keys every one of the last 60 approved requests of payments.transfer had: "reference"' in details
    )


def test_text_far_longer_than_any_seen_is_reported() -> None:
    [detail] = judge({**BASE, "memo": "y" * 500})
    assert detail == (
        "payload.memo is 500 characters, more than 3 times the longest in the last 60 approved requests of"
        " payments.transfer (40)"
    )
    assert judge({**BASE, "memo": "y" * 100}) == []  # 2.5 times: not far enough


def test_nothing_is_judged_before_the_warmup_and_each_check_switches_off() -> None:
    odd = {**BASE, "currency": "XAU", "memo": "y" * 500, "extra": 1}
    assert judge(odd, count=49) == []
    assert len(judge(odd)) == 3
    assert len(judge(odd, dataclasses.replace(ON, new_values=False))) == 2
    assert len(judge(odd, dataclasses.replace(ON, key_set=False))) == 2
    assert len(judge(odd, dataclasses.replace(ON, text_length=False))) == 2


async def test_the_service_learns_from_approved_requests_of_the_action_only() -> None:
    store = MemoryStore()
    rng = random.Random(5)
    for index in range(60):
        await add(
            store,
            action="payments.transfer",
            payload=usual(rng, index),
            flags=(),
            status=Status.APPROVED,
            decided_by=DecidedBy.POLICY,
        )
    for _ in range(60):  # pending ones with another currency do not make it usual
        await add(store, action="payments.transfer", payload={**BASE, "currency": "XAU"}, flags=())
    config = "[anomaly]\nenabled = true\nnovel_action = false\n"
    service = ApprovalService(store, Policy(parse_policy_config(config)))
    odd = await service.request_approval(
        Draft(action="payments.transfer", summary="s", payload={**BASE, "currency": "XAU"}, confidence=0.99)
    )
    fine = await service.request_approval(Draft(action="payments.transfer", summary="s", payload=BASE, confidence=0.99))
    assert odd.status is Status.PENDING and odd.triggers[0].kind is TriggerKind.ANOMALY
    assert "never seen" in odd.triggers[0].detail
    assert fine.status is Status.APPROVED


ORDERS = [{"order": f"o{n}", "items": [{"sku": "a", "qty": 1 + n % 3}] * (1 + n % 4)} for n in range(60)]
ORDERS[7]["items"] = [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2, "gift": True}]  # one order had a gift item


def test_a_key_never_sent_in_list_items_is_reported_like_one_in_an_object() -> None:
    # review R5-A2: a key in list items was judged by neither anomaly check, so items[].discount = 1e9 was approved
    learnt = profile(ORDERS, ON.max_categories)
    policy = Policy(
        parse_policy_config('default_outcome = "approve"\n[anomaly]\nenabled = true\nnovel_action = false\n')
    )
    history = ActionHistory(seen_from_agent=True, values={})
    usual_order = {"order": "o1", "items": [{"qty": 2, "sku": "b", "gift": True}, {"sku": "a", "qty": 3}]}
    discounted = {"order": "o1", "items": [{"sku": "a", "qty": 2}, {"sku": "a", "qty": 2, "discount": 10**9}]}
    nested = {"order": "o1", "items": [{"sku": "a", "qty": 2, "tax": {"rate": 0.2}}], "extra": [[{"k": 1}]]}
    new = "payload has keys never sent in the last 60 approved requests of orders.place:"
    for walked in (False, True):
        for payload, expected in [
            (usual_order, []),  # keys some earlier item had, in any item, in any order: nothing new
            (
                discounted,
                [f'{new} "items[].discount"'],
            ),
            (
                nested,
                [f'{new} "extra", "items[].tax"'],
            ),
        ]:
            request = PolicyInput(
                action="orders.place",
                summary="s",
                payload=payload,
                confidence=None,
                flags=(),
                agent_id="bot",
                expires_in_seconds=None,
            )
            decision = policy.evaluate(request, history, profile=learnt, walked=shape.walk(payload) if walked else None)
            assert [t.detail for t in decision.triggers if t.kind is TriggerKind.ANOMALY] == expected
            assert decision.outcome is (Outcome.REVIEW if expected else Outcome.APPROVE)
    # a new list reports its key, not each key of its items (as a new object); keys in lists count once a payload
    assert shape.leaves(nested)[:3] == [("extra", [[{"k": 1}]]), ("extra[][].k", None), ("items", nested["items"])]
    assert learnt.keys["items[].sku"] == 60 and learnt.keys["items[].gift"] == 1
