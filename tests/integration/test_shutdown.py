"""SIGINT and SIGTERM stop `signoff serve` (stdio and HTTP): every waiting call is answered first with the request
as it stands and a message to ask again; then the process exits with 0, one stopping line and no traceback."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import mcp_types
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client
from mcp.client._transport import TransportStreams
from mcp.shared.message import SessionMessage

from tests.integration.support import REPO, SIGNOFF, Progress, ask, free_port, status_of, wait_for_port

pytestmark = pytest.mark.slow

SIGNALS = [signal.SIGINT, signal.SIGTERM]


def assert_stopped_cleanly(proc: Process, log: Path, sig: signal.Signals) -> None:
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "Traceback" not in text, text
    assert text.count("signoff stopping") == 1, text
    assert f"signoff stopping: {sig.name}" in text, text


def assert_told_to_ask_again(status: dict[str, Any], request_id: str) -> None:
    assert status["request_id"] == request_id
    assert status["status"] == "pending"
    assert "stopping" in status["message"], status["message"]
    assert f"call get_status with request_id={request_id} again" in status["message"], status["message"]


@asynccontextmanager
async def stdio_process(env: dict[str, str], log: Path) -> AsyncIterator[Process]:
    """`signoff serve` over stdio as a child whose pid the test knows (to signal it); connect with ``over(proc)``."""
    with log.open("wb") as err:
        proc = await anyio.open_process(
            [str(SIGNOFF), "serve"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=REPO
        )
    async with proc:
        try:
            yield proc
        finally:
            with anyio.CancelScope(shield=True):
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


@asynccontextmanager
async def over(proc: Process) -> AsyncIterator[TransportStreams]:
    """An MCP client transport over the child's stdin and stdout (what the SDK's stdio_client does)."""
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, BufferedByteReceiveStream(proc.stdout)
    to_client, from_server = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    to_server, from_client = anyio.create_memory_object_stream[SessionMessage](0)

    async def read() -> None:
        async with to_client:
            while True:
                try:
                    line = await stdout.receive_until(b"\n", 1 << 24)
                except (anyio.IncompleteRead, anyio.EndOfStream):
                    return
                await to_client.send(SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(line)))

    async def write() -> None:
        async with from_client:
            async for message in from_client:
                await stdin.send(message.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n")

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read)
        tasks.start_soon(write)
        yield from_server, to_server
        tasks.cancel_scope.cancel()


@asynccontextmanager
async def http_process(env: dict[str, str], log: Path) -> AsyncIterator[tuple[Process, str]]:
    port = free_port()
    with log.open("wb") as out:
        proc = await anyio.open_process(
            [str(SIGNOFF), "serve", "--transport", "http", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=REPO,
        )
    async with proc:
        try:
            await wait_for_port(port, proc, log)
            yield proc, f"http://127.0.0.1:{port}/mcp"
        finally:
            with anyio.CancelScope(shield=True):
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


async def wait_with_sdk_client(client: Client, request_id: str, progress: Progress) -> dict[str, Any]:
    result = await client.call_tool(
        "get_status", {"request_id": request_id, "wait_seconds": 60}, progress_callback=progress
    )
    return status_of(result)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
async def test_a_signal_answers_the_waiting_stdio_call_then_exits_0(
    env: dict[str, str], tmp_path: Path, sig: signal.Signals
) -> None:
    log = tmp_path / "server.log"
    with anyio.fail_after(60):
        async with stdio_process(env, log) as proc, Client(over(proc)) as client:
            request_id = (await ask(client, confidence=0.2))["request_id"]
            progress = Progress()
            answers: list[dict[str, Any]] = []

            async def waiter() -> None:
                answers.append(await wait_with_sdk_client(client, request_id, progress))

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(waiter)
                await progress.first.wait()  # the server is waiting
                proc.send_signal(sig)
            await proc.wait()
    assert_told_to_ask_again(answers[0], request_id)
    assert_stopped_cleanly(proc, log, sig)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
async def test_an_idle_stdio_server_stops_on_the_first_signal(
    env: dict[str, str], tmp_path: Path, sig: signal.Signals
) -> None:
    log = tmp_path / "server.log"
    with anyio.fail_after(60):
        async with stdio_process(env, log) as proc, Client(over(proc)) as client:
            await client.list_tools()  # serving, stdin open and idle
            proc.send_signal(sig)
            await proc.wait()
    assert_stopped_cleanly(proc, log, sig)


async def raw_wait(url: str, request_id: str, waiting: anyio.Event) -> dict[str, Any]:
    """get_status(wait_seconds=60) as bare JSON-RPC over HTTP: initialize, then the call with a progress token;
    ``waiting`` is set at the first progress notification. Returns the call's structured result."""
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
    }
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=90)) as http:
        async with http.post(url, json=initialize, headers=headers) as response:
            assert response.status == 200, await response.text()
            headers["Mcp-Session-Id"] = response.headers["Mcp-Session-Id"]
            headers["Mcp-Protocol-Version"] = "2025-11-25"
            await response.read()
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        async with http.post(url, json=initialized, headers=headers) as response:
            assert response.status == 202, await response.text()
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {
                "name": "get_status",
                "arguments": {"request_id": request_id, "wait_seconds": 60},
                "_meta": {"progressToken": "p"},
            },
        }
        async with http.post(url, json=call, headers=headers) as response:
            assert response.status == 200, await response.text()
            async for raw in response.content:
                line = raw.decode().strip()
                if not line.startswith("data:") or not line[5:].strip():
                    continue
                message = json.loads(line[5:])
                if message.get("method") == "notifications/progress":
                    waiting.set()
                elif message.get("id") == 2:
                    assert "result" in message, message
                    content: dict[str, Any] = message["result"]["structuredContent"]
                    return content
    raise AssertionError("the server closed the stream without answering the call")


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
async def test_a_signal_answers_waiting_http_calls_then_exits_0(
    env: dict[str, str], tmp_path: Path, sig: signal.Signals
) -> None:
    log = tmp_path / "server.log"
    answers: dict[str, dict[str, Any]] = {}
    with anyio.fail_after(60):
        async with http_process(env, log) as (proc, url), Client(url) as client:
            request_id = (await ask(client, confidence=0.2))["request_id"]
            sdk_progress, raw_waiting = Progress(), anyio.Event()

            async def sdk() -> None:
                answers["sdk"] = await wait_with_sdk_client(client, request_id, sdk_progress)

            async def raw() -> None:
                answers["raw"] = await raw_wait(url, request_id, raw_waiting)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(sdk)
                tasks.start_soon(raw)
                await sdk_progress.first.wait()
                await raw_waiting.wait()  # both calls are waiting in the server
                proc.send_signal(sig)
            await proc.wait()
    assert_told_to_ask_again(answers["sdk"], request_id)
    assert_told_to_ask_again(answers["raw"], request_id)
    assert_stopped_cleanly(proc, log, sig)
