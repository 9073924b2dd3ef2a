"""Figure 1: an auto-decided ``request_approval`` through the in-memory MCP client, against its floor.

Subject: ``request_approval`` (confidence 0.99, no config: the policy approves) on the server
``build_server`` returns, with its own SqliteStore file. Floor: a tool on the same server that does
nothing but one raw durable write of the same rows (``bench_noop_plus_write``). The parts of the floor,
the bare no-op call and the bare write, are measured too and kept in the JSON. The four are
interleaved call by call, in a rotating order, so drift of the shared disk hits them alike.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from mcp import Client
from mcp.types import CallToolResult

from bench import samples
from bench.config import Config
from bench.floor_tools import NOOP, NOOP_PLUS_WRITE, add_noop, add_noop_plus_write
from bench.rawdb import RawWriter, rowsets
from bench.report import Check, FigureResult, Row, Target
from bench.stats import percentile, summary_ms
from signoff.server.app import build_server
from signoff.server.config import Settings

KINDS = ("subject", "floor", "noop", "write")


def _ok(result: CallToolResult, status: str | None = None) -> None:
    if result.is_error:
        raise RuntimeError(f"tool call failed: {result.content}")
    if status is not None and (result.structured_content or {}).get("status") != status:
        raise RuntimeError(f"expected status {status!r}, got {result.structured_content}")


async def run(cfg: Config) -> FigureResult:
    warmup, count = cfg.pick(200, 100), cfg.pick(2000, 500)
    total = warmup + count
    workdir = cfg.scratch("fig1")
    built = await samples.requests_as_built(2 * total, samples.AUTO_APPROVED, start=10_000_000)
    pending_rows = rowsets(built)
    writer = await RawWriter.open(workdir / "floor.db")

    async def write() -> None:
        await writer.write(next(pending_rows))

    server = build_server(Settings(db_path=workdir / "signoff.db"))
    add_noop(server)
    add_noop_plus_write(server, write)
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    try:
        async with Client(server) as client:

            async def subject(i: int) -> None:
                _ok(await client.call_tool("request_approval", samples.arguments(i, samples.AUTO_APPROVED)), "approved")

            async def floor(i: int) -> None:
                _ok(await client.call_tool(NOOP_PLUS_WRITE, samples.arguments(i, samples.AUTO_APPROVED)))

            async def noop(i: int) -> None:
                _ok(await client.call_tool(NOOP, samples.arguments(i, samples.AUTO_APPROVED)))

            async def bare_write(i: int) -> None:
                await write()

            calls: dict[str, Callable[[int], Awaitable[None]]] = {
                "subject": subject,
                "floor": floor,
                "noop": noop,
                "write": bare_write,
            }
            for i in range(total):
                for kind in KINDS[i % 4 :] + KINDS[: i % 4]:
                    # the check of the answer sits inside the timed call; it costs microseconds
                    start = time.perf_counter()
                    await calls[kind](i)
                    elapsed = time.perf_counter() - start
                    if i >= warmup:
                        times[kind].append(elapsed)
    finally:
        await writer.close()

    p = {kind: (percentile(times[kind], 50) * 1000, percentile(times[kind], 99) * 1000) for kind in KINDS}
    details: dict[str, Any] = {
        "calls_per_kind": count,
        "warmup_per_kind": warmup,
        **{kind: summary_ms(times[kind]) for kind in KINDS},
        "noop_p50_plus_write_p50_ms": p["noop"][0] + p["write"][0],
    }
    return FigureResult(
        rows=[
            Row(
                figure="1",
                what="auto-decided request_approval, in-memory MCP, p50",
                unit="ms",
                measured=p["subject"][0],
                floor=p["floor"][0],
                target=Target(Check.RATIO_AT_MOST, 1.5),
            ),
            Row(
                figure="1",
                what="  same, p99",
                unit="ms",
                measured=p["subject"][1],
                floor=p["floor"][1],
            ),
        ],
        details=details,
    )
