"""Evidence for finding F4 (see bench/README.md): the CPU a review-path ``request_approval`` costs beyond a no-op call.

Figure 2's ratio is, in the end, the ratio of two CPU costs per call on a machine whose two cores are shared by
the server, its writer thread and the load generator. Throughput over HTTP swings with the machine's load; CPU
time per call swings less. This probe measures it in one process: the server ``build_server`` returns (on a
SQLite file, or with ``--memory`` on the in-memory store), the in-memory MCP client, 32 concurrent callers, and
blocks of ``request_approval`` (confidence 0.2: pending, outbox row, the console notifier's delivery) alternating
with blocks of the no-op tool. For each block it reports the process's CPU time per call (every thread: the
event loop, the writer thread, aiosqlite's threads) and, separately, the event loop thread's. The difference
between the two kinds is what signoff's review path costs, including the client's check of the larger result.

Run: ``python -m bench.probe_cpu [--memory] [--blocks 6] [--calls 1500]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from bench import samples
from bench.floor_tools import NOOP, add_noop
from bench.stats import median
from signoff.server.app import build_server
from signoff.server.config import Settings
from signoff.storage.approvals.memory import MemoryStore

CALLERS = 32
SUBJECT = "request_approval"


def _thread_cpu_seconds(tid: int) -> float:
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _block(client: Client, tool: str, calls: int, counter: list[int]) -> tuple[float, float]:
    """CPU ms per call: (the whole process, the event loop's thread)."""
    left = [calls]

    async def caller() -> None:
        while left[0] > 0:
            left[0] -= 1
            counter[0] += 1
            result = await client.call_tool(tool, samples.arguments(counter[0], samples.NEEDS_REVIEW))
            if result.is_error:
                raise RuntimeError(f"{tool} failed: {result.content}")

    process, loop_thread = time.process_time(), _thread_cpu_seconds(os.getpid())
    async with anyio.create_task_group() as tg:
        for _ in range(CALLERS):
            tg.start_soon(caller)
    return (
        (time.process_time() - process) / calls * 1000,
        (_thread_cpu_seconds(os.getpid()) - loop_thread) / calls * 1000,
    )


async def main(memory: bool, blocks: int, calls: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="signoff-probe-cpu-"))
    logging.basicConfig(level=logging.INFO, handlers=[logging.FileHandler(workdir / "server.log")], force=True)
    options: dict[str, Any] = {"store": MemoryStore()} if memory else {}
    server = build_server(Settings(db_path=workdir / "signoff.db"), **options)
    add_noop(server)
    counter = [0]
    results: dict[str, list[tuple[float, float]]] = {NOOP: [], SUBJECT: []}
    async with Client(server) as client:
        for tool in (NOOP, SUBJECT):  # warm-up
            await _block(client, tool, 300, counter)
        for b in range(blocks):
            for tool in (NOOP, SUBJECT) if b % 2 == 0 else (SUBJECT, NOOP):
                results[tool].append(await _block(client, tool, calls, counter))
    print(f"store: {'memory' if memory else 'sqlite'}; {blocks} blocks of {calls} calls each, {CALLERS} callers")
    for tool, rows in results.items():
        total, loop = [r[0] for r in rows], [r[1] for r in rows]
        print(f"{tool:>17}: {median(total):.3f} ms CPU per call (min {min(total):.3f}), event loop {median(loop):.3f}")
    extra = median([r[0] for r in results[SUBJECT]]) - median([r[0] for r in results[NOOP]])
    print(f"review path beyond the no-op: {extra:.3f} ms CPU per call (medians)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.probe_cpu", description=__doc__.splitlines()[0])
    parser.add_argument("--memory", action="store_true", help="the in-memory store instead of a SQLite file")
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--calls", type=int, default=1500)
    args = parser.parse_args()
    anyio.run(main, args.memory, args.blocks, args.calls)
