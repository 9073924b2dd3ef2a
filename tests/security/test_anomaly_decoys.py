"""Review finding R3-A: an agent hid a far-out amount from the numeric anomaly check by adding 32 numeric decoy keys
that sort before it (the check judged only the first 32 fields by name), and the request was approved by policy
with a receipt. The check must fail closed: a payload with numbers it does not judge goes to a person."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_http_auth import AGENT_A, agent, call, served
from tests.security.anomaly_policy import POLICY


async def test_decoy_numeric_keys_do_not_hide_a_far_amount_from_the_anomaly_check(tmp_path: Path) -> None:
    async with served(tmp_path, POLICY) as base, agent(base, AGENT_A) as client:
        for usual in (120, 80, 95, 130, 110, 100):
            failed, ok = await call(
                client, "request_approval", action="refunds.issue", summary="refund", payload={"amount": usual}
            )
            assert not failed and ok["status"] == "approved", ok
        _, far = await call(
            client, "request_approval", action="refunds.issue", summary="refund", payload={"amount": 10**9}
        )
        assert far["status"] == "pending"  # the check works for the plain payload
        decoys = {f"_{i:02d}": 0 for i in range(32)}  # '_' sorts before 'a'
        failed, hidden = await call(
            client,
            "request_approval",
            action="refunds.issue",
            summary="refund",
            payload={"amount": 10**9, **decoys},
        )
        _, listed = await call(
            client, "request_approval", action="refunds.issue", summary="refund", payload={"amount": [10**9]}
        )
    assert not failed
    assert hidden["status"] == "pending", hidden
    assert hidden["receipt"] is None
    assert "the payload has 33 numeric fields; the anomaly check judges at most 32" in str(hidden["triggers"])
    assert listed["status"] == "pending", listed  # a number in a list is judged against the field's history
    assert "payload.amount[] = 1000000000 is far outside the recent history" in str(listed["triggers"])
