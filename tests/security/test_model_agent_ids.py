"""A model change applied at once is either recorded or refused, never applied unrecorded (R7).

rollback_model, set_traffic back to production and register_model_version apply before their record is written (as a
request the policy approved, in the audit log and, for a rollback, sent to the reviewers). An agent_id the policy
refuses (empty, longer than limits.max_agent_id_chars, or holding a NUL) used to be applied and then lose its record;
it is now refused before anything changes, with the policy's own error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from signoff.storage import RequestQuery
from tests.unit.test_model_tools import Harness, call, start_canary

REFUSED = [("", "agent_id is empty"), ("b" * 201, "agent_id is 201 characters; the limit is 200"), ("bot\x00", "NUL")]


async def _actions(h: Harness) -> list[str]:
    return [r.action for r in (await h.reviewer.list_requests(RequestQuery(status=None, limit=200))).items]


async def _everything(h: Harness) -> tuple[Any, ...]:
    return await h.model_store.history("fraud"), await h.model_store.get_model("fraud"), await _actions(h)


@pytest.mark.parametrize(("agent_id", "error"), REFUSED)
async def test_a_change_applied_at_once_with_an_agent_id_the_policy_refuses_is_not_made(
    tmp_path: Path, agent_id: str, error: str
) -> None:
    h = Harness(tmp_path, guard_enabled=False)
    calls = [
        ("rollback_model", {"name": "fraud", "reason": "quietly"}),
        ("set_traffic", {"name": "fraud", "weights": {"v1": 100}, "reason": "quietly"}),
        ("register_model_version", {"name": "fraud", "version": "v3", "endpoint": "http://fraud/v3"}),
    ]
    async with Client(h.server) as client:
        await start_canary(h, client)
        await call(client, "get_model", {"name": "fraud"})  # the approved canary is serving
        before = await _everything(h)
        for tool, arguments in calls:
            result = await client.call_tool(tool, {**arguments, "agent_id": agent_id})
            assert result.is_error, tool
            assert error in result.content[0].text, (tool, result.content[0].text)  # type: ignore[union-attr]
        assert await _everything(h) == before  # nothing applied, nothing recorded
        rolled = await call(client, "rollback_model", {"name": "fraud", "reason": "v2 is bad", "agent_id": "oncall"})
    assert rolled["traffic"] == {"v1": 100.0}
    assert (await _actions(h)).count("models.rollback") == 1  # the accepted rollback is in the audit log
