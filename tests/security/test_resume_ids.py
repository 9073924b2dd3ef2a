"""Resuming a waiting call (server/resume.py) refuses every Last-Event-ID it did not give to this caller: a malformed
or huge one is 400, an unknown, forged or another token's is 404, each before any stream opens and with nothing of
the stream in the answer; the token that made the call resumes it and gets its verdict."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from signoff.server.auth import new_token
from tests.integration.support import ask, base_env, http_process, signoff

pytestmark = pytest.mark.slow

AGENT_A, AGENT_A_SHA = new_token()
AGENT_B, AGENT_B_SHA = new_token()
CONFIG = f"""
[[auth.tokens]]
identity = "billing-bot"
role = "agent"
sha256 = "{AGENT_A_SHA}"

[[auth.tokens]]
identity = "etl-bot"
role = "agent"
sha256 = "{AGENT_B_SHA}"
"""
MCP_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "MCP-Protocol-Version": "2025-11-25",
}


@asynccontextmanager
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, dict[str, str]]]:
    (tmp_path / "signoff.toml").write_text(CONFIG)
    env = base_env(tmp_path / "signoff.db", SIGNOFF_CONFIG=str(tmp_path / "signoff.toml"))
    async with http_process(env, tmp_path / "server.log", "--stateless") as (port, _):
        yield f"http://127.0.0.1:{port}", env


async def pending_request(base: str) -> str:
    headers = {"Authorization": f"Bearer {AGENT_A}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
    ):
        return str((await ask(client, confidence=0.3))["request_id"])


async def started_wait(base: str, request_id: str) -> str:
    """Start get_status(wait) as agent A by hand, read the stream's priming event id, and drop the connection."""
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {
            "name": "get_status",
            "arguments": {"request_id": request_id, "wait_seconds": 60},
            "_meta": {"progressToken": 1},
        },
    }
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {AGENT_A}"}
    async with (
        httpx2.AsyncClient(timeout=30) as http,
        http.stream("POST", f"{base}/mcp", json=call, headers=headers) as response,
    ):
        assert response.status_code == 200, response.status_code
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                return line[4:]
    raise AssertionError("the waiting call's stream had no priming event")


async def resume(http: httpx2.AsyncClient, base: str, token: str | None, last_event_id: str) -> httpx2.Response:
    headers = {"Accept": "text/event-stream", "Last-Event-ID": last_event_id}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await http.get(f"{base}/mcp", headers=headers)


async def test_only_the_caller_resumes_its_stream_and_every_other_id_is_refused(tmp_path: Path) -> None:
    with anyio.fail_after(120):
        async with server(tmp_path) as (base, env):
            request_id = await pending_request(base)
            given = await started_wait(base, request_id)
            key, dot, seq = given.partition(".")
            assert len(key) == 22 and dot == "." and seq == "0", given
            forged = ("A" if key[0] != "A" else "B") + key[1:] + ".0"
            async with httpx2.AsyncClient(timeout=30) as http:
                refused = {
                    "malformed": await resume(http, base, AGENT_A, "../../etc/passwd"),
                    "huge": await resume(http, base, AGENT_A, key + "." + "0" * 20_000),
                    "unknown": await resume(http, base, AGENT_A, "x" * 22 + ".0"),
                    "forged": await resume(http, base, AGENT_A, forged),
                    "other caller": await resume(http, base, AGENT_B, given),
                    "no token": await resume(http, base, None, given),
                }
            statuses = {why: r.status_code for why, r in refused.items()}
            assert statuses == {
                "malformed": 400,
                "huge": 400,
                "unknown": 404,
                "forged": 404,
                "other caller": 404,
                "no token": 401,
            }, statuses
            for why, response in refused.items():
                assert request_id not in response.text and '"result"' not in response.text, (why, response.text)
                assert not response.headers.get("content-type", "").startswith("text/event-stream"), why
            assert "Last-Event-ID" in refused["malformed"].text and "Last-Event-ID" in refused["other caller"].text

            headers = {"Accept": "text/event-stream", "Last-Event-ID": given, "Authorization": f"Bearer {AGENT_A}"}
            async with (
                httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=90)) as http,
                http.stream("GET", f"{base}/mcp", headers=headers) as resumed,
                anyio.create_task_group() as tg,
            ):
                assert resumed.status_code == 200
                progress = anyio.Event()
                answer: list[dict[str, object]] = []

                async def read() -> None:
                    async for line in resumed.aiter_lines():
                        if line.startswith("data: "):
                            message = json.loads(line[6:])
                            if message.get("method") == "notifications/progress":
                                progress.set()
                            elif message.get("id") == 7:
                                answer.append(message)
                                return

                tg.start_soon(read)
                await progress.wait()  # the resumed call waits for people, as agent A
                voted = await signoff(env, "review", "approve", request_id, "--as", "alice")
                assert voted.returncode == 0, voted
            [message] = answer
            assert message["result"]["structuredContent"]["status"] == "approved", message  # type: ignore[index]


async def test_a_body_nested_too_deep_is_a_json_rpc_error_not_a_server_error(tmp_path: Path) -> None:
    async with server(tmp_path) as (base, _), httpx2.AsyncClient(timeout=30) as http:
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {AGENT_A}"}
        deep = await http.post(f"{base}/mcp", headers=headers, content="[" * 30_000 + "]" * 30_000)
        malformed = await http.post(f"{base}/mcp", headers=headers, content="[1,")
    assert deep.status_code == malformed.status_code == 400, (deep.status_code, deep.text)
    assert "RecursionError" not in (tmp_path / "server.log").read_text()


async def test_a_refused_waiting_call_leaves_no_copy_of_its_body(tmp_path: Path) -> None:
    """A waiting call's stream is opened before the call is checked; once answered (here refused: an unknown
    argument), only its short answer is kept for a reconnect, not the 60 KB an agent sent."""
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "get_status", "arguments": {"request_id": "req_x", "wait_seconds": 1, "junk": "A" * 60_000}},
    }
    async with server(tmp_path) as (base, _), httpx2.AsyncClient(timeout=30) as http:
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {AGENT_A}"}
        answers = [await http.post(f"{base}/mcp", headers=headers, json=call) for _ in range(5)]
        with sqlite3.connect(tmp_path / "signoff.db") as db:
            rows, request_bytes, response_bytes = db.execute(
                "SELECT count(*), sum(length(request)), sum(length(response)) FROM resume_streams"
            ).fetchone()
    assert all(a.status_code == 200 and "junk" in a.text and '"isError":true' in a.text for a in answers)
    assert rows == 5 and request_bytes == 0, (rows, request_bytes)
    assert response_bytes < 5 * 2_000, response_bytes
