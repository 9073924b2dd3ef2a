"""Findings 4 and 7: policy rules that failed open on the shape of a request, and a "no" undone by asking again.

Every bypass is tried through the real ApprovalService and through the real ``request_approval`` tool (an MCP
client connected in memory); repeated JSON keys, which only exist in raw JSON text, go through the real stdio and
streamable HTTP transports of a ``signoff serve`` process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client

from signoff.server.app import build_server
from signoff.server.config import Settings
from signoff.storage import InvalidInput, RequestQuery, Status, Verdict
from signoff.storage.approvals.memory import MemoryStore
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.integration.support import base_env, http_server, stdio_params

RULES = """
[[rules]]
name = "large transfers"
action = "payments.*"
when = [{ path = "payload.amount", op = "gt", value = 10000 }]
outcome = "review"

[[rules]]
name = "no dropping tables"
action = "db.drop*"
outcome = "reject"
"""

ANOMALY = """
[anomaly]
enabled = true
"""

SCHEMAS = """
[[schemas]]
action = "payments.*"
[schemas.schema]
type = "object"
required = ["amount", "to"]
properties = { amount = { type = "number" }, to = { type = "string", maxLength = 34 } }
"""


class Both:
    """One policy file, one store, and both ways in: the service, and the MCP tool on a server built from it."""

    def __init__(self, tmp_path: Path, config: str) -> None:
        path = tmp_path / "signoff.toml"
        path.write_text(config)
        self.store = MemoryStore()
        settings = Settings(db_path=tmp_path / "unused.db", config_path=path, progress_interval=0.05)
        self.server = build_server(settings, store=self.store)
        self.service = ApprovalService(self.store, Policy(parse_policy_config(config)))

    async def ask(self, action: str, payload: dict[str, Any], **extra: Any) -> list[dict[str, Any]]:
        """The status the service gives, then the one the tool gives, for the same request."""
        arguments = {"action": action, "summary": "Do the thing", "payload": payload, "confidence": 0.99, **extra}
        draft = Draft(**{k: tuple(v) if k == "flags" else v for k, v in arguments.items()})
        by_service = await self.service.request_approval(draft)
        async with Client(self.server) as client:
            result = await client.call_tool("request_approval", arguments)
        assert not result.is_error, result.content
        assert result.structured_content is not None
        service_view = {
            "status": str(by_service.status),
            "triggers": [{"kind": str(t.kind), "detail": t.detail} for t in by_service.triggers],
        }
        return [service_view, result.structured_content]


def details(status: dict[str, Any]) -> str:
    return " | ".join(t["detail"] for t in status["triggers"])


# --- finding 7: shapes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"amount": "20000"}, 'payload.amount is the string "20000", not a number: treated as matching'),
        ({"amount": {"value": 20000}}, 'payload.amount is an object {"value":20000}, not a number'),
        ({"amount": [20000]}, "payload.amount is an array [20000], not a number"),
        ({"Amount": 20000}, 'payload.amount is missing but payload has "Amount", which differ only in case'),
        ({"amount ": 20000}, 'payload.amount is missing but payload has "amount ", which differ only in case'),
    ],
    ids=["amount-as-string", "amount-in-object", "amount-in-array", "key-Amount", "key-amount-space"],
)
async def test_a_large_amount_in_another_shape_goes_to_review(
    tmp_path: Path, payload: dict[str, Any], reason: str
) -> None:
    both = Both(tmp_path, RULES)
    for status in await both.ask("payments.transfer", payload):
        assert status["status"] == "pending", status
        assert "rule 'large transfers' (review)" in details(status)
        assert reason in details(status)
    small = await both.ask("payments.transfer", {"amount": 5})
    assert [s["status"] for s in small] == ["approved", "approved"]  # the rule still judges clear input


@pytest.mark.parametrize("action", ["Payments.transfer", "PAYMENTS.TRANSFER"])
async def test_an_action_in_other_case_meets_the_same_review_rule(tmp_path: Path, action: str) -> None:
    for status in await Both(tmp_path, RULES).ask(action, {"amount": 20000}):
        assert status["status"] == "pending", status
        assert f"action {action} matches 'payments.*'; payload.amount gt 10000 (was 20000)" in details(status)


@pytest.mark.parametrize("action", ["DB.drop_users", "db.Drop_users"])
async def test_an_action_in_other_case_meets_the_same_guardrail(tmp_path: Path, action: str) -> None:
    for status in await Both(tmp_path, RULES).ask(action, {}):
        assert status["status"] == "rejected", status
        assert status["triggers"][0]["kind"] == "guardrail"
        assert f"action {action} matches 'db.drop*'" in details(status)


async def test_a_payload_that_breaks_its_action_schema_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    both = Both(tmp_path, RULES + SCHEMAS)
    bad = {"amount": 20, "to": "x" * 35}
    with pytest.raises(InvalidInput, match=r"^payload\.to: 'x+' is too long\. Payloads for PAYMENTS\.transfer"):
        await both.service.request_approval(Draft(action="PAYMENTS.transfer", summary="s", payload=bad))
    async with Client(both.server) as client:
        result = await client.call_tool("request_approval", {"action": "payments.x", "summary": "s", "payload": {}})
    assert result.is_error
    assert "payload: 'amount' is a required property." in result.content[0].text  # type: ignore[union-attr]
    assert (await both.store.list_requests(RequestQuery())).items == ()


# --- finding 7: repeated JSON keys, through the real transports --------------------------------------------------

DUPLICATE = (
    '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"request_approval","arguments":'
    '{"action":"payments.transfer","summary":"Pay","confidence":0.99,"payload":{"amount":20000,"amount":5}}}}'
)
#: the same call with its method spelt with JSON escapes, which every reader decodes to "tools/call" (review R3)
SPELLINGS = pytest.mark.parametrize(
    "message",
    [DUPLICATE, DUPLICATE.replace("tools/call", "tools\\/call"), DUPLICATE.replace("tools/call", "tools\\u002fcall")],
    ids=["plain", "escaped-solidus", "unicode-escape"],
)
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def assert_refused(response: dict[str, Any]) -> None:
    result = response["result"]
    assert result["isError"] is True, response
    text = result["content"][0]["text"]
    assert text.startswith("request_approval was refused: its JSON repeats the key 'amount' within one object"), text


@pytest.mark.slow
@SPELLINGS
async def test_repeated_keys_over_stdio_are_refused_and_nothing_is_stored(tmp_path: Path, message: str) -> None:
    db = tmp_path / "signoff.db"
    params = stdio_params(base_env(db, SIGNOFF_CONFIG=str(_config(tmp_path, RULES))))
    with anyio.fail_after(60):
        async with await anyio.open_process([params.command, *params.args], env=params.env, cwd=params.cwd) as proc:
            assert proc.stdin is not None and proc.stdout is not None
            lines = [json.dumps(INITIALIZE), json.dumps(INITIALIZED), message]
            await proc.stdin.send(("\n".join(lines) + "\n").encode())
            received = b""
            response: dict[str, Any] | None = None
            async for chunk in proc.stdout:
                received += chunk
                *complete, received = received.split(b"\n")
                found = [m for m in map(json.loads, filter(None, complete)) if m.get("id") == 2]
                if found:
                    response = found[0]
                    break
            await proc.stdin.aclose()
            await proc.wait()
    assert response is not None
    assert_refused(response)
    assert await _requests(db) == 0


@pytest.mark.slow
@SPELLINGS
async def test_repeated_keys_over_http_are_refused_and_nothing_is_stored(tmp_path: Path, message: str) -> None:
    db = tmp_path / "signoff.db"
    env = base_env(db, SIGNOFF_CONFIG=str(_config(tmp_path, RULES)))
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with anyio.fail_after(60):
        async with http_server(env, tmp_path / "server.log") as url, httpx2.AsyncClient(timeout=30) as http:
            init = await http.post(url, content=json.dumps(INITIALIZE), headers=headers)
            assert init.status_code == 200, init.text
            session = {**headers, "mcp-protocol-version": "2025-11-25"}
            if "mcp-session-id" in init.headers:
                session["mcp-session-id"] = init.headers["mcp-session-id"]
            await http.post(url, content=json.dumps(INITIALIZED), headers=session)
            called = await http.post(url, content=message, headers=session)
    assert called.status_code == 200, called.text
    assert_refused(_json_rpc(called.text))
    assert await _requests(db) == 0


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "signoff.toml"
    path.write_text(text)
    return path


def _json_rpc(body: str) -> dict[str, Any]:
    """The JSON-RPC message in a plain JSON body or in the ``data:`` line of a server-sent event."""
    if body.lstrip().startswith("{"):
        message: dict[str, Any] = json.loads(body)
        return message
    data = [line[5:].strip() for line in body.splitlines() if line.startswith("data:") and line[5:].strip()]
    return json.loads(data[-1])  # type: ignore[no-any-return]


async def _requests(db: Path) -> int:
    from signoff.storage.approvals.sqlite import SqliteStore

    store = await SqliteStore.open(db)
    try:
        return len((await store.list_requests(RequestQuery())).items)
    finally:
        await store.close()


# --- finding 4: a person's "no" is not undone by asking again ---------------------------------------------------

EXPORT = {"action": "data.export_customers", "summary": "Export all customers", "agent_id": "etl-bot"}


async def test_asking_again_after_a_person_rejects_still_needs_a_person(tmp_path: Path) -> None:
    both = Both(tmp_path, ANOMALY)
    async with Client(both.server) as client:
        first = (await client.call_tool("request_approval", {**EXPORT, "confidence": 0.99})).structured_content
        assert first is not None and first["status"] == "pending"
        assert "first request for action data.export_customers" in details(first)
        await both.service.vote(first["request_id"], "alice", Verdict.REJECT, "no exports this week")
        again = (await client.call_tool("request_approval", {**EXPORT, "confidence": 0.99})).structured_content
    assert again is not None and again["status"] == "pending", again
    assert "first request for action data.export_customers from agent 'etl-bot'" in details(again)
    draft = Draft(**EXPORT, payload={}, confidence=0.99)  # type: ignore[arg-type]
    assert (await both.service.request_approval(draft)).status is Status.PENDING


async def test_asking_again_after_cancelling_still_needs_a_person(tmp_path: Path) -> None:
    both = Both(tmp_path, ANOMALY)
    async with Client(both.server) as client:
        first = (await client.call_tool("request_approval", {**EXPORT, "confidence": 0.99})).structured_content
        assert first is not None and first["status"] == "pending"
        cancelled = await client.call_tool("cancel_request", {"request_id": first["request_id"], "reason": "oops"})
        assert not cancelled.is_error
        again = (await client.call_tool("request_approval", {**EXPORT, "confidence": 0.99})).structured_content
    assert again is not None and again["status"] == "pending", again


async def test_once_a_person_approves_the_action_is_known_and_policy_may_approve_it(tmp_path: Path) -> None:
    both = Both(tmp_path, ANOMALY)
    async with Client(both.server) as client:
        first = (await client.call_tool("request_approval", {**EXPORT, "confidence": 0.99})).structured_content
        assert first is not None
        await both.service.vote(first["request_id"], "alice", Verdict.APPROVE, None)
        again = (await client.call_tool("request_approval", {**EXPORT, "confidence": 0.99})).structured_content
    assert again is not None and again["status"] == "approved", again
