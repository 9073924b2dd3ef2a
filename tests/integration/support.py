"""Helpers for the integration tests: signoff runs as real subprocesses on a real SQLite file.

Nothing here sleeps to wait for something: waits are on an anyio.Event set by a progress notification,
on a process's exit, or on a port accepting connections (with a deadline).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
from aiohttp import web
from anyio.abc import Process
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
MCP_JSON = REPO / "mcp.json"
BIN = Path(sys.executable).parent
SIGNOFF = BIN / "signoff"
TOOL_NAMES = {"request_approval", "get_status", "cancel_request", "list_requests", "permission_prompt"}
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def base_env(db: Path | str, **signoff_vars: str) -> dict[str, str]:
    """The whole environment of a child: a few OS variables, SIGNOFF_DB (a file or a PostgreSQL URL), and the given
    SIGNOFF_* variables.

    Nothing else leaks in (a developer's own SIGNOFF_CONFIG must not change what the tests see).
    """
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    env["SIGNOFF_DB"] = str(db)
    env["SIGNOFF_PROGRESS_INTERVAL"] = "0.2"
    env.update(signoff_vars)
    return env


def stdio_params(env: Mapping[str, str]) -> StdioServerParameters:
    """The server as mcp.json launches it, with ``command`` resolved to this venv's console script."""
    entry = json.loads(MCP_JSON.read_text())["mcpServers"]["signoff"]
    command = BIN / entry["command"]
    assert command.is_file(), f"mcp.json's command {entry['command']!r} is not installed in {BIN}"
    return StdioServerParameters(
        command=str(command),
        args=list(entry["args"]),
        env={**entry.get("env", {}), **env},
        cwd=str(REPO),
    )


@dataclass(frozen=True, slots=True, repr=False)
class Ran:
    """A finished CLI process, its output decoded."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def __repr__(self) -> str:
        return f"signoff {' '.join(self.args)} -> {self.returncode}\nstdout: {self.stdout}\nstderr: {self.stderr}"

    def json(self) -> Any:
        return json.loads(self.stdout)


async def signoff(env: Mapping[str, str], *args: str) -> Ran:
    """Run the ``signoff`` console script in its own process and wait for it to exit."""
    done = await anyio.run_process(
        [str(SIGNOFF), *args], env=dict(env), check=False, stdin=subprocess.DEVNULL, cwd=str(REPO)
    )
    return Ran(args, done.returncode, done.stdout.decode(), done.stderr.decode())


async def signoff_each(env: Mapping[str, str], *commands: tuple[str, ...]) -> list[Ran]:
    """Run several CLI commands at the same time (each is a separate process); results in the given order."""
    results: dict[int, Ran] = {}

    async def one(index: int, args: tuple[str, ...]) -> None:
        results[index] = await signoff(env, *args)

    async with anyio.create_task_group() as tg:
        for index, args in enumerate(commands):
            tg.start_soon(one, index, args)
    return [results[i] for i in range(len(commands))]


def status_of(result: CallToolResult) -> dict[str, Any]:
    """The status object of a successful tool call."""
    assert not result.is_error, f"tool error: {result.content}"
    content: dict[str, Any] | None = result.structured_content
    assert content is not None, f"no structured content: {result.content}"
    return content


async def ask(client: Client, confidence: float | None, **extra: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "action": "payments.transfer",
        "summary": "Pay invoice 1042 to ACME Ltd",
        "payload": {"amount": 120, "currency": "EUR", "to": "ACME Ltd"},
        **extra,
    }
    if confidence is not None:
        arguments["confidence"] = confidence
    return status_of(await client.call_tool("request_approval", arguments))


@dataclass(slots=True)
class Progress:
    """A progress_callback that records notifications and sets ``first`` when one arrives."""

    first: anyio.Event = field(default_factory=anyio.Event)
    updates: list[tuple[float, float | None, str | None]] = field(default_factory=list)

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.updates.append((progress, total, message))
        self.first.set()


@dataclass(slots=True)
class Waited:
    status: dict[str, Any]  #: what get_status returned
    progress: Progress
    seconds_after_action: float  #: from the end of ``during`` to get_status's answer


async def wait_during(
    client: Client, request_id: str, during: Callable[[], Awaitable[T]], wait_seconds: float = 60
) -> tuple[Waited, T]:
    """Call ``get_status(request_id, wait_seconds)``; once its first progress notification arrives (so the
    server is waiting), run ``during`` concurrently; return get_status's answer and what ``during`` returned."""
    progress = Progress()
    answer: list[CallToolResult] = []
    action_done = 0.0

    async def waiter() -> None:
        try:
            answer.append(
                await client.call_tool(
                    "get_status", {"request_id": request_id, "wait_seconds": wait_seconds}, progress_callback=progress
                )
            )
        finally:
            progress.first.set()  # never leave the main task waiting on a call that ended without progress

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await progress.first.wait()
        assert progress.updates, f"get_status answered before any progress notification: {answer}"
        outcome = await during()
        action_done = anyio.current_time()
    return Waited(status_of(answer[0]), progress, anyio.current_time() - action_done), outcome


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_for_port(port: int, proc: Process, log: Path, deadline: float = 20.0, host: str = "127.0.0.1") -> None:
    """Return once ``port`` accepts connections; fail if the process exits first or the deadline passes."""
    with anyio.fail_after(deadline):
        while True:
            try:
                stream = await anyio.connect_tcp(host, port)
            except OSError:
                pass
            else:
                await stream.aclose()
                return
            with anyio.move_on_after(0.05):  # the pause between attempts doubles as a watch on the process
                await proc.wait()
            if proc.returncode is not None:
                raise AssertionError(
                    f"signoff serve exited with {proc.returncode} before listening:\n{log.read_text()}"
                )


@asynccontextmanager
async def http_process(
    env: Mapping[str, str], log: Path, *options: str, host: str = "127.0.0.1", deadline: float = 20.0
) -> AsyncIterator[tuple[int, Process]]:
    """``signoff serve --transport http`` (with ``options``) on a free port, its output in ``log``; yields the port
    and the process once it listens; terminates it afterwards if it is still alive (SIGKILL after 15 s)."""
    port = free_port()
    with log.open("wb") as out:
        proc = await anyio.open_process(
            [str(SIGNOFF), "serve", "--transport", "http", "--host", host, "--port", str(port), *options],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=str(REPO),
        )
        async with proc:
            try:
                await wait_for_port(port, proc, log, deadline=deadline, host=host)
                yield port, proc
            finally:
                with anyio.CancelScope(shield=True):
                    if proc.returncode is None:
                        proc.terminate()
                        with anyio.move_on_after(15):
                            await proc.wait()
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()


@asynccontextmanager
async def http_server(env: Mapping[str, str], log: Path, *options: str, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """``signoff serve --transport http`` (with ``options``) on a free port; yields the MCP URL; terminates it
    afterwards."""
    async with http_process(env, log, *options, host=host) as (port, _):
        yield f"http://{host}:{port}/mcp"


def events(db: Path) -> list[tuple[Any, ...]]:
    """Every row of the audit log, read with the stdlib driver."""
    with closing(sqlite3.connect(db)) as conn:
        query = "SELECT seq, kind, request_id, at, data, prev_hash, hash FROM events ORDER BY seq"
        return conn.execute(query).fetchall()


@asynccontextmanager
async def webhook_receiver(
    handle: Callable[[web.Request], Awaitable[web.Response]],
) -> AsyncIterator[str]:
    """An HTTP server on 127.0.0.1 answering ``POST /hook`` with ``handle``; yields the hook's URL."""
    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()
