"""signoff over stdio, launched the way mcp.json says, with people deciding through the CLI in other processes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from tests.integration.support import (
    TOOL_NAMES,
    ask,
    base_env,
    events,
    signoff,
    signoff_each,
    status_of,
    stdio_params,
    wait_during,
)

pytestmark = pytest.mark.slow


async def test_mcp_json_launch_lists_tools_and_applies_policy(env: dict[str, str]) -> None:
    with anyio.fail_after(60):
        async with Client(stdio_params(env)) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert TOOL_NAMES <= set(tools)
            schema = tools["request_approval"].output_schema
            assert schema is not None and "status" in schema["properties"]

            sure = await ask(client, confidence=0.95)
            assert sure["status"] == "approved"
            assert sure["decided_by"] == "policy"
            assert sure["votes"] == []

            unsure = await ask(client, confidence=0.4)
            assert unsure["status"] == "pending"
            assert unsure["decided_by"] is None
            assert unsure["request_id"] != sure["request_id"]
            assert [t["kind"] for t in unsure["triggers"]] == ["confidence"]

            again = status_of(await client.call_tool("get_status", {"request_id": unsure["request_id"]}))
            assert again["status"] == "pending"
            assert again["payload_sha256"] == unsure["payload_sha256"]


async def test_agent_waits_while_a_person_approves_in_another_process(env: dict[str, str]) -> None:
    """The README's "done when": an agent waits on get_status; alice approves with the CLI; the wait ends."""
    with anyio.fail_after(90):
        async with Client(stdio_params(env)) as client:
            request = await ask(client, confidence=0.3)
            assert request["status"] == "pending"
            request_id = request["request_id"]

            waited, approve = await wait_during(
                client, request_id, lambda: signoff(env, "review", "approve", request_id, "--as", "alice")
            )

    assert approve.returncode == 0, approve
    assert request_id in approve.stdout and "approved" in approve.stdout
    status = waited.status
    assert status["status"] == "approved"
    assert status["decided_by"] == "human"
    assert status["votes"][0]["reviewer"] == "alice"
    assert status["votes"][0]["verdict"] == "approve"
    assert status["decided_at"] is not None
    assert waited.seconds_after_action < 10, "get_status did not return promptly after the approval"
    _done, total, message = waited.progress.updates[0]
    assert total == 60 and message and "waiting" in message

    history, approved_only, verify = await signoff_each(
        env, ("history", "--json"), ("history", "--status", "approved", "--json"), ("audit", "verify")
    )
    assert history.returncode == 0, history
    [row] = [r for r in history.json() if r["request_id"] == request_id]
    assert row["status"] == "approved" and row["decided_by"] == "human"
    assert row["votes"][0]["reviewer"] == "alice"
    assert [r["request_id"] for r in approved_only.json()] == [request_id]
    assert verify.returncode == 0, verify
    assert verify.stdout.startswith("ok:")


async def test_second_decision_is_refused_and_changes_nothing(env: dict[str, str], db: Path) -> None:
    with anyio.fail_after(60):
        async with Client(stdio_params(env)) as client:
            request_id = (await ask(client, confidence=0.3))["request_id"]
        # the server has exited: from here on only the CLI touches the database
        first = await signoff(env, "review", "approve", request_id, "--as", "alice", "--comment", "invoice checked")
        assert first.returncode == 0, first

        history_before, show_before = await signoff_each(
            env, ("history", "--json"), ("review", "show", request_id, "--json")
        )
        events_before = events(db)

        # two reviewers too late, at the same time
        for second in await signoff_each(
            env,
            ("review", "reject", request_id, "--as", "bob", "--comment", "wrong account"),
            ("review", "approve", request_id, "--as", "carol"),
        ):
            assert second.returncode != 0, second
            assert re.search(r"approved by alice at \d{4}-\d\d-\d\dT\d\d:\d\d", second.stderr), second  # who, when
            assert "Traceback" not in second.stderr, second

        history_after, show_after, verify = await signoff_each(
            env, ("history", "--json"), ("review", "show", request_id, "--json"), ("audit", "verify")
        )
        assert history_after.stdout == history_before.stdout
        assert show_after.stdout == show_before.stdout
        assert events(db) == events_before
        assert [v["reviewer"] for v in show_before.json()[0]["votes"]] == ["alice"]
        assert verify.returncode == 0, verify


def permission_answer(result: CallToolResult) -> dict[str, Any]:
    """permission_prompt's answer: exactly one text block holding a JSON object."""
    assert not result.is_error, result.content
    assert len(result.content) == 1, result.content
    block = result.content[0]
    assert isinstance(block, TextContent), block
    answer: dict[str, Any] = json.loads(block.text)
    return answer


async def test_permission_prompt_denies_until_approved_then_allows(db: Path) -> None:
    env = base_env(db, SIGNOFF_PERMISSION_WAIT_SECONDS="1")
    tool_input = {"command": "rm -rf build/", "description": "clean the build"}
    call = {"tool_name": "Bash", "input": tool_input, "tool_use_id": "toolu_01"}
    with anyio.fail_after(60):
        async with Client(stdio_params(env)) as client:
            denied = permission_answer(await client.call_tool("permission_prompt", call))
            assert denied["behavior"] == "deny"
            match = re.search(r"req_[a-z0-9]+", denied["message"])
            assert match, denied
            request_id = match.group()

            pending = await signoff(env, "review", "list", "--json")
            assert [(r["request_id"], r["action"]) for r in pending.json()] == [(request_id, "Bash")]

            approve = await signoff(env, "review", "approve", request_id, "--as", "alice")
            assert approve.returncode == 0, approve

            allowed = permission_answer(await client.call_tool("permission_prompt", call))
            assert allowed == {"behavior": "allow", "updatedInput": tool_input}

    history = (await signoff(env, "history", "--json")).json()
    assert [(r["request_id"], r["status"]) for r in history] == [(request_id, "approved")]
