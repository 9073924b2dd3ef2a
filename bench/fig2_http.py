"""Figure 2: throughput of ``request_approval`` on the review path over streamable HTTP, 32 concurrent clients.

The server is a separate process (``bench.http_server``: the ``signoff serve --transport http`` set-up
plus a no-op tool), so the load generator does not share its interpreter. This process opens 32 MCP
sessions and keeps each busy with one call after another. Subject: ``request_approval`` with confidence
0.2 (pending: a request row, its events and an outbox row, then the server's outbox worker delivers the
notification). Floor: ``bench_noop`` with the same arguments, over the same sessions. Phases of the two
alternate; each kind's throughput is the median over its phases. CPU time of both processes is recorded
per phase, to show which side was the bottleneck.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from mcp import Client

from bench import samples
from bench.config import REPO, Config
from bench.floor_tools import NOOP
from bench.report import Check, FigureResult, Row, Target
from bench.stats import median, summary_ms

CLIENTS = 32
TOOLS = {"subject": "request_approval", "floor": NOOP}


@dataclass(slots=True)
class Phase:
    kind: str
    calls: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _wait_for_port(port: int, process: Process, log: Path) -> None:
    with anyio.fail_after(30):
        while True:
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                if process.returncode is not None:
                    raise RuntimeError(f"bench.http_server exited:\n{log.read_text()}") from None
                await anyio.sleep(0.05)
            else:
                await stream.aclose()
                return


async def _phase(clients: list[Client], kind: str, seconds: float, pid: int, counter: list[int]) -> Phase:
    phase = Phase(kind)
    tool = TOOLS[kind]
    confidence = samples.NEEDS_REVIEW
    deadline = time.perf_counter() + seconds

    async def loop(client: Client) -> None:
        while time.perf_counter() < deadline:
            counter[0] += 1
            start = time.perf_counter()
            result = await client.call_tool(tool, samples.arguments(counter[0], confidence))
            phase.latencies.append(time.perf_counter() - start)
            if result.is_error or (kind == "subject" and (result.structured_content or {}).get("status") != "pending"):
                raise RuntimeError(f"{tool} failed: {result.content}")
            phase.calls += 1

    server_cpu, client_cpu, start = _cpu_seconds(pid), time.process_time(), time.perf_counter()
    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(loop, client)
    phase.seconds = time.perf_counter() - start
    phase.server_cpu = (_cpu_seconds(pid) - server_cpu) / phase.seconds
    phase.client_cpu = (time.process_time() - client_cpu) / phase.seconds
    return phase


async def run(cfg: Config) -> FigureResult:
    rounds, seconds = cfg.pick(4, 2), cfg.pick(5.0, 2.0)
    workdir = cfg.scratch("fig2")
    port = _free_port()
    log = cfg.results_dir / "http-server.log"
    phases: list[Phase] = []
    counter = [0]
    with log.open("wb") as out:
        process = await anyio.open_process(
            [sys.executable, "-m", "bench.http_server", str(workdir / "signoff.db"), str(port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=str(REPO),
        )
        try:
            await _wait_for_port(port, process, log)
            async with AsyncExitStack() as stack:
                clients = [
                    await stack.enter_async_context(Client(f"http://127.0.0.1:{port}/mcp")) for _ in range(CLIENTS)
                ]
                for kind in ("floor", "subject"):  # warm-up, not counted
                    await _phase(clients, kind, 1.5, process.pid, counter)
                for r in range(rounds):
                    for kind in ("floor", "subject") if r % 2 == 0 else ("subject", "floor"):
                        phases.append(await _phase(clients, kind, seconds, process.pid, counter))
        finally:
            process.terminate()
            with anyio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()

    by_kind = {kind: [p for p in phases if p.kind == kind] for kind in TOOLS}
    rate = {kind: median([p.rate for p in ps]) for kind, ps in by_kind.items()}
    details: dict[str, Any] = {
        "clients": CLIENTS,
        "phase_seconds": seconds,
        "phases": [
            {
                "kind": p.kind,
                "calls": p.calls,
                "calls_per_s": round(p.rate, 1),
                "server_cpu_cores": round(p.server_cpu, 2),
                "client_cpu_cores": round(p.client_cpu, 2),
            }
            for p in phases
        ],
        **{f"{kind}_latency": summary_ms([x for p in ps for x in p.latencies]) for kind, ps in by_kind.items()},
    }
    return FigureResult(
        rows=[
            Row(
                figure="2",
                what=f"request_approval (review path) over HTTP, {CLIENTS} clients",
                unit="calls/s",
                measured=rate["subject"],
                floor=rate["floor"],
                target=Target(Check.RATIO_AT_LEAST, 0.7),
            )
        ],
        details=details,
    )
