"""signoff over streamable HTTP, as a separate server process, with a person approving through the CLI."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp import Client

from tests.integration.support import TOOL_NAMES, ask, http_server, signoff, signoff_each, wait_during

pytestmark = pytest.mark.slow


async def test_http_wait_with_progress_ends_when_approved(env: dict[str, str], tmp_path: Path) -> None:
    with anyio.fail_after(90):
        async with http_server(env, tmp_path / "server.log") as url:
            async with Client(url) as client:
                assert TOOL_NAMES <= {tool.name for tool in (await client.list_tools()).tools}
                assert (await ask(client, confidence=0.99))["status"] == "approved"
                request = await ask(client, confidence=0.2, agent_id="billing-bot")
                assert request["status"] == "pending"
                request_id = request["request_id"]

                waited, approve = await wait_during(
                    client, request_id, lambda: signoff(env, "review", "approve", request_id, "--as", "alice")
                )

    assert approve.returncode == 0, approve
    assert waited.progress.updates, "no progress notification reached the HTTP client"
    assert waited.status["status"] == "approved"
    assert waited.status["decided_by"] == "human"
    assert waited.status["votes"][0]["reviewer"] == "alice"
    assert waited.seconds_after_action < 10, "get_status did not return promptly after the approval"

    history, verify = await signoff_each(env, ("history", "--status", "approved", "--json"), ("audit", "verify"))
    assert {r["request_id"]: r["decided_by"] for r in history.json()}[request_id] == "human"
    assert verify.returncode == 0, verify


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
async def test_http_access_lines_are_logged_only_at_debug(env: dict[str, str], tmp_path: Path, level: str) -> None:
    log = tmp_path / "server.log"
    with anyio.fail_after(60):
        async with http_server({**env, "SIGNOFF_LOG_LEVEL": level}, log) as url:
            async with Client(url) as client:
                status = await ask(client, confidence=0.99)
                assert status["status"] == "approved"
    text = log.read_text()
    assert f"request created: {status['request_id']} (payments.transfer, approved)" in text, text
    assert ('"POST /mcp HTTP/1.1" 200' in text) == (level == "DEBUG"), text
