"""Every agent-facing tool through a real MCP client connected in memory."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.server import MCPServer

from signoff.server.app import build_server
from signoff.server.config import Settings
from signoff.storage import DecidedBy, EventKind, Priority, RequestQuery, Status, Verdict
from signoff.storage.approvals.memory import MemoryStore
from signoff.tools.app_state import AppState
from signoff.tools.approvals import receipts
from signoff.tools.approvals.service import ApprovalService
from tests.factories import T0, make_request
from tests.fakes.clock import FakeClock

STATUS_FIELDS = {
    "request_id", "status", "actionable", "actionable_until", "decided_by", "action", "summary", "agent_id",
    "triggers", "votes",
    "approvals_required", "priority", "payload_sha256", "created_at", "expires_at", "decided_at", "escalated_at",
    "message", "receipt", "payload_changed", "approved_payload", "claimed_by", "claimed_at", "policy_version", "model",
}  # fmt: skip

PERMISSION_CONFIG = """
[[rules]]
name = "reads are fine"
action = "Read"
outcome = "approve"

[[rules]]
name = "never force-push"
action = "Bash"
when = [ { path = "payload.command", op = "regex", value = "push\\\\s+--force" } ]
outcome = "reject"
"""


def make_server(tmp_path: Path, config: str = "") -> tuple[MCPServer[AppState], MemoryStore, ApprovalService]:
    config_path = None
    if config:
        config_path = tmp_path / "signoff.toml"
        config_path.write_text(config)
    settings = Settings(
        db_path=tmp_path / "unused.db", config_path=config_path, progress_interval=0.05, permission_wait_seconds=0.2
    )
    store = MemoryStore()
    return build_server(settings, store=store), store, ApprovalService(store)


async def history(store: MemoryStore) -> tuple[object, ...]:
    """Requests and audit events, leaving out deliveries the outbox worker records in the background."""
    page = await store.list_requests(RequestQuery(limit=1000))
    return page.items, [e async for e in store.events() if e.kind is not EventKind.NOTIFIED]


async def test_tools_are_listed_with_schemas_and_no_tool_decides(tmp_path: Path) -> None:
    server, _, _ = make_server(tmp_path)
    async with Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {"request_approval", "get_status", "cancel_request", "list_requests", "permission_prompt"} <= set(tools)
    assert set(tools["request_approval"].output_schema["properties"]) == STATUS_FIELDS  # type: ignore[index]
    assert tools["get_status"].annotations.read_only_hint is True  # type: ignore[union-attr]
    assert tools["cancel_request"].annotations.destructive_hint is True  # type: ignore[union-attr]
    for tool in tools.values():  # no tool takes a reviewer or a verdict, so no agent can decide anything
        assert not {"reviewer", "verdict", "decision"} & set(tool.input_schema["properties"])


def _simple_nullable_unions(schema: object) -> list[object]:
    """Every ``anyOf`` in ``schema`` that pairs one plain type with null (what tools.wire rewrites)."""
    found: list[object] = []
    if isinstance(schema, dict):
        options = schema.get("anyOf")
        if isinstance(options, list) and {"type": "null"} in options and len(options) == 2:
            other = next(o for o in options if o != {"type": "null"})
            if isinstance(other.get("type"), str):
                found.append(schema)
        for value in schema.values():
            found += _simple_nullable_unions(value)
    elif isinstance(schema, list):
        for value in schema:
            found += _simple_nullable_unions(value)
    return found


async def test_output_schemas_are_cheap_to_check_and_results_conform(tmp_path: Path) -> None:
    server, _, _ = make_server(tmp_path)
    async with Client(server) as client:  # the SDK client checks each result against the output schema
        tools = (await client.list_tools()).tools
        ask = {"action": "db.drop", "summary": "s", "payload": {}}
        pending = (await client.call_tool("request_approval", ask)).structured_content
        confident = {**ask, "payload": {"table": "t"}, "confidence": 0.99}  # not the pending one's payload again
        approved = (await client.call_tool("request_approval", confident)).structured_content
    assert pending is not None and pending["decided_by"] is None and pending["status"] == "pending"
    assert approved is not None and approved["decided_by"] == "policy" and approved["receipt"] is not None
    schema = next(t for t in tools if t.name == "request_approval").output_schema
    assert schema is not None
    assert schema["properties"]["decided_by"] == {
        "enum": ["policy", "human", None], "title": "Decided By", "type": ["string", "null"]
    }  # fmt: skip
    receipt = schema["properties"]["receipt"]  # the nested model written in place, no $ref to resolve
    assert receipt["type"] == ["object", "null"] and "signature" in receipt["properties"]
    assert receipt["description"].startswith("When approved")  # the field's own description is kept
    for tool in tools:
        assert not _simple_nullable_unions(tool.output_schema), tool.name
        assert "$ref" not in json.dumps(tool.output_schema), tool.name


async def test_request_approval_and_get_status(tmp_path: Path) -> None:
    server, _, _ = make_server(tmp_path)
    async with Client(server) as client:
        auto = await client.call_tool(
            "request_approval",
            {"action": "payments.transfer", "summary": "pay", "payload": {"n": 1}, "confidence": 0.9},
        )
        waits = await client.call_tool("request_approval", {"action": "payments.transfer", "summary": "pay"})
        read = await client.call_tool("get_status", {"request_id": waits.structured_content["request_id"]})  # type: ignore[index]
    assert auto.is_error is False and set(auto.structured_content) == STATUS_FIELDS  # type: ignore[arg-type]
    assert auto.structured_content["status"] == "approved"  # type: ignore[index]
    assert auto.structured_content["decided_by"] == "policy"  # type: ignore[index]
    assert read.structured_content["status"] == "pending"  # type: ignore[index]
    assert "call get_status" in read.structured_content["message"]  # type: ignore[index]
    assert read.structured_content["triggers"][0]["kind"] == "default"  # type: ignore[index]


async def test_bad_input_is_a_clear_tool_error_and_changes_nothing(tmp_path: Path) -> None:
    server, store, _ = make_server(tmp_path)
    bad_calls: list[tuple[str, dict[str, Any], str]] = [
        ("request_approval", {"summary": "no action"}, "action"),
        ("request_approval", {"action": "x", "summary": "s", "payload": "not an object"}, "payload"),
        ("request_approval", {"action": "x", "summary": "s", "confidence": "high"}, "confidence"),
        ("request_approval", {"action": "x", "summary": "s", "confidence": 7}, "confidence"),
        ("request_approval", {"action": "x", "summary": "s", "payload": {"b": "x" * 2_000_000}}, "max_payload_bytes"),
        ("request_approval", {"action": "x", "summary": "s", "wait_seconds": 100000}, "wait_seconds"),
        ("request_approval", {"action": "bad action!", "summary": "s"}, "action"),
        ("get_status", {"request_id": "req_unknown"}, "no request with id 'req_unknown'"),
        ("cancel_request", {"request_id": "req_unknown", "reason": "r"}, "no request with id"),
        ("list_requests", {"cursor": "garbage"}, "cursor"),
        ("list_requests", {"since": "2026-01-01T00:00:00"}, "timezone"),
        ("list_requests", {"status": "maybe"}, "status"),
        ("request_approval", {"action": "x", "summary": "s", "expires_in": 60}, "did you mean 'expires_in_seconds'?"),
        ("get_status", {"request_id": "req_x", "wait": 5}, "does not take 'wait'"),
        ("resolve_model", {"model": "m", "key": "k"}, "does not take 'key'"),
    ]
    async with Client(server) as client:
        for tool, arguments, hint in bad_calls:
            result = await client.call_tool(tool, arguments)
            assert result.is_error, (tool, arguments)
            assert hint in result.content[0].text, (tool, result.content[0].text)  # type: ignore[union-attr]
    assert await history(store) == ((), [])


async def test_a_decided_request_cannot_be_cancelled(tmp_path: Path) -> None:
    server, store, reviewer = make_server(tmp_path)
    async with Client(server) as client:
        created = await client.call_tool("request_approval", {"action": "db.drop", "summary": "drop staging"})
        request_id = created.structured_content["request_id"]  # type: ignore[index]
        await reviewer.vote(request_id, "alice", Verdict.REJECT, "not today")
        before = await history(store)
        result = await client.call_tool("cancel_request", {"request_id": request_id, "reason": "x"})
    assert result.is_error and "already rejected by alice (not today)" in result.content[0].text  # type: ignore[union-attr]
    assert await history(store) == before


async def test_get_status_waits_with_progress_until_a_human_decides(tmp_path: Path) -> None:
    server, _, reviewer = make_server(tmp_path)
    progressed = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        progressed.set()

    async with Client(server) as client:
        created = await client.call_tool("request_approval", {"action": "deploy.prod", "summary": "ship v2"})
        request_id = created.structured_content["request_id"]  # type: ignore[index]
        outcome: dict[str, Any] = {}

        async def wait() -> None:
            result = await client.call_tool(
                "get_status", {"request_id": request_id, "wait_seconds": 60}, progress_callback=on_progress
            )
            outcome.update(result.structured_content or {})

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await progressed.wait()
                await reviewer.vote(request_id, "alice", Verdict.APPROVE, "ship it")
    assert outcome["status"] == "approved" and outcome["decided_by"] == "human"
    assert outcome["votes"][0]["reviewer"] == "alice"
    assert "Approved by alice" in outcome["message"]


async def test_a_wait_that_runs_out_is_pending_not_a_denial(tmp_path: Path) -> None:
    server, _, _ = make_server(tmp_path)
    async with Client(server) as client:
        result = await client.call_tool(
            "request_approval", {"action": "deploy.prod", "summary": "ship", "wait_seconds": 0.1}
        )
    assert result.structured_content["status"] == "pending"  # type: ignore[index]


async def test_list_requests_pages_newest_first(tmp_path: Path) -> None:
    server, _, _ = make_server(tmp_path)
    async with Client(server) as client:
        made = []
        for i in range(5):
            r = await client.call_tool("request_approval", {"action": "email.send", "summary": f"mail {i}"})
            made.append(r.structured_content["request_id"])  # type: ignore[index]
        await client.call_tool("request_approval", {"action": "other", "summary": "x", "confidence": 1})
        seen: list[str] = []
        cursor = None
        while True:
            arguments: dict[str, Any] = {"action": "email.send", "status": "pending", "limit": 2}
            if cursor:
                arguments["cursor"] = cursor
            page = (await client.call_tool("list_requests", arguments)).structured_content
            assert page is not None
            seen += [item["request_id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert seen == list(reversed(made))


async def test_permission_prompt_allows_denies_and_waits(tmp_path: Path) -> None:
    server, _, reviewer = make_server(tmp_path, PERMISSION_CONFIG)

    async def prompt(client: Client, tool: str, tool_input: dict[str, Any]) -> dict[str, Any]:
        result = await client.call_tool("permission_prompt", {"tool_name": tool, "input": tool_input})
        assert len(result.content) == 1
        return json.loads(result.content[0].text)  # type: ignore[union-attr, no-any-return]

    async with Client(server) as client:
        allowed = await prompt(client, "Read", {"file_path": "/etc/hosts"})
        newer_claude = await client.call_tool(  # a field a later Claude Code may send: not an error here
            "permission_prompt", {"tool_name": "Read", "input": {"file_path": "/etc/hosts"}, "session": "s1"}
        )
        denied = await prompt(client, "Bash", {"command": "git push --force origin main"})
        waited = await prompt(client, "Bash", {"command": "rm -rf build"})
        request_id = waited["message"].split()[2]
        await reviewer.vote(request_id, "alice", Verdict.APPROVE, None)
        retried = await prompt(client, "Bash", {"command": "rm -rf build"})
        again = await prompt(client, "Bash", {"command": "rm -rf build"})  # the approval was used up
        huge = await prompt(client, "Write", {"file_path": "big.txt", "content": "x" * 100_000})
    assert allowed == {"behavior": "allow", "updatedInput": {"file_path": "/etc/hosts"}}
    assert json.loads(newer_claude.content[0].text) == allowed  # type: ignore[union-attr]
    assert denied["behavior"] == "deny" and "never force-push" in denied["message"]
    assert (
        waited["behavior"] == "deny" and request_id.startswith("req_") and "waiting for a person" in waited["message"]
    )
    assert "signoff review" not in waited["message"]  # the agent is not handed a command to approve itself
    assert retried == {"behavior": "allow", "updatedInput": {"command": "rm -rf build"}}
    assert again["behavior"] == "deny" and request_id not in again["message"]
    assert huge["behavior"] == "deny" and "max_payload_bytes" in huge["message"]
    used = await reviewer.get(request_id)
    assert used.consumed_at is not None


async def test_an_approval_comes_with_a_receipt_that_binds_the_payload(tmp_path: Path) -> None:
    server, _, reviewer = make_server(tmp_path)
    payload = {"amount": 120, "to": "ACME"}
    async with Client(server) as client:
        auto = await client.call_tool(
            "request_approval", {"action": "payments.transfer", "summary": "pay", "payload": payload, "confidence": 1}
        )
        pending = await client.call_tool("request_approval", {"action": "db.drop", "summary": "drop"})
        pending_id = pending.structured_content["request_id"]  # type: ignore[index]
        await reviewer.vote(pending_id, "alice", Verdict.APPROVE, None)
        human = await client.call_tool("get_status", {"request_id": pending_id})
        receipt = auto.structured_content["receipt"]  # type: ignore[index]

        async def check(receipt: dict[str, Any], action: str, payload: dict[str, Any]) -> dict[str, Any]:
            result = await client.call_tool(
                "verify_receipt", {"receipt": receipt, "action": action, "payload": payload}
            )
            assert result.structured_content is not None
            return result.structured_content

        good = await check(receipt, "payments.transfer", payload)
        changed = await check(receipt, "payments.transfer", {**payload, "amount": 12000})
        other_action = await check(receipt, "payments.refund", payload)
        forged = await check({**receipt, "payload_sha256": "0" * 64}, "payments.transfer", payload)
        resigned = await check({**receipt, "signature": "v1=" + "ab" * 32}, "payments.transfer", payload)
        junk = await check({"hello": "world"}, "payments.transfer", payload)
    assert pending.structured_content["receipt"] is None  # type: ignore[index]
    assert human.structured_content["receipt"]["approvers"] == ["alice"]  # type: ignore[index]
    assert receipt["decided_by"] == "policy" and receipt["signature"].startswith("v1=")
    assert good == {"valid": True, "reason": None}
    assert changed["valid"] is False and "payload differs" in changed["reason"]
    assert other_action["valid"] is False and "payments.refund" in other_action["reason"]
    assert forged["valid"] is False and "signature" in forged["reason"]
    assert resigned["valid"] is False and "signature" in resigned["reason"]
    assert junk["valid"] is False and "not a receipt" in junk["reason"]


def test_a_receipt_from_another_key_is_refused() -> None:
    request = make_request(status=Status.APPROVED, decided_by=DecidedBy.POLICY, decided_at=T0)
    receipt = receipts.issue(b"k" * 32, request)
    assert receipt is not None
    assert receipts.check(b"k" * 32, receipt, request.action, request.payload, now=T0) is None
    assert "signature" in (receipts.check(b"x" * 32, receipt, request.action, request.payload, now=T0) or "")


async def test_list_requests_by_priority_lists_pending_requests_urgent_first_and_pages_in_that_order(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    server = build_server(Settings(db_path=tmp_path / "unused.db"), store=store, clock=FakeClock(T0))  # none expire
    for priority, minutes in [("low", 1), ("urgent", 50), ("normal", 2), ("urgent", 40), ("high", 3)]:
        request = make_request(priority=Priority(priority), expires_at=T0 + timedelta(minutes=minutes))
        await store.create_request(request, (), notify=False)
    await store.create_request(
        make_request(priority=Priority.URGENT, status=Status.APPROVED, decided_by=DecidedBy.POLICY), (), notify=False
    )
    async with Client(server) as client:
        seen: list[tuple[str, str]] = []
        cursor: str | None = None
        while True:
            arguments: dict[str, Any] = {"order": "priority", "limit": 2}
            if cursor:
                arguments["cursor"] = cursor
            page = (await client.call_tool("list_requests", arguments)).structured_content
            assert page is not None
            seen += [(item["priority"], item["expires_at"][11:16]) for item in page["items"]]
            if (cursor := page["next_cursor"]) is None:
                break
        assert seen == [
            ("urgent", "12:40"),
            ("urgent", "12:50"),
            ("high", "12:03"),
            ("normal", "12:02"),
            ("low", "12:01"),
        ]

        refused = await client.call_tool("list_requests", {"order": "priority", "status": "approved"})
        assert refused.is_error and "pending requests only" in str(refused.content)
        newest = (await client.call_tool("list_requests", {"limit": 1})).structured_content
        assert newest is not None and newest["next_cursor"]
        mixed = await client.call_tool("list_requests", {"order": "priority", "cursor": newest["next_cursor"]})
        assert mixed.is_error and "order=newest" in str(mixed.content)


async def test_an_agent_gets_the_changed_payload_and_a_receipt_for_it(tmp_path: Path) -> None:
    """Approve with changes, as the agent sees it: get_status carries approved_payload and says it was changed;
    the receipt verifies for the changed payload only, and the original is refused with the reason."""
    server, _, reviewer = make_server(tmp_path)
    asked = {"amount": 900, "to": "ACME"}
    async with Client(server) as client:
        created = await client.call_tool(
            "request_approval", {"action": "payments.transfer", "summary": "pay", "payload": asked}
        )
        request_id = created.structured_content["request_id"]  # type: ignore[index]
        await reviewer.vote(request_id, "alice", Verdict.APPROVE, "less", approved_payload={**asked, "amount": 90})
        status = (await client.call_tool("get_status", {"request_id": request_id})).structured_content
        assert status is not None
        receipt = status["receipt"]

        async def check(payload: dict[str, Any]) -> dict[str, Any]:
            call = {"receipt": receipt, "action": "payments.transfer", "payload": payload}
            result = (await client.call_tool("verify_receipt", call)).structured_content
            assert result is not None
            return result

        as_changed = await check({**asked, "amount": 90})
        as_asked = await check(asked)
    assert status["status"] == "approved" and status["payload_changed"] is True
    assert status["approved_payload"] == {"amount": 90, "to": "ACME"}
    assert "approved_payload" in status["message"] and "changed" in status["message"]
    assert as_changed == {"valid": True, "reason": None}
    assert as_asked["valid"] is False
    assert "approved request" in as_asked["reason"] and "with changes" in as_asked["reason"]


async def test_permission_prompt_runs_the_tool_with_the_input_a_reviewer_approved(tmp_path: Path) -> None:
    server, _, reviewer = make_server(tmp_path, PERMISSION_CONFIG)

    async def prompt(client: Client, tool_input: dict[str, Any]) -> dict[str, Any]:
        result = await client.call_tool("permission_prompt", {"tool_name": "Bash", "input": tool_input})
        return json.loads(result.content[0].text)  # type: ignore[union-attr, no-any-return]

    async with Client(server) as client:
        waited = await prompt(client, {"command": "rm -rf /srv/build"})
        request_id = waited["message"].split()[2]
        await reviewer.vote(request_id, "alice", Verdict.APPROVE, None, approved_payload={"command": "rm -rf build"})
        retried = await prompt(client, {"command": "rm -rf /srv/build"})
    assert retried == {"behavior": "allow", "updatedInput": {"command": "rm -rf build"}}
