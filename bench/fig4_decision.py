"""Figure 4: decision-to-agent latency, a vote committed by another process until a waiting get_status returns.

The measuring process runs the server (in-memory MCP client, SqliteStore file) and calls
``get_status(wait_seconds=30)`` on a pending request. Once the first progress notification says the server
is waiting, ``bench.vote_worker`` (another process, its own SqliteStore on the same file) approves the request
after a random 0-50 ms delay, so votes land at every phase of the store's poll. Latency is
``time.time()`` when ``get_status`` returns minus ``time.time()`` right after the worker's commit.

Only the cross-process path is measured: the server's outbox worker is parked in a notifier that never
returns (so it commits nothing that could wake the waiter in-process), and every sample checks, with
``SqliteStore.change_token()``, that this process committed nothing between the vote and the answer.

Floor: the same, with the vote recorded in the measuring process (woken by the in-process signal).
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client

from bench import samples
from bench.config import REPO, Config
from bench.report import Check, FigureResult, Row, Target
from bench.stats import percentile, summary_ms
from signoff.server.app import build_server
from signoff.server.config import Settings
from signoff.storage import ApprovalRequest, Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.service import ApprovalService

WAIT_SECONDS = 30
MAX_DELAY_MS = 50.0


class ParkedNotifier:
    """Takes the first notification and never returns: the outbox worker stays parked and commits nothing."""

    name = "bench-parked"

    def __init__(self) -> None:
        self.parked = anyio.Event()

    async def deliver(self, request: ApprovalRequest) -> None:
        self.parked.set()
        await anyio.Event().wait()


@dataclass(slots=True)
class Worker:
    process: Process
    lines: BufferedByteReceiveStream

    async def readline(self) -> str:
        return (await self.lines.receive_until(b"\n", 4096)).decode()

    async def vote(self, request_id: str, delay_ms: float) -> float:
        assert self.process.stdin is not None
        await self.process.stdin.send(f"{request_id} {delay_ms:.3f}\n".encode())
        answered_id, committed = (await self.readline()).split()
        assert answered_id == request_id, (answered_id, request_id)
        return float(committed)


async def _start_worker(db: Path) -> Worker:
    process = await anyio.open_process(
        [sys.executable, "-m", "bench.vote_worker", str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=str(REPO),
    )
    assert process.stdout is not None
    worker = Worker(process, BufferedByteReceiveStream(process.stdout))
    with anyio.fail_after(30):
        assert await worker.readline() == "ready"
    return worker


async def run(cfg: Config) -> FigureResult:
    warmup, count = cfg.pick(10, 5), cfg.pick(200, 40)
    workdir = cfg.scratch("fig4")
    db = workdir / "signoff.db"
    store = await SqliteStore.open(db)
    local = ApprovalService(store)
    notifier = ParkedNotifier()
    server = build_server(Settings(db_path=db, progress_interval=60), store=store, notifier=notifier)
    rng = random.Random(4)
    latency: dict[str, list[float]] = {"subject": [], "floor": []}
    woken_in_process = 0
    worker = await _start_worker(db)
    try:
        async with Client(server) as client:
            # the outbox worker claims (a commit in this process) and parks before anything is measured
            await client.call_tool("request_approval", samples.arguments(-1, samples.NEEDS_REVIEW))
            with anyio.fail_after(10):
                await notifier.parked.wait()

            async def decide(i: int, kind: str, measured: bool) -> None:
                nonlocal woken_in_process
                created = await client.call_tool("request_approval", samples.arguments(i, samples.NEEDS_REVIEW))
                request_id = (created.structured_content or {})["request_id"]
                waiting = anyio.Event()
                answer: dict[str, Any] = {}

                async def progress(progress: float, total: float | None, message: str | None) -> None:
                    waiting.set()

                async def wait() -> None:
                    result = await client.call_tool(
                        "get_status",
                        {"request_id": request_id, "wait_seconds": WAIT_SECONDS},
                        progress_callback=progress,
                    )
                    answer["returned"] = time.time()
                    answer["status"] = (result.structured_content or {}).get("status")
                    waiting.set()

                delay_ms = rng.uniform(0, MAX_DELAY_MS)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(wait)
                    await waiting.wait()
                    generation_before = (await store.change_token())[0]
                    if kind == "subject":
                        committed = await worker.vote(request_id, delay_ms)
                    else:
                        await anyio.sleep(delay_ms / 1000)
                        await local.vote(request_id, samples.REVIEWER, Verdict.APPROVE, None)
                        committed = time.time()
                if answer.get("status") != "approved":
                    raise RuntimeError(f"get_status answered {answer} for {request_id}")
                if not measured:
                    return
                if kind == "subject" and (await store.change_token())[0] != generation_before:
                    woken_in_process += 1
                latency[kind].append(answer["returned"] - committed)

            for i in range(warmup + count):
                for kind in ("subject", "floor") if i % 2 == 0 else ("floor", "subject"):
                    await decide(2 * i + (kind == "floor"), kind, measured=i >= warmup)
    finally:
        if worker.process.stdin is not None:
            await worker.process.stdin.aclose()
        with anyio.move_on_after(10):
            await worker.process.wait()
        if worker.process.returncode is None:
            worker.process.kill()
        await store.close()

    if woken_in_process:
        raise RuntimeError(
            f"{woken_in_process} cross-process samples saw an in-process commit; not the data_version path"
        )
    subject, floor = latency["subject"], latency["floor"]
    return FigureResult(
        rows=[
            Row(
                figure="4",
                what="vote in another process -> waiting get_status returns, p50",
                unit="ms",
                measured=percentile(subject, 50) * 1000,
                floor=percentile(floor, 50) * 1000,
                target=Target(Check.BELOW, 100, "ms"),
            ),
            Row(
                figure="4",
                what="  same, p99",
                unit="ms",
                measured=percentile(subject, 99) * 1000,
                floor=percentile(floor, 99) * 1000,
                target=Target(Check.BELOW, 500, "ms"),
            ),
        ],
        details={
            "decisions_per_kind": count,
            "cross_process": summary_ms(subject),
            "cross_process_sorted_ms": [round(x * 1000, 2) for x in sorted(subject)],
            "in_process_floor": summary_ms(floor),
            "cross_process_samples_woken_by_an_in_process_commit": woken_in_process,
            "vote_delay_ms": f"uniform 0-{MAX_DELAY_MS:g}",
        },
    )
