"""Figure 9: signoff on PostgreSQL: the cost of a call, waking an agent across replicas, and scaling to two.

A throwaway PostgreSQL cluster (``tests/pg_cluster.py``: Debian's server binaries, a unix socket, ``fsync=off``
as in the tests, so the durable write costs what the driver and the server cost, not the disk) holds one database.

- **9a** Subject: an auto-decided ``request_approval`` through the in-memory MCP client on the server
  ``build_server`` returns for the PostgreSQL URL. Floor: a tool on the same server that does one raw
  ``INSERT`` + ``COMMIT`` through the same driver (psycopg 3, its own connection): the MCP round trip plus the
  smallest durable write. Two more rows split the call: the request's create transaction alone
  (``pg_create.create`` on the rows one warm-up call wrote, renamed per call, on a no-op tool, into a second
  database of the same schema: signoff's write with none of its other Python), and the call against that
  (signoff's Python around its write). The three tools run in a shuffled order each round.
- **9b** Two real ``signoff serve --transport http`` processes on the database. An agent (over HTTP, on replica A)
  waits in ``get_status``; once its first progress notification says it waits, after a random 0-50 ms a
  reviewer's ``POST /api/requests/{id}/votes`` goes to replica B. Latency: from just before the vote is sent
  until ``get_status`` returns (an upper bound: it includes the vote's own HTTP round trip). Floor: the same vote
  sent to replica A, the agent's own replica (woken in-process). Interleaved.
- **9c** Auto-decided creates per second by 16 agents over HTTP, all on replica A, then spread over A and B,
  alternating 4-second phases; reported, with the CPU each process used (two cores serve the load generator, both
  replicas and PostgreSQL alike, so this shows what a second replica costs and adds here, not what two machines
  would do).
"""

from __future__ import annotations

import dataclasses
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psycopg
from anyio.abc import Process
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from bench import samples
from bench.config import REPO, Config
from bench.floor_tools import BARE_CREATE, NOOP_PLUS_WRITE, add_noop_plus_write
from bench.report import Check, FigureResult, Row, Target
from bench.stats import percentile, summary_ms
from signoff.server.app import build_server
from signoff.server.auth import new_token
from signoff.server.config import Settings
from signoff.storage import ApprovalRequest
from signoff.storage.approvals import pg_create
from signoff.storage.audit import EncodedEvent
from signoff.storage.pg_db import migrate
from signoff.tools.approvals.service import new_request_id
from tests.pg_cluster import Cluster, start_cluster

AGENT_TOKEN, AGENT_SHA = new_token()
REVIEWER_TOKEN, REVIEWER_SHA = new_token()
CONFIG = f"""
[[auth.tokens]]
identity = "{samples.AGENT}"
role = "agent"
sha256 = "{AGENT_SHA}"

[[auth.tokens]]
identity = "{samples.REVIEWER}"
role = "reviewer"
sha256 = "{REVIEWER_SHA}"
"""
MAX_DELAY_MS = 50.0
CLIENTS = 16


def _ok(result: CallToolResult, status: str | None = None) -> dict[str, Any]:
    if result.is_error:
        raise RuntimeError(f"tool call failed: {result.content}")
    content = result.structured_content or {}
    if status is not None and content.get("status") != status:
        raise RuntimeError(f"expected status {status!r}, got {content}")
    return content


# -- 9a ------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class CreateWrite:
    """The arguments one auto-decided ``request_approval`` passed to ``pg_create.create`` (its request, its rows'
    statements, its encoded events, whether it checks the agent did not ask the same before), captured in passing
    during the warm-up: the exact write signoff makes."""

    request: ApprovalRequest
    inserts: Sequence[tuple[str, Sequence[object]]]
    encoded: Sequence[EncodedEvent]
    asked_check: bool = False

    def renamed(self, new_id: str) -> tuple[ApprovalRequest, list[tuple[str, Sequence[object]]], list[EncodedEvent]]:
        """The same write for a request called ``new_id``: every statement, row and event as before."""
        old = self.request.id
        inserts = [(sql, tuple(new_id if p == old else p for p in params)) for sql, params in self.inserts]
        encoded = [
            EncodedEvent(e.kind, new_id, e.at, e.data.replace(old, new_id), e.hashed_tail.replace(old, new_id))
            for e in self.encoded
        ]
        return dataclasses.replace(self.request, id=new_id), inserts, encoded


@contextmanager
def capturing_creates(into: list[CreateWrite]) -> Iterator[None]:
    """Record the arguments of every ``pg_create.create`` call while inside (the call itself runs unchanged)."""
    original = pg_create.create

    async def recording(
        conn: Any,
        head: pg_create.ChainHead,
        request: ApprovalRequest,
        inserts: Sequence[tuple[str, Sequence[object]]],
        encoded: Sequence[EncodedEvent],
        refuse_approval_if_asked_before: bool = False,
    ) -> Any:
        into.append(CreateWrite(request, list(inserts), list(encoded), refuse_approval_if_asked_before))
        return await original(conn, head, request, inserts, encoded, refuse_approval_if_asked_before)

    pg_create.create = recording  # type: ignore[assignment]
    try:
        yield
    finally:
        pg_create.create = original  # type: ignore[assignment]


async def call_cost(cfg: Config, url: str, bare_url: str, workdir: Path) -> tuple[list[Row], dict[str, Any]]:
    warmup, count = cfg.pick(200, 50), cfg.pick(1500, 300)
    floor_conn = await psycopg.AsyncConnection.connect(url)
    await floor_conn.execute("CREATE TABLE bench_floor (id bigserial PRIMARY KEY, body text NOT NULL)")
    await floor_conn.commit()
    bare_conn = await psycopg.AsyncConnection.connect(bare_url, autocommit=True)
    await migrate(bare_conn)
    bare_head = pg_create.ChainHead()
    captured: list[CreateWrite] = []

    async def write() -> None:
        await floor_conn.execute("INSERT INTO bench_floor (body) VALUES (%s)", (f"row {time.perf_counter_ns()}",))
        await floor_conn.commit()

    async def write_bare() -> None:
        request, inserts, encoded = captured[-1].renamed(new_request_id())
        async with bare_head.turn:
            await pg_create.create(bare_conn, bare_head, request, inserts, encoded, captured[-1].asked_check)

    server = build_server(Settings(db_path=workdir / "unused.db", db_url=url))
    add_noop_plus_write(server, write)
    add_noop_plus_write(server, write_bare, name=BARE_CREATE)
    tools = {"subject": "request_approval", "floor": NOOP_PLUS_WRITE, "bare": BARE_CREATE}
    times: dict[str, list[float]] = {kind: [] for kind in tools}
    try:
        async with Client(server) as client:
            with capturing_creates(captured):
                for i in range(warmup):
                    _ok(await client.call_tool("request_approval", samples.arguments(i, samples.AUTO_APPROVED)))
            for i in range(warmup + count):
                kinds = list(tools)
                random.Random(i).shuffle(kinds)
                for kind in kinds:
                    start = time.perf_counter()
                    _ok(
                        await client.call_tool(tools[kind], samples.arguments(i, samples.AUTO_APPROVED)),
                        "approved" if kind == "subject" else None,
                    )
                    if i >= warmup:
                        times[kind].append(time.perf_counter() - start)
    finally:
        await floor_conn.close()
        await bare_conn.close()
    subject, floor, bare = times["subject"], times["floor"], times["bare"]
    rows = [
        Row(
            figure="9a",
            what="auto-decided request_approval on PostgreSQL, p50",
            unit="ms",
            measured=percentile(subject, 50) * 1000,
            floor=percentile(floor, 50) * 1000,
            target=Target(Check.RATIO_AT_MOST, 1.5),
        ),
        Row(
            figure="9a",
            what="  same, p99",
            unit="ms",
            measured=percentile(subject, 99) * 1000,
            floor=percentile(floor, 99) * 1000,
        ),
        Row(
            figure="9a",
            what="  a request's create transaction alone, p50",
            unit="ms",
            measured=percentile(bare, 50) * 1000,
            floor=percentile(floor, 50) * 1000,
            note="pg_create.create with a captured request's rows, on the floor's no-op tool",
        ),
        Row(
            figure="9a",
            what="  request_approval vs its create transaction alone, p50",
            unit="ms",
            measured=percentile(subject, 50) * 1000,
            floor=percentile(bare, 50) * 1000,
            note="the ratio is signoff's own Python around its write",
        ),
    ]
    details = {
        "calls_per_kind": count,
        "subject": summary_ms(subject),
        "floor": summary_ms(floor),
        "create_transaction_alone": summary_ms(bare),
    }
    return rows, details


# -- the replicas ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Replica:
    name: str
    base: str
    process: Process

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def replica(name: str, url: str, workdir: Path) -> AsyncIterator[Replica]:
    """``signoff serve --transport http`` on the database, its log in the scratch folder."""
    port = _free_port()
    log = workdir / f"{name}.log"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(workdir)),
        "SIGNOFF_DB": url,
        "SIGNOFF_CONFIG": str(workdir / "signoff.toml"),
        "SIGNOFF_PROGRESS_INTERVAL": "5",
        "SIGNOFF_LOG_LEVEL": "WARNING",
    }
    command = [str(Path(sys.executable).parent / "signoff"), "serve", "--transport", "http", "--port", str(port)]
    with log.open("wb") as out:
        process = await anyio.open_process(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO))
    try:
        with anyio.fail_after(60):
            while True:
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", port)
                except OSError:
                    if process.returncode is not None:
                        raise RuntimeError(f"replica {name} exited:\n{log.read_text()}") from None
                    await anyio.sleep(0.05)
                else:
                    await stream.aclose()
                    break
        yield Replica(name, f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        with anyio.move_on_after(15):
            await process.wait()
        if process.returncode is None:
            process.kill()


@asynccontextmanager
async def agent(base: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {AGENT_TOKEN}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=120.0)) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
    ):
        yield client


# -- 9b ------------------------------------------------------------------------------------------------------


async def cross_replica_wake(cfg: Config, a: Replica, b: Replica) -> tuple[list[Row], dict[str, Any]]:
    warmup, count = cfg.pick(10, 5), cfg.pick(200, 40)
    rng = random.Random(9)
    latency: dict[str, list[float]] = {"subject": [], "floor": []}
    headers = {"Authorization": f"Bearer {REVIEWER_TOKEN}"}
    async with agent(a.base) as client, httpx2.AsyncClient(headers=headers, timeout=30.0) as reviewer:

        async def decide(i: int, voter: Replica) -> float:
            created = _ok(await client.call_tool("request_approval", samples.arguments(i, samples.NEEDS_REVIEW)))
            request_id = created["request_id"]
            waiting = anyio.Event()
            answer: dict[str, Any] = {}

            async def progress(progress: float, total: float | None, message: str | None) -> None:
                waiting.set()

            async def wait() -> None:
                result = await client.call_tool(
                    "get_status", {"request_id": request_id, "wait_seconds": 30}, progress_callback=progress
                )
                answer["returned"] = time.perf_counter()
                answer["status"] = (result.structured_content or {}).get("status")
                waiting.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await waiting.wait()
                await anyio.sleep(rng.uniform(0, MAX_DELAY_MS) / 1000)
                sent = time.perf_counter()
                voted = await reviewer.post(
                    f"{voter.base}/api/requests/{request_id}/votes", json={"verdict": "approve"}
                )
                if voted.status_code != 200:
                    raise RuntimeError(f"the vote on {voter.name} answered {voted.status_code}: {voted.text}")
            if answer.get("status") != "approved":
                raise RuntimeError(f"get_status answered {answer} for {request_id}")
            return float(answer["returned"]) - sent

        for i in range(warmup + count):
            for kind in ("subject", "floor") if i % 2 == 0 else ("floor", "subject"):
                seconds = await decide(2 * i + (kind == "floor"), b if kind == "subject" else a)
                if i >= warmup:
                    latency[kind].append(seconds)
    subject, floor = latency["subject"], latency["floor"]
    rows = [
        Row(
            figure="9b",
            what="vote on replica B -> get_status waiting on A returns, p50",
            unit="ms",
            measured=percentile(subject, 50) * 1000,
            floor=percentile(floor, 50) * 1000,
            target=Target(Check.BELOW, 50, "ms"),
        ),
        Row(
            figure="9b",
            what="  same, p99",
            unit="ms",
            measured=percentile(subject, 99) * 1000,
            floor=percentile(floor, 99) * 1000,
            target=Target(Check.BELOW, 250, "ms"),
        ),
    ]
    details = {
        "decisions_per_kind": count,
        "cross_replica": summary_ms(subject),
        "same_replica_floor": summary_ms(floor),
        "vote_delay_ms": f"uniform 0-{MAX_DELAY_MS:g}",
    }
    return rows, details


# -- 9c ------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Phase:
    replicas: int
    calls: int = 0
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


async def scaling(cfg: Config, a: Replica, b: Replica) -> tuple[list[Row], dict[str, Any]]:
    seconds, rounds = cfg.pick(4.0, 2.0), cfg.pick(3, 1)
    counter = iter(range(20_000_000, 30_000_000))
    phases: list[Phase] = []
    async with AsyncExitStack() as stack:
        on_a = [await stack.enter_async_context(agent(a.base)) for _ in range(CLIENTS)]
        on_b = [await stack.enter_async_context(agent(b.base)) for _ in range(CLIENTS // 2)]
        spread = on_a[: CLIENTS // 2] + on_b

        async def phase(clients: list[Client], replicas: int) -> Phase:
            result = Phase(replicas)
            cpu_before = {r.name: r.cpu_seconds() for r in (a, b)}
            deadline = time.perf_counter() + seconds

            async def loop(client: Client) -> None:
                while time.perf_counter() < deadline:
                    arguments = samples.arguments(next(counter), samples.AUTO_APPROVED)
                    _ok(await client.call_tool("request_approval", arguments), "approved")
                    result.calls += 1

            started = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for client in clients:
                    tg.start_soon(loop, client)
            result.seconds = time.perf_counter() - started
            result.cpu = {r.name: round(r.cpu_seconds() - cpu_before[r.name], 2) for r in (a, b)}
            return result

        await phase(spread, 2)  # warm-up: every session, both replicas
        for i in range(rounds):
            order = [(on_a, 1), (spread, 2)] if i % 2 == 0 else [(spread, 2), (on_a, 1)]
            for clients, replicas in order:
                phases.append(await phase(clients, replicas))
    one = sorted(p.rate for p in phases if p.replicas == 1)
    two = sorted(p.rate for p in phases if p.replicas == 2)
    one_rate, two_rate = one[len(one) // 2], two[len(two) // 2]
    rows = [
        Row(
            figure="9c",
            what=f"creates/s, {CLIENTS} agents over HTTP, 2 replicas (floor: 1)",
            unit="/s",
            measured=two_rate,
            floor=one_rate,
        ),
    ]
    details = {
        "clients": CLIENTS,
        "phase_seconds": seconds,
        "phases": [
            {"replicas": p.replicas, "rate": round(p.rate, 1), "calls": p.calls, "cpu_seconds": p.cpu} for p in phases
        ],
        "cpus": os.cpu_count(),
    }
    return rows, details


async def run(cfg: Config) -> FigureResult:
    workdir = cfg.scratch("fig9")
    (workdir / "signoff.toml").write_text(CONFIG)
    cluster: Cluster = await anyio.to_thread.run_sync(start_cluster)
    try:
        call_rows, call_details = await call_cost(cfg, cluster.new_database(), cluster.new_database(), workdir)
        url = cluster.new_database()
        async with replica("A", url, workdir) as a, replica("B", url, workdir) as b:
            wake_rows, wake_details = await cross_replica_wake(cfg, a, b)
            scale_rows, scale_details = await scaling(cfg, a, b)
    finally:
        await anyio.to_thread.run_sync(cluster.stop)
    return FigureResult(
        rows=call_rows + wake_rows + scale_rows,
        details={"9a": call_details, "9b": wake_details, "9c": scale_details, "postgresql": str(cluster.bin_dir)},
    )
