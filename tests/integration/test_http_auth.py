"""Bearer tokens on the HTTP transport: who may call, as whom, and what each role sees."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from signoff.server.app import build_server
from signoff.server.auth import new_token
from signoff.server.config import Settings
from signoff.storage import Status
from signoff.storage.approvals.sqlite import SqliteStore

AGENT_A, AGENT_A_SHA = new_token()
AGENT_B, AGENT_B_SHA = new_token()
ALICE, ALICE_SHA = new_token()
CAROL, CAROL_SHA = new_token()

CONFIG = f"""
[[people]]
name = "carol"
aliases = ["billing-bot"]

[[auth.tokens]]
identity = "billing-bot"
role = "agent"
sha256 = "{AGENT_A_SHA}"

[[auth.tokens]]
identity = "etl-bot"
role = "agent"
sha256 = "{AGENT_B_SHA}"

[[auth.tokens]]
identity = "alice"
role = "reviewer"
sha256 = "{ALICE_SHA}"

[[auth.tokens]]
identity = "carol"
role = "reviewer"
sha256 = "{CAROL_SHA}"
"""


@asynccontextmanager
async def served(tmp_path: Path, config: str = CONFIG) -> AsyncIterator[str]:
    (tmp_path / "signoff.toml").write_text(config)
    settings = Settings(db_path=tmp_path / "signoff.db", config_path=tmp_path / "signoff.toml")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    app = build_server(settings, http_url=base).streamable_http_app()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [listener])
            yield base
            server.should_exit = True
    finally:
        listener.close()


@asynccontextmanager
async def agent(base: str, token: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=120.0)) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
    ):
        yield client


async def call(client: Client, tool: str, **arguments: Any) -> tuple[bool, Any]:
    result = await client.call_tool(tool, arguments)
    return bool(result.is_error), result.structured_content if not result.is_error else result.content[0].text  # type: ignore[union-attr]


async def test_no_token_is_401_and_a_reviewer_token_cannot_act_as_an_agent(tmp_path: Path) -> None:
    async with served(tmp_path) as base, httpx2.AsyncClient() as http:
        anonymous = await http.post(f"{base}/mcp", json={})
        forged = await http.post(f"{base}/mcp", json={}, headers={"Authorization": "Bearer so_not-a-token"})
        reviewer = await http.post(f"{base}/mcp", json={}, headers={"Authorization": f"Bearer {ALICE}"})
    assert (anonymous.status_code, forged.status_code, reviewer.status_code) == (401, 401, 403)
    assert "insufficient_scope" in reviewer.text


async def test_an_agent_acts_as_its_token_and_sees_only_its_own_requests(tmp_path: Path) -> None:
    async with served(tmp_path) as base:
        async with agent(base, AGENT_A) as a:
            failed, mine = await call(a, "request_approval", action="db.drop", summary="drop", agent_id="someone-else")
            assert not failed and mine["agent_id"] == "billing-bot"  # the claimed agent_id is ignored
        async with agent(base, AGENT_B) as b:
            failed, theirs = await call(b, "get_status", request_id=mine["request_id"])
            assert failed and "no request with id" in theirs
            failed, cancelled = await call(b, "cancel_request", request_id=mine["request_id"], reason="mine now")
            assert failed and "no request with id" in cancelled
            _, listed = await call(b, "list_requests", agent_id="billing-bot")
            assert listed["items"] == []
            _, own = await call(b, "request_approval", action="etl.run", summary="run")
            _, listed = await call(b, "list_requests")
            assert [item["request_id"] for item in listed["items"]] == [own["request_id"]]


async def test_agents_see_all_lets_an_agent_read_another_agents_request_but_not_withdraw_it(tmp_path: Path) -> None:
    """``agents_see_all`` is for reading: another agent cannot cancel what it can read (review R3)."""
    async with served(tmp_path, "[auth]\nagents_see_all = true\n" + CONFIG) as base:
        async with agent(base, AGENT_A) as a:
            _, mine = await call(a, "request_approval", action="db.drop", summary="drop staging")
        async with agent(base, AGENT_B) as b:
            failed, seen = await call(b, "get_status", request_id=mine["request_id"])
            assert not failed and seen["status"] == "pending"
            failed, refused = await call(b, "cancel_request", request_id=mine["request_id"], reason="not yours")
            assert failed and "only the agent that asked can withdraw it" in refused, refused
        async with agent(base, AGENT_A) as a:
            _, after = await call(a, "get_status", request_id=mine["request_id"])
            assert after["status"] == "pending"
            failed, withdrawn = await call(a, "cancel_request", request_id=mine["request_id"], reason="plan changed")
            assert not failed and withdrawn["status"] == "cancelled"


async def test_reviewers_vote_over_http_as_their_token(tmp_path: Path) -> None:
    async with served(tmp_path) as base:
        async with agent(base, AGENT_A) as a:
            _, request = await call(a, "request_approval", action="db.drop", summary="drop staging")
        votes = f"{base}/api/requests/{request['request_id']}/votes"
        async with httpx2.AsyncClient() as http:
            anonymous = await http.post(votes, json={"verdict": "approve"})
            as_agent = await http.post(
                votes, json={"verdict": "approve"}, headers={"Authorization": f"Bearer {AGENT_B}"}
            )
            own_agent = await http.post(
                votes, json={"verdict": "approve"}, headers={"Authorization": f"Bearer {CAROL}"}
            )
            bad = await http.post(votes, json={"verdict": "maybe"}, headers={"Authorization": f"Bearer {ALICE}"})
            pending = await http.get(f"{base}/api/requests", headers={"Authorization": f"Bearer {ALICE}"})
            approved = await http.post(votes, json={"verdict": "approve"}, headers={"Authorization": f"Bearer {ALICE}"})
            again = await http.post(votes, json={"verdict": "approve"}, headers={"Authorization": f"Bearer {ALICE}"})
    assert anonymous.status_code == 401 and "Bearer" in anonymous.headers["www-authenticate"]
    assert as_agent.status_code == 403
    assert own_agent.status_code == 403 and "cannot vote" in own_agent.json()["error"]  # carol runs billing-bot
    assert bad.status_code == 400
    assert [item["request_id"] for item in pending.json()["items"]] == [request["request_id"]]
    assert approved.status_code == 200 and approved.json()["votes"][0]["reviewer"] == "alice"
    assert again.status_code == 409 and "already approved by alice" in again.json()["error"]
    store = await SqliteStore.open(tmp_path / "signoff.db")
    try:
        final = await store.get(request["request_id"])
    finally:
        await store.close()
    assert final is not None and final.status is Status.APPROVED and len(final.votes) == 1


async def test_serving_beyond_loopback_without_tokens_is_refused(tmp_path: Path) -> None:
    signoff = str(Path(sys.executable).parent / "signoff")
    command = [signoff, "serve", "--transport", "http", "--host", "0.0.0.0", "--db", str(tmp_path / "s.db")]
    with anyio.fail_after(60):
        result = await anyio.run_process(command, check=False, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert b"refusing to serve on 0.0.0.0 without authentication" in result.stderr


async def test_the_console_beyond_loopback_without_reviewer_tokens_is_refused(tmp_path: Path) -> None:
    signoff = str(Path(sys.executable).parent / "signoff")
    database = str(tmp_path / "s.db")
    with anyio.fail_after(60):
        assert (await anyio.run_process([signoff, "init", "--db", database], check=False)).returncode == 0
        command = [signoff, "console", "--host", "0.0.0.0", "--port", "0", "--db", database]
        result = await anyio.run_process(command, check=False, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert b"refusing to serve the console on 0.0.0.0 without reviewer tokens" in result.stderr
