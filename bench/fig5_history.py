"""Figure 5: history at scale, ``SqliteStore.list_requests`` with a status and an action filter, 50 a page.

The database holds ``--history-rows`` requests (default 1,000,000; see ``history_db``), built on first use
and cached in bench/results/. Several filter shapes are measured, because their cost depends on how many
rows SQLite must walk to fill a page: common status and action, a rarer pair, pending requests of a common
action (only the newest 100 requests are pending, so fewer than a page match and the whole action is
walked), a rare pair, and the 20th page of the common pair through the cursor; then text searches (the
console's Words box): words that match nothing, one rare target, a common action, and nothing within a
status. Floor: the same first page with no filter (``ORDER BY created_at DESC, id DESC LIMIT 51`` on its index),
fetched with raw aiosqlite and not decoded: the cost of reading one page at all.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace

from bench import history_db
from bench.config import Config
from bench.report import Check, FigureResult, Row, Target
from bench.stats import percentile, summary_ms
from signoff.storage import RequestQuery, Status
from signoff.storage.approvals import queries as q
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.sqlite_db import connect

PAGE = 50
BUDGET_SECONDS = 8.0  #: per shape; past it, a shape stops once it has MIN_SAMPLES
MIN_SAMPLES = 30
FLOOR_SQL = f"{q.SELECT_REQUESTS} ORDER BY r.created_at DESC, r.id DESC LIMIT {PAGE + 1}"
# the SQL list_requests builds for a status + action filter, for EXPLAIN QUERY PLAN only
FILTERED_SQL = f"{q.SELECT_REQUESTS} WHERE r.status = ? AND r.action = ? ORDER BY r.created_at DESC, r.id DESC LIMIT ?"


@dataclass(frozen=True, slots=True)
class Shape:
    label: str
    what: str
    query: RequestQuery
    pages_deep: int = 1
    target_ms: float = 10.0


SHAPES = (
    Shape(
        "5a",
        "approved + payments.transfer (21% of rows)",
        RequestQuery(status=Status.APPROVED, action="payments.transfer"),
    ),
    Shape(
        "5b", "rejected + deploy.production (1.2%)", RequestQuery(status=Status.REJECTED, action="deploy.production")
    ),
    Shape(
        "5c",
        "pending + payments.transfer (< a page exist)",
        RequestQuery(status=Status.PENDING, action="payments.transfer"),
    ),
    Shape(
        "5d",
        "cancelled + db.drop_table (~0.015%: few or none)",
        RequestQuery(status=Status.CANCELLED, action="db.drop_table"),
    ),
    Shape(
        "5e",
        "5a, 20th page by cursor",
        RequestQuery(status=Status.APPROVED, action="payments.transfer"),
        pages_deep=20,
    ),
    # history text search (the console's Words box): the bound is 50 ms p50 over 1,000,000 requests
    Shape("5f", "text matching nothing", RequestQuery(text="no such words"), target_ms=50.0),
    Shape("5g", "text of one target of 5,000 (~0.02%)", RequestQuery(text="acct-4321:"), target_ms=50.0),
    Shape("5h", "text of a common action (6%)", RequestQuery(text="REFUND"), target_ms=50.0),
    Shape(
        "5i",
        "text matching nothing + approved",
        RequestQuery(text="no such words", status=Status.APPROVED),
        target_ms=50.0,
    ),
)


async def _deep_query(store: SqliteStore, shape: Shape) -> RequestQuery:
    query = shape.query
    for _ in range(shape.pages_deep - 1):
        page = await store.list_requests(query)
        if page.next_cursor is None:
            break
        query = replace(query, before=page.next_cursor)
    return query


async def run(cfg: Config) -> FigureResult:
    warmup, count = cfg.pick(20, 10), cfg.pick(300, 100)
    path = history_db.cached_path(cfg.results_dir, cfg.history_rows)
    if not path.exists():
        print(f"  building {cfg.history_rows:,} requests into {path.name} (once; cached)", file=sys.stderr, flush=True)
        started = time.perf_counter()
        await history_db.build(path, cfg.history_rows)
        print(f"  built in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    store = await SqliteStore.open(path)
    raw = await connect(path)
    times: dict[str, list[float]] = {label: [] for label in [*(shape.label for shape in SHAPES), "floor"]}
    found: dict[str, int] = {}
    plans: dict[str, list[str]] = {}
    try:
        queries = {shape.label: await _deep_query(store, shape) for shape in SHAPES}
        for shape in SHAPES[:4]:
            params = (str(shape.query.status), shape.query.action, PAGE + 1)
            async with raw.execute(f"EXPLAIN QUERY PLAN {FILTERED_SQL}", params) as cur:
                plans[shape.label] = [row[3] for row in await cur.fetchall()]
        spent = dict.fromkeys(queries, 0.0)
        for i in range(warmup + count):
            for label, query in queries.items():
                if spent[label] > BUDGET_SECONDS and len(times[label]) >= MIN_SAMPLES:
                    continue  # a slow shape: enough samples for its p50, and the run stays short
                start = time.perf_counter()
                page = await store.list_requests(query)
                elapsed = time.perf_counter() - start
                spent[label] += elapsed
                found[label] = len(page.items)
                if i >= warmup:
                    times[label].append(elapsed)
            start = time.perf_counter()
            async with raw.execute(FLOOR_SQL) as cur:
                await cur.fetchall()
            if i >= warmup:
                times["floor"].append(time.perf_counter() - start)
    finally:
        await raw.close()
        await store.close()

    floor_p50 = percentile(times["floor"], 50) * 1000
    size = os.path.getsize(path)
    rows = [
        Row(
            figure=shape.label,
            what=f"list_requests p50, {shape.what}",
            unit="ms",
            measured=percentile(times[shape.label], 50) * 1000,
            floor=floor_p50,
            target=Target(Check.BELOW, shape.target_ms, "ms"),
        )
        for shape in SHAPES
    ]
    rows.append(
        Row(
            figure="5",
            what=f"database size per request ({cfg.history_rows:,} requests)",
            unit="B",
            measured=size / cfg.history_rows,
        )
    )
    return FigureResult(
        rows=rows,
        details={
            "history_rows": cfg.history_rows,
            "database": path.name,
            "database_bytes": size,
            "bytes_per_request_by_table": {
                table: round(b / cfg.history_rows, 1) for table, b in history_db.table_sizes(path).items()
            },
            "queries_per_shape": count,
            "items_on_page": found,
            "query_plans": plans,
            **{label: summary_ms(samples) for label, samples in times.items()},
        },
    )
