"""Every store learns the numbers in lists of approved requests as the anomaly check judges them: a field in lists
(``items[].qty``) adds at most 8 of its numbers, evenly spread from the smallest to the largest, one history row
each, under its path without the lists (``items.qty``); an ordinary order with line items is approved, a far quantity
among them goes to a person, and ``policy replay`` over what the store recorded agrees."""

from __future__ import annotations

from typing import Any

from signoff.storage import RequestQuery, Status, Store
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.replay import replay
from signoff.tools.approvals.service import ApprovalService, Draft

ANOMALY = "[anomaly]\nenabled = true\nnovel_action = false\nmin_samples = 5\n"
POLICY = Policy(parse_policy_config('default_outcome = "approve"\n' + ANOMALY))


def order(*qty: int) -> dict[str, Any]:
    return {"items": [{"qty": q, "price": 10.0 + q % 3 / 10} for q in qty]}


async def test_every_store_learns_and_judges_numbers_in_lists_and_replay_agrees(store: Store) -> None:
    service = ApprovalService(store, POLICY)

    async def ask(payload: dict[str, Any]) -> Any:
        draft = Draft(action="Orders.Place", summary="order", payload=payload, agent_id="bot")
        return await service.request_approval(draft)

    for qty in [(1, 2), (3, 1, 2), (2,), (1, 3), (2, 2, 1)]:
        assert (await ask(order(*qty))).status is Status.APPROVED
    history = await store.action_history("orders.place", "bot", ["items.qty", "ITEMS.qty", "items[].qty"])
    assert history.values["items.qty"] == (2.0, 2.0, 1.0, 3.0, 1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 1.0)  # newest first
    assert history.values["ITEMS.qty"] == history.values["items.qty"]  # folded, as any field
    assert history.values["items[].qty"] == ()  # the history of a field in lists is its path without them
    many = await ask({"Items": [{"QTY": q % 3 + 1} for q in range(20)]})  # 20 numbers: 8 learnt, from 1 to 3
    assert many.status is Status.APPROVED
    learnt = (await store.action_history("orders.place", "bot", ["items.qty"])).values["items.qty"]
    assert learnt[:9] == (3.0, 3.0, 3.0, 2.0, 2.0, 1.0, 1.0, 1.0, 2.0)  # the last request's 8, then the one before
    assert (await ask(order(2, 1, 3, 2))).status is Status.APPROVED
    hidden = await ask(order(2, 1, 10**6, 3))
    assert hidden.status is Status.PENDING
    assert [t.detail.split(" (")[0] for t in hidden.triggers] == [
        "payload.items[].qty = 1000000 is far outside the recent history of Orders.Place"
    ]
    assert (await ask({"items": [{"qty": 2}] * 101})).status is Status.PENDING  # beyond 100 numbers of a field
    recorded = (await store.list_requests(RequestQuery(limit=100))).items
    report = replay(POLICY, sorted(recorded, key=lambda r: r.created_at))
    assert report.transitions == {} and report.unchanged == 9
