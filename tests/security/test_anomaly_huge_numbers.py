"""Review finding R5: the numeric anomaly check ("a number far outside this action's history") skips an integer
too large for a float, so -10**400 (valid JSON, accepted on the wire) is approved by policy where 1e308 is sent to
a person. A value the policy cannot judge must fail closed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_http_auth import AGENT_A, agent, call, served
from tests.security.anomaly_policy import POLICY


@pytest.mark.parametrize("amount", [-(10**400), 10**400], ids=["minus-1e400", "plus-1e400"])
async def test_a_number_too_large_for_a_float_is_not_approved_by_policy(tmp_path: Path, amount: int) -> None:
    async with served(tmp_path, POLICY) as base, agent(base, AGENT_A) as client:
        for usual in (120, 80, 95, 130, 110, 100):
            failed, ok = await call(
                client, "request_approval", action="refunds.issue", summary="refund", payload={"amount": usual}
            )
            assert not failed and ok["status"] == "approved", ok
        far = await call(
            client, "request_approval", action="refunds.issue", summary="refund", payload={"amount": 10**9}
        )
        assert far[1]["status"] == "pending"  # a far number that fits a float is sent to a person
        failed, huge = await call(
            client, "request_approval", action="refunds.issue", summary="refund", payload={"amount": amount}
        )
    assert failed or huge["status"] != "approved", f"approved by policy: {huge['triggers']}"
