"""Figure 8: the web console with 1,000 pending requests: the queue page rendered, and a change reaching an open page.

(8a) Render: the queue page's handler (``pages.queue``: bring the console's queue up to date, build the rows,
render the template) for a signed-in reviewer, called in-process on an SQLite file holding 1,000 pending requests;
p50. Floor: the same 1,000 rows read in full with raw aiosqlite and not decoded. A second row: the first page of a
new console each time, which reads the whole queue (its columns) and builds every row.

(8b) Live update: an open page's live stream (``GET /events`` served by uvicorn in this process, read by an HTTP
client) while another ``SqliteStore`` on the same file (as another process would be: the stream learns of it by
the store's file watch and poll, not the in-process signal) creates a pending request, then approves it, in turn.
Latency: from right after the commit to the stream's next ``event: queue``; p50 and p99. Floor: the same with the
change committed through the console's own store (woken by the in-process signal).
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx2
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request

from bench.config import Config
from bench.report import Check, FigureResult, Row, Target
from bench.stats import percentile, summary_ms
from signoff.server.console import Console, routes
from signoff.server.console import pages as console_pages
from signoff.server.console.security import COOKIE
from signoff.storage import Verdict
from signoff.storage.approvals import queries as q
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.sqlite_db import connect
from signoff.tools.approvals.service import ApprovalService, Draft

PENDING = 1000
RAW_PENDING = f"{q.SELECT_REQUESTS} WHERE r.status = 'pending' ORDER BY r.created_at DESC, r.id DESC"


def draft(n: int) -> Draft:
    payload = {"amount": n, "order": f"A-{n}", "lines": [{"sku": f"s{i}", "qty": i} for i in range(5)]}
    return Draft(action="refunds.issue", summary=f"Refund order A-{n}", payload=payload, agent_id=f"agent-{n % 8}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _queue_events(lines: AsyncIterator[str]) -> None:
    """Return at the next ``event: queue`` line of the stream."""
    async for line in lines:
        if line == "event: queue":
            return
    raise RuntimeError("the live stream ended")


async def run(cfg: Config) -> FigureResult:
    renders, updates = cfg.pick(100, 30), cfg.pick(100, 30)
    path = cfg.scratch("fig8") / "console.db"
    store = await SqliteStore.open(path)
    other = await SqliteStore.open(path)  # "another process": its commits reach the stream by the file watch
    service, elsewhere = ApprovalService(store), ApprovalService(other)
    console = Console(service_of=lambda: service)
    session = console.sessions.sign_in(None, "alice")
    times: dict[str, list[float]] = {"render": [], "render_cold": [], "raw": [], "update": [], "update_floor": []}
    try:
        for n in range(PENDING):
            await service.request_approval(draft(n))
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "query_string": b"",
            "headers": [(b"cookie", f"{COOKIE}={session.id}".encode())],
        }
        raw = await connect(path)
        try:
            for i in range(10 + renders):
                start = time.perf_counter()
                response = await console_pages.queue(console, Request(scope))
                elapsed = time.perf_counter() - start
                assert response.status_code == 200
                cold = Console(service_of=lambda: service)  # a console's first page: the queue read whole
                cold_scope = {
                    **scope,
                    "headers": [(b"cookie", f"{COOKIE}={cold.sessions.sign_in(None, 'a').id}".encode())],
                }
                start = time.perf_counter()
                response = await console_pages.queue(cold, Request(cold_scope))
                cold_elapsed = time.perf_counter() - start
                assert response.status_code == 200
                start = time.perf_counter()
                async with raw.execute(RAW_PENDING) as cur:
                    found = len(await cur.fetchall())
                raw_elapsed = time.perf_counter() - start
                if i >= 10:
                    times["render"].append(elapsed)
                    times["render_cold"].append(cold_elapsed)
                    times["raw"].append(raw_elapsed)
        finally:
            await raw.close()
        assert found == PENDING

        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(Starlette(routes=routes(console)), host="127.0.0.1", port=port, log_level="warning")
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve)
            while not server.started:
                await anyio.sleep(0.01)
            cookies = {COOKIE: session.id}
            async with (
                httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", cookies=cookies, timeout=30) as http,
                http.stream("GET", "/events") as stream,
            ):
                lines = stream.aiter_lines()
                await _queue_events(lines)  # the first snapshot
                for i in range(2 * updates):
                    for label, by in (("update", elsewhere), ("update_floor", service)):
                        made = await by.request_approval(draft(PENDING + i))
                        start = time.perf_counter()
                        await _queue_events(lines)
                        times[label].append(time.perf_counter() - start)
                        await by.vote(made.id, "bob", Verdict.APPROVE, None)
                        start = time.perf_counter()
                        await _queue_events(lines)
                        times[label].append(time.perf_counter() - start)
            server.should_exit = True
    finally:
        await other.close()
        await store.close()

    ms = {label: [s * 1000 for s in samples] for label, samples in times.items()}
    return FigureResult(
        rows=[
            Row(
                figure="8a",
                what=f"console queue page rendered, {PENDING:,} pending, p50",
                unit="ms",
                measured=percentile(ms["render"], 50),
                floor=percentile(ms["raw"], 50),
                target=Target(Check.BELOW, 50, "ms"),
            ),
            Row(
                figure="8a",
                what="  same, a console's first page (the queue read whole), p50",
                unit="ms",
                measured=percentile(ms["render_cold"], 50),
                floor=percentile(ms["raw"], 50),
            ),
            Row(
                figure="8b",
                what="a change in another process reaches an open queue, p50",
                unit="ms",
                measured=percentile(ms["update"], 50),
                floor=percentile(ms["update_floor"], 50),
            ),
            Row(
                figure="8b",
                what="  same, p99",
                unit="ms",
                measured=percentile(ms["update"], 99),
                floor=percentile(ms["update_floor"], 99),
                target=Target(Check.BELOW, 200, "ms"),
            ),
        ],
        details={
            "pending": PENDING,
            "database": str(Path(path).name),
            **{label: summary_ms(samples) for label, samples in times.items()},
        },
    )
