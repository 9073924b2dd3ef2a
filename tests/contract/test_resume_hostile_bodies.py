"""A waiting call is kept for resumption only as the UTF-8 text it was sent as: ``json.loads`` also reads UTF-16,
UTF-32 and a byte-order mark, which the kept text could not stand for (the ASCII of UTF-16 is UTF-8 full of NULs,
which PostgreSQL refuses; UTF-16-BE with a non-ASCII character is no UTF-8 at all). Such a call is served as it
would be without resumability, unrecorded, on every engine: never a server error (review R6)."""

from __future__ import annotations

import json

import pytest
from starlette.types import Message, Receive, Scope, Send

from signoff.server.resume import Keeper, Resumable, parse_event_id
from signoff.storage.streams import Streams

CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "get_status", "arguments": {"request_id": "req_x", "wait_seconds": 5, "note": "é"}},
}
ANSWER = b'{"jsonrpc":"2.0","id":1,"result":{"content":[]}}'


async def served(streams: Streams, body: bytes) -> tuple[list[bytes], bytes]:
    """The bodies the MCP app was given, and the response sent: the call served by an app that answers it on SSE."""
    reached: list[bytes] = []

    async def mcp_app(scope: Scope, receive: Receive, send: Send) -> None:  # stands for the SDK's app
        reached.append((await receive())["body"])
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"event: message\r\ndata: " + ANSWER + b"\r\n\r\n"})

    keeper = Keeper(streams)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/mcp",
        "headers": [(b"mcp-protocol-version", b"2025-11-25"), (b"content-type", b"application/json")],
        "query_string": b"",
    }
    sent: list[Message] = []
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await Resumable(mcp_app, lambda: keeper)(scope, receive, send)
    return reached, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def primed_key(response: bytes) -> str | None:
    """The stream key of the priming event that makes a call resumable, if the response opens with one."""
    first = response.split(b"\r\n", 1)[0]
    return parse_event_id(first.removeprefix(b"id: ").decode()) if first.startswith(b"id: ") else None


async def test_a_utf8_waiting_call_is_kept_as_sent(streams: Streams) -> None:
    body = json.dumps(CALL, ensure_ascii=False).encode()
    reached, response = await served(streams, body)
    assert reached == [body]
    key = primed_key(response)
    assert key is not None
    kept = await streams.stream(key)
    assert kept is not None and kept.response == ANSWER.decode()  # kept (its request is forgotten once answered)


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(CALL).encode("utf-16-le"),  # ASCII in UTF-16: valid UTF-8 full of NULs
        json.dumps(CALL, ensure_ascii=False).encode("utf-16-be"),  # é in UTF-16: not UTF-8
        json.dumps(CALL, ensure_ascii=False).encode("utf-32"),
        json.dumps(CALL).encode("utf-8-sig"),  # a byte-order mark the kept text could not be parsed with
    ],
    ids=["utf-16-le", "utf-16-be", "utf-32", "utf-8-bom"],
)
async def test_a_waiting_call_that_is_not_plain_utf8_is_served_unrecorded(streams: Streams, body: bytes) -> None:
    reached, response = await served(streams, body)
    assert reached == [body]  # the MCP app answers it as it would without resumability
    assert primed_key(response) is None and ANSWER in response
