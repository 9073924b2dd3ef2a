"""Review finding R7: rules match actions whatever their case (`PAYMENTS.transfer` is `payments.*`), but the
anomaly check read the history of the exact action string. An agent that wrote `Refunds.Issue` instead of
`refunds.issue` (or `Amount` for `amount`, which rules also treat as the same field, failing closed) started from an
empty history, so a number far outside the action's history was approved by policy. The history is now kept and read
under the rules' folds (storage/folding.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_http_auth import AGENT_A, agent, call, served
from tests.security.anomaly_policy import POLICY


@pytest.mark.parametrize(
    ("action", "field"), [("Refunds.Issue", "amount"), ("refunds.issue", "Amount")], ids=["action-case", "key-case"]
)
async def test_changing_the_case_of_an_action_or_key_does_not_escape_its_anomaly_history(
    tmp_path: Path, action: str, field: str
) -> None:
    async with served(tmp_path, POLICY) as base, agent(base, AGENT_A) as client:
        for usual in (120, 80, 95, 130, 110, 100):
            failed, ok = await call(
                client, "request_approval", action="refunds.issue", summary="refund", payload={"amount": usual}
            )
            assert not failed and ok["status"] == "approved", ok
        _, same = await call(
            client, "request_approval", action="refunds.issue", summary="refund", payload={"amount": 10**9}
        )
        assert same["status"] == "pending"  # far outside the history: a person must look
        failed, cased = await call(client, "request_approval", action=action, summary="refund", payload={field: 10**9})
    assert failed or cased["status"] != "approved", f"approved by policy: {cased['triggers']}"
