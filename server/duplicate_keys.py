"""Refuse a tool call whose JSON repeats a key within one object (``{"amount": 20000, "amount": 5}``).

JSON parsers disagree on which of two equal keys wins: Python and pydantic keep the last, others keep the first.
signoff's policy would judge ``amount = 5`` while a tool that parses the same text another way pays 20000. The MCP
SDK parses each message before any signoff code sees it (with pydantic, which keeps the last key silently), so
the check sits where raw JSON enters, in front of the SDK:

- stdio: ``CheckedLines`` is the stdin ``signoff.server.stopping.serve_stdio`` hands the SDK: it checks each line;
- streamable HTTP: ``DuplicateKeysASGI`` checks the body of a POST to the MCP endpoint.

Both only *mark* a ``tools/call`` whose JSON has a repeated key (under ``params._meta``) and pass it on; the server
middleware ``RejectDuplicateKeys`` answers a marked call with a tool error naming the keys, before the tool runs,
so nothing is recorded. One refusal for every transport, in the same place as the unknown-argument check.

Cost: a message is parsed a second time, with Python's C parser, only when its text contains ``tools/call`` or a
backslash (JSON lets a client spell the method ``tools\\/call`` or ``tools\\u002fcall``, which every reader decodes to
``tools/call``: only text without any escape can be judged by its letters); the rare message with a repeated key
is re-encoded once. Other messages pass untouched.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from mcp.types import CallToolResult, TextContent
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MARK = "io.github.signoff/duplicate-keys"  #: in ``params._meta``: the keys a tools/call repeated


def mark_duplicate_keys(raw: str) -> str:
    """``raw`` unchanged, unless it is a ``tools/call`` whose JSON repeats a key in an object: then the same
    message (each repeated key once, its last value) with the repeated keys listed under ``params._meta``."""
    if "tools/call" not in raw and "\\" not in raw:  # a tools/call names its method, spelt so or with an escape
        return raw
    repeated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(items)
        if len(found) != len(items):  # rare: only then look for which keys repeat
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    repeated.append(key)
                seen.add(key)
        return found

    try:
        message = json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return raw  # not JSON: the SDK answers with its own parse error
    if not repeated:
        return raw
    keys = sorted(set(repeated))
    for item in message if isinstance(message, list) else [message]:
        if isinstance(item, dict) and item.get("method") == "tools/call" and isinstance(item.get("params"), dict):
            meta = item["params"].get("_meta")
            item["params"]["_meta"] = {**(meta if isinstance(meta, dict) else {}), MARK: keys}
    return json.dumps(message, ensure_ascii=False)


def duplicate_keys_message(tool: str, keys: list[str]) -> str:
    shown = ", ".join(repr(k) for k in keys)
    return (
        f"{tool} was refused: its JSON repeats the key {shown} within one object, and JSON readers disagree on which "
        "value counts, so signoff cannot know what would run. Nothing was done. Send each key once."
    )


class RejectDuplicateKeys:
    """Server middleware (``MCPServer.middleware``): a ``tools/call`` marked by a transport check is an error."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params
        if ctx.method == "tools/call" and params is not None:
            meta = params.get("_meta")
            keys = meta.get(MARK) if isinstance(meta, Mapping) else None
            if keys:
                text = duplicate_keys_message(str(params.get("name")), [str(k) for k in keys])
                return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
        return await call_next(ctx)


class CheckedLines:
    """stdin for the SDK's ``stdio_server``: the same lines, tools/calls with repeated keys marked."""

    def __init__(self, lines: AsyncIterable[str]) -> None:
        self._lines = lines

    async def __aiter__(self) -> AsyncIterator[str]:
        async for line in self._lines:
            yield mark_duplicate_keys(line)


class DuplicateKeysASGI:
    """ASGI middleware for the streamable HTTP app: marks repeated keys in POST bodies sent to ``path``.

    A body is read whole (the SDK reads it whole too) up to the SDK's own size limit; a larger body is passed on
    as it came, for the SDK to refuse.
    """

    def __init__(self, app: ASGIApp, path: str = "/mcp", limit: int = DEFAULT_MAX_REQUEST_BODY_SIZE) -> None:
        self.app, self.path, self.limit = app, path.rstrip("/"), limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != self.path:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more, last = 0, True, None
        while more and size <= self.limit:
            message = await receive()
            if message["type"] != "http.request":
                last = message  # the client went away: pass that on after what was read
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if not more and last is None:
            text = body.decode("utf-8", errors="replace")
            if (marked := mark_duplicate_keys(text)) is not text:
                body = marked.encode()
                headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
                scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        replay: list[Message] = [{"type": "http.request", "body": body, "more_body": more}]
        if last is not None:
            replay.append(last)

        async def replayed() -> Message:
            return replay.pop(0) if replay else await receive()

        await self.app(scope, replayed, send)
