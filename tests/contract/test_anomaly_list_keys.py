"""Every store's approved payloads teach the key-set check the keys of objects in lists (``items[].sku``), as they
teach it the keys of objects: a key never sent inside line items (``items[].discount``) sends the request to a person
as the same new key in an object does, an order whose items have keys earlier items had is approved, and
``policy replay`` over what the store recorded and ``policy test`` after the same history agree (review R5-A2)."""

from __future__ import annotations

import json
from typing import Any

from signoff.storage import RequestQuery, Status, Store, TriggerKind
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_cases import Expect, parse_cases, run_cases
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.replay import replay
from signoff.tools.approvals.service import ApprovalService, Draft

POLICY = Policy(
    parse_policy_config('default_outcome = "approve"\n[anomaly]\nenabled = true\nnovel_action = false\nwarmup = 5\n')
)
LEARNT = [
    {"order": "o1", "items": [{"sku": "a", "qty": 1}]},
    {"order": "o2", "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1, "gift": True}]},
    {"order": "o3", "items": [{"sku": "c", "qty": 3}]},
    {"order": "o4", "items": [{"sku": "a", "qty": 1}, {"sku": "a", "qty": 2}]},
    {"order": "o5", "items": [{"sku": "b", "qty": 2}]},
]
USUAL = {"order": "o6", "items": [{"qty": 1, "gift": True, "sku": "c"}]}
DISCOUNTED = {"order": "o7", "items": [{"sku": "a", "qty": 2}, {"sku": "a", "qty": 1, "discount": 10**9}]}
NEW_KEY = 'payload has keys never sent in the last 6 approved requests of Orders.Place: "items[].discount"'


def toml(value: Any) -> str:
    """``value`` as a TOML inline value (the payloads here hold objects, lists, strings, integers and booleans)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {toml(inner)}" for key, inner in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(map(toml, value)) + "]"
    return json.dumps(value)  # a string, an integer, or true and false


async def test_every_store_sends_a_new_key_in_list_items_to_a_person_and_replay_and_policy_test_agree(
    store: Store,
) -> None:
    service = ApprovalService(store, POLICY)

    async def ask(payload: dict[str, Any]) -> Any:
        return await service.request_approval(Draft(action="Orders.Place", summary="o", payload=payload, agent_id="b"))

    for payload in LEARNT:
        assert (await ask(payload)).status is Status.APPROVED  # the warm-up: nothing is judged yet
    assert (await ask(USUAL)).status is Status.APPROVED
    discounted = await ask(DISCOUNTED)
    assert discounted.status is Status.PENDING
    assert [(t.kind, t.detail) for t in discounted.triggers] == [(TriggerKind.ANOMALY, NEW_KEY)]
    recorded = (await store.list_requests(RequestQuery(limit=100))).items
    report = replay(POLICY, sorted(recorded, key=lambda r: r.created_at))
    assert report.transitions == {} and report.unchanged == 7
    history = "".join(
        f'[[histories.requests]]\naction = "Orders.Place"\nagent_id = "b"\npayload = {toml(p)}\n' for p in LEARNT
    )
    cases = f'[[histories]]\nname = "orders"\n{history}'
    for name, payload, expect in (("usual", USUAL, "approve"), ("discount", DISCOUNTED, "review")):
        cases += (
            f'[[cases]]\nname = "{name}"\naction = "Orders.Place"\nagent_id = "b"\npayload = {toml(payload)}\n'
            f'expect = "{expect}"\nafter = "orders"\n'
        )
    results = run_cases(POLICY, parse_cases(cases, "cases.toml"))
    assert [(r.got, r.problem) for r in results] == [(Expect.APPROVE, None), (Expect.REVIEW, None)]
