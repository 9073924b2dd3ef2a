"""PostgreSQL going away under a running server, as in a failover: every connection drops, the database is gone for
a while, then it is back at the same address. Calls made meanwhile fail with one clear line and change nothing; an
agent waiting in ``get_status`` keeps waiting and gets its verdict; the next calls work at once; nothing
acknowledged is lost and the chain verifies. The test runs its own cluster: stopping the shared one would cut
other tests off."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp import Client

from tests.integration.support import Ran, ask, http_server, signoff, status_of, wait_during
from tests.pg_cluster import Cluster

pytestmark = pytest.mark.slow


async def logged(log: Path, text: str) -> None:
    """Wait until the server's log has ``text`` (the server says what it does; there is no other event to await)."""
    while text not in log.read_text():
        await anyio.sleep(0.05)


async def test_the_database_going_away_while_an_agent_waits_loses_nothing(
    env: dict[str, str], own_pg_cluster: Cluster, tmp_path: Path
) -> None:
    pg_env = {**env, "SIGNOFF_DB": own_pg_cluster.new_database()}
    log = tmp_path / "serve.log"
    with anyio.fail_after(120):
        async with http_server(pg_env, log) as url, Client(url) as agent, Client(url) as other_agent:
            request_id = (await ask(agent, confidence=0.3))["request_id"]

            async def outage_then_vote() -> Ran:
                await anyio.to_thread.run_sync(own_pg_cluster.pause)
                during = await other_agent.call_tool("request_approval", {"action": "a", "summary": "s", "payload": {}})
                assert during.is_error and "database" in str(during.content), during
                await logged(log, f"the database is unavailable while {request_id} is awaited")
                await anyio.to_thread.run_sync(own_pg_cluster.resume)
                return await signoff(pg_env, "review", "approve", request_id, "--as", "alice")

            waited, vote = await wait_during(agent, request_id, outage_then_vote)
            assert vote.returncode == 0, vote
            assert waited.status["status"] == "approved", waited.status

            # the server's pooled connections all broke; the next calls work, first time
            after = await ask(agent, confidence=0.3)
            assert after["status"] == "pending"
            assert status_of(await agent.call_tool("get_status", {"request_id": request_id}))["status"] == "approved"
            listed = status_of(await agent.call_tool("list_requests", {"status": None}))
            assert {r["request_id"] for r in listed["items"]} == {request_id, after["request_id"]}

        verify = await signoff(pg_env, "audit", "verify")
        assert verify.returncode == 0, verify
