"""Long waits survive a dropped connection (MCP resumability, server/resume.py): two `--stateless` replicas on one
database behind the shipped nginx config. The agent's pending get_status call, made once, returns the verdict after
the replica serving it is killed (`kill -9`) or after its connection is cut: the client reconnects with
Last-Event-ID through the proxy and the survivor answers. On SQLite (one machine) and on PostgreSQL."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream
from mcp import Client
from mcp.types import CallToolResult

from tests.integration.proxy import Proxy
from tests.integration.support import ask, free_port, http_process, signoff, status_of
from tests.integration.test_replicas import Landed, agent, deployment, env_for

pytestmark = pytest.mark.slow


@dataclass(slots=True)
class Heard:
    """A progress_callback that can be waited on for the n-th notification."""

    count: int = 0
    _waiting: dict[int, anyio.Event] = field(default_factory=dict)

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.count += 1
        for n, event in self._waiting.items():
            if self.count >= n:
                event.set()

    async def at_least(self, n: int) -> None:
        if self.count < n:
            await self._waiting.setdefault(n, anyio.Event()).wait()


async def waiting_call(
    client: Client, request_id: str, heard: Heard, into: list[CallToolResult | BaseException]
) -> None:
    try:
        into.append(
            await client.call_tool(
                "get_status", {"request_id": request_id, "wait_seconds": 120}, progress_callback=heard
            )
        )
    except Exception as exc:  # recorded for the assertion to show
        into.append(exc)


def approved_by_alice(outcome: CallToolResult | BaseException) -> dict[str, Any]:
    assert isinstance(outcome, CallToolResult) and not outcome.is_error, outcome
    status = status_of(outcome)
    assert status["status"] == "approved" and status["votes"][0]["reviewer"] == "alice", status
    return status


async def test_the_pending_call_returns_the_verdict_after_its_replica_is_killed(database: str, tmp_path: Path) -> None:
    env = env_for(database)
    landed = Landed()
    with anyio.fail_after(240):
        async with deployment(env, tmp_path) as (replicas, proxy), agent(proxy, landed) as client:
            request_id = (await ask(client, confidence=0.3))["request_id"]
            heard = Heard()
            outcome: list[CallToolResult | BaseException] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiting_call, client, request_id, heard, outcome)
                await heard.at_least(1)  # the replica is waiting for people on the agent's behalf
                [serving] = [r for r in replicas if r.address == landed.waits[-1]]
                serving.proc.send_signal(signal.SIGKILL)
                await serving.proc.wait()
                killed_at = heard.count
                await heard.at_least(killed_at + 1)  # the survivor waits now, for the same call
                voted = await signoff(env, "review", "approve", request_id, "--as", "alice")
                assert voted.returncode == 0, voted
            [answer] = outcome  # the one call the agent made, nothing more
            approved_by_alice(answer)
    [survivor] = [r for r in replicas if r is not serving]
    resumed = [(status, address) for method, path, status, address in proxy.served() if method == "GET"]
    assert ("200", survivor.address) in resumed or ("200", f"{serving.address}, {survivor.address}") in resumed, (
        proxy.served()
    )


class Cutter:
    """A TCP relay in front of the proxy whose open connections can be cut (the network drops, no server dies)."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self._open: set[SocketStream] = set()
        self.connections = 0

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, self._relay)
            yield f"http://127.0.0.1:{self.port}"
            tg.cancel_scope.cancel()

    async def _relay(self, downstream: SocketStream) -> None:
        self.connections += 1
        upstream = await anyio.connect_tcp("127.0.0.1", self.target_port)
        self._open |= {downstream, upstream}
        try:
            async with anyio.create_task_group() as pipes:
                pipes.start_soon(self._pipe, downstream, upstream)
                pipes.start_soon(self._pipe, upstream, downstream)
        finally:
            self._open -= {downstream, upstream}
            with anyio.CancelScope(shield=True):
                await downstream.aclose()
                await upstream.aclose()

    @staticmethod
    async def _pipe(source: SocketStream, sink: SocketStream) -> None:
        try:
            async for chunk in source:
                await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        with anyio.CancelScope(shield=True):
            await sink.aclose()
            await source.aclose()

    async def cut(self) -> None:
        for stream in list(self._open):
            await stream.aclose()


async def test_the_pending_call_returns_the_verdict_after_its_connection_is_cut(database: str, tmp_path: Path) -> None:
    env = env_for(database)
    landed = Landed()
    with anyio.fail_after(240):
        async with deployment(env, tmp_path) as (replicas, proxy):
            cutter = Cutter(int(proxy.url.rsplit(":", 1)[1]))
            async with cutter.running() as url:
                async with agent(Proxy(url=url, access_log=proxy.access_log), landed) as client:
                    request_id = (await ask(client, confidence=0.3))["request_id"]
                    heard = Heard()
                    outcome: list[CallToolResult | BaseException] = []
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(waiting_call, client, request_id, heard, outcome)
                        await heard.at_least(1)
                        await cutter.cut()
                        cut_at = heard.count
                        await heard.at_least(cut_at + 1)  # waiting again, on whichever replica took the reconnect
                        voted = await signoff(env, "review", "approve", request_id, "--as", "alice")
                        assert voted.returncode == 0, voted
                    [answer] = outcome
                    approved_by_alice(answer)
    assert all(r.proc.returncode is None or r.proc.returncode == 0 for r in replicas)
    assert any(method == "GET" and status == "200" for method, _, status, _ in proxy.served()), proxy.served()


async def test_on_one_stateful_server_a_cut_connection_resumes_in_its_session(tmp_path: Path) -> None:
    env = env_for(str(tmp_path / "signoff.db"))
    landed = Landed()
    with anyio.fail_after(120):
        async with http_process(env, tmp_path / "server.log") as (port, _):
            cutter = Cutter(port)
            async with cutter.running() as url, agent(Proxy(url=url, access_log=tmp_path / "none"), landed) as client:
                request_id = (await ask(client, confidence=0.3))["request_id"]
                heard = Heard()
                outcome: list[CallToolResult | BaseException] = []
                async with anyio.create_task_group() as tg:
                    tg.start_soon(waiting_call, client, request_id, heard, outcome)
                    await heard.at_least(1)
                    await cutter.cut()
                    cut_at = heard.count
                    await heard.at_least(cut_at + 1)
                    voted = await signoff(env, "review", "approve", request_id, "--as", "alice")
                    assert voted.returncode == 0, voted
                [answer] = outcome
                approved_by_alice(answer)
