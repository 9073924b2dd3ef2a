"""The out-of-distribution checks learnt from the approved requests of the exact action string, while rules and the
anomaly history (review R7) fold actions: an agent that wrote `Refunds.Issue` instead of `refunds.issue` was judged
against an empty profile, so a payload unlike any approved before passed the checks in silence and was approved by
policy. The profile is now read under the folded action (storage/folding.py) on every engine, and in replay. (An
action is ASCII letters, digits and `_ . : / -`, so case is the only way to spell one action two ways.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_http_auth import AGENT_A, CONFIG, agent, call, served

POLICY = (
    """\
default_outcome = "approve"

[anomaly]
enabled = true
novel_action = false
min_samples = 1000
warmup = 6
window = 50
"""
    + CONFIG
)


@pytest.mark.parametrize("action", ["Refunds.Issue", "REFUNDS.ISSUE", "rEFUNDS.iSSUE"])
async def test_another_spelling_of_an_action_is_judged_against_its_out_of_distribution_profile(
    tmp_path: Path, action: str
) -> None:
    async with served(tmp_path, POLICY) as base, agent(base, AGENT_A) as client:
        for n in range(8):
            payload = {"amount": 100, "currency": ("EUR", "USD")[n % 2]}
            failed, ok = await call(client, "request_approval", action="refunds.issue", summary="r", payload=payload)
            assert not failed and ok["status"] == "approved", ok
        odd = {"amount": 100, "currency": "XAU"}
        _, same = await call(client, "request_approval", action="refunds.issue", summary="r", payload=odd)
        assert same["status"] == "pending"  # a currency never approved: a person must look
        failed, spelt = await call(client, "request_approval", action=action, summary="r", payload=odd)
    assert not failed, spelt
    assert spelt["status"] == "pending", f"approved by policy: {spelt['triggers']}"
    details = [t["detail"] for t in spelt["triggers"] if t["kind"] == "anomaly"]
    assert any('payload.currency = "XAU" was never seen' in d for d in details), spelt["triggers"]
