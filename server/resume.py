"""Long waits that survive a dropped connection: MCP resumability for /mcp, kept in the database (sql/0017).

A waiting tool call (``get_status`` or ``request_approval`` with ``wait_seconds``) over streamable HTTP gets a stream
(``storage.streams``): its SSE response opens with a priming event whose id names the stream and whose ``retry`` tells
the client how soon to reconnect. While the call runs this process refreshes the stream's ``alive_at``; the call's
final JSON-RPC response is kept before it is sent. A client whose stream ends without the response (the connection
dropped, the server died) sends ``GET /mcp`` with ``Last-Event-ID`` — through a proxy, to any replica — and gets:

- the kept response, if there is one;
- else, while the owner lives, the response as soon as the owner keeps it;
- else (the owner is gone) a ``get_status`` run again here as the same caller, waiting what is left of its wait;
- else (a ``request_approval`` whose owner died unanswered; not run twice, it is not idempotent) a JSON-RPC error that
  tells the agent to call ``list_requests`` or retry with its idempotency key.

An id that is malformed, unknown, expired or another caller's gets a plain HTTP 400 or 404 before any stream opens.

This is the MCP wire protocol of resumability done here rather than through the SDK's ``EventStore``: in stateless
mode (replicas) the SDK's session manager gives its per-request transports no event store, and the SDK calls
``replay_events_after`` after the 200 is sent, when a refusal can no longer be an HTTP error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import secrets
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signoff.storage.errors import StorageError
from signoff.storage.streams import Stream, Streams

logger = logging.getLogger(__name__)

RETRY_MS = 500  #: the priming event's ``retry``: how soon a client reconnects after its stream ends
HEARTBEAT_SECONDS = 1.0  #: how often an owner refreshes its streams' ``alive_at``
STALE_SECONDS = 5.0  #: an owner silent this long is gone (covers clock skew between hosts of a second or two)
KEEP = timedelta(hours=1)  #: streams older than this are deleted (the longest wait is shorter)
KEEPALIVE_SECONDS = 10.0  #: a comment on a resumed stream this often, so proxies keep it open
MAX_CAPTURED_BODY = 64 * 1024  #: a waiting call's request bigger than this is served, but not resumable
MAX_RESPONSE = 1024 * 1024  #: a final response bigger than this is sent, but not kept
MAX_EVENT_ID = 64  #: a Last-Event-ID longer than this is refused unread
WAITING_TOOLS = frozenset({"get_status", "request_approval"})
FIRST_RESUMABLE_VERSION = "2025-11-25"  #: older clients do not read the priming event

_EVENT_ID = re.compile(r"([A-Za-z0-9_-]{22})\.0")
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]

Now = Callable[[], datetime]


def new_key() -> str:
    return secrets.token_urlsafe(16)  # 22 characters, 128 random bits


def event_id(key: str) -> str:
    return f"{key}.0"


def parse_event_id(text: str) -> str | None:
    """The stream key in a Last-Event-ID this server gave out, or None for anything else."""
    if len(text) > MAX_EVENT_ID:
        return None
    found = _EVENT_ID.fullmatch(text)
    return found.group(1) if found else None


def waiting_call(body: bytes) -> tuple[str, str | int, float] | None:
    """``(tool, JSON-RPC id, wait_seconds)`` when ``body`` is one ``tools/call`` of a waiting tool that waits."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the parser goes
        return None
    if not isinstance(message, dict) or message.get("method") != "tools/call":
        return None
    request_id, params = message.get("id"), message.get("params")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int) or not isinstance(params, dict):
        return None
    tool, arguments = params.get("name"), params.get("arguments")
    if tool not in WAITING_TOOLS or not isinstance(arguments, dict):
        return None
    wait = arguments.get("wait_seconds")
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 < wait < math.inf:
        return None
    return str(tool), request_id, float(wait)


def storable_text(body: bytes) -> str | None:
    """``body`` as the text a stream keeps, or None when it cannot be kept as sent: not UTF-8 (``json.loads`` also
    reads UTF-16, UTF-32 and a byte-order mark, which ``json.loads`` of the kept text would refuse; the ASCII of
    UTF-16 is UTF-8 full of NULs), or holding a NUL, which PostgreSQL does not store. Such a call is served
    unrecorded: the MCP app answers it as it would without resumability."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text or text.startswith("\ufeff") else text


def final_message(data: bytes, request_id: str | int) -> bool:
    """Whether an SSE event's data is the response (or error) to ``request_id``."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return False
    return isinstance(message, dict) and message.get("id") == request_id and ("result" in message or "error" in message)


def event_data(event: bytes) -> bytes | None:
    lines = [line for line in re.split(rb"\r\n|\n|\r", event) if line.startswith(b"data:")]
    if not lines:
        return None
    return b"\n".join(line[5:].removeprefix(b" ") for line in lines)


def sse_message(data: str) -> bytes:
    return b"event: message\r\ndata: " + data.encode() + b"\r\n\r\n"


def principal(scope: Scope) -> str | None:
    user = scope.get("user")
    return user.access_token.client_id if isinstance(user, AuthenticatedUser) else None


def process_name() -> str:
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(4)}"


def rpc_error(request_id: str | int, message: str) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32603, "message": message}})


class _Recorder:
    """The ``send`` of a waiting call: primes its SSE stream and keeps its final response before sending it."""

    def __init__(
        self, send: Send, streams: Streams, key: str, request_id: str | int, *, priming: bool, forward_start: bool
    ) -> None:
        self.send, self.streams, self.key, self.request_id = send, streams, key, request_id
        self.priming, self.forward_start = priming, forward_start
        self.sse = False
        self.status = 0
        self.answered = False
        self._buffer = b""

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            content_type = Headers(raw=message.get("headers", [])).get("content-type", "")
            self.sse = self.status == 200 and content_type.startswith("text/event-stream")
            if self.forward_start:
                await self.send(message)
            if self.sse and self.priming:
                priming = f"id: {event_id(self.key)}\r\nretry: {RETRY_MS}\r\ndata: \r\n\r\n".encode()
                await self.send({"type": "http.response.body", "body": priming, "more_body": True})
            return
        if message["type"] == "http.response.body" and self.sse and not self.answered:
            await self._look_for_answer(message.get("body", b""))
        if self.forward_start:
            await self.send(message)
        elif self.sse:  # a run for a resumed stream: the resumed stream's own end follows
            await self.send({**message, "more_body": True})

    async def _look_for_answer(self, chunk: bytes) -> None:
        self._buffer += chunk
        *events, self._buffer = _EVENT_END.split(self._buffer)
        for event in events:
            data = event_data(event)
            if data is not None and final_message(data, self.request_id):
                self.answered = True
                if len(data) <= MAX_RESPONSE:
                    with anyio.CancelScope(shield=True), _logged(StorageError):  # the answer goes out regardless
                        await self.streams.finish(self.key, data.decode())
                return
        if len(self._buffer) > MAX_RESPONSE:  # no event ends in sight: stop looking
            self.answered, self._buffer = True, b""


class Resumable:
    """ASGI: /mcp with resumable waiting calls. Sits inside the bearer-auth check, so ``scope["user"]`` is known."""

    def __init__(self, app: ASGIApp, keeper_of: Callable[[], Keeper | None]) -> None:
        self.app = app
        self.keeper_of = keeper_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        keeper = self.keeper_of() if scope["type"] == "http" else None
        if keeper is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        last_event_id = headers.get("last-event-id")
        if scope["method"] == "GET" and last_event_id is not None:
            await self._resume(keeper, last_event_id, scope, receive, send)
        elif scope["method"] == "POST" and headers.get("mcp-protocol-version", "") >= FIRST_RESUMABLE_VERSION:
            await self._post(keeper, scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _post(self, keeper: Keeper, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[Message] = []
        size, more = 0, True
        while more and size <= MAX_CAPTURED_BODY:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            more = bool(message.get("more_body", False))

        async def replayed() -> Message:
            return chunks.pop(0) if chunks else await receive()

        body = b"".join(m.get("body", b"") for m in chunks if m["type"] == "http.request")
        call = None if more else waiting_call(body)
        request = None if call is None else storable_text(body)
        if call is None or request is None:
            await self.app(scope, replayed, send)
            return
        tool, request_id, _ = call
        now = keeper.now()
        stream = Stream(
            key=new_key(),
            principal=principal(scope),
            tool=tool,
            request=request,
            owner=keeper.owner,
            alive_at=now,
            created_at=now,
        )
        try:
            await keeper.streams.open_stream(stream)
        except StorageError as exc:  # served, but not resumable; the call itself reports the database's state
            logger.warning("a waiting call is not resumable: %s", exc.message)
            await self.app(scope, replayed, send)
            return
        recorder = _Recorder(send, keeper.streams, stream.key, request_id, priming=True, forward_start=True)
        await self._serve(keeper, stream.key, recorder, scope, replayed)

    async def _serve(self, keeper: Keeper, key: str, recorder: _Recorder, scope: Scope, receive: Receive) -> None:
        """Run the call, its stream kept alive meanwhile; an unanswered end lets a reconnect take it over at once."""
        keeper.serving += 1
        try:
            await self.app(scope, receive, recorder)
        finally:
            keeper.serving -= 1
            if not recorder.answered:
                with anyio.CancelScope(shield=True), _logged(StorageError):
                    await keeper.streams.stop(key, keeper.owner)

    async def _resume(self, keeper: Keeper, last_event_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        key = parse_event_id(last_event_id)
        if key is None:
            await _refuse(send, 400, "Bad Request: Last-Event-ID is not an event id this server gave")
            return
        stream = await keeper.streams.stream(key)
        if stream is None or stream.principal != principal(scope):
            await _refuse(
                send, 404, "Not Found: no stream with this Last-Event-ID for this caller (unknown or expired)"
            )
            return
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        gone = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                gone.set()
                tg.cancel_scope.cancel()

            tg.start_soon(watch_disconnect)
            await self._follow(keeper, key, scope, gone, send)
            tg.cancel_scope.cancel()
        with contextlib.suppress(OSError):  # the client left
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _follow(self, keeper: Keeper, key: str, scope: Scope, gone: anyio.Event, send: Send) -> None:
        quiet_since = anyio.current_time()
        while True:
            stream = await keeper.streams.stream(key)
            if stream is None:
                return  # deleted while followed (an hour old): the client's next reconnect gets a 404
            if stream.response is not None:
                await _body(send, sse_message(stream.response))
                return
            now = keeper.now()
            stale_before = now - timedelta(seconds=STALE_SECONDS)
            owner_gone = stream.alive_at is None or stream.alive_at < stale_before
            if owner_gone and await keeper.streams.claim(key, keeper.owner, now, stale_before):
                await self._answer_for_the_gone_owner(keeper, stream, scope, gone, send)
                return
            if anyio.current_time() - quiet_since >= KEEPALIVE_SECONDS:
                await _body(send, b": keepalive\r\n\r\n")
                quiet_since = anyio.current_time()
            await anyio.sleep(_poll_interval(stream, now))

    async def _answer_for_the_gone_owner(
        self, keeper: Keeper, stream: Stream, scope: Scope, gone: anyio.Event, send: Send
    ) -> None:
        request = json.loads(stream.request)
        request_id = request["id"]
        if stream.tool != "get_status":
            error = rpc_error(
                request_id,
                "the server handling this request_approval stopped before it answered; the request may or may not"
                " have been made: call list_requests (or request_approval again with the same idempotency_key)"
                " and get_status with its request_id",
            )
            with anyio.CancelScope(shield=True):
                await keeper.streams.finish(stream.key, error)
            await _body(send, sse_message(error))
            return
        elapsed = (keeper.now() - stream.created_at).total_seconds()
        request["params"]["arguments"]["wait_seconds"] = max(
            0.0, request["params"]["arguments"]["wait_seconds"] - elapsed
        )
        body = json.dumps(request).encode()
        logger.info(
            "running get_status again for a reconnected client whose server stopped", extra={"stream": stream.key}
        )
        recorder = _Recorder(send, keeper.streams, stream.key, request_id, priming=False, forward_start=False)
        sent = False

        async def receive_once() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        await self._serve(keeper, stream.key, recorder, _as_post(scope, len(body)), receive_once)
        if not recorder.sse:  # refused before any stream (e.g. the session is gone): say so in the stream's terms
            await _body(
                send, sse_message(rpc_error(request_id, f"resuming failed (HTTP {recorder.status}): call again"))
            )


def _poll_interval(stream: Stream, now: datetime) -> float:
    """How long to wait before looking again: soon while an answer may come, and right when the owner goes stale."""
    if stream.alive_at is None:
        return 0.05
    until_stale = (stream.alive_at + timedelta(seconds=STALE_SECONDS) - now).total_seconds()
    return min(0.25, max(0.05, until_stale))


def _as_post(scope: Scope, length: int) -> Scope:
    """A resuming GET's scope as the POST of its stored request (the same caller, the same MCP session if any)."""
    dropped = {b"last-event-id", b"accept", b"content-type", b"content-length"}
    headers = [(k, v) for k, v in scope["headers"] if k.lower() not in dropped]
    headers += [
        (b"accept", b"application/json, text/event-stream"),
        (b"content-type", b"application/json"),
        (b"content-length", str(length).encode()),
    ]
    return {**scope, "method": "POST", "headers": headers, "query_string": b""}


async def _body(send: Send, chunk: bytes) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": "server-error", "error": {"code": -32600, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _logged:
    """Log (not raise) a storage error: a heartbeat or a mark that fails must not end the call it belongs to."""

    def __init__(self, kind: type[StorageError]) -> None:
        self.kind = kind

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> bool:
        if isinstance(exc, self.kind):
            logger.warning("resumable stream: %s", exc.message)
            return True
        return False


class Keeper:
    """This process's side of the streams: its name as their owner, how many it serves now, and the work that keeps
    them alive (one write a second for all of them, while there are any) and deletes old ones."""

    def __init__(self, streams: Streams, *, now: Now | None = None) -> None:
        self.streams = streams
        self.now: Now = now or (lambda: datetime.now(UTC))
        self.owner = process_name()
        self.serving = 0  #: waiting calls this process runs now

    async def run(self, forget_every: float = 300.0) -> None:
        next_forget = 0.0
        while True:
            with _logged(StorageError):
                if self.serving:
                    await self.streams.keep_alive(self.owner, self.now())
                if anyio.current_time() >= next_forget:
                    next_forget = anyio.current_time() + forget_every
                    if count := await self.streams.delete_before(self.now() - KEEP):
                        logger.debug("deleted %d old resumable stream(s)", count)
            await anyio.sleep(HEARTBEAT_SECONDS)
