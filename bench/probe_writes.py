"""Evidence for finding F1 (see bench/README.md): how the way a transaction is written decides throughput under load.

Writes the same pending requests with 32 concurrent tasks in one process, four ways:

- ``store``: ``SqliteStore.create_request`` (since F1's fix: its transaction's body in one call on the writer
  connection's thread, grouped with every write waiting at that moment; before it: about 11 aiosqlite round
  trips to the connection's thread, all under the store's write lock);
- ``raw-multi-hop``: ``AiosqliteRawWriter`` (BEGIN, the INSERTs, COMMIT: 7 round trips) under an ``anyio.Lock``;
- ``raw-one-hop``: the same statements in one function run on a worker thread, one round trip per transaction;
- ``raw-one-hop-grouped``: like ``raw-one-hop``, but each round trip commits every request waiting at that
  moment in one transaction (group commit: one fsync for many requests).

Also prints the latency of one aiosqlite round trip (``SELECT 1``). With ``--busy``, 8 more tasks keep the
event loop busy the way concurrent HTTP requests do (0.1 ms of CPU, then a yield, over and over: about
1 ms per turn of the loop), so every round trip waits for its turn on the loop, and a worker thread waits
for the GIL (which the busy loop thread holds) after every SQLite call; that mode writes a tenth as many
requests, or it would take many minutes. Run: ``python -m bench.probe_writes [--busy]``.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Awaitable, Callable

import anyio

from bench import samples
from bench.config import Config
from bench.rawdb import AiosqliteRawWriter, RowSet, create_schema, rowsets, write_rows
from bench.stats import percentile
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.sqlite_db import connect_sync
from signoff.tools.approvals.lifecycle import creation_events

CONCURRENCY = 32
PER_TASK = 40
PER_TASK_BUSY = 4
BUSY_TASKS = 8


async def _concurrently(write: Callable[[int], Awaitable[None]], per_task: int) -> float:
    """Requests per second when CONCURRENCY tasks each write ``per_task`` requests."""

    async def task(t: int) -> None:
        for k in range(per_task):
            await write(t * per_task + k)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for t in range(CONCURRENCY):
            tg.start_soon(task, t)
    return CONCURRENCY * per_task / (time.perf_counter() - start)


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
    per_task = PER_TASK_BUSY if busy else PER_TASK
    n = CONCURRENCY * per_task
    rates: dict[str, float] = {}

    requests = await samples.requests_as_built(n, samples.NEEDS_REVIEW)
    store = await SqliteStore.open(workdir / "store.db")

    async def via_store(i: int) -> None:
        await store.create_request(requests[i], creation_events(requests[i]), notify=True)

    rates["store"] = await _concurrently(via_store, per_task)
    await store.close()

    multi = list(rowsets(await samples.requests_as_built(n, samples.NEEDS_REVIEW)))
    writer = await AiosqliteRawWriter.open(workdir / "multi.db")
    lock = anyio.Lock()

    async def multi_hop(i: int) -> None:
        async with lock:
            await writer.write(multi[i])

    rates["raw-multi-hop"] = await _concurrently(multi_hop, per_task)
    hops = []
    for _ in range(500):
        start = time.perf_counter()
        async with writer.db.execute("SELECT 1") as cur:
            await cur.fetchall()
        hops.append(time.perf_counter() - start)
    await writer.close()

    single = list(rowsets(await samples.requests_as_built(n, samples.NEEDS_REVIEW)))
    await create_schema(workdir / "one.db")
    conn = connect_sync(workdir / "one.db")

    async def one_hop(i: int) -> None:
        async with lock:
            await anyio.to_thread.run_sync(write_rows, conn, [single[i]])

    rates["raw-one-hop"] = await _concurrently(one_hop, per_task)
    conn.close()

    grouped_rows = list(rowsets(await samples.requests_as_built(n, samples.NEEDS_REVIEW)))
    await create_schema(workdir / "grouped.db")
    conn = connect_sync(workdir / "grouped.db")
    waiting: list[tuple[RowSet, anyio.Event]] = []

    async def grouped(i: int) -> None:
        done = anyio.Event()
        waiting.append((grouped_rows[i], done))
        async with lock:
            if not done.is_set():
                batch = waiting[:]
                waiting.clear()
                await anyio.to_thread.run_sync(write_rows, conn, [rows for rows, _ in batch])
                for _, event in batch:
                    event.set()
        await done.wait()

    rates["raw-one-hop-grouped"] = await _concurrently(grouped, per_task)
    conn.close()

    load = f", event loop kept busy by {BUSY_TASKS} CPU tasks" if busy else ""
    print(f"{CONCURRENCY} concurrent writers, {n} pending requests each way{load}:")
    for name, rate in rates.items():
        print(f"  {name:<22} {rate:8.0f} requests/s")
    p50, p99 = percentile(hops, 50) * 1000, percentile(hops, 99) * 1000
    print(f"one aiosqlite round trip (SELECT 1): p50 {p50:.3f} ms, p99 {p99:.3f} ms")


if __name__ == "__main__":
    anyio.run(main, "--busy" in sys.argv[1:])
