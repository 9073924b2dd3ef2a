"""Evidence for an open finding (see README "Open findings"): why the review path loses throughput under load.

Writes the same pending requests with 32 concurrent tasks in one process, four ways:

- ``store``: ``SqliteStore.create_request`` (one transaction = about 11 aiosqlite round trips to its thread,
  all under the store's write lock);
- ``raw-multi-hop``: ``RawWriter`` (BEGIN, the INSERTs, COMMIT: 7 round trips) under an ``anyio.Lock``;
- ``raw-one-hop``: the same statements in one function run on a worker thread, one round trip per transaction;
- ``raw-one-hop-grouped``: like ``raw-one-hop``, but each round trip commits every request waiting at that
  moment in one transaction (group commit: one fsync for many requests).

Also prints the latency of one aiosqlite round trip (``SELECT 1``). With ``--busy``, 8 more tasks keep the
event loop busy the way concurrent HTTP requests do (0.1 ms of CPU, then a yield, over and over: about
1 ms per turn of the loop), so every round trip waits for its turn on the loop.
Run: ``python -m bench.probe_writes [--busy]``.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from bench import samples
from bench.config import Config
from bench.rawdb import RawWriter, RowSet, rowsets
from bench.stats import percentile
from storage import SqliteStore
from storage import queries as q
from tools.lifecycle import creation_events

CONCURRENCY = 32
PER_TASK = 40
BUSY_TASKS = 8


def _write_sync(conn: sqlite3.Connection, batch: list[RowSet]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    for rows in batch:
        conn.execute(q.INSERT_REQUEST, rows.request)
        conn.execute(q.INSERT_AGENT_ACTION, rows.agent_action)
        conn.executemany(q.INSERT_ACTION_VALUE, rows.action_values)
        conn.executemany(q.INSERT_EVENT, rows.events)
        if rows.outbox is not None:
            conn.execute(q.INSERT_OUTBOX, rows.outbox)
    conn.execute("COMMIT")


def _sync_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in ("busy_timeout = 30000", "journal_mode = WAL", "synchronous = FULL", "foreign_keys = ON"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


async def _concurrently(write: Callable[[int], Awaitable[None]]) -> float:
    """Requests per second when CONCURRENCY tasks each write PER_TASK requests."""

    async def task(t: int) -> None:
        for k in range(PER_TASK):
            await write(t * PER_TASK + k)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for t in range(CONCURRENCY):
            tg.start_soon(task, t)
    return CONCURRENCY * PER_TASK / (time.perf_counter() - start)


def _burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def _busy_loop(stop: anyio.Event) -> None:
    while not stop.is_set():
        _burn(0.0001)
        await anyio.sleep(0)


async def main(busy: bool) -> None:
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        if busy:
            for _ in range(BUSY_TASKS):
                tg.start_soon(_busy_loop, stop)
        try:
            await measure(busy)
        finally:
            stop.set()
            shutil.rmtree(Config(quick=True, history_rows=0).scratch("probe"), ignore_errors=True)


async def measure(busy: bool) -> None:
    cfg = Config(quick=True, history_rows=0)
    workdir = cfg.scratch("probe")
    n = CONCURRENCY * PER_TASK
    rates: dict[str, float] = {}

    requests = await samples.requests_as_built(n, samples.NEEDS_REVIEW)
    store = await SqliteStore.open(workdir / "store.db")

    async def via_store(i: int) -> None:
        await store.create_request(requests[i], creation_events(requests[i]), notify=True)

    rates["store"] = await _concurrently(via_store)
    await store.close()

    multi = list(rowsets(await samples.requests_as_built(n, samples.NEEDS_REVIEW)))
    writer = await RawWriter.open(workdir / "multi.db")
    lock = anyio.Lock()

    async def multi_hop(i: int) -> None:
        async with lock:
            await writer.write(multi[i])

    rates["raw-multi-hop"] = await _concurrently(multi_hop)
    hops = []
    for _ in range(500):
        start = time.perf_counter()
        async with writer.db.execute("SELECT 1") as cur:
            await cur.fetchall()
        hops.append(time.perf_counter() - start)
    await writer.close()

    single = list(rowsets(await samples.requests_as_built(n, samples.NEEDS_REVIEW)))
    await (await RawWriter.open(workdir / "one.db")).close()  # schema via the migrations
    conn = _sync_connection(workdir / "one.db")

    async def one_hop(i: int) -> None:
        async with lock:
            await anyio.to_thread.run_sync(_write_sync, conn, [single[i]])

    rates["raw-one-hop"] = await _concurrently(one_hop)
    conn.close()

    grouped_rows = list(rowsets(await samples.requests_as_built(n, samples.NEEDS_REVIEW)))
    await (await RawWriter.open(workdir / "grouped.db")).close()
    conn = _sync_connection(workdir / "grouped.db")
    waiting: list[tuple[RowSet, anyio.Event]] = []

    async def grouped(i: int) -> None:
        done = anyio.Event()
        waiting.append((grouped_rows[i], done))
        async with lock:
            if not done.is_set():
                batch = waiting[:]
                waiting.clear()
                await anyio.to_thread.run_sync(_write_sync, conn, [rows for rows, _ in batch])
                for _, event in batch:
                    event.set()
        await done.wait()

    rates["raw-one-hop-grouped"] = await _concurrently(grouped)
    conn.close()

    load = f", event loop kept busy by {BUSY_TASKS} CPU tasks" if busy else ""
    print(f"{CONCURRENCY} concurrent writers, {n} pending requests each way{load}:")
    for name, rate in rates.items():
        print(f"  {name:<22} {rate:8.0f} requests/s")
    p50, p99 = percentile(hops, 50) * 1000, percentile(hops, 99) * 1000
    print(f"one aiosqlite round trip (SELECT 1): p50 {p50:.3f} ms, p99 {p99:.3f} ms")


if __name__ == "__main__":
    anyio.run(main, "--busy" in sys.argv[1:])
