"""Repeated JSON keys: the transport check marks a tools/call, the server middleware refuses it."""

from __future__ import annotations

import json
from pathlib import Path

from mcp import Client

from signoff.server.duplicate_keys import MARK, mark_duplicate_keys
from tests.unit.test_mcp_tools import history, make_server

CALL = '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"request_approval","arguments":%s}}'


def test_a_repeated_key_at_any_depth_is_marked_with_the_last_value_kept() -> None:
    raw = CALL % '{"action":"a","payload":{"to":{"iban":"X","iban":"Y"},"amount":20000,"amount":5}}'
    marked = json.loads(mark_duplicate_keys(raw))
    assert marked["params"]["_meta"] == {MARK: ["amount", "iban"]}
    assert marked["params"]["arguments"]["payload"] == {"to": {"iban": "Y"}, "amount": 5}


def test_other_messages_pass_as_they_came() -> None:
    clean = CALL % '{"action":"a","payload":{"amount":5}}'
    for raw in (
        clean,
        '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"a":1,"a":2}}',  # not a tool call
        '{"method":"tools/call", not json',  # the SDK reports its own parse error
    ):
        assert mark_duplicate_keys(raw) is raw


async def test_a_marked_call_is_refused_before_the_tool_runs(tmp_path: Path) -> None:
    server, store, _ = make_server(tmp_path)
    async with Client(server) as client:
        result = await client.call_tool("request_approval", {"action": "a.b", "summary": "s"}, meta={MARK: ["amount"]})
    assert result.is_error
    assert result.content[0].text.startswith(  # type: ignore[union-attr]
        "request_approval was refused: its JSON repeats the key 'amount' within one object"
    )
    assert await history(store) == ((), [])


def test_a_method_spelt_with_json_escapes_is_still_a_tools_call() -> None:
    """``tools\\/call`` and ``tools\\u002fcall`` are ``tools/call`` to every JSON reader (review R3)."""
    for method in ("tools\\/call", "tools\\u002fcall", "\\u0074ools/call"):
        raw = (CALL % '{"action":"a","payload":{"amount":20000,"amount":5}}').replace("tools/call", method)
        assert json.loads(mark_duplicate_keys(raw))["params"]["_meta"] == {MARK: ["amount"]}, method
