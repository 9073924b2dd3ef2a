"""Two `signoff serve --transport http --stateless` replicas on one database, behind the shipped nginx config
(examples/nginx/signoff.conf, round robin): an agent's session lands on both, a CLI vote wakes an agent waiting
through the proxy, and the outbox and the sweeper do their work once (test_resume: `kill -9` of the replica serving
a waiting agent loses nothing). On SQLite (one machine) and on PostgreSQL."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from aiohttp import web
from anyio.abc import Process
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from tests.integration.proxy import REPLICA_HEADER, Proxy, nginx
from tests.integration.support import (
    Progress,
    ask,
    base_env,
    http_process,
    signoff,
    status_of,
    wait_during,
    webhook_receiver,
)

pytestmark = pytest.mark.slow


@dataclass(slots=True)
class Replica:
    port: int
    proc: Process
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@asynccontextmanager
async def replica(env: Mapping[str, str], log: Path, *options: str) -> AsyncIterator[Replica]:
    """``signoff serve --transport http`` with ``options`` on a free port; stopped (SIGTERM) afterwards if alive."""
    async with http_process(env, log, *options, deadline=60) as (port, proc):
        yield Replica(port, proc, log)


@asynccontextmanager
async def deployment(
    env: Mapping[str, str], tmp: Path, *, stateless: bool = True
) -> AsyncIterator[tuple[list[Replica], Proxy]]:
    """Two replicas (``--stateless`` unless told otherwise) on the same database, started one after the other (the
    first migrates it), and nginx in front."""
    options = ("--stateless",) if stateless else ()
    async with AsyncExitStack() as stack:
        replicas = [await stack.enter_async_context(replica(env, tmp / f"replica-{n}.log", *options)) for n in (1, 2)]
        proxy = await stack.enter_async_context(nginx(tmp / "nginx", [r.port for r in replicas]))
        yield replicas, proxy


@dataclass(slots=True)
class Landed:
    """An httpx2 response hook: which replica (nginx's X-Signoff-Replica header) answered each MCP request."""

    replicas: list[str] = field(default_factory=list)
    waits: list[str] = field(default_factory=list)  #: the replicas that answered a call with wait_seconds

    async def __call__(self, response: httpx2.Response) -> None:
        served = response.headers.get(REPLICA_HEADER)
        if served and response.request.method == "POST":
            address = served.split(", ")[-1]  # nginx lists every replica it tried; the last one answered
            self.replicas.append(address)
            if b'"wait_seconds"' in response.request.content:
                self.waits.append(address)


@asynccontextmanager
async def agent(proxy: Proxy, landed: Landed) -> AsyncIterator[Client]:
    """An MCP client through the proxy with the 2025 initialize handshake (mode="legacy"): the mode whose sessions a
    stateful server keeps in its memory, which is what a round-robin proxy breaks without --stateless."""
    timeout = httpx2.Timeout(30.0, read=300.0)
    async with (
        httpx2.AsyncClient(timeout=timeout, event_hooks={"response": [landed]}) as http,
        Client(streamable_http_client(f"{proxy.url}/mcp", http_client=http), mode="legacy") as client,
    ):
        yield client


def env_for(database: str, **extra: str) -> dict[str, str]:
    """The replicas' and the CLI's environment: SIGNOFF_DB as given (a file, or a postgresql:// URL kept whole)."""
    return {**base_env(Path(), SIGNOFF_SWEEP_INTERVAL="0.2", **extra), "SIGNOFF_DB": database}


async def test_one_agent_session_lands_on_both_replicas(database: str, tmp_path: Path) -> None:
    landed = Landed()
    with anyio.fail_after(180):
        async with deployment(env_for(database), tmp_path) as (replicas, proxy), agent(proxy, landed) as client:
            created = await ask(client, confidence=0.3)
            assert created["status"] == "pending"
            for _ in range(6):
                seen = status_of(await client.call_tool("get_status", {"request_id": created["request_id"]}))
                assert seen["status"] == "pending" and seen["payload_sha256"] == created["payload_sha256"]
            listed = await client.call_tool("list_requests", {})
            assert not listed.is_error and created["request_id"] in str(listed.structured_content), listed.content
            async with Client(f"{proxy.url}/mcp") as default_client:  # the SDK's default mode works through it too
                for _ in range(3):
                    seen = status_of(
                        await default_client.call_tool("get_status", {"request_id": created["request_id"]})
                    )
                    assert seen["status"] == "pending"
            async with httpx2.AsyncClient() as browser:  # the web console is pinned: one address, one replica
                pages = [await browser.get(f"{proxy.url}/") for _ in range(4)]
            assert all(page.status_code < 500 for page in pages), [page.status_code for page in pages]
    assert set(landed.replicas) == {r.address for r in replicas}, landed.replicas
    engine = "postgresql://signoff@" if database.startswith("postgresql://") else database
    assert all(engine in r.log.read_text() for r in replicas)  # the database each replica says it serves
    served = {address for method, path, _, address in proxy.served() if method == "POST" and path == "/mcp"}
    assert served == {r.address for r in replicas}, proxy.served()
    console = {address for method, path, _, address in proxy.served() if method == "GET" and path == "/"}
    assert len(console) == 1, proxy.served()
    assert all(status in {"200", "202"} for method, _, status, _ in proxy.served() if method == "POST"), proxy.served()


async def test_without_stateless_a_round_robin_proxy_breaks_the_session(tmp_path: Path) -> None:
    """Why --stateless: a stateful replica keeps the session its initialize made, and the next request of that
    session, sent to the other replica by round robin, gets 404 "Session not found"."""
    landed = Landed()
    with anyio.fail_after(120):
        async with deployment(env_for(str(tmp_path / "signoff.db")), tmp_path, stateless=False) as (_, proxy):
            with pytest.raises(Exception) as failed:  # whatever the SDK wraps the 404 in
                async with agent(proxy, landed) as client:
                    for _ in range(4):
                        listed = await client.call_tool("list_requests", {})
                        assert not listed.is_error, listed.content
    assert "Session not found" in repr(failed.value) or "404" in repr(failed.value), repr(failed.value)
    assert any(status == "404" for _, _, status, _ in proxy.served()), proxy.served()


async def test_a_cli_vote_wakes_an_agent_waiting_through_the_proxy(database: str, tmp_path: Path) -> None:
    env = env_for(database)
    landed = Landed()
    with anyio.fail_after(180):
        async with deployment(env, tmp_path) as (_, proxy), agent(proxy, landed) as client:
            request_id = (await ask(client, confidence=0.3))["request_id"]
            waited, voted = await wait_during(
                client, request_id, lambda: signoff(env, "review", "approve", request_id, "--as", "alice")
            )
    assert voted.returncode == 0, voted
    assert waited.status["status"] == "approved", waited.status
    assert waited.status["votes"][0]["reviewer"] == "alice"
    assert waited.progress.updates, "the wait sent no progress notification through the proxy"
    assert len(landed.waits) == 1


async def test_a_request_approval_cut_off_mid_wait_is_found_again_by_its_idempotency_key(
    database: str, tmp_path: Path
) -> None:
    """The agent has no request id yet when the replica dies inside request_approval's wait: it retries with the
    same idempotency_key (as the tool's description says) and gets the same request, never a second one."""
    env = env_for(database)
    landed = Landed()
    arguments = {
        "action": "payments.transfer",
        "summary": "Pay invoice 1042 to ACME Ltd",
        "payload": {"amount": 120, "currency": "EUR", "to": "ACME Ltd"},
        "confidence": 0.3,
        "agent_id": "billing-bot",
        "idempotency_key": "invoice-1042",
    }
    with anyio.fail_after(240):
        async with deployment(env, tmp_path) as (replicas, proxy), agent(proxy, landed) as client:
            progress = Progress()
            broken: list[CallToolResult | BaseException] = []

            async def wait() -> None:
                try:
                    waiting = {**arguments, "wait_seconds": 120}
                    broken.append(await client.call_tool("request_approval", waiting, progress_callback=progress))
                except Exception as exc:
                    broken.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await progress.first.wait()
                [serving] = [r for r in replicas if r.address == landed.waits[-1]]
                serving.proc.send_signal(signal.SIGKILL)
                await serving.proc.wait()
            [outcome] = broken  # resumed on the survivor, which does not make a request twice: it says what to do
            assert isinstance(outcome, BaseException) or outcome.is_error, outcome
            assert "idempotency_key" in str(outcome), outcome

            again = [status_of(await client.call_tool("request_approval", arguments)) for _ in range(3)]
            assert len({a["request_id"] for a in again}) == 1 and again[0]["status"] == "pending", again
            listed = await signoff(env, "review", "list", "--json")
            assert listed.returncode == 0, listed
            assert [r["request_id"] for r in json.loads(listed.stdout)] == [again[0]["request_id"]], listed


async def test_two_replicas_deliver_each_notification_once_and_expire_each_request_once(
    database: str, tmp_path: Path
) -> None:
    count = 6
    received: list[tuple[str, str, str]] = []  # (request id, event, delivery id)
    all_expired = anyio.Event()

    async def hook(request: web.Request) -> web.Response:
        document: dict[str, Any] = json.loads(await request.read())
        event = document["event"]
        received.append((document["request"]["request_id"], event, request.headers["X-Signoff-Delivery"]))
        if sum(1 for _, e, _ in received if e == "request.expired") >= count:
            all_expired.set()
        return web.Response(status=204)

    landed = Landed()
    with anyio.fail_after(240):
        async with webhook_receiver(hook) as url:
            env = env_for(database, SIGNOFF_WEBHOOK_URL=url, SIGNOFF_WEBHOOK_SECRET="whsec-replicas")
            async with deployment(env, tmp_path) as (replicas, proxy):
                async with agent(proxy, landed) as client:
                    ids = [
                        (await ask(client, confidence=0.3, expires_in_seconds=1))["request_id"] for _ in range(count)
                    ]
                await all_expired.wait()
            # both replicas are stopped now: nothing more can be sent, so the counts below are final
    assert set(landed.replicas) == {r.address for r in replicas}, landed.replicas
    by_request = {rid: sorted(e for r, e, _ in received if r == rid) for rid in ids}
    assert by_request == {rid: ["request.expired", "request.pending"] for rid in ids}, received
    assert len({d for _, _, d in received}) == len(received), received  # no delivery made twice
    assert {rid for rid, _, _ in received} == set(ids)
