"""GET /metrics with a million requests in the database: the p50 of a scrape over real HTTP (target < 50 ms).

Uses figure 5's database (``history_db``: 1,000,000 requests, built on first use and cached in bench/results/),
served by ``build_server`` + uvicorn on loopback, as ``signoff serve --transport http`` does. Beside each scrape,
the floor: a GET of a path the server answers with 404 at once (the HTTP round trip alone). Also measured without
HTTP: ``Store.metrics`` + ``ModelStore.inference_totals`` and ``guard_action_totals`` + rendering the text. The
server's clock is pinned at the end of the generated year, so its expiry sweeper finds nothing overdue and the cached
database is left unchanged.

The generator inserts decided requests as they end up, so the decision-time histogram (counted when a pending
request is decided) is empty in this database; every other counter holds its million requests. A scrape reads the
same rows either way (one row per label set).

    python -m bench.metrics_scrape                  # 1,000,000 requests, 300 scrapes
    python -m bench.metrics_scrape --rows 100000 --scrapes 100
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from datetime import datetime
from pathlib import Path

import anyio
import httpx2
import uvicorn

from bench import history_db
from bench.config import RESULTS_DIR
from bench.stats import percentile
from signoff.server.app import build_server
from signoff.server.config import Settings
from signoff.server.metrics import exposition, read_snapshot
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.models.sqlite import SqliteModelStore

TARGET_MS = 50.0
WARMUP = 20


class PinnedClock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


async def database(rows: int) -> Path:
    path = history_db.cached_path(RESULTS_DIR, rows)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"building {rows:,} requests into {path.name} (once; cached)", file=sys.stderr, flush=True)
        await history_db.build(path, rows)
    return path


async def direct(path: Path, scrapes: int, now: datetime) -> list[float]:
    """The scrape's work without HTTP: read the numbers, render the text."""
    store, models = await SqliteStore.open(path), await SqliteModelStore.open(path)
    times = []
    try:
        for i in range(WARMUP + scrapes):
            started = time.perf_counter()
            exposition(await read_snapshot(store, models, now))
            if i >= WARMUP:
                times.append(time.perf_counter() - started)
    finally:
        await models.close()
        await store.close()
    return times


async def over_http(path: Path, scrapes: int, now: datetime) -> tuple[list[float], list[float], int]:
    listener = socket.socket()
    # accepted sockets inherit it: without it, a pre-bound socket answers after a 40 ms delayed ACK (Nagle)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    app = build_server(Settings(db_path=path), http_url=base, clock=PinnedClock(now)).streamable_http_app()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    scrape_times, floor_times, size = [], [], 0
    try:
        async with anyio.create_task_group() as tg, httpx2.AsyncClient() as http:
            tg.start_soon(server.serve, [listener])
            for i in range(WARMUP + scrapes):
                started = time.perf_counter()
                answer = await http.get(f"{base}/metrics")
                scraped = time.perf_counter()
                floor = await http.get(f"{base}/no-such-page")
                ended = time.perf_counter()
                assert answer.status_code == 200 and floor.status_code == 404, (answer.status_code, floor.status_code)
                size = len(answer.content)
                if i >= WARMUP:
                    scrape_times.append(scraped - started)
                    floor_times.append(ended - scraped)
            server.should_exit = True
    finally:
        listener.close()
    return scrape_times, floor_times, size


async def main(rows: int, scrapes: int) -> None:
    path = await database(rows)
    now = history_db.START + history_db.SPAN
    scrape_times, floor_times, size = await over_http(path, scrapes, now)
    direct_times = await direct(path, scrapes, now)

    def ms(times: list[float], p: float) -> str:
        return f"{percentile(times, p) * 1000:.2f} ms"

    p50 = percentile(scrape_times, 50) * 1000
    print(f"database: {rows:,} requests, {path.stat().st_size / 1e9:.1f} GB ({path.name})")
    print(f"GET /metrics p50 {ms(scrape_times, 50)}, p90 {ms(scrape_times, 90)} ({scrapes} scrapes, {size:,} bytes)")
    print(f"floor (GET of a 404) p50 {ms(floor_times, 50)}")
    print(f"without HTTP (read + render) p50 {ms(direct_times, 50)}, p90 {ms(direct_times, 90)}")
    print(f"target: p50 < {TARGET_MS:.0f} ms: {'met' if p50 < TARGET_MS else 'MISSED'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--scrapes", type=int, default=300)
    args = parser.parse_args()
    anyio.run(main, args.rows, args.scrapes)
