"""Numbers in lists are judged, not all sent to a person: with ``[anomaly]`` on, an agent's ordinary order with line
items (``{"items": [{"qty": 2, "price": 10}]}``) is approved by policy once the history knows such orders, and a
quantity of a million hidden among ordinary items goes to a person with an ``anomaly`` trigger naming
``items[].qty``. An amount moved into a list (``{"amount": [10**9]}``) is judged against the history of ``amount``,
so the list does not hide it. Through the real server and MCP client, over HTTP, on a real SQLite file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.test_http_auth import AGENT_A, agent, call, served
from tests.security.anomaly_policy import POLICY

ORDERS = [(1, 2), (2, 3, 1), (3,), (1, 1, 2, 3), (2, 2), (3, 1), (2,)]
PRICES = (9.5, 10.0, 10.5, 9.9)


def order(*qty: int) -> dict[str, Any]:
    return {"items": [{"sku": f"s{n}", "qty": q, "price": PRICES[n % 4]} for n, q in enumerate(qty)]}


async def test_an_ordinary_order_with_line_items_is_approved_and_a_far_quantity_among_them_is_not(
    tmp_path: Path,
) -> None:
    async with served(tmp_path, POLICY) as base, agent(base, AGENT_A) as client:

        async def ask(payload: dict[str, Any], action: str = "orders.place") -> Any:
            failed, answer = await call(client, "request_approval", action=action, summary="order", payload=payload)
            assert not failed, answer
            return answer

        for qty in ORDERS:  # the history learns line items (the first five while it warms up)
            assert (await ask(order(*qty)))["status"] == "approved"
        ordinary = await ask(order(2, 1, 3))
        hidden = await ask(order(2, 1, 10**6, 3, 2, 1))
        for usual in (120, 80, 95, 130, 110, 100):
            assert (await ask({"amount": usual}, "refunds.issue"))["status"] == "approved"
        listed = await ask({"amount": [10**9]}, "refunds.issue")
    assert ordinary["status"] == "approved", ordinary
    assert hidden["status"] == "pending", hidden
    assert hidden["receipt"] is None
    assert [t["kind"] for t in hidden["triggers"]] == ["anomaly"]
    assert hidden["triggers"][0]["detail"].startswith(
        "payload.items[].qty = 1000000 is far outside the recent history of orders.place (median 2,"
    )
    assert listed["status"] == "pending", listed
    assert listed["triggers"][0]["detail"].startswith(
        "payload.amount[] = 1000000000 is far outside the recent history of refunds.issue"
    )
